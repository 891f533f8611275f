"""`clip-multimodal models`: the families, and the weights in caches laid out as the tools that
download them leave them (a Hugging Face cache of blobs and snapshot links, ~/.cache/clip)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.cli import main
from clip_multimodal.models import DEMO_MODEL_DIR, DEMO_MODEL_NAME, resolve_model

REV = "a" * 40


def _hf_repo(hub: Path, repo: str, files: dict[str, bytes], *, main_ref: bool = True) -> Path:
    """One cached repo: blobs by content hash, snapshots/REV/NAME linking to them, refs/main."""
    entry = hub / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (entry / "blobs").mkdir()
    for name, data in files.items():
        blob = entry / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    if main_ref:
        (entry / "refs").mkdir()
        (entry / "refs" / "main").write_text(REV)
    return snapshot


def _config(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
def caches(tmp_path: Path) -> Path:
    """A user's caches: HF_HOME=tmp/hf-home, HOME=tmp/home."""
    hub = tmp_path / "hf-home" / "hub"
    demo = {n: (DEMO_MODEL_DIR / n).read_bytes() for n in DEMO_FILES}
    _hf_repo(hub, "acme/demo-clip", demo)
    _hf_repo(hub, "acme/config-only", {"open_clip_config.json": demo["open_clip_config.json"]})
    tag_repo = {"open_clip_config.json": b"{}", "open_clip_model.safetensors": b"weights"}
    _hf_repo(hub, "timm/vit_base_patch32_clip_224.openai", tag_repo)
    clip = {"model.safetensors": b"w", "tokenizer.json": b"{}"}
    _hf_repo(
        hub, "openai/clip-vit-base-patch32", {"config.json": _config(model_type="clip"), **clip}
    )
    chinese = {"pytorch_model.bin": b"w", "vocab.txt": b"[PAD]"}
    config = _config(model_type="chinese_clip", projection_dim=768)
    _hf_repo(hub, "OFA-Sys/chinese-clip-vit-large-patch14", {"config.json": config, **chinese})
    siglip = _config(model_type="siglip", text_config={"hidden_size": 1152})
    _hf_repo(hub, "google/siglip-so400m-patch14-384", {"config.json": siglip})  # no weights
    _hf_repo(hub, "google-bert/bert-base-uncased", {"config.json": _config(model_type="bert")})
    clip_cache = tmp_path / "home" / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    (clip_cache / "RN50.pt").write_bytes(b"openai rn50")
    (clip_cache / "clip_cn_vit-b-16.pt").write_bytes(b"cn-clip vit-b-16")
    return tmp_path


DEMO_FILES = ["open_clip_config.json", "open_clip_model.safetensors"]


def test_models_json_lists_families_and_every_cached_form(caches: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(caches / "hf-home"), HOME=str(caches / "home"))
    done = subprocess.run(
        [sys.executable, "-m", "clip_multimodal.cli", "models", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    families = {f["family"]: f["form"] for f in out["families"]}
    assert {"open_clip", "openai", "hf-hub", "local-dir", "transformers", "cn-clip", "demo"} <= set(
        families
    )
    assert "ViT-L/14@336px" in families["openai"] and "transformers:" in families["transformers"]
    got = {(m["model"], m["pretrained"]): m for m in out["cached"]}

    demo = got[(DEMO_MODEL_NAME, None)]
    assert demo["model_id"] == resolve_model(DEMO_MODEL_NAME, None).model_id
    assert demo["offline"] and demo["dimension"] == 128

    hub = got[("hf-hub:acme/demo-clip", None)]
    assert hub["offline"] and hub["dimension"] == 128
    assert hub["model_id"] == f"hf-hub:acme/demo-clip@{demo['model_id'].split('@')[1]}"
    partial = got[("hf-hub:acme/config-only", None)]
    assert not partial["offline"] and partial["model_id"] is None and partial["missing"]

    tag = got[("ViT-B-32", "openai")]  # the repo of an open_clip tag is named by the tag
    assert tag["model_id"] == "ViT-B-32/openai" and tag["dimension"] == 512 and tag["offline"]
    assert got[("RN50", "openai")]["model_id"] == "RN50/openai"  # OpenAI's URL download
    assert got[("RN50", "openai")]["dimension"] == 1024

    clip = got[("transformers:openai/clip-vit-base-patch32", None)]
    assert clip["model_id"] == f"transformers:openai/clip-vit-base-patch32@{REV}"
    assert clip["dimension"] == 512 and clip["offline"]
    chinese = got[("transformers:OFA-Sys/chinese-clip-vit-large-patch14", None)]
    assert chinese["dimension"] == 768 and chinese["offline"]
    siglip = got[("transformers:google/siglip-so400m-patch14-384", None)]
    assert siglip["dimension"] == 1152 and not siglip["offline"]
    assert siglip["missing"] == "weights, tokenizer"
    assert not any("bert-base" in m["model"] for m in out["cached"])

    cn = got[("cn-clip:ViT-B-16", None)]  # listed by the id that loading cn-clip:ViT-B-16 gives
    assert cn["model_id"] == "cn-clip:ViT-B-16/clip_cn_vit-b-16.pt"
    assert cn["dimension"] == 512 and cn["offline"]


def test_models_text_output(
    caches: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import huggingface_hub.constants

    hub = str(caches / "hf-home" / "hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", hub)
    monkeypatch.setenv("HOME", str(caches / "home"))
    shutil.rmtree(caches / "home" / ".cache" / "clip")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "transformers:ORG/REPO" in out and "cn-clip:ARCH" in out
    assert "ViT-B-32 --pretrained openai" in out
    assert "hf-hub:acme/config-only" in out and "not offline (missing weights)" in out
    assert "RN50" not in out.split("Weights in the local caches:")[1]
