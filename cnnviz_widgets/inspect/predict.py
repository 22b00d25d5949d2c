"""What the model is given besides the image, and where in what it returns are class scores.

A model may take further inputs after the image (`forward_args`, held fixed, as occlusion's
`forward_args` and Captum's `additional_forward_args`: a tensor whose first dimension is 1 is
expanded to each batch) and may return its class scores inside something else: a tuple, a
dict, an object with `.logits` (a Hugging Face `ModelOutput`). `class_scores=` says where
(`pick_scores`, the one place that reads it). `bound_model` makes of the user's model one that
takes the image alone and, asked to, returns the class scores alone: what every view runs.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from .fingerprint import hash_value
from .inputs import model_image
from .view import eval_view, inference_view

SCORES = "an int index, a str key or attribute name, or a callable (output -> class scores)"
_NAMES = 6  # keys or attributes named in an error, at most


def _shown(class_scores: Any) -> str:
    """`class_scores` as an error names it: `0`, `'logits'`, `<lambda>`."""
    if callable(class_scores) and not isinstance(class_scores, (str, int)):
        return f"<{getattr(class_scores, '__qualname__', type(class_scores).__name__)}>"
    return repr(class_scores)


def _what(value: Any) -> str:
    """`a tuple of 2 (tensor (1, 10), tensor (1, 128))`, `a dict with keys 'a', 'b'`."""
    if isinstance(value, torch.Tensor):
        return f"a tensor {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} ({', '.join(map(_what, value[:_NAMES]))})"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} with keys {', '.join(map(repr, list(value)[:_NAMES]))}"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _default(output: Any) -> Any:
    """`class_scores=None`: a tensor as it is, else its `.logits`; anything else: what to pass."""
    if isinstance(output, (torch.Tensor, fx.Proxy)):
        return output
    if isinstance(getattr(output, "logits", None), (torch.Tensor, fx.Proxy)):
        return output.logits
    if isinstance(output, (tuple, list)) and output:
        hint = "the index of the class scores in it as class_scores= (e.g. class_scores=0)"
    elif isinstance(output, Mapping) and output:
        key = next(iter(output))
        hint = f"the key of the class scores in it as class_scores= (e.g. class_scores={key!r})"
    else:
        hint = "class_scores= a callable that picks the (N, num_classes) tensor from it"
    raise ValueError(f"The model returns {_what(output)}, not class scores; pass {hint}")


def _picked(output: Any, class_scores: Any) -> Any:
    if isinstance(class_scores, str):
        if isinstance(output, Mapping):
            if class_scores in output:
                return output[class_scores]
            raise ValueError(
                f"class_scores={class_scores!r} is not a key of what the model returns, "
                f"{_what(output)}"
            )
        if hasattr(output, class_scores):
            return getattr(output, class_scores)
        raise ValueError(
            f"class_scores={class_scores!r}: the model returns {_what(output)}, no {class_scores!r}"
        )
    if isinstance(class_scores, (int, np.integer)) and not isinstance(class_scores, bool):
        if not isinstance(output, (tuple, list)):
            raise ValueError(
                f"class_scores={class_scores} indexes a tuple; the model returns {_what(output)}"
            )
        if not -len(output) <= class_scores < len(output):
            raise ValueError(
                f"class_scores={class_scores} is out of range: the model returns {_what(output)} "
                f"(valid: 0..{len(output) - 1})"
            )
        return output[class_scores]
    if callable(class_scores):
        return class_scores(output)
    raise TypeError(f"class_scores must be {SCORES}; got {_shown(class_scores)}")


def pick_scores(output: Any, class_scores: Any = None) -> torch.Tensor:
    """The class scores in what the model returned (`output`).

    `class_scores=None`: the output itself when it is a tensor, its `.logits` when it has them (a
    Hugging Face `ModelOutput`, which is what a user of one means); a tuple, a list or a dict
    raises a ValueError naming what it holds and the `class_scores=` to pass. An int indexes a tuple
    or list, a str is a dict key or an attribute name, a callable is called with the output.
    What is picked must be a tensor; a bad `class_scores` is named in the error.
    """
    found = _default(output) if class_scores is None else _picked(output, class_scores)
    if not isinstance(found, (torch.Tensor, fx.Proxy)):
        raise ValueError(
            f"class_scores={_shown(class_scores)} picked {_what(found)} from the model's output, "
            "not a "
            "tensor of class scores (N, num_classes)"
        )
    return found


def check_scores(logits: torch.Tensor, class_scores: Any = None, batch: int | None = None) -> None:
    """Raise unless `logits` are (batch, num_classes) class scores, naming `class_scores`."""
    if logits.ndim == 2 and batch in (None, logits.shape[0]):
        return
    how = (
        "the model returns"
        if class_scores is None
        else f"class_scores={_shown(class_scores)} picked"
    )
    want = f"({batch if batch is not None else 'N'}, num_classes)"
    raise ValueError(f"Expected class scores {want}; {how} a tensor {tuple(logits.shape)}")


# ------------------------------------------------------------------ forward_args ----


def check_forward_args(model: nn.Module, forward_args: Any) -> tuple:
    """`forward_args` as a tuple, checked against `model.forward`'s inputs after the image: a
    TypeError naming the inputs it lacks, or the ones too many."""
    if not isinstance(forward_args, (tuple, list)):
        raise ValueError(
            f"forward_args must be a tuple of the model's inputs after the image, got "
            f"{type(forward_args).__name__}; wrap a single one: forward_args=(value,)"
        )
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no signature to check against: the forward will say
        return tuple(forward_args)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return tuple(forward_args)
    after = [p for p in params if p.kind in kinds][1:]
    needed = [p.name for p in after if p.default is p.empty]
    name = f"{type(model).__name__}.forward"
    keyword = [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if keyword:
        raise TypeError(
            f"{name} takes keyword-only input(s) ({', '.join(keyword)}), which forward_args "
            "cannot give (they follow the image by position); wrap the model in a module "
            "whose forward takes them by position"
        )
    if len(forward_args) < len(needed):
        raise TypeError(
            f"{name} takes {len(needed)} input(s) after the image ({', '.join(needed)}); "
            f"pass them, held fixed, as forward_args=({', '.join(needed)},)"
        )
    if len(forward_args) > len(after):
        raise TypeError(
            f"forward_args has {len(forward_args)} values, but {name} takes {len(after)} "
            f"input(s) after the image ({', '.join(p.name for p in after) or 'none'})"
        )
    return tuple(forward_args)


def fixed_inputs(forward_args: Sequence[Any], image: Any) -> tuple:
    """`forward_args` for a batch `image`: tensors on its device, one whose first dimension
    is 1 expanded to the batch (as occlusion does); as they are while tracing."""
    if isinstance(image, fx.Proxy):
        return tuple(forward_args)
    n = image.shape[0]
    return tuple(
        (a.expand(n, *a.shape[1:]) if a.ndim and a.shape[0] == 1 else a).to(image.device)
        if isinstance(a, torch.Tensor)
        else a
        for a in forward_args
    )


_SOURCE = """\
def forward(self, image, {params}):
    return _call(self, image, ({names}))
