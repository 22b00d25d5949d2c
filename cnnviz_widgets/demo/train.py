"""Reproducibly retrain the demo CNN: ``python -m cnnviz_widgets.demo.train [--epochs N]``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz_widgets.demo.data import MEAN, STD, DigitsDataset
from cnnviz_widgets.demo.model import DigitsCNN

DEFAULT_OUT = Path(__file__).with_name("digits_cnn.pt")
DEFAULT_EPOCHS = 30
BATCH_SIZE = 64
LR = 2e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 2
NUM_THREADS = 2
BACKGROUND = -MEAN / STD  # a blank (0) pixel after normalisation


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed every RNG and force deterministic kernels, restoring global torch settings after."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    # Float reductions can depend on the thread split, so pin it for identical weights.
    torch.set_num_threads(NUM_THREADS)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        torch.set_num_threads(threads)


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = MAX_SHIFT) -> torch.Tensor:
    """Translate each (1, H, W) image by up to ``max_shift`` px, filling with blank background."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=BACKGROUND)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen).tolist()
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)]
    )


@torch.no_grad()
def accuracy(model: nn.Module, dataset: DigitsDataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) over the whole ``dataset``."""
    model.eval()
    inputs = torch.stack([dataset[i][0] for i in range(len(dataset))])
    targets = torch.as_tensor(dataset.targets)
    preds = torch.cat([model(b).argmax(1) for b in inputs.split(batch_size)])
    return float((preds == targets).float().mean())


def train_epoch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
) -> float:
    """One shuffled, augmented pass over the training tensors; returns the mean loss."""
    model.train()
    total = 0.0
    order = torch.randperm(len(inputs), generator=gen)
    for idx in order.split(BATCH_SIZE):
        x = random_shift(inputs[idx], gen)
        loss = F.cross_entropy(model(x), targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    return total / len(inputs)


def train(
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[DigitsCNN, float]:
    """Train DigitsCNN from scratch on the train split.

    Returns ``(model in eval mode, test-split accuracy)``.
    """
    with deterministic(seed):
        train_set = DigitsDataset("train")
        inputs = torch.stack([train_set[i][0] for i in range(len(train_set))])
        targets = torch.as_tensor(train_set.targets)
        model = DigitsCNN()
        opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(1, epochs + 1):
            loss = train_epoch(model, inputs, targets, opt, gen)
            sched.step()
            if log is not None:
                log(f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}")
        test_acc = accuracy(model, DigitsDataset("test"))
    return model, test_acc


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: train, report, and save the state_dict."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    model, test_acc = train(epochs=args.epochs, seed=args.seed, log=print)
    elapsed = time.perf_counter() - start
    torch.save(model.state_dict(), args.out)
    size_kb = args.out.stat().st_size / 1024
    print(f"test accuracy {test_acc:.4f}  ({elapsed:.1f} s)")
    print(f"saved {args.out} ({size_kb:.0f} KB)")


if __name__ == "__main__":
    main()
