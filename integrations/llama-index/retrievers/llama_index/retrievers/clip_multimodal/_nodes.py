"""How a search hit becomes an ImageNode: the one piece of LlamaIndex knowledge the core lacks.

The retriever searches through clip-multimodal's `ImageIndex` for all three kinds of Chroma
collection holding CLIP image vectors:
(a) `ImageIndex`'s own (metadata `uri`, mime, width, ...);
(b) Chroma's native embedding function (`uris` only: no documents, maybe no metadata);
(c) LlamaIndex's `ChromaVectorStore` (metadata `_node_content`: the serialized node).
(b) and (c) are opened with `ImageIndex.open_read_only`; hits carry the raw metadata and
document, and (c)'s node is rebuilt from them here.

A collection may also hold text records: LangChain's `CLIPChroma.add_texts` stores them with
`modality="text"`, and `ChromaVectorStore` stores text nodes with their `_node_type`. An image
retriever returns images only, so `images_only` keeps those out of the search.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from llama_index.core.schema import ImageNode, NodeRelationship, RelatedNodeInfo
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from clip_multimodal.documents import Provenance
from clip_multimodal.errors import ImageLoadError, IncompatibleIndexError
from clip_multimodal.images import to_base64

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from clip_multimodal.index import SearchHit

__all__ = ["IMAGES_ONLY", "check_holds_images", "hit_to_node", "images_only"]

_NODE_CONTENT = "_node_content"

#: A Chroma `where` that leaves out text records. `$ne` and `$nin` also match records without
#: the key, so images from Chroma's native function (no metadata at all) still match.
IMAGES_ONLY: dict[str, Any] = {
    "$and": [
        {"modality": {"$ne": "text"}},
        {"_node_type": {"$nin": ["TextNode", "Document", "IndexNode"]}},
    ]
}


def images_only(where: dict[str, Any] | None) -> dict[str, Any]:
    """The user's `where` (if any) restricted to image records."""
    return {"$and": [*IMAGES_ONLY["$and"], where]} if where else IMAGES_ONLY


def check_holds_images(collection: Collection) -> None:
    """Refuse a collection that holds records but no image (a text store, say).

    Raises:
        IncompatibleIndexError: naming the kind of record the collection holds.
    """
    if collection.count() == 0 or collection.get(where=IMAGES_ONLY, limit=1, include=[])["ids"]:
        return
    sample = collection.get(limit=1, include=["metadatas"])["metadatas"] or [{}]
    metadata = sample[0] or {}
    kind = metadata.get("_node_type") or f"modality={metadata.get('modality')!r}"
    raise IncompatibleIndexError(
        f"collection {collection.name!r} holds no images, only text records ({kind}); "
        "point the image retriever at the image collection"
    )


def hit_to_node(hit: SearchHit, collection: str) -> ImageNode:
    """An ImageNode for a hit: the stored node where LlamaIndex wrote one, else built from the URI.

    Raises:
        IncompatibleIndexError: the record is a LlamaIndex node that is not an image (the
            retriever was pointed at a text collection).
    """
    metadata = dict(hit.metadata)
    if _NODE_CONTENT in metadata:
        node = metadata_dict_to_node(metadata, text=hit.document)
        if not isinstance(node, ImageNode):
            raise IncompatibleIndexError(
                f"record {hit.id!r} of collection {collection!r} is a {type(node).__name__}, "
                "not an image; point the image retriever at the image collection"
            )
        return node
    provenance = hit.provenance
    if provenance is not None:
        return _document_image_node(hit, provenance)
    local, url = _split_uri(hit.uri)
    mime = metadata.get("mime")
    return ImageNode(
        id_=hit.id,
        text=hit.document or "",
        image_path=local,
        image_url=url,
        image_mimetype=mime if isinstance(mime, str) else None,
        metadata=metadata,
    )


def _document_image_node(hit: SearchHit, provenance: Provenance) -> ImageNode:
    """An image from a document: its pixels inline (a document image URI is no file a
    multimodal LLM can open), LlamaIndex's file keys, and `ref_doc_id` = the document."""
    metadata = {
        **hit.metadata,
        "file_path": provenance.source,
        "file_name": provenance.label.split(", page ")[0],
        "page_label": str(provenance.page),
    }
    try:
        pixels: str | None = to_base64(hit.uri or provenance.uri, max_side=None, format="PNG")
    except ImageLoadError:  # the document moved or changed since indexing: cite it anyway
        pixels = None
    node = ImageNode(
        id_=hit.id,
        text=hit.document or provenance.label,
        image=pixels,
        image_mimetype="image/png" if pixels is not None else None,
        metadata=metadata,
        excluded_embed_metadata_keys=list(metadata),
        excluded_llm_metadata_keys=[k for k in metadata if k not in ("file_name", "page_label")],
    )
    node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=provenance.source)
    return node


def _split_uri(uri: str | None) -> tuple[str | None, str | None]:
    """(image_path, image_url): http(s) and data: URIs are URLs, file:// and the rest paths."""
    if not uri:
        return None, None
    scheme = urlparse(uri).scheme.lower()
    if scheme in ("http", "https", "data"):
        return None, uri
    if scheme == "file":
        return unquote(urlparse(uri).path), None
    return uri, None
