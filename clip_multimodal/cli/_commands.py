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
    check_collection_option,
    chroma_location,
    data_dir,
    find_collection,
    index_command,
    model_spec,
    open_encoder,
    open_index,
    parse_where,
    server_address,
)
from clip_multimodal.cli._models import cmd_models

if TYPE_CHECKING:
    from PIL import Image

    from clip_multimodal.documents import DocumentOptions
    from clip_multimodal.index import CollectionInfo, ImageIndex, IndexReport, SearchHit
    from clip_multimodal.server.settings import ServerSettings

__all__ = ["COMMANDS", "run_train"]

MiB = 2**20


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _count(n: int, noun: str) -> str:
    """'1 image', '2 images'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# -- index ----------------------------------------------------------------------------------


def cmd_index(args: argparse.Namespace) -> int:
    if args.ray is not None:
        from clip_multimodal.cli._ray import cmd_index_ray

        return cmd_index_ray(args)
    folders = [Path(f).expanduser() for f in args.folders]
    for folder in folders:
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder; `index` takes folders of images")
    check_collection_option(args)
    index = _rebuild(args) if args.rebuild else open_index(args, open_encoder(args))
    patterns = {"patterns": args.patterns} if args.patterns else {}
    documents = _document_options(args)
    failed = empty = 0
    for folder in folders:
        report = index.index_folder(
            folder,
            args.recursive,
            progress=None if args.progress else False,
            verify=args.verify,
            document_options=documents,
            **patterns,
        )
        print(f"{folder}: {report}")
        for item in report.failed:
            print(f"  failed: {item.source}: {item.reason}")
        failed += len(report.failed)
        if _found_nothing(report):
            empty += 1
            _err(_no_images(folder, args))
    print(f"collection {args.collection!r}: {_count(index.count(), 'image')}")
    if failed:
        _err(f"error: {_count(failed, 'image')} could not be indexed (listed above)")
    return 1 if failed or empty else 0


def _document_options(args: argparse.Namespace) -> DocumentOptions:
    from clip_multimodal.documents import DocumentOptions

    try:
        return DocumentOptions(mode=args.documents, min_size=args.min_image_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def _found_nothing(report: IndexReport) -> bool:
    done = report.added + report.updated + report.unchanged + len(report.failed)
    return done + report.documents == 0


def _no_images(folder: Path, args: argparse.Namespace) -> str:
    from clip_multimodal.index import DEFAULT_PATTERNS

    looked = ", ".join(args.patterns or DEFAULT_PATTERNS)
    where = "under" if args.recursive else "in"
    return (
        f"error: no image files found {where} {folder} (looked for {looked}); "
        "name other files with --pattern GLOB"
    )


def _rebuild(args: argparse.Namespace) -> ImageIndex:
    from clip_multimodal.index import ImageIndex

    index = ImageIndex.rebuild(open_encoder(args), args.collection, **chroma_location(args))
    print(f"collection {args.collection!r}: emptied, indexing again")
    return index


# -- search ---------------------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.image is None):
        raise UsageError('give a text query or --image PATH_OR_URL (one of them): search "a cat"')
    if args.k < 1:
        raise UsageError(f"-k must be at least 1, got {args.k}")
    where = parse_where(args.where)
    model_spec(args)  # usage errors, then missing inputs, before the model loads
    check_collection_option(args)
    image = _query_image(args.image) if args.image is not None else None
    found = find_collection(args)
    index = open_index(args, open_encoder(args), read_only=True)
    if image is not None:
        hits = index.search(image, args.k, where, query_type="image")
    else:
        _note_path_like_text(args.text)
        hits = index.search(args.text, args.k, where, query_type="text")
    if args.json:
        print(json.dumps([_hit_json(h) for h in hits], indent=2))
    else:
        for hit in hits:
            print(f"{hit.score:7.3f}  {hit.uri or hit.id}")
    if not hits and found.count == 0:
        _err(_empty(found, args))
    return 0


def _query_image(source: str) -> Image.Image:
    """Load the --image query first: a missing file or a folder fails before the model loads."""
    from clip_multimodal.images import load_image

    return load_image(source)


def _note_path_like_text(text: str) -> None:
    # The positional query is always text; say so when it reads like an image reference.
    from clip_multimodal.images import is_image_query

    if is_image_query(text):
        _err(f"note: searching for the text {text!r}; to search by this image, use --image {text}")


def _empty(found: CollectionInfo, args: argparse.Namespace) -> str:
    where = chroma_location(args)
    place = where["path"] if "path" in where else server_address(where)
    return (
        f"collection {found.name!r} in {place} is empty; index images first: {index_command(args)}"
    )


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
    from clip_multimodal.zeroshot import check_templates

    try:
        check_templates(templates)
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

    model_spec(args)
    loaded, errors = [], []
    for source in args.images:  # before the model: one bad image is reported, the rest classified
        try:
            loaded.append((source, load_image(source)))
        except ImageLoadError as exc:
            errors.append((source, str(exc)))
    results: list[tuple[str, list[tuple[str, float]]]] = []
    if loaded:
        probs = open_encoder(args).classify([img for _, img in loaded], labels, templates)
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


def _collection_info(args: argparse.Namespace) -> tuple[dict[str, Any], Exception | None]:
    """The collection as `info` shows it, and the error that says where it is missing."""
    from clip_multimodal.errors import IndexNotFoundError

    try:
        found = find_collection(args)
    except IndexNotFoundError as exc:
        return {"name": args.collection, "exists": False}, exc
    collection = {"name": args.collection, "exists": True, "count": found.count}
    return {**collection, "model_id": found.model_id, "dim": found.dim}, None


def cmd_info(args: argparse.Namespace) -> int:
    if args.check:
        return _check(args)
    check_collection_option(args)
    encoder = open_encoder(args)
    where = chroma_location(args)
    store = f"embedded at {where['path']}" if "path" in where else server_address(where)
    collection, missing = _collection_info(args)
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
    else:
        for key in ("model", "model_id", "device", "precision", "dim", "data_dir", "chroma"):
            print(f"{key + ':':12} {info[key]}")
        print(f"{'collection:':12} {_describe_collection(collection, encoder.model_id)}")
    if missing is not None:
        _err(f"error: {missing}")
        return 1
    return 0


def _check(args: argparse.Namespace) -> int:
    """`info --check`: the store's files and the query reach; no model is loaded."""
    import dataclasses

    from clip_multimodal.index import check_collection as check_store

    health = check_store(args.collection, **chroma_location(args))
    if args.json:
        print(json.dumps({**dataclasses.asdict(health), "ok": health.ok}, indent=2))
    elif not health.exists and health.ok:
        print(f"collection {health.name!r} at {health.store}: not created yet")
    else:
        reach = "?" if health.reachable is None else health.reachable
        print(
            f"collection {health.name!r} at {health.store}: {health.count} records, "
            f"{reach} reached by a query: {'OK' if health.ok else 'DAMAGED'}"
        )
        for problem in health.problems:
            _err(f"problem: {problem}")
    return 0 if health.ok else 1


