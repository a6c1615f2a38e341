"""The tiny Voxtral Realtime learns 20 word-by-word espeak clips through the real collator, trainer and run, and
then transcribes them in streaming mode with transformers' own generation; broken targets make the test fail.

Recipe: the tiny checkpoint, ``voxplug.training.run.train`` with the ``full`` trainer (encoder frozen), the default
``voxtral-realtime-streaming`` collator and the ``words`` aligner, 200 steps of 10 clips at lr 1e-2, the trained
delay 480 ms. Learned means both: a streaming WER of at most 0.05 on the clips, and a ``[STREAMING_WORD]`` emitted
for every word within one frame of ``floor(start / 80 ms)`` (the word's spoken frame; the stream is already
delayed). The negative controls train with a target builder that drops the delay shift (words are placed ``d``
frames early, before the model has heard them) or the word-start tokens, and must not count as learned.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from voxplug_voxtral_realtime.family import VoxtralRealtimeCollator
from voxplug_voxtral_realtime.targets import streaming_sequence

from voxplug import hookimpl

from ..training.conftest import run_config, validated

pytestmark = pytest.mark.slow
STEPS = 200
DELAY_MS = 480
LEARNED_WER = 0.05


def without_delay_shift(words, tokens, layout, total):
    """The words placed as if the delay were 0: each ``d`` frames before the model has heard it."""
    sequence = streaming_sequence(words, tokens, replace(layout, delay_frames=0), total)
    prompt = layout.prompt_length
    labels = [-100] * prompt + sequence.input_ids[prompt:]
    return replace(sequence, labels=labels)


def without_word_starts(words, tokens, layout, total):
    """The words at their frames, but no ``[STREAMING_WORD]`` before them (a padding token in its place)."""
    sequence = streaming_sequence(words, tokens, layout, total)
    swap = {layout.word_id: layout.pad_id}
    return replace(
        sequence,
        input_ids=[swap.get(token, token) for token in sequence.input_ids],
        labels=[swap.get(token, token) for token in sequence.labels],
    )


BUILDERS = {"no-delay-shift": without_delay_shift, "no-word-starts": without_word_starts}


def broken_collator(kind: str) -> type[VoxtralRealtimeCollator]:
    class Broken(VoxtralRealtimeCollator):
        name = f"voxtral-realtime-{kind}"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.collate.build = BUILDERS[kind]

    return Broken


class BrokenCollators:
    @hookimpl
    def register_collators(self, register: Any) -> None:
        for kind in BUILDERS:
            register(broken_collator(kind))


def fine_tune(tmp_path: Path, checkpoint: Path, manifest: Path, collator: str | None, **overrides: Any) -> Any:
    from voxplug.plugins import PluginHost, use_plugin_host
    from voxplug.training.run import train

    host = PluginHost().load()
    host.register(BrokenCollators(), name="broken-collators")
    settings = {
        "model__collator": collator,
        "training__method": "full",
        "training__max_steps": STEPS,
        "training__batch_size": 10,
        "training__learning_rate": 1e-2,
        "training__lr_scheduler": "constant_with_warmup",
        "training__warmup_ratio": 0.05,
        "training__eval_steps": STEPS,
        "training__logging_steps": 20,
        "training__save_total_limit": 1,
        "evaluation__batch_size": 20,
    }
    config = run_config(tmp_path, checkpoint, manifest, eval_manifest=manifest, **{**settings, **overrides})
    config["model"][collator or "voxtral-realtime-streaming"] = {"delay_ms": DELAY_MS}
    with use_plugin_host(host):
        return train(validated(config, tmp_path), host=host, progress=False)


def streamed(model_dir: Path, manifest: Path, device: str = "cpu") -> tuple[list[dict], list[Any]]:
    """The clips and what the saved model emits for them, streamed at the delay the saved processor defaults to."""
    from voxplug_voxtral_realtime.generation import transcribe_streaming

    from voxplug.evaluation.evaluate import load_model_for_evaluation
    from voxplug.plugins import get_plugin_host

    from .conftest import manifest_rows

    rows = manifest_rows(manifest)
    loaded = load_model_for_evaluation(str(model_dir), get_plugin_host())  # a full model or an adapter on its base
    assert next(loaded.model.parameters()).device.type == device
    return rows, transcribe_streaming(loaded.model, loaded.processor, [row["audio"] for row in rows])


def word_frames_found(rows: list[dict], results: list[Any]) -> float:
    """The fraction of words whose ``[STREAMING_WORD]`` came within one frame of the word's spoken frame."""
    hits = total = 0
    for row, result in zip(rows, results, strict=True):
        expected = [math.floor(word["start"] / 0.08) for word in row["words"]]
        total += len(expected)
        hits += sum(any(abs(frame - want) <= 1 for frame in result.word_frames) for want in expected)
        hits -= max(0, len(result.word_frames) - len(expected))  # extra word starts count against
    return hits / total


def learned(result: Any, manifest: Path, device: str = "cpu") -> tuple[bool, str]:
    import jiwer

    rows, results = streamed(result.model_dir, manifest, device)
    wer = jiwer.wer([row["text"] for row in rows], [r.text or "<empty>" for r in results])
    found = word_frames_found(rows, results)
    return wer <= LEARNED_WER and found >= 0.95, f"streaming WER {wer:.3f}, word starts found {found:.2f}"


def test_the_tiny_realtime_model_learns_to_stream_its_training_clips(
    tmp_path: Path, realtime_tiny_dir: Path, word_clips: Path, one_thread: None
) -> None:
    result = fine_tune(tmp_path, realtime_tiny_dir, word_clips, collator=None)
    ok, summary = learned(result, word_clips)
    print(f"\n{summary} after {STEPS} steps, {result.train_results['train_runtime']:.0f} s of training")
    assert result.eval_results["eval_wer"] <= LEARNED_WER  # the run's own (streaming) evaluation agrees
    tekken = json.loads((result.model_dir / "tekken.json").read_text(encoding="utf-8"))
    assert tekken["audio"]["transcription_delay_ms"] == DELAY_MS
    assert ok, summary


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_broken_targets_do_not_learn_to_stream(
    tmp_path: Path, realtime_tiny_dir: Path, word_clips: Path, one_thread: None, kind: str
) -> None:
    result = fine_tune(tmp_path, realtime_tiny_dir, word_clips, collator=f"voxtral-realtime-{kind}")
    ok, summary = learned(result, word_clips)
    print(f"\n{kind}: {summary}")
    assert not ok, summary
