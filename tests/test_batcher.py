"""The micro-batcher: concurrent requests share encoder calls, and each gets its own slice.

FakeEncoder records every call, so these tests see exactly how requests were merged. The
real model goes through the same batcher in test_server.py.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pytest
from PIL import Image

from clip_multimodal.server.batcher import BatcherClosedError, MicroBatcher
from clip_multimodal.testing import FakeEncoder
from clip_multimodal.types import ImageEmbeddings, ImageInput


class GatedEncoder(FakeEncoder):
    """A FakeEncoder whose first call waits for `gate`, so later requests pile up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def _hold(self) -> None:
        if not self.entered.is_set():
            self.entered.set()
            assert self.gate.wait(10), "the test never opened the gate"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self._hold()
        return super().embed_texts(texts)

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        self._hold()
        return super().try_embed_images(images)


def _png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), color).save(buf, format="PNG")
    return buf.getvalue()


def _pile_up(batcher: MicroBatcher, encoder: GatedEncoder, first: list[str]):
    """Submit `first`, wait until the worker is stuck inside the encoder with it."""
    future = batcher.submit_texts(first)
    assert encoder.entered.wait(5)
    return future


def test_concurrent_requests_share_one_encoder_call() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        queued = [batcher.submit_texts([f"text {i}", f"more {i}"]) for i in range(10)]
        encoder.gate.set()
        head.result(5)
        results = [f.result(5) for f in queued]
    # One call for the head, then ONE call for all ten waiting requests (20 texts).
    assert encoder.calls == [("embed_texts", 1), ("embed_texts", 20)]
    reference = FakeEncoder()
    for i, vectors in enumerate(results):
        expected = reference.embed_texts([f"text {i}", f"more {i}"])
        np.testing.assert_allclose(vectors, expected, rtol=1e-6)


def test_max_batch_caps_each_call_without_splitting_a_request() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=5, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        queued = [batcher.submit_texts([f"a{i}", f"b{i}"]) for i in range(6)]  # 12 texts
        encoder.gate.set()
        head.result(5)
        for f in queued:
            assert f.result(5).shape == (2, encoder.dim)
    sizes = [n for _, n in encoder.calls[1:]]
    assert sizes == [4, 4, 4]  # two 2-text requests fit under 5; a third would not
    assert sum(sizes) == 12


def test_max_batch_one_runs_every_request_alone() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=1, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        queued = [batcher.submit_texts([f"t{i}"]) for i in range(5)]
        encoder.gate.set()
        head.result(5)
        [f.result(5) for f in queued]
    assert encoder.calls == [("embed_texts", 1)] * 6


def test_a_request_larger_than_max_batch_still_runs() -> None:
    encoder = FakeEncoder()
    with MicroBatcher(encoder, max_batch=2) as batcher:
        vectors = batcher.submit_texts([f"t{i}" for i in range(7)]).result(5)
    assert vectors.shape == (7, encoder.dim)


def test_under_load_the_wait_window_gathers_requests_from_many_threads() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.5) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        queued = [batcher.submit_texts(["a"]), batcher.submit_texts(["b"])]
        encoder.gate.set()
        head.result(5)
        [f.result(5) for f in queued]
        assert encoder.calls[1] == ("embed_texts", 2)  # merged: now counts as under load
        barrier = threading.Barrier(8)
        futures: list[Future[np.ndarray] | None] = [None] * 8

        def client(i: int) -> None:
            barrier.wait()
            futures[i] = batcher.submit_texts([f"client {i}"])

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for f in futures:
            assert f is not None
            f.result(5)
    later = encoder.calls[2:]
    assert len(later) <= 2 and sum(n for _, n in later) == 8, later


def test_a_failing_request_does_not_fail_its_batch_neighbours() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        good_before = batcher.submit_texts(["fine"])
        bad = batcher.submit_texts([42])  # type: ignore[list-item]  # the encoder raises
        good_after = batcher.submit_texts(["also fine"])
        encoder.gate.set()
        head.result(5)
        assert good_before.result(5).shape == (1, encoder.dim)
        assert good_after.result(5).shape == (1, encoder.dim)
        with pytest.raises(AttributeError):
            bad.result(5)
        # The worker survived and keeps serving.
        assert batcher.submit_texts(["later"]).result(5).shape == (1, encoder.dim)


