"""`python -m cnnviz_widgets.batch` (console script `cnnviz-batch`): `run_batch` from a shell.

Prints one JSON line when done: the store's folder, its size, the engine, and how many blocks
were computed and how many were already there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .job import ENGINES, run_batch


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cnnviz-batch",
        description="Run the widgets' dataset pass (features, predictions, per-channel top-k) "
        "over a dataset as a resumable batch job (Ray Data when installed) into a store.",
    )
    p.add_argument("--model", required=True, help="package.module:function giving the model")
    p.add_argument("--dataset", required=True, help="package.module:function giving the data")
    p.add_argument("--out", required=True, help="the store's folder (a rerun resumes it)")
    p.add_argument("--layers", default="", help="comma-separated layers to keep the top-k of")
    p.add_argument("--k", type=int, default=9, help="units kept per channel (default 9)")
    p.add_argument(
        "--all-positions",
        action="store_true",
        help="let an image count more than once per channel (distinct=False)",
    )
    p.add_argument(
        "--feature-layer",
        default=None,
        help="the layer whose output are the features (default: classifier input)",
    )
    p.add_argument("--dtype", default="float32", choices=["float32", "float16"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--block-size",
        type=int,
        default=1024,
        help="images per block, a multiple of --batch-size (default 1024)",
    )
    p.add_argument("--thumbnails", type=int, default=None, help="thumbnail size in pixels")
    p.add_argument("--workers", type=int, default=1, help="model actors (Ray)")
    p.add_argument("--num-cpus", type=float, default=1, help="CPUs per actor (Ray)")
    p.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        help="GPUs per actor (Ray; default: the cluster's GPUs shared, 1 at most)",
    )
    p.add_argument("--address", default=None, help="a Ray cluster to join (default: local)")
    p.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="ray, local (this process), or auto: Ray where installed",
    )
    p.add_argument("--device", default=None, help="torch device (default: the GPU if any)")
    p.add_argument("--overwrite", action="store_true", help="replace another job's store")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if "" not in sys.path:  # factories in the current folder, as `python -m` finds them
        sys.path.insert(0, "")
    run = run_batch(
        args.model,
        args.dataset,
        args.out,
        layers=[name for name in args.layers.split(",") if name],
        k=args.k,
        distinct=not args.all_positions,
        feature_layer=args.feature_layer,
        dtype=args.dtype,
        batch_size=args.batch_size,
        block_size=args.block_size,
        thumbnails=args.thumbnails,
        workers=args.workers,
        engine=args.engine,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    n, d = run.store.features.shape
    summary = {
        "out": str(run.store.path), "images": n, "features": d, "layers": run.store.layers,
        "engine": run.engine, "computed": run.computed, "skipped": run.skipped,
        "seconds": run.seconds,
    }  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
