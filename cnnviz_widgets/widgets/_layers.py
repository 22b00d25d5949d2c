"""The layer picker's choices: every layer with a receptive field, labelled."""

from __future__ import annotations

from torch import nn

from ._derived import catalogue_of, derived, fields_of


def layer_choices(model: nn.Module, image) -> list[dict]:
    """Every layer with a receptive field, labelled with its output shape, stride and field
    (once per model structure and input shape: see `_derived.py`)."""
    key = ("layer_choices", tuple(image.shape[-3:]))
    return derived(model, key, lambda: _layer_choices(model, image))


def _layer_choices(model: nn.Module, image) -> list[dict]:
    catalogue = {info.name: info for info in catalogue_of(model, image)}
    choices = []
    for name, rf in fields_of(model, image).items():
        info = catalogue.get(name)
        if info is None or not info.is_spatial:
            continue
        choices.append({"name": name, "label": choice_label(info, rf), **field_facts(info, rf)})
    return choices


def field_facts(info, rf) -> dict:
    """The kind of `info`'s maps and whether its receptive field `rf` fits the input."""
    fits = rf.kind != "image" and all(s <= n for s, n in zip(rf.size, rf.input_size, strict=True))
    return {"kind": info.kind, "fits": fits}


def choice_label(info, rf) -> str:
    """`blocks.3.1.bn2 · 480×14×14 · post-activation · stride 16 · RF 115 px, 51% of 224`."""
    shape = "×".join(map(str, info.output_shape))
    head = f"{info.name} · {shape} · {info.kind}"
    if rf.kind == "image":  # mixes the whole map (attention): every unit sees the image
        return f"{head} · RF whole image"
    stride = rf.stride[0] if rf.stride[0] == rf.stride[1] else "×".join(map(str, rf.stride))
    bound = "≤ " if rf.kind == "bound" else ""  # after upsampling, a strided transposed conv
    (fh, fw), (h, w) = rf.size, rf.input_size
    size = f"{fh} px" if fh == fw else f"{fh}×{fw} px"
    share = round(100 * max(fh / h, fw / w))
    side = f"{h}" if h == w else f"{h}×{w}"
    return f"{head} · stride {stride} · RF {bound}{size}, {share}% of {side}"
