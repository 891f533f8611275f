"""Model specs: how a user names CLIP weights, resolved to local files before open_clip runs.

`ModelSpec` is the one description of a model every entry point takes (the encoder, the Chroma
function, the CLI, the server settings and both adapters): the model, its weights, the device,
the precision and the batch size, validated here once.

open_clip accepts an architecture plus a pretrained tag, a weights file, `hf-hub:org/repo` and
`local-dir:PATH`; OpenAI's names (`ViT-B/32`, `RN50`, ...) mean OpenAI's weights. Left alone,
open_clip retries the hub for about a minute when offline. We resolve every spec against the
local caches first, and before a download ask the download's own HTTP stack whether its source
answers (`_reach`: HF_ENDPOINT, proxies, HF_HUB_OFFLINE), so an offline machine gets
ModelNotAvailableError in well under 2 s with a message that says how to provide weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from clip_multimodal._caches import cached_hf_snapshot, cached_tag_file, clip_cache, find_weights
from clip_multimodal._hashing import sha256_stream
from clip_multimodal._reach import hub_offline, hub_url, why_hub_unreachable, why_url_unreachable
from clip_multimodal.errors import InvalidModelSpecError, ModelNotAvailableError

__all__ = [
    "CN_CLIP",
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "DEMO_MODEL",
    "DEMO_MODEL_DIR",
    "DEMO_MODEL_NAME",
    "HF_HUB",
    "LOCAL_DIR",
    "OPENAI_NAMES",
    "PRECISIONS",
    "TRANSFORMERS",
    "ModelSpec",
    "Precision",
    "ResolvedModel",
    "keep_root_logging",
    "names_its_weights",
    "openai_pretrained",
    "portable_model_name",
    "resolve_model",
    "weights_sha256",
]

#: The bundled demo model: a small CLIP trained by this project on offline data (shapes, digits,
#: animal silhouettes). A demo, not a general model: real users load pretrained CLIP.
LOCAL_DIR = "local-dir:"
HF_HUB = "hf-hub:"
#: Hugging Face transformers checkpoints (CLIPModel, SiglipModel, ChineseCLIPModel): a hub id
#: (`org/repo`, `org/repo@revision`) or a local folder.
TRANSFORMERS = "transformers:"
#: Chinese-CLIP's own checkpoints, through the cn_clip package: `cn-clip:ViT-B-16`.
CN_CLIP = "cn-clip:"
DEMO_MODEL_DIR = Path(__file__).parent / "assets" / "demo-model"
DEMO_MODEL = f"{LOCAL_DIR}{DEMO_MODEL_DIR}"
#: The demo model's stable name, accepted wherever a model name is. Chroma collection configs
#: record it instead of the folder's absolute path, which changes when the package moves.
DEMO_MODEL_NAME = "clip-multimodal-demo"
#: The model loaded when none is named: open_clip's ViT-B-32 with LAION-2B weights.
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
#: OpenAI's names for its CLIP models (`clip.available_models()`) -> open_clip's architecture.
OPENAI_NAMES = {
    "RN50": "RN50",
    "RN101": "RN101",
    "RN50x4": "RN50x4",
    "RN50x16": "RN50x16",
    "RN50x64": "RN50x64",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14@336px": "ViT-L-14-336",
}

#: How the model computes: `auto` is bf16 (or fp16) on an accelerator and fp32 on the CPU.
Precision = Literal["auto", "fp32", "fp16", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_HOW_TO = (
    "To use it offline, provide the weights one of these ways: "
    "(1) download them once on a connected machine into the Hugging Face cache "
    "(HF_HOME / ~/.cache/huggingface) and copy that cache here; "
    "(2) pass a local weights file: CLIPEncoder('ViT-B-32', pretrained='/path/open_clip_model.safetensors'); "
    "(3) pass a folder with open_clip_config.json and weights: CLIPEncoder('local-dir:/path/to/model'). "
    f"To try the package now, offline, use the bundled demo model: CLIPEncoder('{DEMO_MODEL_NAME}') "
    f"(model_name='{DEMO_MODEL_NAME}' in the LangChain and LlamaIndex adapters)."
)


def names_its_weights(model: str) -> bool:
    """Whether a model name fixes its weights (a folder, a hub repo, the demo model), so that
    no pretrained tag applies to it."""
    return model == DEMO_MODEL_NAME or model.startswith((LOCAL_DIR, HF_HUB, TRANSFORMERS))


def openai_pretrained(model: str, pretrained: str | None) -> str | None:
    """The weights a model name means: an OpenAI name (`ViT-B/32`, `RN50`) means OpenAI's
    ("openai"), unless a tag other than the default is given; other names keep theirs."""
    if model in OPENAI_NAMES and pretrained in (None, "", DEFAULT_PRETRAINED):
        return "openai"
    return pretrained


@dataclass(frozen=True)
class ModelSpec:
    """Which CLIP model to load and how to run it, validated when it is built.

    Attributes:
        model: an open_clip architecture (`ViT-B-32`), an OpenAI name (`ViT-B/32`, `RN50`),
            `hf-hub:org/repo`, `local-dir:PATH` (a folder with open_clip_config.json and
            weights), `transformers:org/repo` or `transformers:PATH` (a Hugging Face CLIP,
            SigLIP or Chinese-CLIP checkpoint), `cn-clip:ARCH` (Chinese-CLIP) or
            `clip-multimodal-demo` (the bundled demo model).
        pretrained: for an architecture name, a pretrained tag or a local weights file (None:
            random weights); an OpenAI name without a tag (or with the default one) reads
            "openai"; for `cn-clip:ARCH`, a checkpoint file (None: cn_clip's download).
            A model that names its weights takes none: it reads None.
        device: `auto` (cuda, then mps, then cpu) or a torch device string.
        precision: `auto` (bf16/fp16 on a GPU, fp32 on the CPU), `fp32`, `fp16` or `bf16`.
        batch_size: items per forward pass (None: 32 on the CPU, 256 on a GPU).

    A loaded `CLIPEncoder`'s `spec` holds what it chose for `auto` and None, so it rebuilds
    the same encoder.

    Raises:
        InvalidModelSpecError: a field has the wrong type or value; `field` names it.
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    device: str = "auto"
    precision: Precision = "auto"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        _check_name("model", self.model, "a model name such as ViT-B-32 or local-dir:PATH")
        _check_name("device", self.device, "auto, cpu, cuda, cuda:1, mps, ...")
        if self.pretrained is not None and not isinstance(self.pretrained, str):
            raise InvalidModelSpecError(
                "pretrained", f"must be a tag, a path or None, not {self.pretrained!r}"
            )
        if self.precision not in PRECISIONS:
            choices = ", ".join(PRECISIONS)
            raise InvalidModelSpecError(
                "precision", f"must be one of {choices}, not {self.precision!r}"
            )
        size = self.batch_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise InvalidModelSpecError(
                "batch_size", f"must be a positive integer or None, not {size!r}"
            )
        object.__setattr__(self, "pretrained", openai_pretrained(self.model, self.pretrained))
        if names_its_weights(self.model) or not self.pretrained:
            object.__setattr__(self, "pretrained", None)  # the model names its own weights
        elif self.model.startswith(CN_CLIP) and self.pretrained == DEFAULT_PRETRAINED:
            object.__setattr__(self, "pretrained", None)  # open_clip's default tag: not cn-clip's


def _check_name(field_name: str, value: object, expected: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidModelSpecError(field_name, f"must be {expected}, not {value!r}")


@dataclass(frozen=True)
class ResolvedModel:
    """What to hand the model's family loader, with every remote reference replaced by a local
    one. For `transformers` and `cn_clip`, `pretrained` is the local folder or checkpoint."""

    open_clip_name: str
    pretrained: str | None
    model_id: str
    create_kwargs: dict[str, Any] = field(default_factory=dict)
    family: Literal["open_clip", "transformers", "cn_clip"] = "open_clip"


def resolve_model(model_name: str, pretrained: str | None) -> ResolvedModel:
    """Resolve a user's model spec to local files, or raise ModelNotAvailableError fast.

    `DEMO_MODEL_NAME` ("clip-multimodal-demo") names the bundled demo model.
    """
    with keep_root_logging():
        if model_name == DEMO_MODEL_NAME:
            return _resolve_local_dir(DEMO_MODEL_DIR)
        if model_name.startswith(LOCAL_DIR):
            return _resolve_local_dir(Path(model_name[len(LOCAL_DIR) :]).expanduser())
        if model_name.startswith(HF_HUB):
            return _resolve_hf_hub(model_name[len(HF_HUB) :])
        if model_name.startswith(TRANSFORMERS):
            return _resolve_transformers(model_name[len(TRANSFORMERS) :])
        if model_name.startswith(CN_CLIP):
            return _resolve_cn_clip(model_name[len(CN_CLIP) :], pretrained)
        return _resolve_named(model_name, pretrained)


@contextmanager
def keep_root_logging() -> Iterator[None]:
    """Run open_clip code without leaving the user's root logger configured.

    open_clip logs with the module functions (`logging.info(...)`), which call
    `logging.basicConfig()` when the root logger has no handler; a library must not configure
    its user's logging. If the root logger had no handler before the block, the handlers added
    during it are removed (messages logged inside were still shown by them).
    """
    root = logging.getLogger()
    had_handlers = bool(root.handlers)
    try:
        yield
    finally:
        if not had_handlers:
            for handler in list(root.handlers):
                root.removeHandler(handler)
                handler.close()


def portable_model_name(model_name: str) -> str:
    """The name to record for a model: `DEMO_MODEL_NAME` for the bundled demo model's folder
    (however it is spelled), else the name as given."""
    if model_name.startswith(LOCAL_DIR):
        path = Path(model_name[len(LOCAL_DIR) :]).expanduser()
        if path.resolve() == DEMO_MODEL_DIR.resolve():
            return DEMO_MODEL_NAME
    return model_name


def _resolve_local_dir(path: Path) -> ResolvedModel:
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise ModelNotAvailableError(
            f"{LOCAL_DIR}{path} {state}. A local-dir model is a folder with "
            "open_clip_config.json (model_cfg, preprocess_cfg) and a weights file."
        )
    config_path = path / "open_clip_config.json"
    if not config_path.is_file():
        raise ModelNotAvailableError(
            f"{LOCAL_DIR}{path} has no open_clip_config.json. A local-dir model is a folder with "
            "open_clip_config.json (model_cfg, preprocess_cfg) and a weights file."
        )
    weights = find_weights(path)
    if weights is None:
        raise ModelNotAvailableError(
            f"{LOCAL_DIR}{path} has no weights file ({', '.join(WEIGHT_SUFFIXES)})."
        )
    config = json.loads(config_path.read_text(encoding="utf-8"))
    name = str(config.get("model_name") or path.name)
    return ResolvedModel(
        f"{LOCAL_DIR}{path}", None, f"{name}@sha256:{weights_sha256(weights)[:16]}"
    )


def _resolve_hf_hub(repo: str) -> ResolvedModel:
    snapshot = cached_hf_snapshot(repo)
    if snapshot is None:
        snapshot = _download_hf_snapshot(repo)
    return resolve_hf_snapshot(repo, snapshot)


def resolve_hf_snapshot(repo: str, snapshot: Path) -> ResolvedModel:
    """An hf-hub model from its local snapshot folder; its id names the repo and the weights,
    the same whether they were cached or just downloaded."""
    resolved = _resolve_local_dir(snapshot)
    return dataclasses.replace(
        resolved, model_id=f"{HF_HUB}{repo}@{resolved.model_id.split('@')[-1]}"
    )


def _download_hf_snapshot(repo: str) -> Path:
    """Download an hf-hub model's config and weights, as open_clip would, if the hub answers."""
    from open_clip.pretrained import download_pretrained_from_hf

    what = f"{HF_HUB}{repo}"
    _require_hub(what, hub_url(repo, "open_clip_config.json"))
    config = _downloaded(what, lambda: download_pretrained_from_hf(repo, "open_clip_config.json"))
    _downloaded(what, lambda: download_pretrained_from_hf(repo))  # the weights, same snapshot
    return config.parent


def _resolve_transformers(ref: str) -> ResolvedModel:
    """A local folder (id: its content hash), or a hub id from the cache, else downloaded."""
    folder = Path(ref).expanduser()
    if ref and folder.is_dir():
        model_id = f"{TRANSFORMERS}sha256:{_folder_sha256(folder)[:16]}"
        return ResolvedModel(ref, str(folder), model_id, family="transformers")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]

    repo, _, revision = ref.partition("@")
    try:
        validate_repo_id(repo)
    except HFValidationError as exc:
        raise ModelNotAvailableError(
            f"{TRANSFORMERS}{ref}: no such folder, and not a hub id (org/repo[@revision])"
        ) from exc

    # The files the towers need; weights in one format (safetensors where the repo has them).
    files = ["*.json", "*.txt", "*.model", "*.safetensors"]
    try:
        path = snapshot_download(
            repo, revision=revision or None, allow_patterns=files, local_files_only=True
        )
    except LocalEntryNotFoundError:
        _require_hub(f"{TRANSFORMERS}{ref}", hub_url(repo, "config.json"))
        path = snapshot_download(repo, revision=revision or None, allow_patterns=files)
    commit = Path(path).name  # a snapshot folder is named by its commit
    return ResolvedModel(repo, path, f"{TRANSFORMERS}{repo}@{commit}", family="transformers")


def _folder_sha256(folder: Path) -> str:
    """A transformers folder's identity: its config and every weights file, by content."""
    names = [
        "config.json",
        *sorted(p.name for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES),
    ]
    parts = [f"{n}:{weights_sha256(folder / n)}" for n in names if (folder / n).is_file()]
    if len(parts) < 2:
        raise ModelNotAvailableError(
            f"{TRANSFORMERS}{folder} needs config.json and a weights file ({', '.join(WEIGHT_SUFFIXES)})"
        )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _resolve_cn_clip(arch: str, pretrained: str | None) -> ResolvedModel:
    """An arch of cn_clip with a local checkpoint file, or its named download (cached first)."""
    from clip_multimodal.errors import require

    require("cn_clip", "cn-clip", f"model {CN_CLIP}{arch}")
    from cn_clip.clip.utils import _MODEL_INFO, _MODELS

    if arch not in _MODEL_INFO:
        raise ModelNotAvailableError(
            f"unknown {CN_CLIP} model {arch!r}. Known: {', '.join(_MODEL_INFO)}."
        )
    if pretrained:
        weights = Path(pretrained).expanduser()
        if not weights.is_file():
            raise ModelNotAvailableError(
                f"{CN_CLIP}{arch}: checkpoint file not found: {pretrained}"
            )
        return ResolvedModel(
            arch,
            str(weights),
            f"{CN_CLIP}{arch}@sha256:{weights_sha256(weights)[:16]}",
            family="cn_clip",
        )
    repo, filename = _MODELS[arch]
    root = clip_cache()  # where cn_clip's load_from_name keeps them
    if not (root / filename).is_file():
        _require_hub(f"{CN_CLIP}{arch}", hub_url(f"OFA-Sys/{repo}", filename))
        from huggingface_hub import hf_hub_download

        hf_hub_download(f"OFA-Sys/{repo}", filename, local_dir=root)
    return ResolvedModel(
        arch, str(root / filename), f"{CN_CLIP}{arch}/{filename}", family="cn_clip"
    )


def _resolve_named(name: str, pretrained: str | None) -> ResolvedModel:
    import open_clip

    arch = OPENAI_NAMES.get(name) or name.replace("/", "-")
    pretrained = openai_pretrained(name, pretrained)
    if open_clip.get_model_config(arch) is None:
        raise ModelNotAvailableError(
            f"unknown model architecture {name!r}. Known: {', '.join(open_clip.list_models()[:12])}, ... "
            "(open_clip.list_models()), or use 'hf-hub:org/repo' or 'local-dir:PATH'."
        )
    if not pretrained:
        return ResolvedModel(arch, None, f"{arch}@random-{uuid.uuid4().hex[:12]}")
    if Path(pretrained).expanduser().is_file():
        weights = Path(pretrained).expanduser()
        return ResolvedModel(arch, str(weights), f"{arch}@sha256:{weights_sha256(weights)[:16]}")
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        if pretrained.endswith(WEIGHT_SUFFIXES) or os.sep in pretrained:
            raise ModelNotAvailableError(f"weights file not found: {pretrained}")
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise ModelNotAvailableError(
            f"{pretrained!r} is neither a known pretrained tag of {arch} nor a file. "
            f"Known tags: {', '.join(tags) or 'none'}."
        )
    return _resolve_tag(arch, pretrained, cfg)


def _resolve_tag(arch: str, tag: str, cfg: dict[str, Any]) -> ResolvedModel:
    """A known tag: use the cached file if any, else download only if the host answers."""
    create_kwargs = {
        "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        **_preprocess_args(cfg),
    }
    model_id = f"{arch}/{tag}"
    cached = cached_tag_file(cfg) or _download_tag(f"{arch} / {tag}", cfg)
    return ResolvedModel(arch, str(cached), model_id, create_kwargs)


def _download_tag(what: str, cfg: dict[str, Any]) -> Path:
    """Download a tag's weights from the first of its sources that answers: the hub (as
    open_clip prefers), else its URL (OpenAI's weights have one)."""
    from open_clip.pretrained import download_pretrained

    if hub_offline():
        raise ModelNotAvailableError(_offline(what))
    tried = []
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        url = hub_url(repo, filename or "open_clip_model.safetensors")
        reason = why_hub_unreachable(url)
        if reason is None:
            return _downloaded(what, lambda: download_pretrained(cfg, prefer_hf_hub=True))
        tried.append(f"{url} ({reason})")
    if cfg.get("url"):
        reason = why_url_unreachable(cfg["url"])
        if reason is None:
            return _downloaded(what, lambda: download_pretrained(cfg, prefer_hf_hub=False))
        tried.append(f"{cfg['url']} ({reason})")
    raise ModelNotAvailableError(
        f"model {what} is not in the local cache and its download sources cannot be reached: "
        f"{'; '.join(tried) or 'none known'}. {_HOW_TO}"
    )


def _preprocess_args(cfg: dict[str, Any]) -> dict[str, Any]:
    """The tag's preprocessing, as create_model_and_transforms takes it (open_clip merges it
    only when it downloads the tag itself)."""
    names = ("mean", "std", "interpolation", "resize_mode")
    return {f"image_{k}": cfg[k] for k in names if k in cfg}


def _require_hub(what: str, url: str) -> None:
    """Raise ModelNotAvailableError unless the hub answers for `url` (a file of the model) the
    way huggingface_hub will reach it."""
    if hub_offline():
        raise ModelNotAvailableError(_offline(what))
    reason = why_hub_unreachable(url)
    if reason is not None:
        raise ModelNotAvailableError(
            f"model {what} is not in the local cache and {url} cannot be reached ({reason}). "
            f"{_HOW_TO}"
        )


def _offline(what: str) -> str:
    return f"model {what} is not in the local cache and HF_HUB_OFFLINE is set. {_HOW_TO}"


def _downloaded(what: str, download: Callable[[], str]) -> Path:
    """Run open_clip's download; a source that answered but failed is a ModelNotAvailableError."""
    try:
        return Path(download())
    except (OSError, RuntimeError) as exc:  # the hub's and urllib's errors, open_clip's own
        raise ModelNotAvailableError(f"model {what}: the download failed: {exc}") from exc


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def weights_sha256(path: Path) -> str:
    """The content hash of a weights file, cached by (path, mtime, size)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _HASH_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    with path.open("rb") as f:
        hexdigest = sha256_stream(f.read)
    with _HASH_LOCK:
        _HASHES[key] = hexdigest
    return hexdigest
