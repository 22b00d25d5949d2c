"""OcclusionMap streams exact maps coarse-to-fine and follows its controls."""

import copy

import numpy as np
import pytest
import torch
import traitlets
from torchvision.models import resnet18

from cnnviz_widgets.inspect.occlusion import occlusion_map
from cnnviz_widgets.widgets.occlusion import OcclusionMap, coarse_to_fine


def test_schedule_doubles_up_to_the_patch():
    assert coarse_to_fine(2, 8) == [8, 4, 2]
    assert coarse_to_fine(8, 32) == [32, 16, 8]
    assert coarse_to_fine(3, 8) == [6, 3]
    assert coarse_to_fine(5, 4) == [5]
    # with the image's size: a first map of at most 16 positions (4x4 at 224)
    assert coarse_to_fine(8, 32, (224, 224)) == [64, 32, 16, 8]
    assert coarse_to_fine(2, 8, (32, 32)) == [8, 4, 2]
    assert coarse_to_fine(4, 8, (300, 100)) == [64, 32, 16, 8, 4]  # 5x2 positions first


def test_streamed_maps_equal_the_full_recompute(demo):
    model, dataset, classes = demo
    image = dataset[5][0]
    view = OcclusionMap(model, image, classes=classes)
    final = view.wait()
    assert view.maps_done == 3 and view.progress == 1.0 and not view.running
    assert [r.stride for r in view.results] == [(8, 8), (4, 4), (2, 2)]
    for res in view.results:
        ref = occlusion_map(
            model, image, target=view.target, patch_size=8, stride=res.stride, method="full"
        )
        np.testing.assert_allclose(res.scores, ref.scores, atol=1e-4, rtol=0)
    shown = view.scores
    np.testing.assert_array_equal(shown, final.scores)
    assert shown.shape == (16, 16) and view.map_stride == [2, 2] and view.map_patch == [8, 8]
    assert view.map_origin == [-4, -4]  # patches centred on every 2nd pixel
    assert view.vmin <= shown.min() and view.vmax >= view.base_score
    assert view.target == dataset.targets[5] == view.top_classes[0]["index"]


def test_controls_restart_and_superseded_runs_are_dropped(demo):
    model, dataset, classes = demo
    view = OcclusionMap(model, dataset[0][0], classes=classes, patch_size=6, stride=1)
    for target in range(10):  # a user clicking through classes quickly
        view.target = target
    final = view.wait()
    assert final.target == 9 and all(r.target == 9 for r in view.results)
    ref = occlusion_map(model, dataset[0][0], target=9, patch_size=6, stride=1, method="full")
    np.testing.assert_allclose(final.scores, ref.scores, atol=1e-4, rtol=0)
    view.output = "logit"
    view.baseline = -1.0
    final = view.wait()
    ref = occlusion_map(
        model, dataset[0][0], target=9, patch_size=6, stride=1, baseline=-1.0, output="logit"
    )
    np.testing.assert_allclose(final.scores, ref.scores, atol=1e-4, rtol=1e-5)


def test_new_image_follows_its_prediction(demo):
    model, dataset, classes = demo
    view = OcclusionMap(model, dataset[0][0], classes=classes)
    view.wait()
    other = next(i for i in range(len(dataset)) if dataset.targets[i] != dataset.targets[0])
    image = dataset[other][0].clone()
    view.image = image
    final = view.wait()
    assert final.target == view.target == dataset.targets[other]
    # the run reuses the forward made for the predicted class: the same map as from scratch
    ref = occlusion_map(model, image, target=final.target, patch_size=8, stride=2, method="full")
    np.testing.assert_allclose(final.scores, ref.scores, atol=1e-4, rtol=0)
    assert final.base_score == pytest.approx(ref.base_score, abs=1e-6)
    # ... but not once the image was changed in place: its base is computed again
    image[:, 10:20, 10:20] = 0
    view.baseline = 0.5
    final = view.wait()
    ref = occlusion_map(model, image, target=final.target, patch_size=8, stride=2, baseline=0.5)
    assert final.base_score == pytest.approx(ref.base_score, abs=1e-6)
    np.testing.assert_allclose(final.scores, ref.scores, atol=1e-4, rtol=0)


def test_bad_controls_name_the_valid_range(demo):
    model, dataset, classes = demo
    view = OcclusionMap(model, dataset[0][0], classes=classes)
    with pytest.raises(traitlets.TraitError, match=r"patch_size 33 is out of range 1\.\.32"):
        view.patch_size = 33
    with pytest.raises(traitlets.TraitError, match="stride 0 is out of range"):
        view.stride = 0
    with pytest.raises(traitlets.TraitError, match=r"target 10 is out of range 0\.\.9"):
        view.target = 10
    with pytest.raises(ValueError, match="classes has 3 names; the model scores 10"):
        OcclusionMap(model, dataset[0][0], classes=["a", "b", "c"])
    view.wait()


def test_background_runs_never_trace_beside_the_users_forward_passes():
    # fx tracing patches nn.Module.__call__ for every thread: the widget traces up front on
    # the calling thread, so the user's own forwards during a run stay real tensors.
    model = resnet18(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    view = OcclusionMap(model, x[0], patch_size=16, stride=16)
    for target in range(12):
        view.target = target
        for _ in range(4):
            out = model(x)
            assert isinstance(out, torch.Tensor) and out.shape == (1, 1000)
    view.wait()


def test_closed_widgets_leave_no_thread(demo):
    """Twenty OcclusionMaps (and an explorer) made and closed: none of their threads is left."""
    import threading

    from cnnviz_widgets import CNNExplorer

    model, dataset, classes = demo
    model = copy.deepcopy(model)  # its own model: other tests' widgets share the demo's thread
    ours = lambda: [t for t in threading.enumerate() if t.name.startswith("cnnviz")]  # noqa: E731
    before = len(ours())
    for i in range(20):
        view = OcclusionMap(model, dataset[i][0], classes=classes, patch_size=8, stride=8)
        view.wait()
        view.close()
    assert len(ours()) == before
    explorer = CNNExplorer(model, torch.utils.data.Subset(dataset, range(40)), classes=classes)
    explorer.wait()
    assert len(ours()) > before
    explorer.close()
    assert len(ours()) == before
    with pytest.raises(RuntimeError, match="closed"):
        view.target = (view.target + 1) % 10