def _describe_collection(coll: dict[str, Any], model_id: str) -> str:
    if not coll["exists"]:
        return f"{coll['name']} (not found)"
    recorded = coll["model_id"] or "none recorded"
    match = "matches the model" if coll["model_id"] == model_id else "DIFFERS from the model"
    if coll["model_id"] is None:
        match = "adopted by the first index run"
    count = _count(coll["count"], "image")
    return f"{coll['name']}: {count}, built with {recorded} ({match})"


# -- serve ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from clip_multimodal.errors import require
    from clip_multimodal.server.bind import InsecureBindError, check_bind

    try:  # before anything loads: a refused bind answers at once
        check_bind(args.host, args.token)
    except InsecureBindError as exc:
        raise UsageError(str(exc)) from exc
    check_collection_option(args)
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


#: The `serve` option behind each checked ServerSettings field, for its usage errors.
_SERVE_FLAGS = {
    "max_image_bytes": "--max-image-mb",
    "max_decode_bytes": "--max-decode-mb",
    "request_timeout_s": "--timeout",
    "max_batch": "--max-batch",
    "batch_wait_ms": "--batch-wait-ms",
}


def _settings(args: argparse.Namespace) -> ServerSettings:
    from pydantic import ValidationError

    try:
        return _server_settings(args)
    except ValidationError as exc:  # ServerSettings checks every value; name the options
        problems = [
            f"{_SERVE_FLAGS.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()
        ]
        raise UsageError("; ".join(problems)) from exc


def _server_settings(args: argparse.Namespace) -> ServerSettings:
    from clip_multimodal.server.settings import ServerSettings

    spec = model_spec(args)
    image_bytes = int(args.max_image_mb * MiB)
    decode_bytes = int(args.max_decode_mb * MiB)
    return ServerSettings(
        model_spec=spec,
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
        max_decode_bytes=decode_bytes,
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

    training_cli = importlib.import_module("clip_multimodal.cli._train")
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
    "models": cmd_models,
}
