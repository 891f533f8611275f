"""CLIPEmbeddingFunction (Chroma's native protocol) and URILoader, on real Chroma."""

from __future__ import annotations

import functools
import http.server
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromadb.api.types import Embeddable, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import known_embedding_functions
from PIL import Image

from clip_multimodal.chroma import CLIPEmbeddingFunction, URILoader
from clip_multimodal.images import load_image
from clip_multimodal.models import DEMO_MODEL, DEMO_MODEL_DIR, DEMO_MODEL_NAME

# -- the protocol, without a model -----------------------------------------------------------


def test_registered_under_its_name() -> None:
    assert CLIPEmbeddingFunction.name() == "clip_multimodal"
    assert known_embedding_functions["clip_multimodal"] is CLIPEmbeddingFunction


def test_config_round_trip_loads_no_model() -> None:
    ef = CLIPEmbeddingFunction(model_name="ViT-B-32", pretrained="some-tag", device="cpu")
    config = ef.get_config()

    rebuilt = CLIPEmbeddingFunction.build_from_config(config)

    assert config == {"model_name": "ViT-B-32", "pretrained": "some-tag"}  # no device
    assert rebuilt.get_config() == config
    assert rebuilt._encoder is None  # weights load on first use, not on reopen
    assert ef.default_space() == "cosine"
    assert "cosine" in ef.supported_spaces()
    assert ef.is_legacy() is False


def test_bad_configs_and_model_changes_are_refused() -> None:
    with pytest.raises(ValueError, match="model_name"):
        CLIPEmbeddingFunction.validate_config({"device": "cpu"})
    with pytest.raises(ValueError, match="pretrained"):
        CLIPEmbeddingFunction.validate_config({"model_name": "x", "pretrained": 3})
    ef = CLIPEmbeddingFunction(model_name="a", pretrained=None, device="cpu")
    with pytest.raises(ValueError, match="new collection"):
        ef.validate_config_update(ef.get_config(), {"model_name": "b"})
    ef.validate_config_update(ef.get_config(), {"device": "cuda"})  # a device change is fine


def test_a_device_recorded_by_an_older_config_is_ignored() -> None:
    """The machine that reopens a collection picks its own device: a collection made on a
    GPU must still answer queries on a CPU-only machine."""
    old = {"model_name": DEMO_MODEL_NAME, "pretrained": None, "device": "cuda"}
    CLIPEmbeddingFunction.validate_config(old)

    rebuilt = CLIPEmbeddingFunction.build_from_config(old)

    assert rebuilt.device == "auto"
    assert rebuilt.get_config() == {"model_name": DEMO_MODEL_NAME, "pretrained": None}
    assert rebuilt._encoder is None  # answering queries: see the collection test below


# -- the URI loader ----------------------------------------------------------------------------


@pytest.fixture
def served_folder(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_uri_loader_reads_paths_and_urls(served_folder: tuple[Path, str]) -> None:
    folder, base = served_folder
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, ..., 3] = 255  # half transparent: composited on white
    Image.fromarray(rgba).save(folder / "a.png")
    Image.fromarray(np.full((6, 7), 40, np.uint8)).save(folder / "b.png")

    arrays = URILoader()([str(folder / "a.png"), f"{base}/b.png", None, f"{base}/a.png"])

    assert arrays[2] is None
    first, second, fourth = arrays[0], arrays[1], arrays[3]
    assert first is not None and second is not None and fourth is not None
    assert first.shape == (10, 12, 3) and first.dtype == np.uint8
    assert np.array_equal(first, np.asarray(load_image(folder / "a.png")))
    assert np.array_equal(fourth, first)
    assert second.shape == (6, 7, 3) and int(second[0, 0, 0]) == 40


# -- with the demo model -----------------------------------------------------------------------


@pytest.fixture
def ef(demo_encoder: Any) -> CLIPEmbeddingFunction:
    return CLIPEmbeddingFunction(encoder=demo_encoder)


def test_an_encoder_passed_in_is_described_by_its_model_spec(
    ef: CLIPEmbeddingFunction, demo_encoder: Any
) -> None:
    """The bundled demo model is recorded by its alias, not its install path."""
    assert demo_encoder.model_name == DEMO_MODEL  # loaded by path...
    config = {"model_name": DEMO_MODEL_NAME, "pretrained": None}
    assert ef.get_config() == config  # ...recorded by name
    assert CLIPEmbeddingFunction.build_from_config(ef.get_config()).encoder is demo_encoder


