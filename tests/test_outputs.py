"""Models that return more than a tensor (`class_scores=`) or take more than the image
(`forward_args=`): every view shows what the same weights show in a model that takes the
image alone and returns the tensor, and a model it cannot read is named with the fix."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from cnnviz_widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    OcclusionMap,
    TopPatches,
    extract_features,
)
from cnnviz_widgets.demo.model import DigitsCNN
from cnnviz_widgets.inspect import class_probabilities
from cnnviz_widgets.inspect.features import feature_pass

SCALE = torch.linspace(0.5, 1.5, 128)[None]  # the second input: one weight per feature


class Tuple(DigitsCNN):
    def forward(self, x):
        features = self.features(x)
        return features, self.fc(self.dropout(features))


class Dict(DigitsCNN):
    def forward(self, x):
        features = self.features(x)
        return {"features": features, "logits": self.fc(self.dropout(features))}


class Logits(DigitsCNN):  # as a Hugging Face ModelOutput reads
    def forward(self, x):
        features = self.features(x)
        return SimpleNamespace(hidden_states=features, logits=self.fc(self.dropout(features)))


class Scaled(DigitsCNN):  # a second input, after the image
    def forward(self, x, scale):
        return self.fc(self.dropout(self.features(x) * scale))


class Baked(DigitsCNN):  # the expectation: the second input written into the model
    def forward(self, x):
        return self.fc(self.dropout(self.features(x) * SCALE))


#: (model class, keywords that read it, model class that shows the same by itself)
CASES = {
    "tuple": (Tuple, {"class_scores": 1}, DigitsCNN),
    "dict": (Dict, {"class_scores": "logits"}, DigitsCNN),
    "logits": (Logits, {}, DigitsCNN),  # `.logits` taken by default
    "callable": (Dict, {"class_scores": lambda out: out["logits"]}, DigitsCNN),
    "forward_args": (Scaled, {"forward_args": (SCALE,)}, Baked),
}


def like(cls, demo):
    model = cls()
    model.load_state_dict(demo[0].state_dict())
    return model.eval()


@pytest.fixture(scope="module")
def small(demo):
    return Subset(demo[1], range(40))


def state(model) -> tuple:
    """What a view must leave as it was: weights, flag, hooks, class."""
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return weights, model.training, dict(model._forward_hooks), type(model)


def unchanged(model, before) -> bool:
    weights, training, hooks, cls = before
    now = model.state_dict()
    same = all(torch.equal(now[k], v) for k, v in weights.items())
    return (
        same and model.training == training and model._forward_hooks == hooks and type(model) is cls
    )


@pytest.mark.parametrize("case", list(CASES))
def test_class_probabilities_and_occlusion_read_the_scores(case, demo):
    cls, how, plain_cls = CASES[case]
    model, plain = like(cls, demo), like(plain_cls, demo)
    model.train()  # the user's flag stays as it is
    before = state(model)
    image = demo[1][3][0]
    want = class_probabilities(plain, image)
    np.testing.assert_allclose(class_probabilities(model, image, **how), want, atol=1e-6)

    got = OcclusionMap(model, image, patch_size=8, strides=[8, 4], **how)
    expected = OcclusionMap(plain, image, patch_size=8, strides=[8, 4])
    assert got.target == expected.target
    got_map, want_map = got.wait(60), expected.wait(60)
    got.close(), expected.close()
    np.testing.assert_allclose(got_map.scores, want_map.scores, atol=1e-5)
    assert not got_map.extra.get("notes")  # incremental, exact: no fall-back to full
    assert unchanged(model, before)


@pytest.mark.parametrize("case", ["tuple", "logits", "forward_args"])
def test_the_explorer_and_the_map_show_the_same_predictions(case, demo, small):
    cls, how, plain_cls = CASES[case]
    model, plain = like(cls, demo), like(plain_cls, demo)
    before = state(model)
    got = CNNExplorer(model, small, demo[2], method="pca", progress=False, **how)
    want = CNNExplorer(plain, small, demo[2], method="pca", progress=False)
    got.selected_index = want.selected_index = 5
    got_map, want_map = got.wait(60), want.wait(60)
    for a, b in ((got.embedding.features, want.embedding.features),):
        np.testing.assert_array_equal(a.predictions, b.predictions)
        np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-6)
        np.testing.assert_allclose(a.features, b.features, atol=1e-6)
    assert got.selected_info == pytest.approx(want.selected_info)
    np.testing.assert_allclose(got_map.scores, want_map.scores, atol=1e-5)
    np.testing.assert_allclose(got.top_patches.top.values, want.top_patches.top.values, atol=1e-5)
    got.close(), want.close()
    assert unchanged(model, before)


def test_the_embedding_colours_by_the_scores_it_is_told(demo, small):
    model, plain = like(Tuple, demo), like(DigitsCNN, demo)
    want = feature_pass(plain, small, progress=False, cache=False)
    emb = EmbeddingExplorer(model, small, method="pca", class_scores=1, background=False)
    np.testing.assert_array_equal(emb.features.predictions, want.predictions)
    np.testing.assert_allclose(emb.features.features, want.features, atol=1e-6)
    # without class_scores= a tuple gives no predictions (the features do not need them)
    assert feature_pass(model, small, progress=False, cache=False).predictions is None
    emb.close()


def test_forward_args_reach_every_widget(demo, small):
    model, baked = like(Scaled, demo), like(Baked, demo)
    before = state(model)
    image = demo[1][0][0]
    maps = FeatureMaps(model, image, "relu3", forward_args=(SCALE,))
    np.testing.assert_array_equal(maps.activations, FeatureMaps(baked, image, "relu3").activations)
    top = TopPatches(model, small, "relu3", 3, forward_args=(SCALE,), progress=False).wait(60)
    expected = TopPatches(baked, small, "relu3", 3, progress=False).wait(60)
    np.testing.assert_array_equal(top.top.indices, expected.top.indices)
    assert top.top.effective_boxes(None, [(0, 0)]) == expected.top.effective_boxes(None, [(0, 0)])
    emb = EmbeddingExplorer(model, small, method="pca", forward_args=(SCALE,), background=False)
    plain = feature_pass(baked, small, progress=False, cache=False)
    np.testing.assert_array_equal(emb.features.predictions, plain.predictions)
    np.testing.assert_allclose(
        extract_features(model, small, progress=False, forward_args=(SCALE,)),
        plain.features,
        atol=1e-6,
    )
    for widget in (top, expected, emb):
        widget.close()
    assert unchanged(model, before)


@pytest.mark.parametrize(
    "widget", ["FeatureMaps", "OcclusionMap", "TopPatches", "Embedding", "CNNExplorer"]
)
def test_a_missing_second_input_names_forward_args(widget, demo, small):
    model = like(Scaled, demo)
    build = {
        "FeatureMaps": lambda **kw: FeatureMaps(model, small[0][0], **kw),
        "OcclusionMap": lambda **kw: OcclusionMap(model, small[0][0], **kw),
        "TopPatches": lambda **kw: TopPatches(model, small, **kw),
        "Embedding": lambda **kw: EmbeddingExplorer(model, small, method="pca", **kw),
        "CNNExplorer": lambda **kw: CNNExplorer(model, small, method="pca", **kw),
    }[widget]
    with pytest.raises(
        TypeError,
        match=r"takes 1 input\(s\) after the image \(scale\); .*"
        r"forward_args=\(scale,\)",
    ):
        build()
    with pytest.raises(TypeError, match=r"forward_args has 2 values, but Scaled\.forward takes 1"):
        build(forward_args=(SCALE, SCALE))
    with pytest.raises(ValueError, match=r"wrap a single one: forward_args=\(value,\)"):
        build(forward_args=SCALE)


@pytest.mark.parametrize(
    ("cls", "class_scores", "error", "message"),
    [
        (
            Tuple,
            None,
            ValueError,
            r"returns a tuple of 2 \(a tensor \(1, 128\), a tensor \(1, 10\)"
            r"\), not class scores; pass the index of the class scores in it as "
            r"class_scores= \(e\.g\. "
            r"class_scores=0\)",
        ),
        (
            Dict,
            None,
            ValueError,
            r"a dict with keys 'features', 'logits', not class scores; pass "
            r"the key of the class scores in it as class_scores= "
            r"\(e\.g\. class_scores='features'\)",
        ),
        (
            Tuple,
            2,
            ValueError,
            r"class_scores=2 is out of range: the model returns a tuple of 2 .* "
            r"\(valid: 0\.\.1\)",
        ),
        (
            Dict,
            "probs",
            ValueError,
            r"class_scores='probs' is not a key of what the model returns, "
            r"a dict with keys 'features'",
        ),
        (
            Logits,
            "probs",
            ValueError,
            r"class_scores='probs': the model returns a SimpleNamespace, no",
        ),
        (DigitsCNN, 0, ValueError, r"class_scores=0 indexes a tuple; the model returns a tensor"),
        (Tuple, 1.5, TypeError, r"class_scores must be an int index, .*; got 1\.5"),
        (Dict, len, ValueError, r"class_scores=<len> picked an int from the model's output, not a"),
        (
            Logits,
            lambda out: out.hidden_states[..., None],
            ValueError,
            r"Expected class scores \(1, num_classes\); class_scores=<.*<lambda>> picked a tensor "
            r"\(1, 128, 1\)",
        ),
    ],
)
def test_bad_scores_are_named_with_the_fix(cls, class_scores, error, message, demo):
    model, image = like(cls, demo), demo[1][0][0]
    for build in (
        lambda: class_probabilities(model, image, class_scores=class_scores),
        lambda: OcclusionMap(model, image, class_scores=class_scores),
    ):
        with pytest.raises(error, match=message):
            build()
