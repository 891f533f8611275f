"""`clip-multimodal index DIR --ray [ADDRESS]`: the same sync, run on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clip_multimodal.cli._context import UsageError, check_collection_option, model_spec

__all__ = ["add_ray_options", "cmd_index_ray"]


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """`index`'s Ray options (the parser imports nothing heavy)."""
    group = p.add_argument_group("on a Ray cluster (pip install 'clip-multimodal[ray]')")
    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="read and embed on Ray: join the cluster at ADDRESS (HOST:PORT or ray://...), "
        "or with no ADDRESS the one in $RAY_ADDRESS, else a local one; needs a Chroma server "
        "(--host, --port). DIR may then also be a .txt or .parquet list of paths or URLs. "
        "Put --ray after DIR (or write --ray=ADDRESS), so that DIR is not read as ADDRESS",
    )
    group.add_argument(
        "--ray-workers", type=int, default=1, metavar="N", help="encoder actors (model copies)"
    )
    group.add_argument(
        "--gpus-per-worker",
        type=float,
        metavar="N",
        help="GPUs per actor (default: 1 when the cluster has GPUs, else 0)",
    )


def cmd_index_ray(args: argparse.Namespace) -> int:
    if args.chroma_host is None or args.chroma_port is None:
        raise UsageError(
            "--ray writes from every worker to one Chroma server: pass --host and --port"
        )
    if args.rebuild:
        raise UsageError("--rebuild runs without --ray: rebuild first, then index with --ray")
    if args.ray_workers < 1:
        raise UsageError(f"--ray-workers must be at least 1, got {args.ray_workers}")
    check_collection_option(args)
    spec = model_spec(args)
    from clip_multimodal.distributed import index_with_ray

    patterns = {"patterns": args.patterns} if args.patterns else {}
    failed = 0
    for source in (Path(s).expanduser() for s in args.folders):
        if not source.exists():
            raise UsageError(f"{source} does not exist; pass a folder or a list file")
        report = index_with_ray(
            source,
            args.collection,
            model=spec,
            host=args.chroma_host,
            port=args.chroma_port,
            ray_address=args.ray or None,
            num_workers=args.ray_workers,
            num_gpus_per_worker=args.gpus_per_worker,
            recursive=args.recursive,
            verify=args.verify,
            progress=args.progress,
            **patterns,
        )
        print(f"{source}: {report}")
        for item in report.failed:
            print(f"  failed: {item.source}: {item.reason}")
        failed += len(report.failed)
    if failed:
        print(f"error: {failed} image(s) could not be indexed (listed above)", file=sys.stderr)
    return 1 if failed else 0
