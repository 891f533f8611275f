"""The device image pipeline, stage by stage, against the reference path, on the CPU.

torch ops are device-agnostic, so the code that runs on CUDA runs here too: nvJPEG is the one
stage only a GPU has (benchmarks/gpu.py measures its pixel difference there); here
torchvision's CPU JPEG decoder stands in for it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clip_multimodal import CLIPEncoder, ImageIndex
from clip_multimodal.gpu import (
    GPUImagePipeline,
    JpegDecoder,
    PreprocessSpec,
    UnsupportedPreprocessError,
    load_payload,
    preprocess_batch,
    route,
)
from clip_multimodal.images import load_image
from clip_multimodal.index._records import RUN_KEY
from clip_multimodal.types import PixelEncoder
from tests import model_builders as mb

CPU = torch.device("cpu")


def _photo(width: int = 160, height: int = 120, seed: int = 0) -> Image.Image:
    """Smooth colour field plus noise: compresses and resizes like a photograph."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (4, 5, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    noisy = smooth + rng.normal(0, 8, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return _encode(_photo(), "JPEG", exif=exif.tobytes())


def _jpeg_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return _encode(_photo(), "JPEG", exif=exif.tobytes())


def _huge_png_header() -> bytes:
    """A valid PNG whose IHDR claims 100k x 100k pixels (over the bomb cap)."""
    data = bytearray(_encode(_photo(), "PNG"))
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    return bytes(data)


def _reference_pixels(data: bytes | Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(load_image(data))).permute(2, 0, 1)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> CLIPEncoder:
    folder = mb.save_model_dir(tmp_path_factory.mktemp("tiny"), mb.causal_cfg())
    return CLIPEncoder(f"local-dir:{folder}", device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def vit_preprocess() -> object:
    """open_clip's eval transform for a 224 model, the reference for the tensor version."""
    import open_clip

    return open_clip.image_transform(224, is_train=False)


# --- decode -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_batch_decode_matches_pil(mode: str) -> None:
    datas = [_encode(_photo(seed=s).convert(mode), "JPEG", quality=85) for s in range(3)]
    decoded = JpegDecoder(CPU).decode(datas)
    for data, pixels in zip(datas, decoded, strict=True):
        assert pixels is not None
        diff = (pixels.int() - _reference_pixels(data).int()).abs().max().item()
        # Same libjpeg-turbo on the CPU: measured 0. (nvJPEG's difference: benchmarks/gpu.py.)
        assert diff <= 1


def test_jpeg_decoder_isolates_a_bad_file_in_a_batch() -> None:
    good = _encode(_photo(), "JPEG")
    decoded = JpegDecoder(CPU).decode([good, good[: len(good) // 2], good])
    assert decoded[0] is not None and decoded[2] is not None
    assert decoded[1] is None  # the caller hands it to PIL, which reports it
    assert torch.equal(decoded[0], decoded[2])


def test_decoder_buffer_is_reused_across_batches() -> None:
    decoder = JpegDecoder(CPU)
    first = [_encode(_photo(seed=s), "JPEG") for s in range(2)]
    second = [_encode(_photo(seed=s + 5), "JPEG") for s in range(2)]
    a = [t.clone() for t in decoder.decode(first) if t is not None]
    b = decoder.decode(second)
    for data, pixels in zip(second, b, strict=True):
        assert pixels is not None and torch.equal(pixels, _reference_pixels(data))
    assert torch.equal(a[0], _reference_pixels(first[0]))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _encode(_photo(), "JPEG"), "jpeg"),
        (lambda: _encode(_photo().convert("L"), "JPEG"), "jpeg"),
        (lambda: _encode(_photo().convert("CMYK"), "JPEG"), "pil"),
        (_rotated_jpeg, "pil"),
        (lambda: _jpeg_with_orientation(1), "jpeg"),
        (lambda: _encode(_photo(), "JPEG", progressive=True), "pil"),  # one at a time on nvJPEG
        (lambda: _encode(_photo(), "PNG", transparency=(0, 0, 0)), "pil"),
        (_huge_png_header, "pil"),
        (lambda: _encode(_photo(), "PNG"), "png"),
        (lambda: _encode(_photo().convert("L"), "PNG"), "png"),
        (lambda: _encode(_photo().convert("RGBA"), "PNG"), "pil"),
        (lambda: _encode(_photo().convert("P"), "PNG"), "pil"),
        (lambda: _encode(Image.new("I;16", (20, 10), 4000), "PNG"), "pil"),
        (lambda: _encode(_photo(), "GIF"), "pil"),
        (lambda: _encode(_photo(), "BMP"), "pil"),
        (lambda: b"not an image at all", "pil"),
    ],
)
def test_route_sends_only_exact_cases_to_fast_decoders(make, expected: str) -> None:
    assert route(make()) == expected


@pytest.mark.parametrize(
    "make",
    [
        lambda: _encode(_photo(), "PNG"),
        lambda: _encode(_photo().convert("L"), "PNG"),
        lambda: _encode(_photo().convert("RGBA"), "PNG"),
        lambda: _encode(_photo(), "GIF"),
        lambda: _encode(_photo(), "BMP"),
        lambda: _encode(_photo().convert("CMYK"), "JPEG"),
        _rotated_jpeg,
    ],
)
def test_cpu_decoded_formats_equal_the_reference(make) -> None:
    data = make()
    loaded = load_payload(data, "x")
    assert loaded.error is None and loaded.pixels is not None
    assert torch.equal(loaded.pixels, _reference_pixels(data))


def test_pixels_inputs_go_through_the_reference_loader() -> None:
    image = _photo().convert("RGBA")
    loaded = load_payload(image)
    assert loaded.pixels is not None and torch.equal(loaded.pixels, _reference_pixels(image))


@pytest.mark.parametrize("data", [b"", b"garbage bytes"], ids=["empty", "garbage"])
def test_undecodable_input_is_reported_with_its_name(data: bytes) -> None:
    loaded = load_payload(data, "/photos/broken.jpg")
    assert loaded.error is not None
    assert loaded.error.source == "/photos/broken.jpg"


def test_missing_file_is_reported(tmp_path: Path) -> None:
    loaded = load_payload(tmp_path / "nope.jpg")
    assert loaded.error is not None and "nope.jpg" in str(loaded.error)


# --- resize, crop, normalize -----------------------------------------------------------

LEVEL = 1.0 / (255 * 0.26130258)  # one uint8 step after Normalize, at the smallest std


@pytest.mark.parametrize(
    "size", [(640, 480), (480, 640), (300, 200), (1000, 37), (50, 60), (224, 224), (225, 224)]
)
def test_device_preprocess_matches_open_clip(vit_preprocess, size: tuple[int, int]) -> None:
    image = _photo(*size, seed=size[0])
    noise = Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), np.uint8)
    )
    spec = PreprocessSpec.from_transform(vit_preprocess)
    for img in (image, noise):  # noise is the worst case for bicubic overshoot
        ours = preprocess_batch([_reference_pixels(img)], spec)[0]
        reference = vit_preprocess(img)
        assert ours.shape == reference.shape == (3, 224, 224)
        # Measured: one uint8 level (0.0150) at most, two for the 27:1 upscale; mean ~1e-5.
        assert (ours - reference).abs().max().item() <= 2 * LEVEL + 1e-5
        assert (ours - reference).abs().mean().item() < 1e-3