@pytest.mark.parametrize(
    "spelling",
    [DEMO_MODEL, DEMO_MODEL_NAME, f"local-dir:{DEMO_MODEL_DIR}/../demo-model/"],
    ids=["path", "alias", "another-spelling"],
)
def test_every_spelling_of_the_demo_model_records_the_alias(spelling: str) -> None:
    ef = CLIPEmbeddingFunction(model_name=spelling, pretrained="ignored-tag", device="cpu")
    assert ef.get_config() == {"model_name": DEMO_MODEL_NAME, "pretrained": None}
    assert ef._encoder is None  # recording the alias loads nothing


def test_the_alias_loads_the_demo_model(demo_encoder: Any) -> None:
    from clip_multimodal import CLIPEncoder

    by_alias = CLIPEncoder(DEMO_MODEL_NAME, device="cpu")
    assert by_alias.model_id == demo_encoder.model_id and by_alias.pretrained is None
    texts = ["a handwritten seven", "a red circle"]
    np.testing.assert_allclose(
        by_alias.embed_texts(texts), demo_encoder.embed_texts(texts), atol=1e-6
    )


def test_texts_and_images_are_embedded_in_one_batch_each(
    ef: CLIPEmbeddingFunction,
    demo_encoder: Any,
    demo_images_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = ["a handwritten seven", "a red circle", "a cat", "a blue square", "a dog"]
    paths = sorted(demo_images_dir.rglob("*.png"))[:3]
    arrays = [np.asarray(Image.open(p)) for p in paths]
    calls: list[tuple[str, int]] = []
    real_texts, real_images = demo_encoder.embed_texts, demo_encoder.embed_images

    def spy_texts(batch: Any) -> Any:
        calls.append(("texts", len(batch)))
        return real_texts(batch)

    def spy_images(batch: Any) -> Any:
        calls.append(("images", len(batch)))
        return real_images(batch)

    monkeypatch.setattr(demo_encoder, "embed_texts", spy_texts)
    monkeypatch.setattr(demo_encoder, "embed_images", spy_images)

    text_vectors = ef(texts)
    image_vectors = ef(arrays)
    mixed = ef([texts[0], arrays[1], texts[2]])  # type: ignore[arg-type]

    assert calls[:2] == [("texts", 5), ("images", 3)]
    assert np.allclose(np.array(text_vectors), real_texts(texts), atol=1e-5)
    assert np.allclose(np.array(image_vectors), real_images(paths), atol=1e-5)
    assert np.allclose(mixed[1], image_vectors[1], atol=1e-5)
    assert np.allclose(mixed[2], text_vectors[2], atol=1e-5)
    assert all(v.dtype == np.float32 for v in text_vectors)


def test_other_array_dtypes_from_chroma_loaders_are_accepted(ef: CLIPEmbeddingFunction) -> None:
    grey16 = np.full((20, 20), 30000, np.uint16)  # what PIL gives for 16-bit PNGs
    unit = np.full((20, 20, 3), 0.5, np.float64)
    vectors = ef([grey16, unit])  # type: ignore[arg-type]
    assert len(vectors) == 2 and np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-4)


def _seven_and_probe(demo_images_dir: Path) -> tuple[list[Path], Path]:
    paths = sorted(demo_images_dir.rglob("*.png"))
    return paths, sorted((demo_images_dir / "shapes").glob("*.png"))[2]


def test_a_native_multimodal_collection_reopens_by_name(
    chroma_client: Any, ef: CLIPEmbeddingFunction, demo_images_dir: Path
) -> None:
    name = f"native-{uuid.uuid4().hex[:10]}"
    paths, probe = _seven_and_probe(demo_images_dir)
    created = chroma_client.create_collection(
        name,
        embedding_function=ef,
        data_loader=URILoader(),
        configuration={"hnsw": {"space": "cosine"}},
    )
    created.add(ids=[p.name for p in paths], uris=[str(p) for p in paths])

    reopened = chroma_client.get_collection(name, data_loader=URILoader())  # no function given
    by_image = reopened.query(query_uris=[str(probe)], n_results=1, include=["uris", "distances"])
    by_text = reopened.query(query_texts=["a handwritten seven"], n_results=3, include=["uris"])
    again = chroma_client.get_collection(name, embedding_function=ef, data_loader=URILoader())

    assert by_image["ids"][0] == [probe.name]
    assert by_image["distances"][0][0] == pytest.approx(0.0, abs=1e-3)
    assert "digits/seven-" in by_text["uris"][0][0]
    assert again.count() == len(paths)
    persisted = reopened.configuration["embedding_function"]
    assert persisted.name() == "clip_multimodal"
    assert persisted.get_config() == ef.get_config()


