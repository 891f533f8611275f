"""index_with_ray on a real local Ray cluster (2 CPUs) against a real Chroma server: the same
collection as single-process `index_folder`, nothing re-embedded on a re-run, the same sync
of changes, per-item failures, and a worker killed mid-job."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.distributed import index_with_ray
from clip_multimodal.errors import MissingDependencyError
from clip_multimodal.index import ImageIndex
from tests.distributed_helpers import (
    ExitOnce,
    assert_same_collection,
    snapshot,
    worker_env,
    write_images,
)

pytestmark = [
    pytest.mark.slow,  # a Ray cluster starts, and each actor loads the demo model
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),  # Ray Data's own options
]

N_IMAGES = 1000
BATCH = 100


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    import ray

    os.environ["PYTHONPATH"] = worker_env()["PYTHONPATH"]  # the workers import this checkout
    ray.init(num_cpus=2, object_store_memory=200_000_000, include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray-images")
    write_images(folder, N_IMAGES)
    (folder / "part0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def _single(demo_encoder: Any, server: tuple[str, int], name: str, folder: Path) -> Any:
    index = ImageIndex(demo_encoder, name, host=server[0], port=server[1])
    return index.index_folder(folder, progress=False)


def _ray(server: tuple[str, int], name: str, source: Path, **options: Any) -> Any:
    options = {"batch_size": BATCH, "num_workers": 1, "progress": False, **options}
    return index_with_ray(source, name, host=server[0], port=server[1], **options)


def test_same_collection_as_index_folder_and_rerun_embeds_nothing(
    ray_local: None, chroma_server: tuple[str, int], demo_encoder: Any, images: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    shutil.copytree(images, folder)
    single = _single(demo_encoder, chroma_server, "single", folder)
    report = _ray(chroma_server, "on_ray", folder, num_workers=2, num_cpus_per_worker=0.5)
    assert (report.added, report.embedded, report.unchanged) == (N_IMAGES, N_IMAGES, 0)
    assert [f.source for f in report.failed] == [f.source for f in single.failed]
    assert [f.reason for f in report.failed] == [f.reason for f in single.failed]
    assert str(report) == str(single)
    assert_same_collection(snapshot(*chroma_server, "on_ray"), snapshot(*chroma_server, "single"))

    again = _ray(chroma_server, "on_ray", folder)
    assert (again.added, again.embedded, again.unchanged) == (0, 0, N_IMAGES)
    assert len(again.failed) == 1  # the broken file is read again (it has no record)

    # The same changes synced both ways: a rename reuses its vector, an edit re-embeds,
    # a deletion and the now-fixed broken file (renamed away) remove and add records.
    (folder / "part0" / "img00000.png").rename(folder / "part0" / "renamed.png")
    (folder / "part1" / "img00001.png").unlink()
    write_images(tmp_path / "other", 3, seed=7)
    shutil.copy(tmp_path / "other" / "part0" / "img00000.png", folder / "part0" / "img00002.png")
    (folder / "part0" / "broken.png").unlink()
    single = _single(demo_encoder, chroma_server, "single", folder)
    synced = _ray(chroma_server, "on_ray", folder)
    assert str(synced) == str(single)
    assert (synced.added, synced.updated, synced.removed, synced.embedded) == (1, 1, 2, 1)
    assert_same_collection(snapshot(*chroma_server, "on_ray"), snapshot(*chroma_server, "single"))


def test_a_list_file_of_paths(
    ray_local: None, chroma_server: tuple[str, int], images: Path, tmp_path: Path
) -> None:
    listed = sorted(images.rglob("img0000*.png"))
    listing = tmp_path / "list.txt"
    lines = [str(p.relative_to(images)) for p in listed] + ["# a comment", "", "missing.png"]
    listing.write_text("\n".join(lines))
    (tmp_path / "part0").symlink_to(images / "part0")  # relative paths: to the list's folder
    (tmp_path / "part1").symlink_to(images / "part1")
    report = _ray(chroma_server, "listed", listing)
    assert (report.added, report.embedded) == (len(listed), len(listed))
    assert [f.source for f in report.failed] == [str(tmp_path / "missing.png")]
    listing.write_text("\n".join(lines[1:]))  # the first entry dropped from the list: gone
    again = _ray(chroma_server, "listed", listing)
    assert (again.removed, again.embedded, again.unchanged) == (1, 0, len(listed) - 1)
    assert len(snapshot(*chroma_server, "listed")) == len(listed) - 1


def test_a_worker_killed_mid_job_ends_complete_without_duplicates(
    ray_local: None, chroma_server: tuple[str, int], demo_encoder: Any, images: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "worker-died"
    killer = ExitOnce(marker, after=3)  # the actor dies on its 4th batch, once
    report = _ray(chroma_server, "killed", images, model=killer)
    assert marker.exists()  # a worker process really died part-way
    assert (report.added, report.embedded, len(report.failed)) == (N_IMAGES, N_IMAGES, 1)
    killed = snapshot(*chroma_server, "killed")
    assert len(killed) == N_IMAGES  # no duplicates, nothing missing
    _single(demo_encoder, chroma_server, "clean", images)
    assert_same_collection(killed, snapshot(*chroma_server, "clean"))


def test_a_pool_that_leaves_no_cpu_for_reading_is_refused(
    ray_local: None, chroma_server: tuple[str, int], images: Path
) -> None:
    with pytest.raises(ValueError, match=r"2 worker\(s\) x 1 CPU leave no CPU for reading"):
        _ray(chroma_server, "no_room", images, num_workers=2, num_cpus_per_worker=1.0)


def test_without_ray_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, chroma_server: tuple[str, int], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingDependencyError, match=r"clip-multimodal\[ray\]"):
        _ray(chroma_server, "no_ray", tmp_path)


def test_documents_in_the_folder_sync_as_index_folder_syncs_them(
    ray_local: None, chroma_server: tuple[str, int], demo_encoder: Any, tmp_path: Path
) -> None:
    """A PDF among the images: its images are indexed (on the driver, one unit of sync per
    document), with the same records as index_folder, and a re-run reads nothing again."""
    from tests.document_helpers import make_pdf, noise

    folder = tmp_path / "mixed"
    write_images(folder, 8)
    make_pdf(folder / "report.pdf", [("one", [(noise(1), (10, 10, 80, 80))]), ("two", [])])
    single = _single(demo_encoder, chroma_server, "mixed_single", folder)
    report = _ray(chroma_server, "mixed_ray", folder)
    assert str(report) == str(single) and report.document_images == 1
    assert_same_collection(
        snapshot(*chroma_server, "mixed_ray"), snapshot(*chroma_server, "mixed_single")
    )
    again = _ray(chroma_server, "mixed_ray", folder)
    assert (again.added, again.embedded, again.unchanged) == (0, 0, single.added)