def test_image_errors_stay_with_their_own_request_and_position() -> None:
    encoder = GatedEncoder()
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        first = batcher.submit_images([red, b"not an image", blue])
        second = batcher.submit_images([blue, red])
        encoder.gate.set()
        head.result(5)
        a, b = first.result(5), second.result(5)
    assert ("embed_images", 5) in encoder.calls  # both requests in one image pass
    assert a.indices == [0, 2] and list(a.errors) == [1]
    assert "<bytes: 12 B>" in str(a.errors[1])  # the error names its own input
    assert b.indices == [0, 1] and not b.errors
    reference = FakeEncoder()
    np.testing.assert_allclose(a.vectors, reference.embed_images([red, blue]), rtol=1e-6)
    np.testing.assert_allclose(b.vectors, reference.embed_images([blue, red]), rtol=1e-6)


def test_texts_and_images_in_one_window_each_get_their_pass() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        texts = batcher.submit_texts(["a", "b"])
        images = batcher.submit_images([_png((0, 255, 0))])
        encoder.gate.set()
        head.result(5)
        assert texts.result(5).shape == (2, encoder.dim)
        assert images.result(5).vectors.shape == (1, encoder.dim)
    assert sorted(encoder.calls[1:]) == [("embed_images", 1), ("embed_texts", 2)]


def test_a_cancelled_request_is_dropped_before_it_costs_a_pass() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        dropped = batcher.submit_texts(["nobody waits for me", "nor me"])
        kept = batcher.submit_texts(["kept"])
        assert dropped.cancel()
        encoder.gate.set()
        head.result(5)
        assert kept.result(5).shape == (1, encoder.dim)
    assert encoder.calls == [("embed_texts", 1), ("embed_texts", 1)]


async def test_the_async_api_runs_concurrent_awaits_together() -> None:
    encoder = GatedEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0) as batcher:
        head = _pile_up(batcher, encoder, ["head"])
        tasks = [asyncio.create_task(batcher.embed_texts([f"q{i}"])) for i in range(6)]
        await asyncio.sleep(0.05)  # every task submits, then waits behind the head
        encoder.gate.set()
        results = await asyncio.gather(*tasks)
        head.result(5)
    assert encoder.calls[1:] == [("embed_texts", 6)]
    reference = FakeEncoder()
    np.testing.assert_allclose(results[3], reference.embed_texts(["q3"]), rtol=1e-6)


def test_close_finishes_queued_work_and_refuses_new_work() -> None:
    encoder = FakeEncoder()
    batcher = MicroBatcher(encoder, max_wait_s=0.01)
    pending = batcher.submit_texts(["queued before close"])
    batcher.close()
    assert pending.result(1).shape == (1, encoder.dim)
    with pytest.raises(BatcherClosedError):
        batcher.submit_texts(["too late"])


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(FakeEncoder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait_s"):
        MicroBatcher(FakeEncoder(), max_wait_s=-1)


def test_a_lone_request_on_an_idle_batcher_does_not_wait_for_the_window() -> None:
    encoder = FakeEncoder()
    with MicroBatcher(encoder, max_wait_s=2.0) as batcher:
        for _ in range(3):  # one client, one request at a time: never under load
            start = time.perf_counter()
            batcher.submit_texts(["alone"]).result(5)
            assert time.perf_counter() - start < 1.0  # far under the 2 s window


class SlowImageEncoder(FakeEncoder):
    """Decoding each image takes 0.1 s, as a big one does; records how many were decoded."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = 0

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        for _ in images:
            time.sleep(0.1)
            self.decoded += 1
        return super().try_embed_images(images)


async def test_a_request_that_gives_up_stops_its_decoding() -> None:
    encoder = SlowImageEncoder()
    images = [_png((i, 0, 0)) for i in range(40)]  # 4 s of decoding
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.0, image_slice=4) as batcher:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.embed_images(images), 0.5)
        started = time.perf_counter()
        vectors = await batcher.embed_texts(["the next request"])
        waited = time.perf_counter() - started
    assert vectors.shape == (1, encoder.dim)
    assert waited < 0.8, f"the next request waited {waited:.1f}s"
    assert encoder.decoded <= 12, encoder.decoded  # the slice running at the deadline, at most


async def test_a_request_that_gives_up_leaves_its_batch_neighbours_whole() -> None:
    encoder = SlowImageEncoder()
    with MicroBatcher(encoder, max_batch=64, max_wait_s=0.05, image_slice=2) as batcher:
        gives_up = asyncio.create_task(batcher.embed_images([_png((9, 9, 9))] * 10))
        waits = asyncio.create_task(
            batcher.embed_images([_png((200, 0, 0)), b"bad", _png((0, 0, 200))])
        )
        await asyncio.sleep(0.15)
        gives_up.cancel()
        result = await waits
    assert result.indices == [0, 2] and list(result.errors) == [1]
    reference = FakeEncoder().embed_images([_png((200, 0, 0)), _png((0, 0, 200))])
    np.testing.assert_allclose(result.vectors, reference, rtol=1e-6)
    assert encoder.decoded < 13
