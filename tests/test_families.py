"""The other CLIP families: transformers checkpoints and Chinese-CLIP's own, on random weights.

Exactness: our embeddings equal each family's own code (transformers' `get_text_features` /
`get_image_features`, cn_clip's `encode_text` / `encode_image`), normalized, within 1e-5.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clip_multimodal import CLIPEncoder
from clip_multimodal.errors import MissingDependencyError, ModelNotAvailableError
from clip_multimodal.models import ModelSpec, resolve_model
from tests import family_builders

TEXTS = ["a red circle", "", "a photo of a cat and a dog beside a blue square", "一个红色的小圆形"]
CHINESE = ["一个红色的小圆形", "手写的数字七", "一只猫的剪影", "红色"]
TOLERANCE = 1e-5


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    shapes = [(40, 52), (61, 33), (32, 32), (90, 70)][:n]
    return [Image.fromarray(rng.integers(0, 256, (*s, 3), dtype=np.uint8)) for s in shapes]


def _unit(x: torch.Tensor) -> np.ndarray:
    out: np.ndarray = F.normalize(x.float(), dim=-1).numpy()
    return out


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-families")
    return {
        "clip": family_builders.save_hf_clip(root / "clip"),
        "siglip": family_builders.save_hf_siglip(root / "siglip"),
        "chinese_clip": family_builders.save_hf_chinese_clip(root / "chinese_clip"),
    }


def _transformers_reference(folder: Path, texts: list[str], context: int) -> tuple[Any, Any]:
    """transformers' own features, called as its documentation calls them."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tokens = AutoTokenizer.from_pretrained(folder)(
        texts, padding="max_length", truncation=True, max_length=context, return_tensors="pt"
    )
    pixels = AutoImageProcessor.from_pretrained(folder)(images=_images(), return_tensors="pt")
    with torch.inference_mode():
        text = model.get_text_features(**tokens)
        image = model.get_image_features(**pixels)
    return _unit(getattr(text, "pooler_output", text)), _unit(
        getattr(image, "pooler_output", image)
    )


@pytest.mark.parametrize("family", ["clip", "siglip", "chinese_clip"])
def test_transformers_embeddings_equal_get_features(
    hf_dirs: dict[str, Path], family: str, record_property: Any
) -> None:
    texts = TEXTS if family != "siglip" else TEXTS[:3]  # the test's tiny SigLIP vocabulary
    # batch_size 2: the texts run in two batches of different lengths (trimmed or not).
    encoder = CLIPEncoder(
        f"transformers:{hf_dirs[family]}", device="cpu", precision="fp32", batch_size=2
    )
    text_ref, image_ref = _transformers_reference(hf_dirs[family], texts, encoder.context_length)
    text_diff = float(np.abs(encoder.embed_texts(texts) - text_ref).max())
    image_diff = float(np.abs(encoder.embed_images(_images()) - image_ref).max())
    record_property("max_abs_diff", max(text_diff, image_diff))
    print(f"transformers {family}: max abs difference text {text_diff:.2e}, image {image_diff:.2e}")
    assert text_diff < TOLERANCE and image_diff < TOLERANCE
    assert encoder.model_id.startswith("transformers:sha256:") and len(encoder.model_id) == 36
    assert encoder.dim == text_ref.shape[1]
    assert encoder.trims_text_padding == (family != "siglip")  # masked towers run trimmed


def test_transformers_runs_in_bf16_and_classifies(hf_dirs: dict[str, Path]) -> None:
    folder = hf_dirs["clip"]
    fp32 = CLIPEncoder(f"transformers:{folder}", device="cpu", precision="fp32")
    bf16 = CLIPEncoder(f"transformers:{folder}", device="cpu", precision="bf16")
    assert bf16.input_dtype == torch.bfloat16
    assert np.abs(bf16.embed_texts(TEXTS) - fp32.embed_texts(TEXTS)).max() < 0.05
    probs = fp32.classify(_images(2), ["red", "blue"], ["a {} picture"])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_transformers_folder_id_follows_its_content(
    hf_dirs: dict[str, Path], tmp_path: Path
) -> None:
    copy = shutil.copytree(hf_dirs["clip"], tmp_path / "copy")
    original = resolve_model(f"transformers:{hf_dirs['clip']}", None).model_id
    assert resolve_model(f"transformers:{copy}", None).model_id == original  # not the path
    family_builders.save_hf_clip(copy, seed=1)
    assert resolve_model(f"transformers:{copy}", None).model_id != original


