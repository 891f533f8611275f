"""Chinese text through every entry point, on a Chinese-CLIP checkpoint named as users name it.

Each entry point loads `cn-clip:RN50` with a random checkpoint itself (its own model-name path)
and must give the vectors `CLIPEncoder` gives: the Chroma function, the CLI and the server here;
the LangChain and LlamaIndex adapters in their own test folders.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import chromadb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from clip_multimodal import CLIPEncoder
from clip_multimodal.chroma import CLIPEmbeddingFunction
from clip_multimodal.cli import main
from clip_multimodal.index import ImageIndex
from clip_multimodal.server import ServerSettings, create_app

QUERIES = ["一只猫的剪影", "手写的数字七", "一个红色的小圆形"]


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("cn-colours")
    paths = []
    for colour in ("red", "green", "blue"):
        paths.append(folder / f"{colour}.png")
        Image.new("RGB", (48, 40), colour).save(paths[-1])
    return paths


def test_chroma_function_embeds_chinese_queries(
    cn_clip_encoder: CLIPEncoder, cn_clip_checkpoint: Path, tmp_path: Path
) -> None:
    function = CLIPEmbeddingFunction(
        model_name="cn-clip:RN50", pretrained=str(cn_clip_checkpoint), device="cpu"
    )
    expected = cn_clip_encoder.embed_texts(QUERIES)
    np.testing.assert_allclose(np.array(function(QUERIES)), expected, atol=1e-6)
    rebuilt = CLIPEmbeddingFunction.build_from_config(function.get_config())
    np.testing.assert_allclose(np.array(rebuilt(QUERIES[:1])), expected[:1], atol=1e-6)
    client = chromadb.PersistentClient(path=str(tmp_path))
    collection = client.create_collection("cn-texts", embedding_function=function)  # type: ignore[arg-type]
    collection.add(ids=["a", "b"], embeddings=list(expected[1:]))
    found = collection.query(query_texts=[QUERIES[1]], n_results=1)
    assert found["ids"] == [["a"]]  # the stored vector of the same text


def test_cli_classifies_with_chinese_labels(
    cn_clip_encoder: CLIPEncoder,
    cn_clip_checkpoint: Path,
    colour_images: list[Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = ["红色", "绿色", "蓝色"]
    argv = ["classify", str(colour_images[0]), "--labels", ",".join(labels), "--json"]
    argv += ["--template", "{}"]  # one prompt per label keeps the text tower's work small
    model = ["--model", "cn-clip:RN50", "--pretrained", str(cn_clip_checkpoint), "--device", "cpu"]
    assert main([*argv, *model]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    got = {p["label"]: p["probability"] for p in result["predictions"]}
    expected = cn_clip_encoder.classify([colour_images[0]], labels, ["{}"])[0]
    assert set(got) == set(labels)
    np.testing.assert_allclose([got[label] for label in labels], expected, atol=1e-5)


def test_server_embeds_and_searches_chinese_text(
    cn_clip_encoder: CLIPEncoder,
    cn_clip_checkpoint: Path,
    colour_images: list[Path],
    tmp_path: Path,
) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    name = f"cn-{uuid.uuid4().hex[:8]}"
    report = ImageIndex(cn_clip_encoder, name, client=client).add(colour_images)
    assert not report.failed
    settings = ServerSettings(
        model="cn-clip:RN50",
        pretrained=str(cn_clip_checkpoint),
        device="cpu",
        collection=name,
        data_dir=tmp_path / "data",
    )
    with TestClient(create_app(settings, client=client)) as http:
        body = http.post("/v1/embed/text", json={"texts": QUERIES}).json()
        assert body["model_id"] == cn_clip_encoder.model_id
        expected = cn_clip_encoder.embed_texts(QUERIES)
        np.testing.assert_allclose(np.array(body["embeddings"]), expected, atol=1e-5)
        hits = http.post("/v1/search", json={"text": QUERIES[2], "k": 3}).json()["hits"]
    scores = cn_clip_encoder.embed_images(colour_images) @ expected[2]
    assert [Path(h["uri"]).name for h in hits] == [
        colour_images[i].name for i in np.argsort(-scores)
    ]
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(scores)[::-1], atol=1e-4)


def test_cli_takes_a_cn_clip_name_without_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # cn_clip's cache (~/.cache/clip) is empty
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["search", "一只猫", "--model", "cn-clip:RN50", "--data-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and "cn-clip:RN50" in err and "needs --pretrained" not in err