"""


def bound_model(
    model: nn.Module, forward_args: Any = (), *, class_scores: Any = None, pick: bool = False
) -> nn.Module:
    """`model` taking the image alone (`forward_args` after it) and, with `pick`, returning
    its class scores alone (`pick_scores(output, class_scores)`); `model` itself where neither
    changes anything.

    It is an eval-mode view of the model (`view.eval_view`: the same weights, the model
    untouched) of a subclass whose forward has one optional parameter per fixed input, so
    that tracers see them as inputs (the receptive field analysis, occlusion's engine, which
    is then given them as its own `forward_args`).
    """
    args = check_forward_args(model, forward_args)
    if not args and not pick:
        return model
    base = type(model)

    def call(self, image, given):
        inputs = [a if g is None else g for a, g in zip(args, given, strict=True)]
        out = base.forward(self, image, *fixed_inputs(inputs, image))
        return pick_scores(out, class_scores) if pick else out

    names = [f"input{i + 1}" for i in range(len(args))]
    source = _SOURCE.format(
        params=", ".join(f"{n}=None" for n in names), names="".join(f"{n}, " for n in names)
    )
    namespace = {"_call": call}
    exec(source, namespace)  # real parameters, one per input: tracers read the code's arguments
    attributes = {"forward": namespace["forward"], "__module__": base.__module__}
    attributes |= {
        "__qualname__": base.__qualname__,
        "_cnnviz_bound": (model, args, class_scores, pick),
    }
    view = eval_view(model)
    view.__class__ = type(base.__name__, (base,), attributes)
    return view


def bound_source(model: nn.Module) -> tuple[nn.Module, tuple]:
    """(the user's model behind a `bound_model`, a key of what it binds: the inputs' contents,
    `class_scores`); (model, ()) for any other model."""
    found = type(model).__dict__.get("_cnnviz_bound")
    if found is None:
        return model, ()
    inner, args, class_scores, pick = found
    digest = hashlib.blake2b(digest_size=16)
    hash_value(digest, args)
    source, key = bound_source(inner)
    return source, (*key, "bound", digest.hexdigest(), scores_key(class_scores), pick)


def bound_inputs(model: nn.Module) -> tuple:
    """The fixed inputs a `bound_model` gives its forward (for a tracer's placeholders:
    occlusion's `forward_args`); () for any other model."""
    found = type(model).__dict__.get("_cnnviz_bound")
    return () if found is None else found[1]


def scores_key(class_scores: Any) -> Any:
    """`class_scores` as part of a cache key (a callable by identity)."""
    try:
        hash(class_scores)
    except TypeError:
        return ("id", id(class_scores))
    return class_scores


# ------------------------------------------------------------------ one image ----


def model_output(model: nn.Module, image, *, device=None, transform=None, forward_args=()) -> Any:
    """What the model returns for one image: its eval-mode view run on it (and on
    `forward_args` after it), in inference mode."""
    args = check_forward_args(model, forward_args)
    batch = model_image(model, image, transform=transform)  # checked, detached, model dtype
    with inference_view(model, device) as (view, dev):
        batch = batch.to(dev)
        return view(batch, *fixed_inputs(args, batch))


def probabilities_of(logits: torch.Tensor, class_scores: Any = None) -> np.ndarray:
    """Softmax of one image's (1, num_classes) class scores, as float32 NumPy (K,)."""
    check_scores(logits, class_scores, batch=1)
    return torch.softmax(logits.float(), dim=1)[0].cpu().numpy()


def class_probabilities(
    model: nn.Module, image, *, device=None, transform=None, forward_args=(), class_scores=None
) -> np.ndarray:
    """Softmax over the model's (1, num_classes) class scores for one image, as float32 NumPy.

    `forward_args`: the model's further inputs after the image, held fixed; `class_scores`: where
    the class scores are in what the model returns (see `pick_scores`).
    """
    output = model_output(
        model, image, device=device, transform=transform, forward_args=forward_args
    )
    return probabilities_of(pick_scores(output, class_scores), class_scores)


def scored_model(
    model: nn.Module, image, *, device=None, transform=None, forward_args=(), class_scores=None
) -> tuple[nn.Module, np.ndarray]:
    """(the model as a view of class scores runs it: `bound_model` taking the image alone and
    returning the class scores alone, or `model` itself where it does so already; the class
    probabilities of `image`), from one forward."""
    output = model_output(
        model, image, device=device, transform=transform, forward_args=forward_args
    )
    probs = probabilities_of(pick_scores(output, class_scores), class_scores)
    plain = class_scores is None and isinstance(output, torch.Tensor)
    return bound_model(model, forward_args, class_scores=class_scores, pick=not plain), probs


def top_k(probabilities: np.ndarray, k: int = 5) -> list[tuple[int, float]]:
    """The k most probable classes as (index, probability), most probable first."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), float(probabilities[i])) for i in order]