def test_preprocess_batch_keeps_order_across_mixed_sizes(vit_preprocess) -> None:
    spec = PreprocessSpec.from_transform(vit_preprocess)
    images = [_photo(*s, seed=i) for i, s in enumerate([(320, 240), (100, 90), (320, 240)])]
    batch = preprocess_batch([_reference_pixels(i) for i in images], spec, torch.bfloat16)
    assert batch.dtype == torch.bfloat16
    for row, image in zip(batch, images, strict=True):
        assert (row.float() - vit_preprocess(image)).abs().max().item() < 0.05  # bf16 rounding


def test_spec_reads_open_clip_transform(vit_preprocess) -> None:
    spec = PreprocessSpec.from_transform(vit_preprocess)
    assert spec.size == 224 and spec.interpolation == "bicubic"
    assert spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


@pytest.mark.parametrize("mode", ["squash", "longest"])
def test_unsupported_preprocessing_is_refused(mode: str) -> None:
    import open_clip

    transform = open_clip.image_transform(224, is_train=False, resize_mode=mode)
    with pytest.raises(UnsupportedPreprocessError, match="CPU path"):
        PreprocessSpec.from_transform(transform)


# --- the whole pipeline ----------------------------------------------------------------


def _mixed_files(folder: Path) -> tuple[list[Path], set[int]]:
    """JPEG, PNG, GIF, BMP and broken files interleaved; returns the paths and bad positions."""
    folder.mkdir(exist_ok=True)
    files: list[tuple[str, bytes]] = [
        ("a.jpg", _encode(_photo(200, 150, 1), "JPEG")),
        ("b.png", _encode(_photo(90, 120, 2), "PNG")),
        ("c.jpg", _encode(_photo(200, 150, 3), "JPEG")[:300]),  # truncated
        ("d.gif", _encode(_photo(64, 64, 4), "GIF")),
        ("e.jpg", _encode(_photo(150, 200, 5), "JPEG")),
        ("f.txt", b"no image here"),
        ("g.bmp", _encode(_photo(40, 30, 6), "BMP")),
        ("h.jpg", _encode(_photo(200, 150, 7).convert("L"), "JPEG")),
        ("i.png", _encode(_photo(50, 50, 8).convert("RGBA"), "PNG")),
    ]
    paths = []
    for name, data in files:
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    paths.append(folder / "missing.jpg")
    return paths, {2, 5, 9}


