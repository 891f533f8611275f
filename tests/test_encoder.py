"""CLIPEncoder against open_clip's plain reference path, plus batching, errors and threads."""

from __future__ import annotations

import asyncio
import threading
import warnings
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clip_multimodal import CLIPEncoder, ImageLoadError
from clip_multimodal.images import load_image
from tests import model_builders as mb

CAPTIONS = [
    "a",
    "a small red circle on a dark background",
    "a handwritten seven",
    "a large blue square on a light background with a very long tail of extra words " * 2,
    "",
    "cat",
]


@pytest.fixture(scope="module")
def exact(demo_encoder: CLIPEncoder) -> CLIPEncoder:
    """The demo model at fp32: the exactness tests compare with open_clip's fp32 reference
    (`auto` may pick bf16 on this CPU)."""
    return CLIPEncoder(demo_encoder.model_name, device="cpu", precision="fp32")


def reference_texts(enc: CLIPEncoder, texts: list[str]) -> np.ndarray:
    """open_clip's plain path: full padding, one forward, fp32, CPU."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feats = enc.model.encode_text(enc.tokenizer(texts))
    return F.normalize(feats.float(), dim=-1).numpy()


def reference_images(enc: CLIPEncoder, images: list[Image.Image]) -> np.ndarray:
    with torch.no_grad():
        pixels = torch.stack([enc.preprocess(load_image(im)) for im in images])
        feats = enc.model.encode_image(pixels)
    return F.normalize(feats.float(), dim=-1).numpy()


def mode_images() -> list[Image.Image]:
    """One image per PIL mode the loader normalizes."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 255, (40, 56), dtype=np.uint8)))
    i16 = Image.fromarray((rng.integers(0, 65535, (30, 30))).astype(np.uint16))
    return [
        rgb,
        rgba,
        rgb.convert("L"),
        rgb.convert("LA"),
        rgb.convert("P"),
        rgb.convert("CMYK"),
        rgb.convert("1"),
        i16,
        rgb.resize((300, 90)),
    ]


def test_embed_texts_equals_open_clip_reference(exact: CLIPEncoder) -> None:
    assert exact.trims_text_padding
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long caption is truncated on purpose
        ours = exact.embed_texts(CAPTIONS)
    ref = reference_texts(exact, CAPTIONS)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_embed_images_equals_open_clip_reference_for_every_mode(exact: CLIPEncoder) -> None:
    images = mode_images()
    ours = exact.embed_images(images)
    np.testing.assert_allclose(ours, reference_images(exact, images), atol=1e-5)


def test_batch_size_does_not_change_results(exact: CLIPEncoder) -> None:
    # At fp32 only: bf16 kernels may round a row differently at another batch size.
    small = CLIPEncoder(exact.model_name, device="cpu", precision="fp32", batch_size=2)
    images = mode_images()
    np.testing.assert_allclose(small.embed_images(images), exact.embed_images(images), atol=1e-5)
    texts = [c for c in CAPTIONS if len(c) < 100]
    np.testing.assert_allclose(small.embed_texts(texts), exact.embed_texts(texts), atol=1e-5)


def test_outputs_are_normalized_float32_and_empty_is_0_by_dim(demo_encoder: CLIPEncoder) -> None:
    out = demo_encoder.embed_texts(["a red circle", "a handwritten two"])
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert demo_encoder.embed_texts([]).shape == (0, demo_encoder.dim)
    assert demo_encoder.embed_images([]).shape == (0, demo_encoder.dim)
    assert demo_encoder.context_length > 0


def test_long_text_is_truncated_with_one_warning(demo_encoder: CLIPEncoder) -> None:
    long = "word " * 200
    with pytest.warns(UserWarning, match="truncated") as record:
        demo_encoder.embed_texts([long, long, "short"])
    assert len([w for w in record if "truncated" in str(w.message)]) == 1


