"""Image inputs, interpreted once: classify, read, probe and decode every kind safely.

`load_image` accepts paths, http(s) URLs, bytes, binary file objects (BytesIO), base64
strings, data: URIs, PIL images and uint8 arrays. It applies EXIF orientation, turns every
mode into RGB (transparency on white), takes the first frame of animations and refuses
decompression bombs. Every failure is an `ImageLoadError` that names the input. URLs are
fetched with the stdlib only.

The layers, each used by everything above it: `_kinds` (what an input is: `classify`),
`_access` (where paths and URLs may reach), `_files`/`_fetch`/`_read` (its encoded bytes),
`_header` (the one header reader), `_decode` (pixels) and `_source` (the typed source the
index and the device pipeline read). A new input kind is a branch in `classify` and a
reader in `read_classified`.
"""

from clip_multimodal._pixels import decode_cost
from clip_multimodal.images._access import AccessDeniedError, AccessPolicy, parse_url
from clip_multimodal.images._decode import load_image, to_base64, to_data_uri
from clip_multimodal.images._fetch import fetch_url
from clip_multimodal.images._files import file_fingerprint, sha256_file
from clip_multimodal.images._header import ImageHeader, plain_format, read_header
from clip_multimodal.images._kinds import (
    IMAGE_EXTENSIONS,
    IMAGE_PATTERNS,
    SourceKind,
    classify,
    describe_source,
    is_image_query,
    is_image_reference,
    scanned_file,
)
from clip_multimodal.images._kinds import _classify as _classify  # read by the rule's tests
from clip_multimodal.images._limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
)
from clip_multimodal.images._read import EncodedImage, decode_base64, read_bytes, read_encoded
from clip_multimodal.images._source import (
    ImageInfo,
    ImageSource,
    load_image_with_info,
    read_image_source,
)
from clip_multimodal.types import ImageInput

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "IMAGE_PATTERNS",
    "AccessDeniedError",
    "AccessPolicy",
    "EncodedImage",
    "ImageHeader",
    "ImageInfo",
    "ImageInput",
    "ImageSource",
    "SourceKind",
    "classify",
    "decode_base64",
    "decode_cost",
    "describe_source",
    "fetch_url",
    "file_fingerprint",
    "is_image_query",
    "is_image_reference",
    "load_image",
    "load_image_with_info",
    "parse_url",
    "plain_format",
    "read_bytes",
    "read_encoded",
    "read_header",
    "read_image_source",
    "scanned_file",
    "sha256_file",
    "to_base64",
    "to_data_uri",
]
