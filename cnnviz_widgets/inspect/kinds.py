"""What a layer's output is: post-activation, linear or gated.

The lecture's activation grids are post-activation maps (after a ReLU-like nonlinearity):
sparse, zero is silence. A linear map (a conv or BatchNorm output, a bottleneck projection,
a residual sum) is signed and dense, so it is drawn centred at zero; a gated map is a
squeeze-excite product (a map scaled by a sigmoid gate of the whole image).
"""

from __future__ import annotations

from torch import nn

POST_ACTIVATION, LINEAR, GATED = "post-activation", "linear", "gated"
KINDS = (POST_ACTIVATION, LINEAR, GATED)

#: nonlinearities whose output the lecture calls an activation
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Mish,
    nn.Softplus,
    nn.Sigmoid,
    nn.Hardsigmoid,
    nn.Tanh,
)
#: a container whose last computing step is one of these multiplies a map by a gate
GATES = (nn.Sigmoid, nn.Hardsigmoid)
#: modules that hand their input on unchanged at inference
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.AlphaDropout)


def last_step(modules: dict[str, nn.Module], name: str, order: list[str]) -> nn.Module:
    """The last leaf module that computes something among `name` and its submodules, in call
    order (`order`, with repeats); when they all hand their input on (Identity, Dropout), the
    computing leaf called before them; `name` itself when there is none."""
    prefix, reached = f"{name}.", False
    for called in reversed(order):
        reached = reached or called == name
        if not reached and not called.startswith(prefix):
            continue
        module = modules[called]
        if any(True for _ in module.children()) or isinstance(module, PASS_THROUGH):
            continue
        return module
    return modules[name]


def layer_kind(module: nn.Module, last: nn.Module, low: float | None, high: float | None) -> str:
    """The kind of `module`'s output from its last computing step `last` and the range
    (`low`, `high`) of its output on an example image (None when not measured).

    A map that is never negative and not constant counts as post-activation even when the
    nonlinearity is a function call (`F.relu(x + identity)`), which hooks cannot see.
    """
    if last is not module and isinstance(last, GATES):
        return GATED
    if isinstance(last, ACTIVATIONS):
        return POST_ACTIVATION
    if low is not None and high is not None and low >= 0 and high > low:
        return POST_ACTIVATION
    return LINEAR
