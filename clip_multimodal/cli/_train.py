"""`clip-multimodal train`: fine-tune or train CLIP on image-caption pairs from a CSV.

The flags use open_clip's names. Parsing and the checks that need no model (files, CSV headers,
flag combinations) run before torch is imported, so `--help` and mistakes answer at once. The
options become a typed `RunConfig`; the training library (`clip_multimodal.training`) never
sees argparse.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clip_multimodal.cli._context import UsageError
from clip_multimodal.cli._parser import new_parser

if TYPE_CHECKING:
    from clip_multimodal.training.config import RunConfig

__all__ = ["build_parser", "main"]

#: step.PRECISIONS, repeated here so that parsing imports no torch (a test keeps them equal).
PRECISION_CHOICES = ("auto", "fp32", "amp", "amp_bf16", "amp_bfloat16", "bf16")
DEFAULT_PATIENCE = 2
DEFAULT_MIN_DELTA = 0.002

DESCRIPTION = """\
Fine-tune CLIP (or train a small one from scratch) on your own image-caption pairs, evaluate
retrieval every epoch, and write models that every part of clip-multimodal loads with
--model local-dir:OUTPUT/final.

The CSV has a header naming its columns; image paths are relative to the CSV's folder:
  filepath,title
  images/0001.jpg,a red bicycle leaning on a wall
The separator (comma or tab) is detected from the header unless --csv-separator is given.
"""

EPILOG = """\
examples:
  # open_clip's command, on the bundled demo model
  clip-multimodal train --train-data train.csv --val-data val.csv --epochs 5 --lr 1e-4

  # Chinese-CLIP's two stages: image tower locked, then everything unlocked at a lower lr
  clip-multimodal train --train-data train.csv --val-data val.csv --two-stage \\
      --patience 2 --min-delta 0.002 --stage2-lr 1e-5 --name my-run

  # from scratch: an architecture JSON (open_clip model config)
  clip-multimodal train --model arch.json --train-data train.csv --val-data val.csv

  # data-parallel: the same command under torchrun (gloo on CPU, nccl on GPU)
  torchrun --nproc_per_node 2 -m clip_multimodal.cli train --train-data train.csv --name ddp