def test_a_collection_whose_config_records_cuda_answers_on_this_machine(
    chroma_client: Any, ef: CLIPEmbeddingFunction, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collections written by older versions recorded the device they were made on."""
    name = f"old-cuda-{uuid.uuid4().hex[:10]}"
    old_config = {**ef.get_config(), "device": "cuda"}
    with monkeypatch.context() as patch:
        patch.setattr(ef, "get_config", lambda: old_config)
        created = chroma_client.create_collection(name, embedding_function=ef)
    created.add(ids=["seven", "circle"], documents=["a handwritten seven", "a red circle"])
    assert created.configuration_json["embedding_function"]["config"]["device"] == "cuda"

    reopened = chroma_client.get_collection(name)  # rebuilt from the stored config
    found = reopened.query(query_texts=["a handwritten seven"], n_results=1)

    assert found["ids"][0] == ["seven"]
    assert reopened.configuration["embedding_function"].device == "auto"


def test_16_bit_images_from_chromas_image_loader_match_our_loader(
    ef: CLIPEmbeddingFunction, demo_encoder: Any, tmp_path: Path
) -> None:
    """Chroma's ImageLoader gives a 16-bit PNG's raw values; they are rescaled, not clipped."""
    from chromadb.utils.data_loaders import ImageLoader

    ramp = np.linspace(0, 65535, 64, dtype=np.float64)
    gradient = np.rint(np.add.outer(ramp, ramp) / 2).astype(np.uint16)
    path = tmp_path / "gradient16.png"
    Image.fromarray(gradient).save(path)
    (raw,) = ImageLoader()([str(path)])
    assert raw is not None and raw.dtype != np.uint8 and raw.max() > 255  # 16-bit values

    through_chroma = np.asarray(ef([raw])[0])  # type: ignore[list-item]
    through_ours = demo_encoder.embed_images([path])[0]

    assert float(through_chroma @ through_ours) > 0.999


class _AnotherFunction(EmbeddingFunction[Embeddable]):
    """Another embedding function, by name only (never called)."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Embeddable) -> Embeddings:
        raise AssertionError("not called")

    @staticmethod
    def name() -> str:
        return "another-function"


def test_a_collection_takes_the_functions_default_space(
    chroma_client: Any, ef: CLIPEmbeddingFunction
) -> None:
    col = chroma_client.create_collection(f"space-{uuid.uuid4().hex[:10]}", embedding_function=ef)
    assert col.configuration_json["hnsw"]["space"] == "cosine"


def test_conflicting_functions_and_model_changes_are_refused(
    chroma_client: Any, ef: CLIPEmbeddingFunction
) -> None:
    name = f"conflict-{uuid.uuid4().hex[:10]}"
    chroma_client.create_collection(name, embedding_function=ef).add(ids=["a"], documents=["a"])

    with pytest.raises(ValueError, match="Embedding function conflict"):
        chroma_client.get_collection(name, embedding_function=_AnotherFunction())
    same = chroma_client.get_or_create_collection(name, embedding_function=ef)
    assert same.count() == 1
    other_model = CLIPEmbeddingFunction(model_name="ViT-B-32", pretrained="some-tag")
    # Chroma 1.5 runs this check after the server has stored the new config (Collection.modify
    # validates in _update_model_after_modify_success), so the error warns but cannot undo.
    with pytest.raises(ValueError, match="new collection"):
        same.modify(configuration={"embedding_function": other_model})


def test_a_native_collection_reopens_in_a_fresh_process(
    tmp_path: Path, ef: CLIPEmbeddingFunction, demo_images_dir: Path
) -> None:
    import chromadb

    paths, probe = _seven_and_probe(demo_images_dir)
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    col = client.create_collection("native", embedding_function=ef, data_loader=URILoader())
    col.add(ids=[p.name for p in paths], uris=[str(p) for p in paths])
    # The fresh process prints the persisted config and what the rebuilt function loaded.
    script = (
        "import sys, json, chromadb\n"
        "from clip_multimodal.chroma import URILoader\n"
        "client = chromadb.PersistentClient(path=sys.argv[1])\n"
        "col = client.get_collection('native', data_loader=URILoader())\n"
        "print(json.dumps(col.configuration_json['embedding_function']['config']))\n"
        "print(col.query(query_uris=[sys.argv[2]], n_results=1)['ids'][0][0])\n"
        "print(col.configuration['embedding_function'].encoder.model_id)\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "db"), str(probe)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    config, found, model_id = out.stdout.strip().splitlines()
    assert json.loads(config)["model_name"] == DEMO_MODEL_NAME  # no install path recorded
    assert str(DEMO_MODEL_DIR) not in config
    assert found == probe.name
    assert model_id == ef.encoder.model_id
