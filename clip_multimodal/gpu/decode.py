"""Decoding for the device pipeline: nvJPEG batches on the GPU, libpng and PIL on the CPU.

Reader threads turn each input into a `Loaded`: JPEG bytes that the device decodes in one
batched call, or pixels decoded right there on the CPU (PNG through libpng; every other
format, and anything the header probe does not trust, through `load_image`, the reference
path). A JPEG the device decoder rejects falls back to PIL too, so one odd file never sinks a
batch, and a file nothing can decode is reported by name. The device decoder's pixels are
not bit-exact: nvJPEG upsamples 4:2:0 chroma its own way (benchmarks/gpu.py measures the
difference and gates on the embeddings' cosine to the CPU path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from clip_multimodal.errors import ImageLoadError
from clip_multimodal.gpu.memory import is_out_of_memory
from clip_multimodal.images import (
    ImageSource,
    classify,
    load_image,
    plain_format,
    read_bytes,
)
from clip_multimodal.images._header import jpeg_size
from clip_multimodal.types import ImageInput

__all__ = ["JpegDecoder", "Loaded", "load_payload", "pil_pixels", "route"]

Route = Literal["jpeg", "png", "pil"]


@dataclass
class Loaded:
    """One input as the reader thread leaves it.

    Exactly one of `jpeg` (bytes for the device decoder), `pixels` (uint8 (3, H, W) on the
    CPU) and `error` is set. `info` carries whatever the caller's reader attached (the
    index's record facts).
    """

    desc: str
    jpeg: bytes | None = None
    pixels: torch.Tensor | None = None
    error: ImageLoadError | None = None
    info: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the decoded image, from the header for JPEG bytes."""
        if self.pixels is not None:
            return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])
        return (jpeg_size(self.jpeg) if self.jpeg else None) or (0, 0)

    @property
    def host_bytes(self) -> int:
        """What this input holds in host memory while it waits for the decode stage."""
        if self.pixels is not None:
            return int(self.pixels.numel())
        return len(self.jpeg or b"")


def route(data: bytes) -> Route:
    """Which decoder reproduces `load_image` for these bytes, from the header alone.

    The fast decoders get only what they decode as `load_image` does (the image layer's
    `plain_format`: complete baseline 8-bit JPEGs without rotation, plain PNGs, within the
    pixel cap; libpng exactly, nvJPEG within a measured tolerance). Everything else
    (progressive, lossless, arithmetic-coded, truncated or rotated JPEGs…) goes to PIL,
    which also produces the error message.
    """
    return plain_format(data) or "pil"


def pil_pixels(source: ImageInput, desc: str) -> torch.Tensor:
    """The reference decode (`load_image`) as a uint8 (3, H, W) tensor."""
    try:
        rgb = load_image(source)
    except ImageLoadError as exc:
        raise ImageLoadError(desc, exc.reason) from exc  # name the input, not "<bytes: …>"
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)


def _png_pixels(data: bytes, desc: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_png

    try:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        pixels: torch.Tensor = decode_png(buffer, mode=ImageReadMode.RGB)
        return pixels
    except RuntimeError:  # libpng refused what PIL's header parse accepted: use PIL
        return pil_pixels(data, desc)


def load_payload(payload: ImageInput, desc: str | None = None, info: Any = None) -> Loaded:
    """Read one input and route it; runs in a reader thread. Never raises ImageLoadError.

    When `info` is the `ImageSource` this payload came from, its header facts decide the
    route: the header is not scanned a second time.
    """
    desc = desc or classify(payload).desc
    try:
        if isinstance(payload, (Image.Image, np.ndarray)):
            return Loaded(desc, pixels=pil_pixels(payload, desc), info=info)
        data = payload if isinstance(payload, bytes) else read_bytes(payload)
        probed = isinstance(info, ImageSource) and info.payload is payload
        kind = (info.plain if probed else plain_format(data)) or "pil"
        if kind == "jpeg":
            return Loaded(desc, jpeg=data, info=info)
        pixels = _png_pixels(data, desc) if kind == "png" else pil_pixels(data, desc)
        return Loaded(desc, pixels=pixels, info=info)
    except ImageLoadError as exc:
        error = exc if exc.source == desc else ImageLoadError(desc, exc.reason)
        return Loaded(desc, error=error, info=info)


class JpegDecoder:
    """Batched JPEG decoding on one device, from one reused (pinned, on CUDA) host buffer.

    Not thread-safe: one pipeline's decode stage owns it. On CUDA the caller must finish the
    batch's device work (synchronize) before the next `decode`, which refills the buffer.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._pin = device.type == "cuda"
        self._buffer = torch.empty(0, dtype=torch.uint8)

    def _pack(self, datas: Sequence[bytes]) -> list[torch.Tensor]:
        total = sum(len(d) for d in datas)
        if self._buffer.numel() < total:
            size = 1 << max(20, (total - 1).bit_length())  # grow by powers of two
            self._buffer = torch.empty(size, dtype=torch.uint8, pin_memory=self._pin)
        host = self._buffer.numpy()
        views, offset = [], 0
        for data in datas:
            host[offset : offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
            views.append(self._buffer[offset : offset + len(data)])
            offset += len(data)
        return views

    def decode(self, datas: Sequence[bytes]) -> list[torch.Tensor | None]:
        """uint8 (3, H, W) tensors on the device; None where this decoder failed.

        Raises:
            RuntimeError: the device ran out of memory (`is_out_of_memory`): the caller
                decodes fewer at a time; that is no verdict on the files.
        """
        if not datas:
            return []
        return self._decode_views(self._pack(datas))

    def _decode_views(self, views: list[torch.Tensor]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return list(decode_jpeg(views, mode=ImageReadMode.RGB, device=self.device))
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise
            if len(views) == 1:
                return [None]
        # One bad file fails the whole batched call (no partial results): halve to find it,
        # so it costs about 2·log2(n) calls, not n.
        half = len(views) // 2
        return self._decode_views(views[:half]) + self._decode_views(views[half:])
