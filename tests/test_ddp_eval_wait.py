"""While rank 0 alone reads the data, evaluates and saves, the other ranks wait in a collective
(`broadcast_object` for its decision, then `barrier`). That wait is bounded by the process
group's timeout from `init_distributed(timeout_min=...)` (`--dist-timeout-min`), not by torch's
default, and never unbounded (issue 19, item 7). Two gloo processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts two Python processes that import torch


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def eval_wait_worker(rank: int, port: int, out: str) -> None:
    """Two epochs under a 4 s group timeout: rank 0 "evaluates" for 1 s, then for 12 s, and
    both meet where the runner makes them meet after each."""
    import torch
    import torch.distributed as dist

    from clip_multimodal.training.distributed import barrier, broadcast_object, init_distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    env = init_distributed("cpu", timeout_min=4 / 60)
    epochs: list[dict[str, object]] = []
    try:
        for eval_s in (1.0, 12.0):
            start = time.monotonic()
            epochs.append({})
            if env.is_main:
                time.sleep(eval_s)  # rank 0 alone scores the epoch
            epochs[-1]["decision"] = broadcast_object("go on" if env.is_main else None, env)
            barrier(env)  # while rank 0 logs and saves
            epochs[-1]["waited_s"] = time.monotonic() - start
    except Exception as exc:  # the timeout: the wait ended with an error instead of hanging
        epochs[-1]["error"] = f"{type(exc).__name__}: {exc}"[:300]
        epochs[-1]["waited_s"] = time.monotonic() - start
    Path(out, f"rank{rank}.json").write_text(json.dumps(epochs))
    if "error" not in epochs[-1]:
        dist.destroy_process_group()


def test_waiting_ranks_are_bounded_by_the_groups_timeout(tmp_path: Path) -> None:
    from torch.multiprocessing.spawn import spawn

    spawn(eval_wait_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    first, second = json.loads((tmp_path / "rank1.json").read_text())
    # An evaluation shorter than the timeout: rank 1 waited for it and got rank 0's decision.
    assert first["decision"] == "go on" and float(first["waited_s"]) >= 0.8, first
    # A longer one: rank 1's wait ended in an error after about 4 s, not when rank 0 came.
    assert "error" in second, second
    assert float(second["waited_s"]) < 10, second