@pytest.mark.parametrize("batch_size", [3, 16])
def test_pipeline_matches_the_encoder_in_order_with_failures(
    tiny_encoder: CLIPEncoder, tmp_path: Path, batch_size: int
) -> None:
    paths, bad = _mixed_files(tmp_path / "mixed")
    ours = GPUImagePipeline(tiny_encoder, batch_size=batch_size, read_workers=3).embed_files(paths)
    reference = tiny_encoder.try_embed_images(paths)
    assert ours.indices == reference.indices == [i for i in range(len(paths)) if i not in bad]
    assert set(ours.errors) == set(reference.errors) == bad
    for i in bad:
        assert paths[i].name in str(ours.errors[i])
    cosine = (ours.vectors * reference.vectors).sum(axis=1)
    assert cosine.min() > 0.999
    assert np.allclose(np.linalg.norm(ours.vectors, axis=1), 1.0, atol=1e-5)


def test_pipeline_accepts_every_input_kind(tiny_encoder: CLIPEncoder) -> None:
    image = _photo(120, 90, 3)
    sources = [_encode(image, "JPEG"), image, np.asarray(image), _encode(image, "PNG")]
    result = GPUImagePipeline(tiny_encoder, batch_size=2).embed(sources)
    assert result.indices == [0, 1, 2, 3] and not result.errors
    reference = tiny_encoder.embed_images(sources)
    assert ((result.vectors * reference).sum(axis=1)).min() > 0.999


class _Tower:
    """A PixelEncoder that is no CLIPEncoder: the real tower behind only the protocol."""

    def __init__(self, encoder: CLIPEncoder) -> None:
        self.device, self.preprocess = encoder.device, encoder.preprocess
        self.input_dtype, self.dim, self.batch_size = encoder.input_dtype, encoder.dim, 3
        self.embed_pixels = encoder.embed_pixels


def test_pipeline_needs_only_the_pixel_encoder_protocol(tiny_encoder: CLIPEncoder) -> None:
    tower: PixelEncoder = _Tower(tiny_encoder)
    sources = [_encode(_photo(seed=s), "JPEG") for s in range(4)] + [b"not an image"]
    result = GPUImagePipeline(tower).embed(sources)
    assert result.indices == [0, 1, 2, 3] and set(result.errors) == {4}
    reference = tiny_encoder.embed_images(sources[:4])
    assert ((result.vectors * reference).sum(axis=1)).min() > 0.999


def test_empty_input(tiny_encoder: CLIPEncoder) -> None:
    result = GPUImagePipeline(tiny_encoder).embed([])
    assert result.vectors.shape == (0, tiny_encoder.dim) and result.indices == []


def test_reader_errors_surface_and_the_pipeline_stays_usable(tiny_encoder: CLIPEncoder) -> None:
    pipe = GPUImagePipeline(tiny_encoder, batch_size=2)

    def broken_reader(source: object) -> object:
        raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        list(pipe.stream([b"x", b"y", b"z"], broken_reader))  # type: ignore[arg-type]
    assert pipe.embed([_encode(_photo(), "JPEG")]).indices == [0]


