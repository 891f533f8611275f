"""The two stages of a Ray indexing job, run on the cluster's workers.

`read_batch` (Ray tasks) reads, hashes and decodes each planned file; `Embedder` (an actor
pool, one model load per actor) runs the index's own ingest step on the read batch: the
records stored already (by id and by content) are looked up, only new contents are
preprocessed and embedded, and the batch is written through the index's bulk writer before
the call returns. Ids come from the plan, so a batch that Ray retries after a worker died
writes the same records again: it overwrites, it never duplicates.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import ImageSource, load_image
from clip_multimodal.index import ImageIndex, IndexReport
from clip_multimodal.index._ingest import CallState, Job, ingest_read
from clip_multimodal.index._records import Metadata
from clip_multimodal.index._sources import read_many
from clip_multimodal.models import ModelSpec
from clip_multimodal.types import Encoder

__all__ = ["Embedder", "EncoderFactory", "load_encoder", "read_batch"]

Batch = Mapping[str, Any]
#: A picklable zero-argument callable that loads the encoder (once per actor).
EncoderFactory = Callable[[], Encoder]


def load_encoder(spec: ModelSpec) -> Encoder:
    """The encoder a spec names (the default factory, bound with `functools.partial`)."""
    from clip_multimodal.encoder import CLIPEncoder

    return CLIPEncoder.from_spec(spec)


def read_batch(batch: Batch, max_decode_bytes: int | None) -> dict[str, list[Any]]:
    """Read, hash and decode a batch of planned files (a Ray task).

    Each item travels on as a pickled `ImageSource` whose payload is the decoded RGB pixels
    (what the model's preprocessing takes), or as the read error. An image that does not
    decode keeps its bytes: the encoder then fails it with the reason single-process
    indexing gives.
    """
    uris = [str(u) for u in batch["uri"]]
    items = [pickle.dumps(_decoded(r, max_decode_bytes)) for r in read_many(uris)]
    return {
        "position": list(batch["position"]),
        "uri": uris,
        "id": list(batch["id"]),
        "item": items,
    }


def _decoded(result: ImageSource | ImageLoadError, max_decode_bytes: int | None) -> object:
    if isinstance(result, ImageLoadError):
        return (result.source, result.reason)  # ImageLoadError itself does not unpickle
    try:
        image = load_image(result.payload, max_decode_bytes=max_decode_bytes)
    except ImageLoadError:
        return result
    return dataclasses.replace(result, payload=np.asarray(image))


def _undecoded(item: bytes) -> ImageSource | ImageLoadError:
    value = pickle.loads(item)
    return value if isinstance(value, ImageSource) else ImageLoadError(*value)


class Embedder:
    """One actor of the pool: an encoder and a connection to the Chroma server.

    Args:
        make_encoder: loads the model (called once, in the actor).
        collection, host, port: the collection on the Chroma server.
        tag: the `folder` value the plan's records carry.
        from_folder: a planned file that vanished is gone (a folder) or failed (a list).
        run: the job's run id, written on every record (`index_run`).
    """

    def __init__(
        self,
        make_encoder: EncoderFactory,
        collection: str,
        host: str,
        port: int,
        tag: str,
        from_folder: bool,
        run: str,
    ) -> None:
        self._encoder = make_encoder()
        self._index = ImageIndex(self._encoder, collection, host=host, port=port)
        self._extra: Metadata = {"folder": tag}
        self._from_folder = from_folder
        self._run = run

    def __call__(self, batch: Batch) -> dict[str, list[str]]:
        """Embed and write one read batch; return its report as one JSON row."""
        jobs = [
            Job(i, str(uri), str(id_), extra=self._extra, from_folder=self._from_folder)
            for i, (uri, id_) in enumerate(zip(batch["uri"], batch["id"], strict=True))
        ]
        results = [_undecoded(item) for item in batch["item"]]
        report = IndexReport(ids=[None] * len(jobs))
        state = CallState(run=self._run)
        store = self._index._store  # the index's guarded collection, as index_folder uses it
        prepared = ingest_read(jobs, results, store, self._encoder, report, state)
        with self._index.writer() as writer:  # written before Ray counts the batch done
            writer.put_batch(prepared)
        return {"report": [_report_row(report, state)]}


def _report_row(report: IndexReport, state: CallState) -> str:
    return json.dumps(
        {
            "added": report.added,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "embedded": report.embedded,
            "failed": [[f.source, f.reason] for f in report.failed],
            "dropped": state.vanished_ids + state.failed_ids,
        }
    )
