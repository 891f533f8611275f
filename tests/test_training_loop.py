"""The training loop, its pieces, and local-dir checkpoints, on a tiny real open_clip model."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch

from clip_multimodal.datasets import shapes_samples
from clip_multimodal.training import (
    PairBatches,
    TrainConfig,
    cosine_lr,
    load_local_dir,
    make_optimizer,
    precision_at_k,
    recall_at_k,
    save_local_dir,
    train,
)
from clip_multimodal.training.checkpoint import WEIGHTS_FILE
from clip_multimodal.training.data import ShiftAndNormalize, images_to_uint8, tokenize

TINY_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
PREPROCESS_CFG: dict[str, Any] = {
    "size": 32,
    "mean": list(open_clip.OPENAI_DATASET_MEAN),
    "std": list(open_clip.OPENAI_DATASET_STD),
}


def _tiny_model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    return open_clip.CLIP(**TINY_CFG)


def _shape_batches(n: int = 96, batch_size: int = 32) -> PairBatches:
    samples = shapes_samples("train", n=n, seed=0, size=32)
    tokenizer = open_clip.SimpleTokenizer(context_length=16)
    images = images_to_uint8([s.image for s in samples], 32)
    tokens = tokenize(tokenizer, [s.caption for s in samples])
    transform = ShiftAndNormalize(PREPROCESS_CFG["mean"], PREPROCESS_CFG["std"], max_shift=2)
    return PairBatches(images, tokens, batch_size, transform)


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    # On a shared CPU, more torch threads than free cores slow training down many times.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_lowers_the_loss() -> None:
    model = _tiny_model()
    batches = _shape_batches()
    cfg = TrainConfig(epochs=8, batch_size=32, lr=2e-3, warmup_steps=3)
    losses = train(model, batches, cfg)
    assert len(losses) == 8
    assert all(math.isfinite(x) for x in losses)
    # Chance level for a batch of 32 is ln 32 ~ 3.47; training must move well below it.
    assert losses[-1] < losses[0] - 0.3
    assert not model.training


def test_training_is_reproducible_from_the_seed() -> None:
    cfg = TrainConfig(epochs=2, batch_size=32, warmup_steps=2, seed=3)
    first = train(_tiny_model(), _shape_batches(64), cfg)
    second = train(_tiny_model(), _shape_batches(64), cfg)
    assert first == second


def test_logit_scale_is_clamped_during_training() -> None:
    model = _tiny_model()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100) + 0.5)
    train(model, _shape_batches(64), TrainConfig(epochs=1, batch_size=32, lr=1e-3, warmup_steps=1))
    assert model.logit_scale.item() <= math.log(100) + 1e-6


def test_epoch_callback_sees_every_epoch() -> None:
    seen: list[tuple[int, float]] = []
    cfg = TrainConfig(epochs=2, batch_size=32, warmup_steps=1)
    losses = train(
        _tiny_model(), _shape_batches(64), cfg, on_epoch_end=lambda e, loss: seen.append((e, loss))
    )
    assert seen == list(enumerate(losses))


def test_too_few_pairs_for_a_batch_is_an_error() -> None:
    with pytest.raises(ValueError, match="no full batch"):
        train(_tiny_model(), _shape_batches(16, batch_size=32), TrainConfig(epochs=1))


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    lrs = [cosine_lr(s, 100, 10, 1.0) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_weight_decay_spares_gains_biases_and_temperature() -> None:
    model = _tiny_model()
    optimizer = make_optimizer(model, TrainConfig(weight_decay=0.2))
    no_decay = {
        id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.0 for p in g["params"]
    }
    assert id(model.logit_scale) in no_decay
    assert id(model.ln_final.weight) in no_decay
    assert id(model.token_embedding.weight) not in no_decay


def test_batch_transform_matches_open_clip_preprocess() -> None:
    # What the model trains on must be exactly what inference feeds it.
    preprocess = open_clip.image_transform(
        32, is_train=False, mean=PREPROCESS_CFG["mean"], std=PREPROCESS_CFG["std"]
    )
    images = [s.image for s in shapes_samples("heldout", n=4, seed=0, size=32)]
    ours = ShiftAndNormalize(PREPROCESS_CFG["mean"], PREPROCESS_CFG["std"])(
        images_to_uint8(images, 32), torch.Generator()
    )
    theirs = torch.stack([preprocess(im) for im in images])
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_shift_moves_pixels_but_keeps_the_shape() -> None:
    images = images_to_uint8([s.image for s in shapes_samples("train", n=8, seed=1, size=32)], 32)
    shifted = ShiftAndNormalize([0.0] * 3, [1.0] * 3, max_shift=3)(
        images, torch.Generator().manual_seed(0)
    )
    plain = ShiftAndNormalize([0.0] * 3, [1.0] * 3)(images, torch.Generator())
    assert shifted.shape == plain.shape
    assert not torch.equal(shifted, plain)


def _outputs(model: Any, preprocess: Any, tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    samples = shapes_samples("heldout", n=6, seed=4, size=32)
    with torch.no_grad():
        img = model.encode_image(
            torch.stack([preprocess(s.image) for s in samples]), normalize=True
        )
        txt = model.encode_text(tokenizer([s.caption for s in samples]), normalize=True)
    return img.numpy(), txt.numpy()


@pytest.mark.parametrize("half", [False, True])
def test_save_local_dir_round_trips_through_open_clip(tmp_path: Path, half: bool) -> None:
    model = _tiny_model(seed=7)
    train(model, _shape_batches(64), TrainConfig(epochs=1, batch_size=32, warmup_steps=1))
    out = save_local_dir(model, TINY_CFG, PREPROCESS_CFG, tmp_path / "m", "tiny-test", half=half)
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config == {
        "model_name": "tiny-test",
        "model_cfg": TINY_CFG,
        "preprocess_cfg": PREPROCESS_CFG,
    }

    loaded, preprocess, tokenizer = load_local_dir(out)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert not loaded.training
    assert tokenizer.context_length == 16
    model.eval()
    want_img, want_txt = _outputs(model, preprocess, tokenizer)
    got_img, got_txt = _outputs(loaded, preprocess, tokenizer)
    tol = 2e-2 if half else 1e-6
    np.testing.assert_allclose(got_img, want_img, atol=tol)
    np.testing.assert_allclose(got_txt, want_txt, atol=tol)


def test_half_precision_halves_the_file(tmp_path: Path) -> None:
    model = _tiny_model()
    full = save_local_dir(model, TINY_CFG, PREPROCESS_CFG, tmp_path / "f", "t")
    half = save_local_dir(model, TINY_CFG, PREPROCESS_CFG, tmp_path / "h", "t", half=True)
    ratio = (half / WEIGHTS_FILE).stat().st_size / (full / WEIGHTS_FILE).stat().st_size
    assert 0.45 < ratio < 0.55


def test_precision_at_k_counts_relevant_hits() -> None:
    images = np.eye(4, dtype=np.float32)
    labels = ["a", "a", "b", "b"]
    queries = np.array([[1, 0.9, 0.1, 0], [0, 0.2, 1, 0]], dtype=np.float32)
    assert precision_at_k(queries, images, ["a", "b"], labels, k=2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="at least 10 images"):
        precision_at_k(queries, images, ["a", "b"], labels, k=10)


def test_recall_at_k_on_paired_rows() -> None:
    images = np.eye(3, dtype=np.float32)
    texts = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
    got = recall_at_k(images, texts, ks=(1, 3))
    assert got["i2t_R@1"] == pytest.approx(1 / 3)
    assert got["t2i_R@1"] == pytest.approx(1 / 3)
    assert got["i2t_R@3"] == 1.0
    assert got["t2i_R@3"] == 1.0


def _former_train(model: Any, batches: PairBatches, cfg: TrainConfig) -> list[float]:
    """loop.train as it was before it shared step.StepRunner and run_epoch with the runner."""
    from clip_multimodal.training.loss import clamp_logit_scale, clip_loss

    assert cfg.grad_clip_norm is not None
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    total, losses = cfg.epochs * len(batches), []
    for epoch in range(cfg.epochs):
        model.train()
        epoch_losses = []
        for i, (images, tokens) in enumerate(batches.epoch(generator)):
            lr = cosine_lr(epoch * len(batches) + i, total, cfg.warmup_steps, cfg.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = clip_loss(
                model.encode_image(images), model.encode_text(tokens), model.logit_scale
            )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            optimizer.step()
            clamp_logit_scale(model)
            epoch_losses.append(float(loss.item()))
        losses.append(float(np.mean(epoch_losses)))
    return losses


def test_the_shared_step_and_epoch_loop_train_bit_for_bit_as_before() -> None:
    """The demo model's recipe runs on this loop: its weights must not move by one bit."""
    cfg = TrainConfig(epochs=2, batch_size=32, lr=2e-3, warmup_steps=2, seed=5)
    new, old = _tiny_model(), _tiny_model()
    assert train(new, _shape_batches(64), cfg) == _former_train(old, _shape_batches(64), cfg)
    for (name, a), b in zip(new.state_dict().items(), old.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_run_epoch_sets_each_steps_learning_rate_and_reports_it() -> None:
    from clip_multimodal.training import run_epoch
    from clip_multimodal.training.distributed import ContrastiveForward, DistEnv
    from clip_multimodal.training.step import StepRunner

    model = _tiny_model()
    optimizer = make_optimizer(model, TrainConfig())
    step = StepRunner(ContrastiveForward(model), model, optimizer, DistEnv())
    seen: list[tuple[int, float]] = []
    batches = _shape_batches(96).epoch(torch.Generator().manual_seed(0))
    losses = run_epoch(
        step, batches, lambda i: 0.1 * (i + 1), lambda i, _, lr: seen.append((i, lr))
    )
    assert len(losses) == 3 and all(loss.ndim == 0 for loss in losses)
    assert seen == [(0, 0.1), (1, pytest.approx(0.2)), (2, pytest.approx(0.3))]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.3)