def test_demo_model_end_embeddings_match_the_reference(
    demo_encoder: CLIPEncoder, demo_images_dir: Path, tmp_path: Path
) -> None:
    pngs = sorted(p for p in demo_images_dir.rglob("*.png"))[:24]
    assert pngs
    jpegs = []  # the same images as JPEGs: the device-decoder route, upscaled to the model
    for png in pngs:
        jpeg = tmp_path / f"{png.parent.name}-{png.stem}.jpg"
        Image.open(png).convert("RGB").save(jpeg, quality=90)
        jpegs.append(jpeg)
    paths = pngs + jpegs
    ours = GPUImagePipeline(demo_encoder, batch_size=16).embed_files(paths)
    reference = demo_encoder.try_embed_images(paths)
    assert ours.indices == reference.indices == list(range(len(paths))) and not ours.errors
    cosine = (ours.vectors * reference.vectors).sum(axis=1)
    assert cosine.min() > 0.99  # measured: 0.99999 or closer


def test_add_to_index_writes_the_records_add_would(
    tiny_encoder: CLIPEncoder, tmp_path: Path
) -> None:
    import chromadb

    paths, bad = _mixed_files(tmp_path / "files")
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    index = ImageIndex(tiny_encoder, collection="gpu", client=client)
    report = GPUImagePipeline(tiny_encoder, batch_size=4).add_to_index(index, paths)
    good = [p for i, p in enumerate(paths) if i not in bad]
    assert report.added == len(good) == index.count()
    assert len(report.failed) == len(bad)
    # ImageIndex.add finds every record stored as it would have written it: nothing to do.
    again = index.add(good)
    assert again.added == again.updated == again.embedded == 0
    assert again.unchanged == len(good)
    reference = ImageIndex(tiny_encoder, collection="ref", client=client)
    reference.add(good)
    ids = [i for i in report.ids if i is not None]
    ours = {r.id: r for r in index.get(ids, include_embeddings=True)}
    theirs = {r.id: r for r in reference.get(ids, include_embeddings=True)}
    assert ours.keys() == theirs.keys() == set(ids)
    for id_ in ids:
        written_by = {k: v for k, v in theirs[id_].metadata.items() if k != RUN_KEY}
        assert ours[id_].metadata == written_by  # all but add's own run marker
        cos = float(np.dot(ours[id_].embedding, theirs[id_].embedding))
        assert cos > 0.999


def test_add_to_index_refuses_a_read_only_index_before_embedding(
    tiny_encoder: CLIPEncoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chromadb

    from clip_multimodal.errors import ReadOnlyIndexError

    paths, _ = _mixed_files(tmp_path / "files")
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    ImageIndex(tiny_encoder, collection="theirs", client=client)
    index = ImageIndex.open_read_only(tiny_encoder, "theirs", client=client)
    calls: list[int] = []
    real = tiny_encoder.embed_pixels

    def counting(pixels: torch.Tensor) -> np.ndarray:
        calls.append(len(pixels))
        return real(pixels)

    monkeypatch.setattr(tiny_encoder, "embed_pixels", counting)
    with pytest.raises(ReadOnlyIndexError, match="theirs"):
        GPUImagePipeline(tiny_encoder, batch_size=4).add_to_index(index, paths)
    assert calls == [] and index.count() == 0
    # The same pipeline still embeds: the refusal came first, not from a broken model.
    GPUImagePipeline(tiny_encoder, batch_size=4).embed(paths[:2])
    assert calls


def test_fit_batch_size_is_the_encoders_on_cpu(tiny_encoder: CLIPEncoder) -> None:
    assert GPUImagePipeline(tiny_encoder).batch_size == tiny_encoder.batch_size


def test_resize_is_two_pil_style_passes() -> None:
    """Upscaling noise, one float pass differs from PIL by ~20 levels; the two passes do not."""
    from clip_multimodal.gpu.transforms import resized_size

    noise = Image.fromarray(np.random.default_rng(2).integers(0, 256, (30, 40, 3), np.uint8))
    pixels = _reference_pixels(noise)[None].float()
    out_h, out_w = resized_size(30, 40, 60)
    pil = torch.from_numpy(np.array(noise.resize((out_w, out_h), Image.Resampling.BICUBIC)))
    one_pass = F.interpolate(pixels, (out_h, out_w), mode="bicubic", antialias=True)
    one_pass = one_pass.round().clamp(0, 255)[0].permute(1, 2, 0)
    assert (one_pass - pil.float()).abs().max() > 5  # why the two passes exist
    spec = PreprocessSpec(60, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))
    ours = preprocess_batch([_reference_pixels(noise)], spec)[0]
    crop_left = round((out_w - 60) / 2.0)
    expected = pil[:, crop_left : crop_left + 60].permute(2, 0, 1).float()
    assert (ours - expected).abs().max().item() <= 2.0 + 1e-4  # measured: 2 levels upscaling
