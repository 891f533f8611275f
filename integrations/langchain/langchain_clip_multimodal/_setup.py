"""CLIPChroma's set-up: the index from the constructor arguments, the collection's
metadata and the checks on arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from clip_multimodal.index import ImageIndex
from langchain_clip_multimodal._encoder import encoder_for
from langchain_clip_multimodal.embeddings import CLIPEmbeddings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.config import Settings


def open_index(
    collection_name: str,
    embedding_function: Embeddings | None,
    persist_directory: str | None,
    host: str | None,
    port: int | None,
    client: ClientAPI | None,
    *,
    client_settings: Settings | None,
    collection_metadata: Mapping[str, Any] | None,
    create_collection_if_not_exists: bool,
    index: ImageIndex | None,
) -> tuple[Embeddings, ImageIndex]:
    """The embeddings and the index for `CLIPChroma`'s constructor arguments (see there)."""
    check_space(collection_metadata or {})
    if index is not None:
        given = (persist_directory, host, port, client, client_settings, collection_metadata)
        if any(arg is not None for arg in given):
            raise ValueError("pass index, or the connection arguments: not both")
        embedding_function = embedding_function or CLIPEmbeddings(encoder=index.encoder)
        check_same_model(embedding_function, index)
    elif embedding_function is None:
        raise ValueError(
            "CLIPChroma needs an embedding_function: CLIPEmbeddings(...) for images and "
            "texts, or any LangChain Embeddings for texts only"
        )
    else:
        if client is None:
            client = own_client(client_settings, persist_directory, host, port)
            if client is not None:  # made here from the location: the core takes the client
                persist_directory, host, port = None, None, None
        encoder = encoder_for(embedding_function)
        if not create_collection_if_not_exists:
            # Opening read-only checks that it exists and creates nothing; then open it.
            found = ImageIndex.open_read_only(
                encoder, collection_name, persist_directory, client=client, host=host, port=port
            )
            client, persist_directory, host, port = found.client, None, None, None
        index = ImageIndex(
            encoder, collection_name, persist_directory, client=client, host=host, port=port
        )
    return embedding_function, index


def own_client(
    settings: Settings | None, path: str | None, host: str | None, port: int | None
) -> ClientAPI | None:
    """The client `langchain_chroma.Chroma` makes for `client_settings` or for no location;
    None when the core makes it from the path or host/port.

    The in-memory client takes Chroma's default settings, as `chromadb.EphemeralClient()`
    does: the in-memory system is one per process, and another client there with other
    settings is refused.
    """
    import chromadb

    if settings is None:
        return chromadb.EphemeralClient() if (path, host, port) == (None, None, None) else None
    if path is not None:
        return chromadb.PersistentClient(path=path, settings=settings)
    if host is not None or port is not None:
        return chromadb.HttpClient(host=host or "localhost", port=port or 8000, settings=settings)
    return chromadb.Client(settings)


def check_space(metadata: Mapping[str, Any]) -> None:
    """Refuse a distance space other than cosine, which CLIP scores need, before anything
    is created."""
    space = metadata.get("hnsw:space", "cosine")
    if space != "cosine":
        raise ValueError(
            f"collection_metadata asks for the {space!r} distance; CLIPChroma collections use "
            "'cosine' (its scores are cosine similarity). Leave hnsw:space out."
        )


def add_collection_metadata(index: ImageIndex, metadata: Mapping[str, Any]) -> None:
    """Record the caller's collection metadata (keys already set stay as they are)."""
    current = dict(index.collection.metadata or {})
    missing = {k: v for k, v in metadata.items() if k not in current and k != "hnsw:space"}
    if missing:
        index.collection.modify(metadata={**current, **missing})


def check_same_model(embeddings: Embeddings, index: ImageIndex) -> None:
    model_id = encoder_for(embeddings).model_id
    if model_id != index.encoder.model_id:
        raise ValueError(
            f"embedding_function uses model {model_id}, but the index holds vectors of "
            f"{index.encoder.model_id}; leave embedding_function out to use the index's model"
        )


def no_extra(kwargs: Mapping[str, Any], method: str) -> None:
    if kwargs:
        raise TypeError(
            f"CLIPChroma.{method} got unexpected arguments {sorted(kwargs)}; it takes filter "
            "(a Chroma metadata filter) and where_document"
        )
