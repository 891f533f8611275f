"""Text-to-image search over a clip-multimodal library, as a Streamlit page.

The third step of the pipeline, Streamlit style (the built-in page is `clip-multimodal serve`):

    clip-multimodal index ~/Pictures
    streamlit run examples/streamlit_app.py

Configured by environment variables, like the CLI:
    CLIP_MULTIMODAL_DATA_DIR     where the embedded index lives (default: the per-user folder)
    CLIP_MULTIMODAL_COLLECTION   the collection to search (default: images)
    CLIP_MULTIMODAL_MODEL        the model that built it (default: the bundled demo model)
    CLIP_MULTIMODAL_PRETRAINED   its pretrained tag, for an architecture name
    CLIP_MULTIMODAL_CHROMA_HOST, CLIP_MULTIMODAL_CHROMA_PORT   a Chroma server instead
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from clip_multimodal import CLIPEncoder, ImageIndex
from clip_multimodal.index import default_data_dir
from clip_multimodal.models import DEMO_MODEL

COLUMNS = 4


@st.cache_resource(show_spinner="Loading the model and the index…")
def open_index(
    model: str, pretrained: str | None, collection: str, data_dir: str, host: str, port: str
) -> ImageIndex:
    """One encoder and one index per configuration, kept across reruns."""
    encoder = CLIPEncoder(model, pretrained)
    if host or port:
        return ImageIndex(encoder, collection, host=host or None, port=int(port or 8000))
    return ImageIndex(encoder, collection, path=Path(data_dir) / "chroma")


def index_from_env() -> ImageIndex:
    env = os.environ.get
    return open_index(
        model=env("CLIP_MULTIMODAL_MODEL") or DEMO_MODEL,
        pretrained=env("CLIP_MULTIMODAL_PRETRAINED") or None,
        collection=env("CLIP_MULTIMODAL_COLLECTION") or "images",
        data_dir=str(default_data_dir()),
        host=env("CLIP_MULTIMODAL_CHROMA_HOST", ""),
        port=env("CLIP_MULTIMODAL_CHROMA_PORT", ""),
    )


def show_hits(index: ImageIndex, query: str, k: int) -> None:
    hits = index.search(query, k=k, query_type="text")
    for start in range(0, len(hits), COLUMNS):  # row by row, so the page reads best-first
        row = hits[start : start + COLUMNS]
        for column, hit in zip(st.columns(COLUMNS)[: len(row)], row, strict=True):
            name = Path(hit.uri).name if hit.uri else hit.id
            with column:
                if hit.uri:
                    st.image(hit.uri, caption=f"{hit.score:.3f} · {name}", width="stretch")
                else:
                    st.write(f"{hit.score:.3f} · {name} (no file)")


def main() -> None:
    st.set_page_config(page_title="clip-multimodal search", layout="wide")
    st.title("Search images by text")
    index = index_from_env()
    count = index.count()
    st.caption(f"{count} images in '{index.name}' · model {index.encoder.model_id}")
    if count == 0:
        st.info("No images yet. Index a folder first: `clip-multimodal index DIR`")
        return
    query = st.text_input("Describe the image", placeholder="a handwritten seven")
    k = st.slider("Results", min_value=1, max_value=48, value=8)
    if query.strip():
        show_hits(index, query.strip(), k)


main()
