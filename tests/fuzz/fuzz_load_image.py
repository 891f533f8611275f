"""atheris harness for `load_image`: any exception other than ImageLoadError is a crash.

    python tests/fuzz/fuzz_load_image.py WORK_DIR tests/fuzz/corpus -max_total_time=60

libFuzzer writes the inputs it finds to the first directory, so give it a scratch one and
the committed seed corpus second (`make fuzz` does). The first byte of an input picks how
the rest is handed over: as bytes, as a base64 data: URI, or as a string (a path or base64;
http(s) URLs are skipped, the harness never uses the network).
"""

from __future__ import annotations

import base64
import sys

import atheris
import numpy  # noqa: F401  - imported before instrumenting: it is not ours to fuzz

with atheris.instrument_imports(include=["clip_multimodal", "PIL"]):
    from PIL import Image

    from clip_multimodal.errors import ImageLoadError
    from clip_multimodal.images import load_image

    Image.init()  # the format plugins, which PIL would import lazily (uninstrumented)

# Small caps keep each input fast; the caps themselves are what is exercised.
LIMITS = {"max_pixels": 2**22, "max_bytes": 2**20, "max_decode_bytes": 64 * 2**20}


def _source(data: bytes) -> bytes | str | None:
    if not data:
        return data
    kind, rest = data[0] % 3, data[1:]
    if kind == 0:
        return rest
    if kind == 1:
        return "data:image/png;base64," + base64.b64encode(rest).decode()
    text = rest.decode("utf-8", "surrogateescape")
    return None if text.lstrip().lower().startswith(("http:", "https:")) else text


def test_one_input(data: bytes) -> None:
    source = _source(data)
    if source is None:
        return
    try:
        image = load_image(source, **LIMITS)
    except ImageLoadError:
        return
    if image.mode != "RGB":
        raise AssertionError(f"load_image returned mode {image.mode}, not RGB")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
