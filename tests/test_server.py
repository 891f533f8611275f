"""The HTTP service on the real demo model and real Chroma (embedded, and a server).

Each endpoint is checked against what the library itself computes for the same inputs, and
the search results against the images' known content.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from fastapi.testclient import TestClient

from clip_multimodal.index import ImageIndex
from clip_multimodal.server import ServerSettings, create_app
from tests.server_helpers import free_port, png_bytes

SEVEN = "digits/seven-000.png"
RED_CIRCLE = "shapes/red-circle-small-000.png"
LABELS = [
    "a handwritten seven",
    "a small red circle on a light background",
    "a silhouette of a cat",
]


def _name() -> str:
    return f"srv-{uuid.uuid4().hex[:12]}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def library(
    tmp_path_factory: pytest.TempPathFactory, demo_encoder: Any, demo_images_dir: Path
) -> tuple[Any, str]:
    """An embedded Chroma holding the demo images, indexed once for the module."""
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("server-chroma")))
    name = _name()
    report = ImageIndex(demo_encoder, name, client=client).index_folder(
        demo_images_dir, progress=False
    )
    assert report.added == 48 and not report.failed
    return client, name


@pytest.fixture(scope="module")
def api(
    library: tuple[Any, str], demo_encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    client, name = library
    settings = ServerSettings(collection=name, data_dir=tmp_path_factory.mktemp("server-data"))
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        yield http


def _error(response: Any, status: int, type_: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    if type_ is not None:
        assert body["error"]["type"] == type_
    return str(body["error"]["message"])


# -- health and schema ---------------------------------------------------------------------


def test_healthz_reports_the_model_and_the_index(api: TestClient, demo_encoder: Any) -> None:
    body = api.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["model_id"] == demo_encoder.model_id
    assert body["index_count"] == 48
    assert body["device"] == "cpu"


def test_openapi_documents_every_endpoint_and_the_error_model(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    expected = {
        "/v1/embed/text": "post",
        "/v1/embed/image": "post",
        "/v1/search": "post",
        "/v1/rank": "post",
        "/v1/classify": "post",
        "/v1/index": "post",
        "/v1/images/{image_id}": "get",
        "/healthz": "get",
    }
    for path, method in expected.items():
        assert method in schema["paths"][path], path
    search = schema["paths"]["/v1/search"]["post"]
    assert set(search["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert "text" in search["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert search["responses"]["413"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    assert "SearchResponse" in schema["components"]["schemas"]


def _is_upload(prop: dict[str, Any]) -> bool:
    """An OpenAPI file field: binary (OpenAPI 3.0 style) or an octet-stream string (3.1)."""
    return any(
        x.get("format") == "binary" or x.get("contentMediaType") == "application/octet-stream"
        for x in [*prop.get("anyOf", [prop]), prop.get("items", {})]
    )


def _published(model: Any) -> Any:
    """A model's JSON schema as FastAPI publishes it (None-valued keys left out)."""

    def drop_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        return [drop_none(v) for v in value] if isinstance(value, list) else value

    return drop_none(model.model_json_schema())