output (--output, else LOGS/NAME):
  out.log, metrics.json (one record per epoch, stage switches), checkpoints/epoch_N/
  (local-dir model + train_state.pt), best/ (best validation mean recall), final/,
  tensorboard/ (--report-to tensorboard)
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _add_data(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--train-data", type=Path, required=True, help="CSV of training pairs")
    g.add_argument("--val-data", type=Path, help="CSV of validation pairs (evaluated each epoch)")
    g.add_argument("--csv-img-key", default="filepath", help="image path column (filepath)")
    g.add_argument("--csv-caption-key", default="title", help="caption column (title)")
    g.add_argument(
        "--csv-separator",
        help="field separator: a character or tab/comma/semicolon/pipe "
        "(default: detected from the header; open_clip's default is tab)",
    )
    g.add_argument(
        "--val-label-key", help="a --val-data column of class labels: zero-shot accuracy"
    )
    g.add_argument(
        "--zeroshot-classes",
        action="append",
        default=[],
        help="comma-separated class names for zero-shot accuracy (default: the labels in "
        "--val-label-key)",
    )
    g.add_argument(
        "--zeroshot-template",
        action="append",
        default=[],
        help='prompt template with {} for the class, repeatable (default "a photo of a {}.")',
    )
    g.add_argument(
        "--workers",
        type=_non_negative_int,
        default=min(4, os.cpu_count() or 1),
        help="data-loading processes (0: load in the training process)",
    )
    g.add_argument(
        "--no-augment",
        action="store_true",
        help="train on the inference preprocessing instead of open_clip's random resized crop",
    )


def _add_model(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        help="the starting model: local-dir:PATH, hf-hub:ORG/REPO, an open_clip architecture "
        "(with --pretrained; without, random weights), or an architecture JSON file (from "
        "scratch). Default: the bundled demo model",
    )
    g.add_argument("--pretrained", help="with an architecture name: a pretrained tag or file")
    g.add_argument("--device", default="auto", help="auto (this rank's GPU, else cpu), cpu, cuda")
    g.add_argument(
        "--grad-checkpointing", action="store_true", help="recompute activations (less memory)"
    )
    g.add_argument(
        "--dist-timeout-min",
        type=_positive_float,
        default=60.0,
        help="under torchrun: minutes a rank may wait in a collective, e.g. while rank 0 "
        "evaluates and saves (60)",
    )


def _add_optimization(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimization")
    g.add_argument("--batch-size", type=_positive_int, default=64, help="per process (64)")
    g.add_argument("--lr", type=_positive_float, default=5e-4, help="peak learning rate (5e-4)")
    g.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay (0.1)")
    g.add_argument(
        "--warmup", type=_non_negative_int, default=50, help="warmup steps, per stage (50)"
    )
    g.add_argument(
        "--epochs", type=_positive_int, default=10, help="epochs (two-stage: stage 1's most) (10)"
    )
    g.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="amp: float16 autocast with loss scaling on CUDA; amp_bf16/bf16: bfloat16 autocast; "
        "fp32. auto: amp on CUDA, fp32 on CPU. Weights stay float32",
    )
    g.add_argument(
        "--grad-clip-norm", type=float, default=1.0, help="clip gradients (1.0; 0 disables)"
    )
    g.add_argument("--seed", type=int, default=0)


def _add_lock(g: argparse._ArgumentGroup, tower: str, unlocked: str, what: str) -> None:
    """--lock-TOWER and --lock-TOWER-unlocked-UNLOCKED (open_clip's names)."""
    g.add_argument(f"--lock-{tower}", action="store_true", help=f"freeze the {tower} tower")
    g.add_argument(
        f"--lock-{tower}-unlocked-{unlocked}",
        type=_non_negative_int,
        default=0,
        help=f"leave the last N {what} of a locked {tower} tower trainable",
    )


def _add_stages(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("locking and two-stage training (LiT, Chinese-CLIP)")
    _add_lock(g, "image", "groups", "layer groups")
    g.add_argument(
        "--lock-image-freeze-bn-stats",
        action="store_true",
        help="freeze BatchNorm statistics of a locked image tower",
    )
    _add_lock(g, "text", "layers", "layers")
    g.add_argument(
        "--two-stage",
        action="store_true",
        help="stage 1 with a tower locked (--lock-image by default), then stage 2 with "
        "everything unlocked once validation recall plateaus; needs --val-data",
    )
    g.add_argument(
        "--stage2-lr", type=_positive_float, help="stage 2's peak learning rate (--lr / 10)"
    )
    g.add_argument(
        "--stage2-max-epochs", type=_positive_int, help="stage 2's most epochs (--epochs)"
    )
    g.add_argument(
        "--patience",
        type=_positive_int,
        help=f"evaluations without improvement that end a stage ({DEFAULT_PATIENCE} with "
        "--two-stage; otherwise early stopping only when given)",
    )
    g.add_argument(
        "--min-delta",
        type=float,
        default=DEFAULT_MIN_DELTA,
        help=f"the rise in validation mean recall that counts as improvement ({DEFAULT_MIN_DELTA})",
    )


def _add_output(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("output")
    g.add_argument("--logs", type=Path, default=Path("logs"), help="runs go to LOGS/NAME (./logs)")
    g.add_argument("--name", help="the run's folder name (default: date and time)")
    g.add_argument("--output", type=Path, help="write the run here instead of LOGS/NAME")
    g.add_argument(
        "--save-frequency",
        type=_non_negative_int,
        default=1,
        help="save checkpoints/epoch_N every N epochs (0: only final/ and best/)",
    )
    g.add_argument("--report-to", default="", help="tensorboard: also log to OUTPUT/tensorboard")
    g.add_argument(
        "--resume",
        help="continue a run: a checkpoint folder (OUTPUT/checkpoints/epoch_N) or 'latest' "
        "(the newest checkpoint of --output or LOGS/NAME)",
    )
    g.add_argument("--log-every-n-steps", type=_non_negative_int, default=100)
    g.add_argument("--debug", action="store_true", help="print tracebacks of errors")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `clip-multimodal train` (imports no torch)."""
    parser = new_parser("clip-multimodal train", DESCRIPTION, EPILOG)
    for add in (_add_data, _add_model, _add_optimization, _add_stages, _add_output):
        add(parser)
    return parser


# -- checks that need no model --------------------------------------------------------------


def _split_list(values: list[str]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _check_flags(args: argparse.Namespace) -> None:
    if args.two_stage and args.val_data is None:
        raise UsageError("--two-stage switches stages on validation recall: give --val-data")
    if args.patience is not None and args.val_data is None:
        raise UsageError("--patience watches validation recall: give --val-data")
    if args.lock_image_unlocked_groups and not (args.lock_image or args.two_stage):
        raise UsageError("--lock-image-unlocked-groups applies to a locked tower: add --lock-image")
    if args.lock_text_unlocked_layers and not args.lock_text:
        raise UsageError("--lock-text-unlocked-layers applies to a locked tower: add --lock-text")
    if args.zeroshot_classes and not args.val_label_key:
        raise UsageError("zero-shot accuracy needs each image's class: give --val-label-key COLUMN")
    for template in args.zeroshot_template:
        if "{}" not in template:
            raise UsageError(f"--zeroshot-template {template!r} has no {{}} for the class name")
        if not _is_template(template):
            raise UsageError(
                f"--zeroshot-template {template!r} needs exactly one {{}} and no other braces"
            )
    if args.report_to not in ("", "none", "tensorboard"):
        raise UsageError(f"--report-to {args.report_to!r}: only tensorboard is supported")
    if args.batch_size < 2:
        raise UsageError("--batch-size must be at least 2: a contrastive batch needs negatives")
    if args.min_delta < 0:
        raise UsageError(f"--min-delta must be 0 or more, got {args.min_delta}")


def _check_csvs(args: argparse.Namespace) -> str | None:
    """Check both CSVs' headers; return the field separator (None: detect it per file)."""
    from clip_multimodal.training.csv_data import check_header, parse_separator

    try:
        separator = parse_separator(args.csv_separator) if args.csv_separator else None
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    check_header(args.train_data, args.csv_img_key, args.csv_caption_key, separator)
    if args.val_data is not None:
        check_header(
            args.val_data, args.csv_img_key, args.csv_caption_key, separator, args.val_label_key
        )
    return separator


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _output_dir(args: argparse.Namespace, model: str) -> Path:
    logs: Path = args.logs
    if args.output is not None:
        return Path(args.output).expanduser()
    if args.name:
        return logs.expanduser() / str(args.name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("under torchrun, name the run with --name or --output (ranks must agree)")
    stem = Path(model.split(":", 1)[-1]).name or "model"
    return logs.expanduser() / f"{time.strftime('%Y_%m_%d-%H_%M_%S')}-{stem}"


def _resume_dir(args: argparse.Namespace, output: Path | None) -> Path | None:
    if not args.resume:
        return None
    if args.resume == "latest":
        assert output is not None
        from clip_multimodal.training.train_state import find_latest_checkpoint

        found = find_latest_checkpoint(output)
        if found is None:
            raise UsageError(f"--resume latest: no checkpoint with a training state in {output}")
        return found
    path = Path(args.resume).expanduser()
    if not (path / "train_state.pt").is_file():
        raise UsageError(
            f"--resume {path}: not a checkpoint folder (no train_state.pt); pass "
            "OUTPUT/checkpoints/epoch_N or 'latest'"
        )
    return path


def _resolve_paths(args: argparse.Namespace, model: str) -> tuple[Path, Path | None]:
    named = args.output is not None or args.name is not None
    if args.resume == "latest" and not named:
        raise UsageError("--resume latest needs the run's folder: give --name or --output")
    if args.resume and not named:
        resume = _resume_dir(args, None)
        assert resume is not None
        return resume.parent.parent, resume  # OUTPUT/checkpoints/epoch_N
    output = _output_dir(args, model)
    resume = _resume_dir(args, output)
    existing = output / "metrics.json"
    if resume is None and existing.exists() and _is_main_process():
        raise UsageError(
            f"{output} already holds a run; continue it with --resume latest, or pick another "
            "--name/--output"
        )
    return output, resume


def _config(args: argparse.Namespace, separator: str | None) -> RunConfig:
    from clip_multimodal.models import DEMO_MODEL
    from clip_multimodal.training.config import DataConfig, RunConfig
    from clip_multimodal.training.stages import StagePlan, TowerLocks

    model = args.model or DEMO_MODEL
    output, resume = _resolve_paths(args, model)
    lock_image = args.lock_image or (args.two_stage and not args.lock_text)
    locks = TowerLocks(
        image=lock_image,
        text=args.lock_text,
        image_unlocked_groups=args.lock_image_unlocked_groups,
        text_unlocked_layers=args.lock_text_unlocked_layers,
        freeze_bn_stats=args.lock_image_freeze_bn_stats,
    )
    patience = args.patience
    if patience is None and args.two_stage:
        patience = DEFAULT_PATIENCE
    plan = StagePlan(
        two_stage=args.two_stage,
        locks=locks,
        epochs=args.epochs,
        stage2_epochs=args.stage2_max_epochs or args.epochs,
        lr=args.lr,
        stage2_lr=args.stage2_lr or args.lr / 10,
        patience=patience,
        min_delta=args.min_delta,
    )
    data = DataConfig(
        train_data=args.train_data,
        val_data=args.val_data,
        img_key=args.csv_img_key,
        caption_key=args.csv_caption_key,
        separator=separator,
        val_label_key=args.val_label_key,
        zeroshot_classes=_split_list(args.zeroshot_classes),
        zeroshot_templates=tuple(args.zeroshot_template) or ("a photo of a {}.",),
        workers=args.workers,
        augment=not args.no_augment,
    )
    return RunConfig(
        data=data,
        output=output,
        plan=plan,
        model=model,
        pretrained=args.pretrained,
        batch_size=args.batch_size,
        weight_decay=args.wd,
        warmup=args.warmup,
        precision=args.precision,
        grad_checkpointing=args.grad_checkpointing,
        grad_clip_norm=args.grad_clip_norm or None,
        seed=args.seed,
        device=args.device,
        dist_timeout_min=args.dist_timeout_min,
        save_frequency=args.save_frequency,
        tensorboard=args.report_to == "tensorboard",
        resume=resume,
        log_every=args.log_every_n_steps,
    )


def main(argv: list[str]) -> int:
    """Run `clip-multimodal train` with `argv` (the arguments after `train`)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse printed
        return exc.code if isinstance(exc.code, int) else 2
    _check_flags(args)
    if args.report_to == "tensorboard":
        from clip_multimodal.errors import require

        require("tensorboard", "train", "--report-to tensorboard")
    cfg = _config(args, _check_csvs(args))
    from clip_multimodal.training.runner import run_training

    result = run_training(cfg)
    if result.epochs and _is_main_process():
        print(f"done: {len(result.epochs)} epoch record(s) in {cfg.output / 'metrics.json'}")
    return 0


def _is_template(template: str) -> bool:
    from clip_multimodal.errors import TemplateError
    from clip_multimodal.zeroshot import check_templates

    try:
        check_templates([template])
    except TemplateError:
        return False
    return True
