"""The one array codec: a numpy array trait the browser gets as `{dtype, shape, buffer}`.

`Array(dtype, ndim)` holds a C-contiguous little-endian array of that dtype and rank; it syncs
as `{"dtype": "float32", "shape": [n, 2], "buffer": <the bytes>}` (ipywidgets sends the bytes as
a binary buffer, no base64), which `readArray` in js/src/lib/codecs.js reads back as a typed
array and its shape; an array sent by the browser (`writeArray`) comes back the same way.
Nothing else in the package encodes an array by hand.
"""

from __future__ import annotations

import numpy as np
import traitlets

#: the dtypes the browser has a typed array for (js/src/lib/codecs.js: TYPED)
DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")


def array_to_json(value: np.ndarray | None, widget=None) -> dict | None:
    if value is None:
        return None
    return {"dtype": value.dtype.name, "shape": list(value.shape), "buffer": memoryview(value)}


def array_from_json(value, widget=None) -> np.ndarray | None:
    if value is None:
        return None
    dtype = np.dtype(value["dtype"]).newbyteorder("<")
    flat = np.frombuffer(bytes(value["buffer"]), dtype)
    return flat.reshape([int(n) for n in value["shape"]]).astype(dtype.newbyteorder("="))


class Array(traitlets.TraitType):
    """A numpy array of `dtype` with `ndim` dimensions, synced by the array codec. Any array-like
    is converted (a copy only when needed); a value of another rank is an error naming it."""

    info_text = "a numpy array"

    def __init__(self, dtype: str, ndim: int = 1, **kwargs):
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: the browser reads {', '.join(DTYPES)}")
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.ndim = ndim
        super().__init__(np.zeros((0,) * ndim, self.dtype), **kwargs)
        self.tag(sync=True, to_json=array_to_json, from_json=array_from_json)

    def validate(self, obj, value):
        array = np.ascontiguousarray(value, dtype=self.dtype)
        if array.ndim != self.ndim:
            self.error(obj, value, info=f"an array with {self.ndim} dimension(s)")
        return array

    def make_dynamic_default(self):
        return np.zeros((0,) * self.ndim, self.dtype)
