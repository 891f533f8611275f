"""One model spec: every entry point that names a model builds the same `ModelSpec`.

The encoder, the Chroma function, the CLI, the server settings and both adapters take the
model, its weights, the device, the precision and the batch size; they all build (and
validate) one `ModelSpec`, and the encoder each of them loads reports that spec back. The
adapters' halves of this check live in their own test folders
(`test_embeddings.py::test_fields_are_one_model_spec` in each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clip_multimodal.cli import main
from clip_multimodal.cli._context import model_spec
from clip_multimodal.cli._parser import build_parser
from clip_multimodal.encoder import CLIPEncoder
from clip_multimodal.errors import InvalidModelSpecError
from clip_multimodal.models import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DEMO_MODEL,
    DEMO_MODEL_NAME,
    ModelSpec,
)

#: The demo model on the CPU at fp32, 8 items per forward pass: what every place is asked for.
SPEC = ModelSpec(DEMO_MODEL_NAME, None, device="cpu", precision="fp32", batch_size=8)


# -- the spec itself --------------------------------------------------------------------------


def test_defaults_name_one_model_and_tag() -> None:
    spec = ModelSpec()
    assert (spec.model, spec.pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED)
    assert (spec.device, spec.precision, spec.batch_size) == ("auto", "auto", None)


@pytest.mark.parametrize(
    "model",
    [DEMO_MODEL_NAME, DEMO_MODEL, "local-dir:/models/x", "hf-hub:org/repo"],
    ids=["alias", "demo-path", "local-dir", "hf-hub"],
)
def test_a_model_that_names_its_weights_takes_no_tag(model: str) -> None:
    assert ModelSpec(model, "laion2b_s34b_b79k").pretrained is None
    assert ModelSpec(model).pretrained is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", ""),
        ("model", 3),
        ("pretrained", 3),
        ("device", ""),
        ("device", None),
        ("precision", "fp8"),
        ("batch_size", 0),
        ("batch_size", "8"),
        ("batch_size", True),
    ],
)
def test_a_bad_field_is_a_typed_error_naming_it(field: str, value: Any) -> None:
    with pytest.raises(InvalidModelSpecError, match=field) as info:
        ModelSpec(**{field: value})
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


# -- six places, one spec ---------------------------------------------------------------------


def _from_encoder() -> Any:
    encoder = CLIPEncoder(DEMO_MODEL_NAME, device="cpu", precision="fp32", batch_size=8)
    return encoder.spec, encoder


def _from_chroma_function() -> Any:
    from clip_multimodal.chroma import CLIPEmbeddingFunction

    ef = CLIPEmbeddingFunction(DEMO_MODEL_NAME, device="cpu", precision="fp32", batch_size=8)
    return ef.spec, ef.encoder


def _from_cli() -> Any:
    from clip_multimodal.cli._context import open_encoder

    argv = ["search", "x", "--model", DEMO_MODEL_NAME, "--device", "cpu"]
    args = build_parser().parse_args([*argv, "--precision", "fp32", "--batch-size", "8"])
    return model_spec(args), open_encoder(args)


def _from_server_settings() -> Any:
    from clip_multimodal.server.app import _load_encoder
    from clip_multimodal.server.settings import ServerSettings

    settings = ServerSettings(model_spec=SPEC)
    return settings.model_spec, _load_encoder(settings)


PLACES: dict[str, Callable[[], Any]] = {
    "encoder": _from_encoder,
    "chroma-function": _from_chroma_function,
    "cli": _from_cli,
    "server-settings": _from_server_settings,
}


@pytest.mark.parametrize("place", PLACES)
def test_every_place_builds_the_same_spec_and_loads_it(
    place: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import clip_multimodal.chroma

    # The Chroma function shares encoders process-wide; this one must not serve other tests.
    monkeypatch.setattr(clip_multimodal.chroma, "_ENCODERS", {})
    spec, encoder = PLACES[place]()
    assert spec == SPEC
    assert encoder.spec == SPEC  # what was loaded is what was asked for
    assert (encoder.precision, encoder.batch_size, str(encoder.device)) == ("fp32", 8, "cpu")


def test_the_encoder_loads_from_a_spec(demo_encoder: Any) -> None:
    encoder = CLIPEncoder.from_spec(SPEC)
    assert encoder.spec == SPEC and encoder.model_id == demo_encoder.model_id
    # A spec left on `auto` reports what was chosen: the encoder's spec rebuilds it exactly.
    chosen = demo_encoder.precision  # fp32, or bf16 on a CPU that runs it natively and faster
    assert demo_encoder.spec == ModelSpec(DEMO_MODEL, device="cpu", precision=chosen, batch_size=32)


# -- the CLI and the server gain --precision -------------------------------------------------


def test_cli_precision_reaches_the_encoder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["info", "--json", "--data-dir", str(tmp_path), "--device", "cpu"]
    assert main([*argv, "--model", DEMO_MODEL_NAME, "--precision", "bf16"]) == 1  # no index yet
    info = json.loads(capsys.readouterr().out)
    assert info["precision"] == "bf16"


def test_serve_precision_reaches_the_settings_and_the_encoder() -> None:
    from clip_multimodal.cli._commands import _settings
    from clip_multimodal.server.app import _load_encoder

    args = build_parser().parse_args(["serve", "--device", "cpu", "--precision", "bf16"])
    settings = _settings(args)
    assert settings.model_spec == ModelSpec(DEMO_MODEL, device="cpu", precision="bf16")
    encoder = _load_encoder(settings)
    assert isinstance(encoder, CLIPEncoder) and encoder.precision == "bf16"


def test_server_settings_keep_their_flat_model_fields() -> None:
    from clip_multimodal.server.settings import ServerSettings

    settings = ServerSettings(model="ViT-B-32", pretrained="some-tag", device="cpu")
    assert settings.model_spec == ModelSpec("ViT-B-32", "some-tag", device="cpu")
    assert ServerSettings().model_spec == ModelSpec(DEMO_MODEL)
    assert ServerSettings(device="cpu").model_spec == ModelSpec(DEMO_MODEL, device="cpu")
    pinned = ServerSettings(device="cpu", precision="fp32").model_spec
    assert pinned == ModelSpec(DEMO_MODEL, device="cpu", precision="fp32")
    with pytest.raises(ValueError, match="not both"):
        ServerSettings(model="ViT-B-32", model_spec=SPEC)
    # Settings are a pydantic dataclass: the spec's error arrives as a ValidationError.
    with pytest.raises(ValueError, match="invalid model spec: device"):
        ServerSettings(device="")


def test_bad_model_options_are_usage_errors_without_torch() -> None:
    script = """
import contextlib, io, json, sys
from clip_multimodal.cli import main
out = []
for argv in (["info", "--precision", "fp8"], ["info", "--batch-size", "0"],
             ["search", "x", "--device", ""]):
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        out.append([main(argv), err.getvalue()])
print(json.dumps({"results": out, "torch": "torch" in sys.modules}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(done.stdout)
    assert result["torch"] is False
    (precision, batch, device) = result["results"]
    assert precision[0] == batch[0] == device[0] == 2
    assert "--precision" in precision[1] and "fp8" in precision[1]
    assert "--batch-size" in batch[1]
    assert "--device" in device[1]
