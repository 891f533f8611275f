"""The `langchain_chroma.Chroma` surface of CLIPChroma: the collection and client, raw
records, updates, deletes and the collection's life cycle (delete, reset)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.vectorstores import VectorStore

from clip_multimodal.index import ImageIndex
from langchain_clip_multimodal._documents import record_document
from langchain_clip_multimodal._setup import add_collection_metadata, no_extra

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection


class ChromaCompat(VectorStore):
    """The part of `CLIPChroma` that mirrors `langchain_chroma.Chroma`'s own methods.

    The subclass's constructor sets the three attributes below.
    """

    _index: ImageIndex
    _deleted: bool  # delete_collection() was called
    _collection_metadata: dict[str, Any]

    @property
    def index(self) -> ImageIndex:
        """The underlying `ImageIndex` (full reports, folder sync, raw hits).

        Raises:
            ValueError: the collection was deleted with `delete_collection`.
        """
        if self._deleted:
            raise ValueError(
                "Chroma collection not initialized: it was deleted with delete_collection(); "
                "use reset_collection() to create it again, empty"
            )
        return self._index

    @property
    def _collection(self) -> Collection:
        """The Chroma collection (as `langchain_chroma.Chroma._collection`)."""
        return self.index.collection

    @property
    def _client(self) -> ClientAPI:
        """The Chroma client (as `langchain_chroma.Chroma._client`)."""
        client = self.index.client
        if client is None:  # an index opened from a Collection object
            raise ValueError("this store was built on a Chroma Collection, without its client")
        return client

    # -- records ------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The records with these ids, in the order asked; missing ids are left out."""
        records = self.index.get(list(ids))
        return [record_document(r.id, r.uri, r.metadata, r.document) for r in records]

    def get(
        self,
        ids: str | list[str] | None = None,
        where: Mapping[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: Mapping[str, Any] | None = None,
        include: list[str] | None = None,
    ) -> dict[str, Any]:
        """Chroma's raw records (as `langchain_chroma.Chroma.get`): a dict of `ids`,
        `documents`, `metadatas` and, when `include` asks, `embeddings` or `uris`.

        Metadata is as stored: records carry `modality` and images their file keys.
        """
        query: dict[str, Any] = {
            "ids": ids,
            "where": dict(where) if where else None,
            "limit": limit,
            "offset": offset,
            "where_document": dict(where_document) if where_document else None,
            "include": include or ["metadatas", "documents"],
        }
        return dict(self.index.collection.get(**query))

    def update_document(self, document_id: str, document: Document) -> None:
        """Re-embed and replace one record (as `langchain_chroma.Chroma.update_document`)."""
        self.update_documents([document_id], [document])

    def update_documents(self, ids: list[str], documents: list[Document]) -> None:
        """Re-embed and replace records by id; an id not stored yet is added."""
        metadatas = [dict(d.metadata) for d in documents]
        self.add_texts([d.page_content for d in documents], metadatas, ids=list(ids))

    def delete_collection(self) -> None:
        """Delete the whole collection; the store then refuses calls until `reset_collection`."""
        self._client.delete_collection(self.index.name)
        self._deleted = True

    def reset_collection(self) -> None:
        """Delete the collection (if it is still there) and create it again, empty."""
        if not self._deleted:
            self.delete_collection()
        old = self._index
        if old.client is None:  # an index opened from a Collection object
            raise ValueError("this store was built on a Chroma Collection, without its client")
        self._index = ImageIndex(old.encoder, old.name, client=old.client)
        self._deleted = False
        add_collection_metadata(self._index, self._collection_metadata)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete records by id, or by metadata with `filter=...` (or `where=...`, as
        `langchain_chroma.Chroma` takes it); missing ids are ignored.

        Raises:
            ValueError: neither ids nor filter given (this store never deletes everything).
        """
        where = kwargs.pop("filter", None) or kwargs.pop("where", None)
        no_extra(kwargs, "delete")
        if ids is not None and not ids and where is None:
            return True
        self.index.delete(ids, where)
        return True
