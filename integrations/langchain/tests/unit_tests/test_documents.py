"""Records as Documents: texts round-trip exactly, images get a short description."""

from __future__ import annotations

from langchain_clip_multimodal._documents import describe_image, record_document


def test_image_description_is_short_and_informative() -> None:
    meta = {"mime": "image/png", "width": 64, "height": 48}
    assert describe_image("/data/digits/seven-003.png", meta) == (
        "image: digits/seven-003.png (image/png, 64x48)"
    )
    assert describe_image("seven.png", {}) == "image: seven.png"
    assert describe_image(None, meta) == "image: <image without uri> (image/png, 64x48)"
    url = describe_image("https://user:pw@example.com/a.jpg", {})
    assert url == "image: https://example.com/a.jpg"


def test_text_records_give_back_exactly_what_was_added() -> None:
    doc = record_document("1", None, {"id": 1, "modality": "text"}, "foo")
    assert (doc.id, doc.page_content, doc.metadata) == ("1", "foo", {"id": 1})


def test_image_records_keep_uri_and_metadata_and_never_hold_pixels() -> None:
    meta = {
        "uri": "/x/shapes/c.png",
        "mime": "image/png",
        "width": 8,
        "height": 8,
        "modality": "image",
    }
    doc = record_document("abc", "/x/shapes/c.png", meta, None, extra={"score": 0.5})
    assert doc.page_content == "image: shapes/c.png (image/png, 8x8)"
    assert doc.metadata == {**meta, "score": 0.5}
    captioned = record_document("abc", "/x/shapes/c.png", meta, "a red circle")
    assert captioned.page_content == "image: shapes/c.png (image/png, 8x8): a red circle"
