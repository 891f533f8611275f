"""Training-step throughput: images per second of one optimizer step on the demo architecture.

    python -m benchmarks.train_bench [--device cpu] [--precision fp32] [--batch-size 64]
                                     [--steps 10] [--threads 1] [--lock-image]

A randomly initialised model of the bundled demo model's architecture (64x64 ViT, causal text
tower, context 32) takes full steps of the training command's own `StepRunner`: forward under
the chosen autocast, the notes' loss, backward, gradient clipping, AdamW, the temperature clamp.
Inputs are a fixed synthetic batch already on the device, so the figure is the model step
alone (the data loader runs in parallel worker processes in real runs).

On a GPU: `--device cuda --precision amp` (float16 + loss scaling) or `--precision bf16`;
`bench_train_step` is the function a GPU script calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import torch

__all__ = ["bench_train_step", "main"]


def bench_train_step(
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 64,
    steps: int = 10,
    warmup: int = 2,
    lock_image: bool = False,
) -> dict[str, Any]:
    """Time `steps` training steps after `warmup` untimed ones.

    Returns:
        {"images_per_s", "step_ms_median", "step_ms" (each), "step_cpu_ms_median", "device",
        "precision", ...}.
    """
    import open_clip

    from clip_multimodal.training import TrainConfig, make_optimizer
    from clip_multimodal.training.demo_model import DEMO_MODEL_CFG
    from clip_multimodal.training.distributed import DistEnv, wrap_for_training
    from clip_multimodal.training.stages import TowerLocks, apply_locks
    from clip_multimodal.training.step import StepRunner, resolve_precision

    dev = torch.device(device)
    torch.manual_seed(0)
    model = open_clip.CLIP(**DEMO_MODEL_CFG).to(dev)
    apply_locks(model, TowerLocks(image=lock_image))
    env = DistEnv(device=dev)
    mode = resolve_precision(precision, dev)
    optimizer = make_optimizer(model, TrainConfig(lr=1e-4))
    step = StepRunner(wrap_for_training(model, env), model, optimizer, env, mode, 1.0)
    size = DEMO_MODEL_CFG["vision_cfg"]["image_size"]
    context = DEMO_MODEL_CFG["text_cfg"]["context_length"]
    images = torch.randn(batch_size, 3, size, size, device=dev)
    tokens = torch.randint(1, 49000, (batch_size, context), device=dev)
    times, cpu_times = [], []
    for i in range(warmup + steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        loss = step(images, tokens)
        float(loss)  # waits for the device
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    median = statistics.median(times)
    return {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "precision": mode,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "lock_image": lock_image,
        "step_ms_median": round(median * 1000, 2),
        "step_ms": [round(t * 1000, 2) for t in times],
        # Process CPU time: steadier than wall time on a shared machine (CPU runs only).
        "step_cpu_ms_median": round(statistics.median(cpu_times) * 1000, 2),
        "images_per_s": round(batch_size / median, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--lock-image", action="store_true", help="stage-1 step (LiT)")
    args = parser.parse_args(argv)
    before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = bench_train_step(
            args.device, args.precision, args.batch_size, args.steps, args.warmup, args.lock_image
        )
    finally:
        torch.set_num_threads(before)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
