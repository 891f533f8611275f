"""The main job, end to end and offline: index a folder into embedded Chroma, then search it.

`make demo` runs this through `clip-multimodal demo`. It uses the bundled demo model, a small
CLIP trained by this project (see README); real users pass a pretrained model instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clip_multimodal.index import SearchHit

#: Each query in English and in Chinese: the demo model was trained on captions in both.
TEXT_QUERIES = (
    ("a handwritten seven", "手写的数字七"),
    ("a small red circle", "一个红色的小圆形"),
    ("a small blue triangle", "一个蓝色的小三角形"),
    ("a large yellow star", "一个黄色的大星形"),
    ("a silhouette of a cat", "一只猫的剪影"),
)


def run(data_dir: Path, model: str | None = None, k: int = 3) -> None:
    """Index the demo images under `data_dir`, index again (nothing re-embedded), and search."""
    from clip_multimodal.datasets import write_demo_images
    from clip_multimodal.encoder import CLIPEncoder
    from clip_multimodal.index import ImageIndex
    from clip_multimodal.models import DEMO_MODEL

    data_dir = Path(data_dir).expanduser().absolute()  # records hold absolute URIs
    images = data_dir / "demo-images"
    if not images.is_dir():
        write_demo_images(images)
    encoder = CLIPEncoder(model or DEMO_MODEL)
    print(f"model: {encoder.model_id} on {encoder.device.type}")
    index = ImageIndex(encoder, collection="demo", path=data_dir / "chroma")
    for label in ("first run", "second run"):
        start = time.perf_counter()
        report = index.index_folder(images, progress=False)
        print(f"{label}: {report} in {time.perf_counter() - start:.2f}s")
    print(f"collection 'demo' at {data_dir / 'chroma'}: {index.count()} images\n")
    for pair in TEXT_QUERIES:
        for query in pair:
            _show(f"text  {query!r}", index.search(query, k=k), images)
    probe = sorted((images / "digits").glob("*.png"))[0]
    _show(f"image {probe.relative_to(images)}", index.search(probe, k=k), images)


def _show(title: str, hits: Sequence[SearchHit], root: Path) -> None:
    print(title)
    for hit in hits:
        uri = hit.uri or hit.id
        if uri.startswith(str(root)):
            uri = str(Path(uri).relative_to(root))
        print(f"    {hit.score:.3f}  {uri}")