def test_single_string_is_refused(demo_encoder: CLIPEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        demo_encoder.embed_texts("a red circle")  # type: ignore[arg-type]


def test_bad_images_are_reported_and_the_rest_embedded(
    demo_encoder: CLIPEncoder, tmp_path: Path
) -> None:
    good = mode_images()[:2]
    missing = tmp_path / "missing.png"
    result = demo_encoder.try_embed_images([good[0], missing, b"not an image", good[1]])
    assert result.indices == [0, 3]
    assert set(result.errors) == {1, 2}
    assert "missing.png" in str(result.errors[1])
    np.testing.assert_allclose(result.vectors, demo_encoder.embed_images(good), atol=1e-5)
    with pytest.raises(ImageLoadError, match=r"missing\.png"):
        demo_encoder.embed_images([good[0], missing])


def test_shared_between_threads(demo_encoder: CLIPEncoder) -> None:
    images = mode_images()
    expected = demo_encoder.embed_images(images)
    results: list[np.ndarray] = []

    def work() -> None:
        results.append(demo_encoder.embed_images(images))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4
    for r in results:
        np.testing.assert_allclose(r, expected, atol=1e-5)


async def test_async_runs_off_the_event_loop(
    demo_encoder: CLIPEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = CLIPEncoder.embed_texts

    def spy(self: CLIPEncoder, texts: list[str]) -> np.ndarray:
        seen.append(threading.get_ident())
        return original(self, texts)

    monkeypatch.setattr(CLIPEncoder, "embed_texts", spy)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    out = await demo_encoder.aembed_texts(["a red circle"] * 64)
    imgs = await demo_encoder.aembed_images(mode_images()[:2])
    task.cancel()
    assert out.shape[0] == 64 and imgs.shape[0] == 2
    assert seen and all(t != loop_thread for t in seen)
    assert ticks > 1  # the loop kept running while the model worked


def test_model_id_names_weights_and_is_stable(demo_encoder: CLIPEncoder) -> None:
    again = CLIPEncoder(demo_encoder.model_name, device="cpu")
    assert again.model_id == demo_encoder.model_id
    assert "@sha256:" in demo_encoder.model_id


def test_siglip_style_tower_keeps_full_padding(tmp_path: Path) -> None:
    enc = CLIPEncoder(
        f"local-dir:{mb.save_model_dir(tmp_path / 'm', mb.siglip_style_cfg())}",
        device="cpu",
        precision="fp32",
    )
    assert not enc.trims_text_padding
    texts = ["a", "a red circle on a dark background"]
    np.testing.assert_allclose(enc.embed_texts(texts), reference_texts(enc, texts), atol=1e-5)


def test_hf_text_tower_keeps_full_padding(tmp_path: Path) -> None:
    # open_clip reads a local-dir model's HF tokenizer from the model folder itself.
    folder = mb.save_tiny_bert(tmp_path / "m")
    enc = CLIPEncoder(
        f"local-dir:{mb.save_model_dir(folder, mb.hf_text_cfg(folder))}",
        device="cpu",
        precision="fp32",
    )
    assert not enc.trims_text_padding
    texts = ["a", "a red circle", "the small green triangle photo"]
    np.testing.assert_allclose(enc.embed_texts(texts), reference_texts(enc, texts), atol=1e-5)


def test_causal_tower_trims_and_matches(tmp_path: Path) -> None:
    enc = CLIPEncoder(
        f"local-dir:{mb.save_model_dir(tmp_path / 'm', mb.causal_cfg())}",
        device="cpu",
        precision="fp32",
    )
    assert enc.trims_text_padding
    texts = ["a", "a red circle on a dark background", "cat"]
    np.testing.assert_allclose(enc.embed_texts(texts), reference_texts(enc, texts), atol=1e-5)


def test_bf16_is_close_to_fp32(exact: CLIPEncoder) -> None:
    low = CLIPEncoder(exact.model_name, device="cpu", precision="bf16")
    texts = ["a small red circle on a dark background", "a handwritten seven"]
    cos = (low.embed_texts(texts) * exact.embed_texts(texts)).sum(axis=1)
    assert low.precision == "bf16" and exact.precision == "fp32"
    assert cos.min() > 0.97


def test_bad_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        CLIPEncoder("ViT-B-32", None, precision="fp8")  # type: ignore[arg-type]


def test_classify_returns_probabilities_using_templates(demo_encoder: CLIPEncoder) -> None:
    from clip_multimodal.datasets import digit_samples

    samples = digit_samples("heldout")[:60]
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    probs = demo_encoder.classify([s.image for s in samples], names, templates=["a handwritten {}"])
    assert probs.shape == (60, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    predicted = [names[i] for i in probs.argmax(axis=1)]
    accuracy = np.mean([p == s.label for p, s in zip(predicted, samples, strict=True)])
    assert accuracy >= 0.7


def test_classify_default_templates_are_openai_imagenet(demo_encoder: CLIPEncoder) -> None:
    classes = demo_encoder.class_embeddings(["cat"])
    prompts = [t("cat") for t in open_clip.OPENAI_IMAGENET_TEMPLATES]
    mean = demo_encoder.embed_texts(prompts).mean(axis=0)
    np.testing.assert_allclose(classes[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_device_pipeline_matches_the_reference_path(
    demo_encoder: CLIPEncoder, tmp_path: Path
) -> None:
    """On CUDA the device pipeline is on by default; on the CPU it can be asked for."""
    assert not demo_encoder.uses_device_pipeline
    piped = CLIPEncoder(demo_encoder.model_name, device="cpu", device_pipeline=True)
    assert piped.uses_device_pipeline
    files = []
    for i, image in enumerate(mode_images()[:4]):
        path = tmp_path / f"img{i}.{'jpg' if i % 2 else 'png'}"
        image.convert("RGB").save(path)
        files.append(path)
    result = piped.try_embed_images([*files, tmp_path / "missing.jpg"])
    assert result.indices == [0, 1, 2, 3]
    assert set(result.errors) == {4}
    cos = (result.vectors * demo_encoder.embed_images(files)).sum(axis=1)
    assert cos.min() > 0.9999