def test_transformers_refuses_other_model_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
            vocab_size=10,
        )
    ).save_pretrained(tmp_path)
    with pytest.raises(ModelNotAvailableError, match=r"'bert' model.*clip, siglip, chinese_clip"):
        CLIPEncoder(f"transformers:{tmp_path}", device="cpu")
    for missing in (tmp_path / "missing", "", "not a repo", "a/b/c"):
        with pytest.raises(ModelNotAvailableError, match="no such folder, and not a hub id"):
            CLIPEncoder(f"transformers:{missing}", device="cpu")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"clip-multimodal\[transformers\]"):
        CLIPEncoder(f"transformers:{tmp_path}", device="cpu")


def _hub_cache(root: Path, repo: str, folder: Path, commit: str) -> None:
    """huggingface_hub's cache layout: the repo's snapshot at `commit`, `main` pointing at it."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(folder, repo_dir / "snapshots" / commit)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)


def test_transformers_hub_id_loads_from_the_cache_offline(
    hf_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    _hub_cache(tmp_path, "someone/tiny-clip", hf_dirs["chinese_clip"], commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    encoder = CLIPEncoder("transformers:someone/tiny-clip", device="cpu")
    assert encoder.model_id == f"transformers:someone/tiny-clip@{commit}"
    local = CLIPEncoder(f"transformers:{hf_dirs['chinese_clip']}", device="cpu")
    assert np.array_equal(encoder.embed_texts(CHINESE), local.embed_texts(CHINESE))
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="someone/not-cached"):
        CLIPEncoder("transformers:someone/not-cached", device="cpu")
    assert time.monotonic() - started < 2


# -- cn_clip ---------------------------------------------------------------------------------


@pytest.mark.slow  # cn_clip's RN50 at 224 px, twice: ~20 s on two busy cores
def test_cn_clip_embeddings_equal_cn_clips_own(
    cn_clip_checkpoint: Path, record_property: Any
) -> None:
    import cn_clip.clip as cn

    # fp32: cn_clip's own reference computes in fp32 (`auto` may pick bf16 on this CPU).
    cn_clip_encoder = CLIPEncoder("cn-clip:RN50", str(cn_clip_checkpoint), precision="fp32")

    with contextlib.redirect_stdout(io.StringIO()):  # load_from_name prints its configs
        model, preprocess = cn.load_from_name(
            str(cn_clip_checkpoint),
            device="cpu",
            vision_model_name="RN50",
            text_model_name="RBT3-chinese",
            input_resolution=224,
        )
    model.eval()
    with torch.no_grad():
        text_ref = _unit(model.encode_text(cn.tokenize(CHINESE + TEXTS)))
        image_ref = _unit(model.encode_image(torch.stack([preprocess(i) for i in _images()])))
    text_diff = float(np.abs(cn_clip_encoder.embed_texts(CHINESE + TEXTS) - text_ref).max())
    image_diff = float(np.abs(cn_clip_encoder.embed_images(_images()) - image_ref).max())
    record_property("max_abs_diff", max(text_diff, image_diff))
    print(f"cn-clip RN50: max abs difference text {text_diff:.2e}, image {image_diff:.2e}")
    assert text_diff < TOLERANCE and image_diff < TOLERANCE
    assert cn_clip_encoder.model_id.startswith("cn-clip:RN50@sha256:")
    assert (cn_clip_encoder.dim, cn_clip_encoder.context_length) == (1024, 52)


def test_cn_clip_names_resolve_from_cn_clips_cache(
    cn_clip_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="cn-clip:RN50"):
        resolve_model("cn-clip:RN50", None)
    assert time.monotonic() - started < 2
    cache = tmp_path / ".cache" / "clip"
    cache.mkdir(parents=True)
    shutil.copy(cn_clip_checkpoint, cache / "clip_cn_rn50.pt")
    resolved = resolve_model("cn-clip:RN50", None)
    assert (resolved.model_id, resolved.pretrained) == (
        "cn-clip:RN50/clip_cn_rn50.pt",
        str(cache / "clip_cn_rn50.pt"),
    )
    # open_clip's default tag means nothing to cn-clip: the named weights are meant.
    assert ModelSpec("cn-clip:RN50").pretrained is None


def test_cn_clip_errors_name_the_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotAvailableError, match="unknown cn-clip: model 'ViT-Z-1'"):
        resolve_model("cn-clip:ViT-Z-1", None)
    with pytest.raises(ModelNotAvailableError, match="checkpoint file not found"):
        resolve_model("cn-clip:RN50", str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {}}, bad)
    with pytest.raises(ModelNotAvailableError, match=r"bad\.pt as a cn-clip:RN50 checkpoint"):
        CLIPEncoder("cn-clip:RN50", str(bad), device="cpu")
    monkeypatch.setitem(sys.modules, "cn_clip", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"clip-multimodal\[cn-clip\]"):
        resolve_model("cn-clip:RN50", str(bad))


def test_cn_clip_truncation_warning_counts_chinese_tokens(cn_clip_encoder: CLIPEncoder) -> None:
    with pytest.warns(UserWarning, match="longer than the model's context length"):
        cn_clip_encoder.embed_texts(["猫" * 51])
    cn_clip_encoder.embed_texts(["猫" * 50])  # [CLS] + 50 + [SEP] = 52 fits: no warning


@pytest.mark.parametrize("family", ["clip", "chinese_clip"])
def test_device_pipeline_mirrors_the_image_processor(
    hf_dirs: dict[str, Path], family: str, tmp_path: Path
) -> None:
    from clip_multimodal.gpu import GPUImagePipeline

    paths = []
    for i, image in enumerate(_images(4)):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    encoder = CLIPEncoder(f"transformers:{hf_dirs[family]}", device="cpu")
    ours = GPUImagePipeline(encoder, batch_size=2).embed_files(paths)
    reference = encoder.try_embed_images(paths)
    cosine = (ours.vectors * reference.vectors).sum(axis=1)
    print(f"device pipeline, transformers {family}: min cosine {cosine.min():.6f}")
    assert ours.indices == reference.indices == [0, 1, 2, 3]
    assert cosine.min() > 0.999


def test_device_pipeline_refuses_siglips_squashing_resize(hf_dirs: dict[str, Path]) -> None:
    from clip_multimodal.gpu import GPUImagePipeline, UnsupportedPreprocessError

    encoder = CLIPEncoder(f"transformers:{hf_dirs['siglip']}", device="cpu")
    with pytest.raises(UnsupportedPreprocessError):
        GPUImagePipeline(encoder)


def test_training_refuses_other_families_before_loading() -> None:
    from clip_multimodal.training.build import build_model

    for name in ("transformers:someone/clip", "cn-clip:RN50"):
        with pytest.raises(ModelNotAvailableError, match="train fine-tunes open_clip models"):
            build_model(name)


def test_a_transformers_encoder_is_shared_between_threads(hf_dirs: dict[str, Path]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    encoder = CLIPEncoder(f"transformers:{hf_dirs['clip']}", device="cpu")
    expected = encoder.embed_texts(TEXTS)
    with ThreadPoolExecutor(8) as pool:
        runs = [pool.submit(encoder.embed_texts, TEXTS) for _ in range(24)]
        # The truncation check tokenizes with other settings, in between.
        counts = [pool.submit(encoder.tokenizer.encode, "a red circle " * 40) for _ in range(24)]
        results = [run.result() for run in runs]
    assert {len(count.result()) for count in counts} == {encoder.context_length}
    assert all(np.array_equal(r, expected) for r in results)
