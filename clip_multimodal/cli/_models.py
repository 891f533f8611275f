"""`clip-multimodal models`: the families of model names, and the weights in the local caches."""

from __future__ import annotations

import argparse
import dataclasses
import json

__all__ = ["cmd_models"]


def cmd_models(args: argparse.Namespace) -> int:
    from clip_multimodal._catalog import FAMILIES, cached_models

    cached = cached_models()
    if args.json:
        out = {
            "families": [dataclasses.asdict(f) for f in FAMILIES],
            "cached": [dataclasses.asdict(m) for m in cached],
        }
        print(json.dumps(out, indent=2))
        return 0
    print("Families (how to name a model: --model NAME [--pretrained TAG|FILE]):")
    for family in FAMILIES:
        print(f"  {family.family:<13} {family.form}\n  {'':<13} e.g. {family.example}")
    print("\nWeights in the local caches:")
    for m in cached:
        name = f"{m.model} --pretrained {m.pretrained}" if m.pretrained else m.model
        offline = "loads offline" if m.offline else f"not offline (missing {m.missing})"
        print(f"  {name}\n    id {m.model_id or '-'}, dim {m.dimension or '?'}, {offline}")
    return 0
