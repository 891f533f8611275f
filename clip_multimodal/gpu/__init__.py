"""The device image pipeline: nvJPEG decode, on-device preprocessing, overlapped stages.

`GPUImagePipeline(encoder).embed_files(paths)` embeds files with decoding (JPEG batches on the
GPU), resizing, cropping and normalizing on the encoder's device, and `add_to_index` streams
the vectors into an `ImageIndex` while the next batch embeds. Everything also runs on the
CPU, where the tests compare each stage with the reference path.
"""

from clip_multimodal.gpu.decode import JpegDecoder, Loaded, load_payload, route
from clip_multimodal.gpu.pipeline import EmbeddedBatch, GPUImagePipeline, fit_batch_size
from clip_multimodal.gpu.transforms import (
    PreprocessSpec,
    UnsupportedPreprocessError,
    preprocess_batch,
)

__all__ = [
    "EmbeddedBatch",
    "GPUImagePipeline",
    "JpegDecoder",
    "Loaded",
    "PreprocessSpec",
    "UnsupportedPreprocessError",
    "fit_batch_size",
    "load_payload",
    "preprocess_batch",
    "route",
]
