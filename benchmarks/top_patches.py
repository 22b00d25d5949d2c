"""Top-patches benchmark: the one-pass per-channel top-k vs a plain forward over the same loader.

    python benchmarks/top_patches.py                       # CPU, ResNet-18, 256 images 3x224x224
    python benchmarks/top_patches.py --device cuda --n 4096 --batch-size 256 --workers 4

Prints JSON lines:
- ``throughput``: images/s of a plain ``model(x)`` loop, of ``top_activations`` for
  ``layer3`` + ``layer4`` (k=9), and of one shared pass feeding the top-k and the penultimate
  features; each the median of ``--repeats`` runs, interleaved so that load from other
  processes hits them alike; ``ratio`` = ours / plain (target >= 0.85 on CPU).
- ``memory``: peak resident memory (and peak CUDA memory on a GPU) added by the top-k pass
  over N and 10N images (smaller images by default: the state does not depend on their
  size), each in a fresh subprocess; flat means it does not grow with N. For scale, the
  line also gives what holding every layer3 + layer4 activation of 10N images would take.

The model is torchvision's ResNet-18 with ``weights=None`` (the weights do not change the
cost). The dataset is synthetic: item i is image ``i % 64`` of a fixed pool of random images,
so it costs the same at any N and its own memory does not grow with N. The receptive-field
analysis (one traced run on one image) is included in our time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnviz_widgets.inspect.dataset import (
    FeatureConsumer,
    TopKConsumer,
    dataset_pass,
    top_activations,
)

LAYERS = ["layer3", "layer4"]
POOL = 64


class RandomImages(Dataset):
    """N items drawn from a fixed pool of random images; labels are i % 1000."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.pool = torch.randn(POOL, 3, size, size, generator=g)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.pool[i % POOL], i % 1000


def build_model():
    from torchvision.models import resnet18

    return resnet18(weights=None).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain(model, loader, device) -> None:
    """The peer: eval, inference mode, the same DataLoader, nothing captured."""
    with torch.inference_mode():
        for images, _ in loader:
            model(images.to(device, non_blocking=True))
    sync(device)


def ours(model, data, device, batch_size, workers) -> None:
    top_activations(
        model,
        data,
        LAYERS,
        9,
        batch_size=batch_size,
        device=device,
        progress=False,
        num_workers=workers,
        cache=False,
    )
    sync(device)


def shared(model, data, device, batch_size, workers) -> None:
    consumers = [TopKConsumer(model, LAYERS, 9), FeatureConsumer(model)]
    dataset_pass(
        model,
        data,
        consumers,
        batch_size=batch_size,
        device=device,
        progress=False,
        num_workers=workers,
    )
    sync(device)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine() -> dict:
    info = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def throughput(args) -> dict:
    device = torch.device(args.device)
    model = build_model().to(device)
    data = RandomImages(args.n, args.size)
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    # Warm-up: allocator, oneDNN/cuDNN kernel choice, the first trace.
    small = RandomImages(args.batch_size, args.size)
    plain(model, DataLoader(small, batch_size=args.batch_size), device)
    ours(model, small, device, args.batch_size, 0)
    times: dict[str, list[float]] = {"plain": [], "ours": [], "shared": []}
    for _ in range(args.repeats):
        times["plain"].append(timed(lambda: plain(model, loader, device)))
        times["ours"].append(
            timed(lambda: ours(model, data, device, args.batch_size, args.workers))
        )
        if not args.skip_shared:
            times["shared"].append(
                timed(lambda: shared(model, data, device, args.batch_size, args.workers))
            )
    rate = {k: args.n / statistics.median(v) for k, v in times.items() if v}
    line = {
        "bench": "top_patches",
        "what": "throughput",
        "model": "resnet18",
        "layers": LAYERS,
        "k": 9,
        "device": str(device),
        "n": args.n,
        "image": [3, args.size, args.size],
        "batch_size": args.batch_size,
        "workers": args.workers,
        "repeats": args.repeats,
        "plain_img_s": round(rate["plain"], 2),
        "ours_img_s": round(rate["ours"], 2),
        "ratio": round(rate["ours"] / rate["plain"], 3),
        "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items() if v},
        **machine(),
    }
    if "shared" in rate:
        line["shared_topk_and_features_img_s"] = round(rate["shared"], 2)
        line["shared_ratio"] = round(rate["shared"] / rate["plain"], 3)
    return line


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(args) -> dict:
    """One top-k pass over args.memory_child images; peak RSS above the state before it."""
    device = torch.device(args.device)
    model = build_model().to(device)
    data = RandomImages(args.memory_child, args.size)
    warm = RandomImages(args.batch_size, args.size)
    ours(model, warm, device, args.batch_size, 0)  # allocator and kernels warmed up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        cuda0 = torch.cuda.memory_allocated()
    before = rss_mb()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t = timed(lambda: ours(model, data, device, args.batch_size, args.workers))
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_mb())
    line = {
        "n": args.memory_child,
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak[0], 1),
        "peak_rss_added_mb": round(peak[0] - before, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(t, 2),
    }
    if device.type == "cuda":
        line["cuda_peak_added_mb"] = round((torch.cuda.max_memory_allocated() - cuda0) / 2**20, 1)
    return line


def all_activations_mb(n: int, size: int) -> float:
    """What a brute-force scan would hold: every layer3 + layer4 activation of n images."""
    s3, s4 = -(-size // 16), -(-size // 32)
    return n * (256 * s3 * s3 + 512 * s4 * s4) * 4 / 2**20


def memory(args) -> dict:
    """Peak memory of the pass at N and 10N images, each in a fresh process."""
    runs = []
    for n in (args.memory_n, 10 * args.memory_n):
        cmd = [
            sys.executable,
            __file__,
            "--memory-child",
            str(n),
            "--device",
            args.device,
            "--size",
            str(args.memory_size),
            "--batch-size",
            str(args.memory_batch_size),
            "--workers",
            str(args.workers),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory run at N={n} failed:\n{done.stderr}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    small, big = runs
    line = {
        "bench": "top_patches",
        "what": "memory",
        "model": "resnet18",
        "layers": LAYERS,
        "device": args.device,
        "image": [3, args.memory_size, args.memory_size],
        "batch_size": args.memory_batch_size,
        "n": [small["n"], big["n"]],
        "peak_rss_added_mb": [small["peak_rss_added_mb"], big["peak_rss_added_mb"]],
        "peak_rss_mb": [small["peak_rss_mb"], big["peak_rss_mb"]],
        "peak_growth_10n_minus_n_mb": round(big["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "all_activations_at_10n_mb": round(all_activations_mb(big["n"], args.memory_size), 1),
        "seconds": [small["seconds"], big["seconds"]],
        **machine(),
    }
    if "cuda_peak_added_mb" in small:
        line["cuda_peak_added_mb"] = [small["cuda_peak_added_mb"], big["cuda_peak_added_mb"]]
    return line


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--n", type=int, default=256, help="images for the throughput runs")
    p.add_argument("--size", type=int, default=224, help="image height = width")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-n", type=int, default=128, help="N for the memory runs (and 10N)")
    p.add_argument("--memory-size", type=int, default=128, help="image size for the memory runs")
    p.add_argument("--memory-batch-size", type=int, default=32)
    p.add_argument("--skip-shared", action="store_true", help="skip the top-k + features pass")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args)), flush=True)
        return
    if not args.skip_throughput:
        print(json.dumps(throughput(args)), flush=True)
    if not args.skip_memory:
        print(json.dumps(memory(args)), flush=True)


if __name__ == "__main__":
    main()
