"""The commands. Each takes the parsed options and returns the exit status.

Heavy packages (torch, open_clip, chromadb, uvicorn) are imported inside the commands, so
`--help` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clip_multimodal.cli._context import (
    UsageError,
    chroma_location,
    data_dir,
    model_spec,
    open_encoder,
    open_index,
    parse_where,
)

if TYPE_CHECKING:
    from clip_multimodal.index import SearchHit
    from clip_multimodal.server.settings import ServerSettings

__all__ = ["COMMANDS", "run_train"]

MiB = 2**20


def _err(message: str) -> None:
    print(message, file=sys.stderr)


# -- index ----------------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    folders = [Path(f).expanduser() for f in args.folders]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder; `index` takes folders of images")
    index = open_index(args, open_encoder(args))
    patterns = {"patterns": args.patterns} if args.patterns else {}
    failed = 0
    for folder in folders:
        report = index.index_folder(
            folder, args.recursive, progress=None if args.progress else False, **patterns
        )
        print(f"{folder}: {report}")
        for item in report.failed:
            print(f"  failed: {item.source}: {item.reason}")
        failed += len(report.failed)
    print(f"collection {args.collection!r}: {index.count()} images")
    if failed:
        _err(f"error: {failed} image(s) could not be indexed (listed above)")
    return 1 if failed else 0


# -- search ---------------------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.image is None):
        raise UsageError('give a text query or --image PATH_OR_URL (one of them): search "a cat"')
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    where = parse_where(args.where)
    model_spec(args)  # a usage error before the model loads
    index = open_index(args, open_encoder(args))
    if args.text is not None:
        hits = index.search(args.text, args.k, where, query_type="text")
    else:
        hits = index.search(args.image, args.k, where, query_type="image")
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], indent=2))
    else:
        for hit in hits:
            print(f"{hit.score:7.3f}  {hit.uri or hit.id}")
    if not hits and index.count() == 0:
        _err(
            f"collection {args.collection!r} is empty; index images first: clip-multimodal index DIR"
        )
    return 0


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {
        "id": hit.id,
        "uri": hit.uri,
        "score": hit.score,
        "metadata": dict(hit.metadata),
        "document": hit.document,
    }


# -- classify -------------------------------------------------------------------------------


def _labels(values: Sequence[str]) -> list[str]:
    labels = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if len(labels) < 2:
        raise UsageError("--labels needs at least two labels, e.g. --labels cat,dog,bird")
    return labels


def _check_templates(templates: list[str]) -> None:
    from clip_multimodal.errors import TemplateError
    from clip_multimodal.text import fill_template

    for template in templates:
        try:
            fill_template(template, "")
        except TemplateError as exc:
            raise UsageError(str(exc)) from exc


def cmd_classify(args: argparse.Namespace) -> int:
    labels = _labels(args.labels)
    templates = args.templates
    for template in templates or ():
        if "{}" not in template:
            raise UsageError(f"template {template!r} has no {{}} where the label goes")
    _check_templates(list(templates or ()))
    from clip_multimodal.errors import ImageLoadError
    from clip_multimodal.images import load_image

    encoder = open_encoder(args)
    loaded, errors = [], []
    for source in args.images:  # load first: one bad image is reported, the rest classified
        try:
            loaded.append((source, load_image(source)))
        except ImageLoadError as exc:
            errors.append((source, str(exc)))
    results: list[tuple[str, list[tuple[str, float]]]] = []
    if loaded:
        probs = encoder.classify([img for _, img in loaded], labels, templates)
        for (source, _), row in zip(loaded, probs, strict=True):
            ranked = sorted(zip(labels, map(float, row), strict=True), key=lambda x: -x[1])
            results.append((source, ranked))
    _print_classes(results, errors, args)
    return 1 if errors else 0


def _print_classes(
    results: list[tuple[str, list[tuple[str, float]]]],
    errors: list[tuple[str, str]],
    args: argparse.Namespace,
) -> None:
    if args.json:
        out = [
            {"image": src, "predictions": [{"label": lab, "probability": p} for lab, p in preds]}
            for src, preds in results
        ]
        out += [{"image": src, "error": message} for src, message in errors]
        print(json.dumps(out, indent=2))
        return
    for source, predictions in results:
        print(source)
        for label, prob in predictions[: max(1, args.top)]:
            print(f"  {prob:6.1%}  {label}")
    for _, message in errors:
        _err(f"error: {message}")


# -- info -----------------------------------------------------------------------------------


def _collection_info(args: argparse.Namespace) -> dict[str, Any]:
    from clip_multimodal.index import describe_collection

    where = chroma_location(args)
    found = describe_collection(
        args.collection, where.get("path"), host=where.get("host"), port=where.get("port")
    )
    if found is None:
        return {"name": args.collection, "exists": False}
    return {
        "name": args.collection,
        "exists": True,
        "count": found.count,
        "model_id": found.model_id,
        "dim": found.dim,
    }


def cmd_info(args: argparse.Namespace) -> int:
    encoder = open_encoder(args)
    where = chroma_location(args)
    store = f"embedded at {where['path']}" if "path" in where else _server(where)
    collection = _collection_info(args)
    info: dict[str, Any] = {
        "model": encoder.model_name,
        "model_id": encoder.model_id,
        "device": str(encoder.device),
        "precision": encoder.precision,
        "dim": encoder.dim,
        "data_dir": str(data_dir(args)),
        "chroma": store,
        "collection": collection,
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("model", "model_id", "device", "precision", "dim", "data_dir", "chroma"):
        print(f"{key + ':':12} {info[key]}")
    print(f"{'collection:':12} {_describe_collection(collection, encoder.model_id)}")
    return 0


def _server(where: dict[str, Any]) -> str:
    return f"server at {where.get('host') or 'localhost'}:{where.get('port') or 8000}"


def _describe_collection(coll: dict[str, Any], model_id: str) -> str:
    if not coll["exists"]:
        return f"{coll['name']} (not created yet; `clip-multimodal index DIR` creates it)"
    recorded = coll["model_id"] or "none recorded"
    match = "matches the model" if coll["model_id"] == model_id else "DIFFERS from the model"
    if coll["model_id"] is None:
        match = "adopted by the first index run"
    return f"{coll['name']}: {coll['count']} images, built with {recorded} ({match})"


# -- serve ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from clip_multimodal.errors import require
    from clip_multimodal.server.bind import InsecureBindError, check_bind

    try:  # before anything loads: a refused bind answers at once
        check_bind(args.host, args.token)
    except InsecureBindError as exc:
        raise UsageError(str(exc)) from exc
    settings = _settings(args)
    require("uvicorn", "server", "clip-multimodal serve")
    require("fastapi", "server", "clip-multimodal serve")
    from clip_multimodal.server.app import create_app

    app = create_app(settings)
    from clip_multimodal.server.serve import serve

    encoder = app.state.service.encoder
    print(f"serving {encoder.model_id} on http://{args.host}:{args.port}/ (API docs: /docs)")
    serve(app, settings, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _settings(args: argparse.Namespace) -> ServerSettings:
    from clip_multimodal.server.settings import ServerSettings

    model, pretrained = model_spec(args)
    image_bytes = int(args.max_image_mb * MiB)
    if image_bytes < 1 or args.timeout <= 0 or args.max_batch < 1:
        raise UsageError("--max-image-mb, --timeout and --max-batch must be positive")
    return ServerSettings(
        model=model,
        pretrained=pretrained,
        device=args.device,
        data_dir=data_dir(args),
        collection=args.collection,
        chroma_host=args.chroma_host,
        chroma_port=args.chroma_port,
        token=args.token or None,
        enable_index=args.enable_index,
        allowed_url_hosts=tuple(args.allow_url_host),
        allowed_hosts=tuple(args.allow_host),
        allowed_origins=tuple(args.allow_origin),
        max_image_bytes=image_bytes,
        # A base64 image is 4/3 of its bytes; leave room for a few per request.
        max_body_bytes=max(32 * MiB, 2 * image_bytes + MiB),
        request_timeout_s=args.timeout,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
    )


# -- demo and train -------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from clip_multimodal.demo import run

    if args.pretrained:
        raise UsageError("demo takes --model local-dir:PATH or hf-hub:ORG/REPO, not --pretrained")
    run(data_dir(args), args.model)
    return 0


def run_train(argv: list[str]) -> int:
    """Hand the arguments to the training command (its own parser and --help)."""
    import importlib

    training_cli = importlib.import_module("clip_multimodal.training.cli")
    return int(training_cli.main(argv) or 0)


def cmd_train(args: argparse.Namespace) -> int:
    return run_train(list(args.train_args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "index": cmd_index,
    "search": cmd_search,
    "classify": cmd_classify,
    "info": cmd_info,
    "serve": cmd_serve,
    "demo": cmd_demo,
    "train": cmd_train,
}
