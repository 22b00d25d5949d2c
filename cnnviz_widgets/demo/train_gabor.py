"""Reproducibly retrain the Gabor CNN: ``python -m cnnviz_widgets.demo.train_gabor [--steps N]``.

Every step draws a fresh batch from :func:`~cnnviz_widgets.demo.gabor.make_images` (seeded), so
there is no dataset to store. The first layer starts with 10x smaller weights than PyTorch's
default and gets strong weight decay: its filters then grow only along the directions the task
needs, and come out smooth, oriented and colour-opponent instead of staying noisy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnviz_widgets.demo.gabor import (
    GABOR_WEIGHTS_PATH,
    GaborCNN,
    make_images,
    normalize,
    orientation_selectivity,
)
from cnnviz_widgets.demo.train import deterministic

DEFAULT_STEPS = 1200
BATCH_SIZE = 64
LR = 3e-3
CONV1_WEIGHT_DECAY = 2e-2  # AdamW's decoupled decay, on conv1's weight only
WEIGHT_DECAY = 1e-4
CONV1_INIT_SCALE = 0.1
SEED = 0
EVAL_SEED = 12345  # a held-out stream for the accuracy printed at the end


def build_model() -> GaborCNN:
    """The untrained model as training starts it: conv1's weights scaled down 10x."""
    model = GaborCNN()
    with torch.no_grad():
        model.conv1.weight.mul_(CONV1_INIT_SCALE)
    return model


@torch.no_grad()
def accuracy(model: GaborCNN, n: int = 1000, seed: int = EVAL_SEED) -> float:
    """Top-1 accuracy on ``n`` fresh images of a stream training never saw."""
    model.eval()
    images, labels = make_images(n, seed)
    return float((model(normalize(images)).argmax(1) == labels).float().mean())


def train(steps: int = DEFAULT_STEPS, seed: int = SEED, log_every: int = 100) -> GaborCNN:
    """Train from scratch; the same arguments give the same weights."""
    with deterministic(seed):
        model = build_model()
        gen = torch.Generator().manual_seed(seed)
        conv1 = [model.conv1.weight]
        rest = [p for name, p in model.named_parameters() if name != "conv1.weight"]
        opt = torch.optim.AdamW(
            [
                {"params": conv1, "weight_decay": CONV1_WEIGHT_DECAY},
                {"params": rest, "weight_decay": WEIGHT_DECAY},
            ],
            lr=LR,
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
        model.train()
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            images, labels = make_images(BATCH_SIZE, gen)
            loss = F.cross_entropy(model(normalize(images)), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if log_every and step % log_every == 0:
                osi = orientation_selectivity(model.conv1.weight.detach())
                print(
                    f"step {step}/{steps}  loss {loss.item():.3f}  "
                    f"conv1 OSI>0.3: {(osi > 0.3).mean():.0%}  {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
        return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=GABOR_WEIGHTS_PATH)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    model = train(args.steps, args.seed)
    osi = orientation_selectivity(model.conv1.weight.detach())
    print(
        f"trained in {time.perf_counter() - t0:.0f} s; held-out accuracy {accuracy(model):.1%}; "
        f"conv1 orientation selectivity: median {float(sorted(osi)[len(osi) // 2]):.2f}, "
        f"{(osi > 0.3).mean():.0%} of filters above 0.3"
    )
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
