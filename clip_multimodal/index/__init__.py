"""The image index: one Chroma collection of image embeddings, synced with folders.

`ImageIndex` is the entry point; the CLI, the server and the framework adapters sit on it.
Scores are cosine similarity, higher is better. `ImageIndex.open_read_only` searches
collections other tools wrote; `describe_collection` reports what a collection holds, and
`check_collection` whether its files are whole and a query reaches every record.
Pipelines that embed elsewhere read inputs with `read_image_source` and store
`ImageRecord`s through `ImageIndex.writer()`. Front ends open the index their options name
with `open_index`.
"""

from clip_multimodal.index._bulk import ImageRecord, IndexWriter
from clip_multimodal.index._index import ImageIndex, open_index
from clip_multimodal.index._ingest import per_input
from clip_multimodal.index._names import check_collection_name
from clip_multimodal.index._records import (
    RESERVED_KEYS,
    FailedItem,
    IndexRecord,
    IndexReport,
    SearchHit,
)
from clip_multimodal.index._repair import HealthReport, check_collection
from clip_multimodal.index._sources import ImageSource, read_image_source
from clip_multimodal.index._store import CollectionInfo, default_data_dir, describe_collection
from clip_multimodal.index._sync import DEFAULT_PATTERNS

__all__ = [
    "DEFAULT_PATTERNS",
    "RESERVED_KEYS",
    "CollectionInfo",
    "FailedItem",
    "HealthReport",
    "ImageIndex",
    "ImageRecord",
    "ImageSource",
    "IndexRecord",
    "IndexReport",
    "IndexWriter",
    "SearchHit",
    "check_collection",
    "check_collection_name",
    "default_data_dir",
    "describe_collection",
    "open_index",
    "per_input",
    "read_image_source",
]
