"""CLIPEncoder: CLIP's two towers behind one object, batched, threaded and exact."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from clip_multimodal import zeroshot
from clip_multimodal._cpu_precision import cpu_prefers_bf16, low_precision_ready
from clip_multimodal.devices import pick_device
from clip_multimodal.errors import ImageLoadError
from clip_multimodal.images import DEFAULT_MAX_DECODE_BYTES, describe_source, load_image
from clip_multimodal.models import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    ModelSpec,
    Precision,
    resolve_model,
)
from clip_multimodal.text import Template, TextTower, tokenize
from clip_multimodal.types import ImageEmbeddings, ImageInput, ImagePipeline

__all__ = ["CLIPEncoder", "Precision"]


def pick_precision(precision: Precision, device: torch.device) -> Precision:
    """`auto` means bf16 (or fp16) on an accelerator; on the CPU, bf16 where it executes bf16
    natively and measurably faster (`_cpu_precision`), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_prefers_bf16() else "fp32"


class CLIPEncoder:
    """Embeds texts and images with a CLIP model (open_clip, transformers or Chinese-CLIP).

    Args:
        model_name: an open_clip architecture (`ViT-B-32`), `hf-hub:org/repo`,
            `local-dir:PATH` (a folder with open_clip_config.json and weights),
            `transformers:ORG/REPO` or `transformers:PATH` (a Hugging Face CLIP, SigLIP or
            Chinese-CLIP checkpoint), `cn-clip:ARCH` (Chinese-CLIP's own checkpoints), or
            `clip-multimodal-demo` (the bundled demo model).
        pretrained: for an architecture name, a pretrained tag or a local weights file; for
            `cn-clip:ARCH`, a checkpoint file (None: cn_clip's download of ARCH).
        device: `auto` (cuda, then mps, then cpu) or a torch device string.
        precision: `auto` (bf16/fp16 on GPU; on the CPU bf16 where it runs bf16 natively and
            faster, else fp32), `fp32`, `fp16` or `bf16`.
        batch_size: items per forward pass (default 32 on CPU, 256 on GPU).
        num_workers: threads decoding and preprocessing images.
        device_pipeline: decode JPEGs (nvJPEG) and preprocess on the model's device, with
            reads, decoding, the model and writes overlapped (`clip_multimodal.gpu`).
            Default: on for CUDA, off elsewhere.
        max_decode_bytes: the decode budget of each image (see `load_image`); None: none.

    The first five are a `ModelSpec`'s fields (`CLIPEncoder.from_spec(spec)` takes one);
    `spec` reports them, with what `auto` and None chose.

    Every embedding is float32, shape (n, dim), L2-normalized. One encoder is safe to share
    between threads.

    Example:
        >>> enc = CLIPEncoder("local-dir:/models/my-clip")
        >>> enc.embed_texts(["a red circle"]).shape
        (1, 128)
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        pretrained: str | None = DEFAULT_PRETRAINED,
        *,
        device: str | torch.device = "auto",
        precision: Precision = "auto",
        batch_size: int | None = None,
        num_workers: int | None = None,
        device_pipeline: bool | None = None,
        max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES,
    ) -> None:
        asked = ModelSpec(model_name, pretrained, str(device), precision, batch_size)
        self.model_name = asked.model
        self.pretrained = asked.pretrained
        self.device = pick_device(asked.device)
        self.precision = pick_precision(asked.precision, self.device)
        self.batch_size = asked.batch_size or (32 if self.device.type == "cpu" else 256)
        #: The model spec this encoder runs, with the device, precision and batch size chosen.
        self.spec = dataclasses.replace(
            asked, device=str(self.device), precision=self.precision, batch_size=self.batch_size
        )
        self._resolved = resolve_model(self.model_name, self.pretrained)
        self.model, self.preprocess, self.tokenizer = self._load()
        # open_clip's cast leaves a Hugging Face text tower half fp32 (the other families cast
        # their own models whole): `auto` never picks what this model cannot run.
        if (
            asked.precision == "auto"
            and self._resolved.family == "open_clip"
            and not low_precision_ready(self.precision, self.model)
        ):
            self.precision = "fp32"
            self.spec = dataclasses.replace(self.spec, precision="fp32")
            self.model, self.preprocess, self.tokenizer = self._load()
        self._text = TextTower(self.model)
        self._input_dtype = _parameter_dtype(self.model.visual)
        self._lock = threading.Lock()
        self._workers = num_workers or min(8, os.cpu_count() or 1)
        self.max_decode_bytes = max_decode_bytes
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._dim: int | None = None
        wanted = self.device.type == "cuda" if device_pipeline is None else device_pipeline
        self._device_pipeline = _make_device_pipeline(self) if wanted else None

    @classmethod
    def from_spec(cls, spec: ModelSpec, **options: Any) -> CLIPEncoder:
        """Load the model a spec names; `options` are the other keyword arguments
        (num_workers, device_pipeline, max_decode_bytes)."""
        return cls(
            spec.model,
            spec.pretrained,
            device=spec.device,
            precision=spec.precision,
            batch_size=spec.batch_size,
            **options,
        )

    def _load(self) -> tuple[Any, Callable[[Any], torch.Tensor], Any]:
        # The one point where families differ: open_clip, transformers or cn_clip code loads.
        from clip_multimodal.families import load_model

        loaded = load_model(self._resolved, self.device, self.precision)
        return loaded.towers, loaded.preprocess, loaded.tokenizer

    # -- properties ---------------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """Architecture plus exact weights, e.g. `ViT-B-32/laion2b_s34b_b79k` or `name@sha256:…`."""
        return self._resolved.model_id

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.embed_texts([""]).shape[1])
        return self._dim

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", 77))

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the image tower takes pixels in (bf16/fp16 on accelerators)."""
        return self._input_dtype

    @property
    def uses_device_pipeline(self) -> bool:
        """Whether images are decoded and preprocessed on the model's device."""
        return self._device_pipeline is not None

    @property
    def trims_text_padding(self) -> bool:
        """Whether text batches run trimmed to their longest sequence (exact for this tower)."""
        return self._text.trims

    def __repr__(self) -> str:
        return f"CLIPEncoder({self.model_id!r}, device={self.device.type!r}, precision={self.precision!r})"

    # -- texts --------------------------------------------------------------------------------

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts in batches sorted by length, so each batch is trimmed tightly."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = tokenize(self.tokenizer, texts, self.context_length)
        order = torch.argsort((tokens != 0).sum(dim=1), stable=True)
        chunks = [self._forward_text(tokens[idx]) for idx in torch.split(order, self.batch_size)]
        out = np.concatenate(chunks)
        result = np.empty_like(out)
        result[order.numpy()] = out
        return result

    @torch.inference_mode()
    def _forward_text(self, tokens: torch.Tensor) -> np.ndarray:
        with self._lock:
            features = self._text.encode(tokens.to(self.device))
        return _normalized(features)

    # -- images -------------------------------------------------------------------------------

    def embed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Embed images; raises ImageLoadError (naming the input) if any cannot be loaded."""
        return self.try_embed_images(images).vectors_or_raise()

    def try_embed_images(self, images: Sequence[ImageInput]) -> ImageEmbeddings:
        """Embed what loads; report each failed input instead of raising."""
        images = list(images)
        if self._device_pipeline is not None:
            return self._device_pipeline.embed(images)
        vectors: list[np.ndarray] = []
        indices: list[int] = []
        errors: dict[int, ImageLoadError] = {}
        for start, prepared in self._prepared_batches(images):
            good = []
            for offset, future in enumerate(prepared):
                try:
                    good.append((start + offset, future.result()))
                except ImageLoadError as exc:
                    errors[start + offset] = exc
            if good:
                indices += [i for i, _ in good]
                vectors.append(self._forward_images(torch.stack([t for _, t in good])))
        dim = vectors[0].shape[1] if vectors else self.dim
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)
        return ImageEmbeddings(stacked, indices, errors)

    def _prepared_batches(
        self, images: list[ImageInput]
    ) -> Iterator[tuple[int, list[Future[torch.Tensor]]]]:
        """Yield batches of preprocessing futures, one batch ahead, so decoding overlaps the model."""
        starts = range(0, len(images), self.batch_size)
        submit = self._submit_batch
        pending = submit(images[0 : self.batch_size]) if images else []
        for start in starts:
            current = pending
            nxt = start + self.batch_size
            pending = submit(images[nxt : nxt + self.batch_size]) if nxt < len(images) else []
            yield start, current

    def _submit_batch(self, batch: Sequence[ImageInput]) -> list[Future[torch.Tensor]]:
        pool = self._get_pool()
        return [pool.submit(self._prepare, source) for source in batch]

    def _get_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:  # not the model lock: queuing decodes must not wait on a forward
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="clip-preprocess")
            return self._pool

    def _prepare(self, source: ImageInput) -> torch.Tensor:
        image = load_image(source, max_decode_bytes=self.max_decode_bytes)
        try:
            return self.preprocess(image)
        except Exception as exc:  # a transform failing on one image must not sink the batch
            raise ImageLoadError(describe_source(source), f"preprocessing failed: {exc}") from exc

    def embed_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Embed a batch of already preprocessed pixels, shape (n, 3, H, W) (`PixelEncoder`)."""
        return self._forward_images(pixels)

    @torch.inference_mode()
    def _forward_images(self, pixels: torch.Tensor) -> np.ndarray:
        # Non-blocking only from pinned memory: from pageable memory it is a blocking copy.
        pixels = pixels.to(self.device, dtype=self._input_dtype, non_blocking=pixels.is_pinned())
        with self._lock:
            features = self.model.encode_image(pixels)
        return _normalized(features)

    # -- async --------------------------------------------------------------------------------

    async def aembed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Like embed_texts, run in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed_texts, texts)

    async def aembed_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Like embed_images, run in a worker thread so the event loop stays free."""
        return await asyncio.to_thread(self.embed_images, images)

    # -- zero-shot ----------------------------------------------------------------------------

    def class_embeddings(
        self, labels: Sequence[str], templates: Sequence[Template] | None = None
    ) -> np.ndarray:
        """One normalized embedding per label: the mean over its prompt templates."""
        if not labels:
            raise ValueError("classify needs at least one label")
        templates = list(templates) if templates else zeroshot.default_templates()
        per_prompt = self.embed_texts(zeroshot.prompts(labels, templates))
        return zeroshot.class_means(per_prompt, len(labels))

    def classify(
        self,
        images: Sequence[ImageInput],
        labels: Sequence[str],
        templates: Sequence[Template] | None = None,
    ) -> np.ndarray:
        """Zero-shot classification: per-label probabilities, shape (n_images, n_labels).

        Class embeddings average the prompt templates (default: open_clip's OpenAI ImageNet
        templates); logits use the model's own learned logit scale.
        """
        classes = self.class_embeddings(labels, templates)
        logits = self.embed_images(images) @ classes.T * self.logit_scale
        return zeroshot.softmax(logits).astype(np.float32)

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().float().exp().clamp(max=100).item())

    def close(self) -> None:
        """Stop the preprocessing threads (also done at interpreter exit)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _make_device_pipeline(encoder: CLIPEncoder) -> ImagePipeline | None:
    """The device pipeline, or None where the model's preprocessing can't be mirrored there.

    The pipeline is a strategy this encoder embeds through: it takes the encoder as a
    `PixelEncoder` and never imports this module, so the dependency runs one way.
    """
    from clip_multimodal.gpu import GPUImagePipeline, UnsupportedPreprocessError

    try:
        return GPUImagePipeline(encoder)
    except UnsupportedPreprocessError as exc:
        warnings.warn(
            f"device image pipeline off for {encoder.model_id}: {exc}; using CPU preprocessing",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed_texts takes a list of strings, not a single string")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"embed_texts: item {bad[0]} is {type(texts[bad[0]]).__name__}, not str")
    return list(texts)


def _normalized(features: torch.Tensor) -> np.ndarray:
    out: np.ndarray = F.normalize(features.float(), dim=-1).cpu().numpy()
    return out.astype(np.float32, copy=False)


def _parameter_dtype(module: torch.nn.Module) -> torch.dtype:
    # open_clip's low-precision cast skips some parameters (class embedding), never conv1.
    conv1 = getattr(module, "conv1", None)
    if isinstance(conv1, torch.nn.Module):
        return next(conv1.parameters()).dtype
    return next(module.parameters()).dtype