def test_openapi_request_bodies_are_generated_from_the_models(api: TestClient) -> None:
    from clip_multimodal.server import schemas as s

    schema = api.get("/openapi.json").json()
    models = {
        "/v1/embed/text": (s.TextEmbedRequest, s.TextEmbedRequest),
        "/v1/embed/image": (s.ImageEmbedRequest, s.ImageEmbedForm),
        "/v1/search": (s.SearchRequest, s.SearchForm),
        "/v1/rank": (s.RankRequest, s.RankForm),
        "/v1/classify": (s.ClassifyRequest, s.ClassifyForm),
        "/v1/index": (None, s.IndexForm),
    }
    bodies = {path: schema["paths"][path]["post"]["requestBody"] for path in models}
    for path, (json_model, form_model) in models.items():
        content = bodies[path]["content"]
        assert bodies[path]["required"] is True
        assert content["multipart/form-data"]["schema"] == _published(form_model), path
        if json_model is None:
            assert set(content) == {"multipart/form-data"}, path
        else:
            assert content["application/json"]["schema"] == _published(json_model), path
    search = bodies["/v1/search"]["content"]
    image_fields = {"image_base64", "image_url"}
    json_fields = set(search["application/json"]["schema"]["properties"])
    assert json_fields == {"text", "k", "where", *image_fields}
    form = search["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {*json_fields, "file"} and _is_upload(form["file"])
    assert form["where"]["anyOf"][0]["contentMediaType"] == "application/json"
    embed = bodies["/v1/embed/image"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert embed["files"]["type"] == "array" and _is_upload(embed["files"])
    labels = bodies["/v1/classify"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert labels["labels"]["type"] == "array"
    assert "#/$defs" not in str(schema)  # every schema inlined or in components: no dead refs


def test_openapi_declares_the_bearer_token_on_every_v1_route(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert (operation.get("security") == [{"HTTPBearer": []}]) == path.startswith("/v1/")


# -- embedding -----------------------------------------------------------------------------


def test_embed_text_matches_the_library(api: TestClient, demo_encoder: Any) -> None:
    texts = ["a handwritten seven", "a silhouette of a cat"]
    body = api.post("/v1/embed/text", json={"texts": texts}).json()
    vectors = np.array(body["embeddings"], dtype=np.float32)
    assert body["model_id"] == demo_encoder.model_id and body["dim"] == vectors.shape[1]
    np.testing.assert_allclose(vectors, demo_encoder.embed_texts(texts), atol=1e-5)


def test_embed_image_takes_uploads_and_base64(
    api: TestClient, demo_encoder: Any, demo_images_dir: Path
) -> None:
    seven, circle = (
        (demo_images_dir / SEVEN).read_bytes(),
        (demo_images_dir / RED_CIRCLE).read_bytes(),
    )
    expected = demo_encoder.embed_images([seven, circle])
    files = [
        ("files", ("seven.png", seven, "image/png")),
        ("files", ("c.png", circle, "image/png")),
    ]
    uploaded = api.post("/v1/embed/image", files=files).json()
    np.testing.assert_allclose(np.array(uploaded["embeddings"]), expected, atol=1e-5)
    as_b64 = api.post(
        "/v1/embed/image",
        json={"images_base64": [_b64(seven), "data:image/png;base64," + _b64(circle)]},
    ).json()
    np.testing.assert_allclose(np.array(as_b64["embeddings"]), expected, atol=1e-5)


def test_embed_image_reports_a_bad_item_and_embeds_the_rest(
    api: TestClient, demo_encoder: Any, demo_images_dir: Path
) -> None:
    seven = (demo_images_dir / SEVEN).read_bytes()
    junk = _b64(b"this is certainly not an image file at all")
    body = api.post("/v1/embed/image", json={"images_base64": [junk, _b64(seven)]}).json()
    assert body["embeddings"][0] is None
    assert [e["index"] for e in body["errors"]] == [0]
    np.testing.assert_allclose(
        body["embeddings"][1], demo_encoder.embed_images([seven])[0], atol=1e-5
    )


# -- search --------------------------------------------------------------------------------


def test_text_search_finds_the_seven(api: TestClient) -> None:
    body = api.post("/v1/search", json={"text": "a handwritten seven", "k": 5}).json()
    assert body["query_type"] == "text"
    hits = body["hits"]
    assert len(hits) == 5
    assert any(h["uri"].endswith(SEVEN) for h in hits[:3]), [h["uri"] for h in hits]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(h["image_href"] == f"/v1/images/{h['id'].replace(':', '%3A')}" for h in hits)
    assert hits[0]["metadata"]["mime"] == "image/png"


def test_image_search_by_upload_finds_the_image_and_its_kind(
    api: TestClient, demo_images_dir: Path
) -> None:
    data = (demo_images_dir / RED_CIRCLE).read_bytes()
    files = {"file": ("query.png", data, "image/png")}
    body = api.post("/v1/search", files=files, data={"k": "4"}).json()
    hits = body["hits"]
    assert body["query_type"] == "image"
    assert hits[0]["uri"].endswith(RED_CIRCLE) and hits[0]["score"] > 0.99
    assert any("red-circle-small-" in h["uri"] for h in hits[1:]), [h["uri"] for h in hits]


def test_image_search_by_base64_equals_search_by_upload(
    api: TestClient, demo_images_dir: Path
) -> None:
    data = (demo_images_dir / SEVEN).read_bytes()
    by_b64 = api.post("/v1/search", json={"image_base64": _b64(data), "k": 3}).json()
    by_file = api.post("/v1/search", files={"file": ("q.png", data, "image/png")}, data={"k": "3"})
    assert [h["id"] for h in by_b64["hits"]] == [h["id"] for h in by_file.json()["hits"]]


def test_where_filters_by_metadata(api: TestClient, demo_images_dir: Path) -> None:
    folder = str(demo_images_dir.absolute())
    kept = api.post(
        "/v1/search", json={"text": "a cat", "k": 3, "where": {"folder": folder}}
    ).json()
    assert len(kept["hits"]) == 3
    none = api.post(
        "/v1/search", json={"text": "a cat", "k": 3, "where": {"folder": "/no/such/folder"}}
    ).json()
    assert none["hits"] == []
    form = api.post(
        "/v1/search", data={"text": "a cat", "k": "2", "where": '{"mime": "image/png"}'}
    ).json()
    assert len(form["hits"]) == 2


def test_a_served_image_is_the_indexed_file(api: TestClient, demo_images_dir: Path) -> None:
    hit = api.post("/v1/search", json={"text": "a handwritten seven", "k": 1}).json()["hits"][0]
    response = api.get(hit["image_href"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == Path(hit["uri"]).read_bytes()


# -- rank and classify ---------------------------------------------------------------------


def test_rank_orders_candidates_like_the_library(
    api: TestClient, demo_encoder: Any, demo_images_dir: Path
) -> None:
    data = (demo_images_dir / SEVEN).read_bytes()
    candidates = list(reversed(LABELS))
    body = api.post("/v1/rank", json={"image_base64": _b64(data), "candidates": candidates}).json()
    matches = body["matches"]
    assert matches[0]["text"] == "a handwritten seven"
    cosine = demo_encoder.embed_texts(candidates) @ demo_encoder.embed_images([data])[0]
    by_text = {m["text"]: m["score"] for m in matches}
    for text, expected in zip(candidates, cosine, strict=True):
        assert by_text[text] == pytest.approx(float(expected), abs=1e-5)
    assert sum(m["probability"] for m in matches) == pytest.approx(1.0, abs=1e-5)
    multipart = api.post(
        "/v1/rank",
        files={"file": ("q.png", data, "image/png")},
        data={"candidates": candidates},
    ).json()
    assert [m["text"] for m in multipart["matches"]] == [m["text"] for m in matches]


def test_classify_matches_the_library_with_and_without_templates(
    api: TestClient, demo_encoder: Any, demo_images_dir: Path
) -> None:
    data = (demo_images_dir / SEVEN).read_bytes()
    for templates in (["{}", "a picture of {}"], None):
        payload: dict[str, Any] = {"image_base64": _b64(data), "labels": LABELS}
        if templates:
            payload["templates"] = templates
        body = api.post("/v1/classify", json=payload).json()
        expected = demo_encoder.classify([data], LABELS, templates)[0]
        got = {p["label"]: p["probability"] for p in body["predictions"]}
        assert body["predictions"][0]["label"] == "a handwritten seven"
        for label, prob in zip(LABELS, expected, strict=True):
            assert got[label] == pytest.approx(float(prob), abs=1e-4)


def test_classify_runs_the_default_ensemble_over_many_labels(
    api: TestClient, demo_images_dir: Path
) -> None:
    # 6 labels x 80 templates = 480 prompts: more than a request may send, fine internally.
    labels = [*LABELS, "a zebra", "a large blue triangle", "a handwritten three"]
    data = _b64((demo_images_dir / SEVEN).read_bytes())
    body = api.post("/v1/classify", json={"image_base64": data, "labels": labels}).json()
    assert len(body["predictions"]) == 6
    too_many = api.post("/v1/classify", json={"image_base64": data, "labels": ["x"] * 300})
    assert "limit is 256" in _error(too_many, 400)


def test_classify_takes_a_multipart_upload_with_comma_separated_labels(
    api: TestClient, demo_images_dir: Path
) -> None:
    data = (demo_images_dir / RED_CIRCLE).read_bytes()
    body = api.post(
        "/v1/classify",
        files={"file": ("q.png", data, "image/png")},
        data={"labels": ",".join(LABELS)},
    ).json()
    assert body["predictions"][0]["label"] == LABELS[1]
    assert len(body["predictions"]) == 3


# -- indexing over HTTP ----------------------------------------------------------------------


def test_index_endpoint_is_disabled_by_default(api: TestClient) -> None:
    files = {"files": ("a.png", png_bytes((1, 2, 3)), "image/png")}
    message = _error(api.post("/v1/index", files=files), 403, "forbidden")
    assert "--enable-index" in message


def test_enabled_index_endpoint_stores_uploads_and_serves_them(
    demo_encoder: Any, tmp_path: Path
) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    settings = ServerSettings(collection=_name(), data_dir=tmp_path, enable_index=True)
    red, blue = png_bytes((220, 20, 20)), png_bytes((20, 20, 220))
    files = [
        ("files", ("red.png", red, "image/png")),
        ("files", ("../../evil/blue.png", blue, "image/png")),
        ("files", ("junk.png", b"not an image", "image/png")),
    ]
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        report = http.post("/v1/index", files=files).json()
        assert report["added"] == 2 and len(report["failed"]) == 1
        assert report["failed"][0]["source"] == "junk.png"
        assert report["ids"][2] is None
        served = http.get(f"/v1/images/{report['ids'][1]}")
        assert served.status_code == 200 and served.content == blue
        again = http.post("/v1/index", files=files[:2]).json()
        assert again["added"] == 0 and again["unchanged"] == 2
        hit = http.post("/v1/search", json={"text": "x", "k": 5}).json()["hits"]
        assert {h["metadata"]["filename"] for h in hit} == {"red.png", "blue.png"}
        _error(http.post("/v1/index", json={"files": []}), 415)  # uploads come as a form only
    # Uploads are stored under content-addressed names in data_dir/uploads, nowhere else.
    stored = sorted(p.name for p in (tmp_path / "uploads").iterdir())
    assert len(stored) == 2 and all(name.endswith(".png") for name in stored)
    assert not (tmp_path / "evil").exists()


# -- errors --------------------------------------------------------------------------------


def test_errors_are_typed_with_proper_status_codes(api: TestClient) -> None:
    _error(api.post("/v1/embed/text", json={"texts": []}), 422, "validation_error")
    _error(api.post("/v1/embed/text", json={"text": ["typo"]}), 422, "validation_error")
    _error(api.post("/v1/search", json={"k": 3}), 400, "bad_request")
    _error(api.post("/v1/search", json={"text": "x", "image_base64": "aaaa"}), 400)
    _error(api.post("/v1/search", json={"image_base64": "%%% not base64 %%%"}), 400)
    _error(
        api.post("/v1/search", json={"image_base64": _b64(b"no image, just some bytes here")}),
        400,
        "invalid_image",
    )
    _error(api.post("/v1/search", json={"text": "x", "where": {"$nope": 1}}), 400)
    _error(api.post("/v1/search", json={"text": "x", "k": 1000}), 400)
    _error(api.post("/v1/search", content=b"text=x", headers={"content-type": "text/plain"}), 415)
    upload = {"image": ("q.png", png_bytes((1, 2, 3)), "image/png")}
    assert "'file'" in _error(api.post("/v1/search", files=upload), 400, "bad_request")
    _error(
        api.post("/v1/search", content=b"{not json", headers={"content-type": "application/json"}),
        422,
    )
    _error(api.get("/v1/images/file:0123456789abcdef"), 404, "not_found")
    _error(api.get("/v1/nothing-here"), 404, "not_found")
    _error(api.get("/v1/search"), 405)


def test_an_unreachable_chroma_server_gives_503(demo_encoder: Any) -> None:
    settings = ServerSettings(collection=_name(), chroma_host="127.0.0.1", chroma_port=free_port())
    with TestClient(create_app(settings, encoder=demo_encoder)) as http:
        message = _error(http.post("/v1/search", json={"text": "x"}), 503, "index_unavailable")
        assert "Chroma server" in message
        health = http.get("/healthz").json()
        assert health["status"] == "degraded" and health["index_count"] is None
        # Embedding needs no index and keeps working.
        assert http.post("/v1/embed/text", json={"texts": ["x"]}).status_code == 200


# -- a Chroma server -------------------------------------------------------------------------


def test_search_and_images_over_both_kinds_of_chroma(
    chroma_client: Any, demo_encoder: Any, demo_images_dir: Path, tmp_path: Path
) -> None:
    name = _name()
    ImageIndex(demo_encoder, name, client=chroma_client).index_folder(
        demo_images_dir / "digits", progress=False
    )
    settings = ServerSettings(collection=name, data_dir=tmp_path)
    with TestClient(create_app(settings, encoder=demo_encoder, client=chroma_client)) as http:
        hits = http.post("/v1/search", json={"text": "a handwritten seven", "k": 2}).json()["hits"]
        assert hits[0]["uri"].endswith(SEVEN)
        image = http.get(hits[0]["image_href"])
        assert image.content == (demo_images_dir / SEVEN).read_bytes()
        assert http.get("/healthz").json()["index_count"] == 16


def test_hits_carry_the_document_and_no_href_without_a_file(
    demo_encoder: Any, tmp_path: Path
) -> None:
    client = chromadb.PersistentClient(path=str(tmp_path / "chroma"))
    name = _name()
    index = ImageIndex(demo_encoder, name, client=client)
    index.add([png_bytes((200, 20, 20))], documents=["a red square, drawn by hand"])
    settings = ServerSettings(collection=name, data_dir=tmp_path)
    with TestClient(create_app(settings, encoder=demo_encoder, client=client)) as http:
        hit = http.post("/v1/search", json={"text": "red", "k": 1}).json()["hits"][0]
    assert hit["document"] == "a red square, drawn by hand"
    assert hit["uri"] is None and hit["image_href"] is None
