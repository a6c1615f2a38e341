"""Greedy transcription of evaluation examples, sharded over every process and gathered back in order.

Every rank transcribes its own contiguous shard, padded to the same number of clips, so that all ranks call
``generate`` the same number of times: under DeepSpeed ZeRO-3 each forward pass gathers parameters from every
rank, so one rank generating alone would hang the others. The gathered hypotheses are identical on every
rank, and so are the WER/CER computed from them (the best-checkpoint choice must agree across ranks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.evaluation.scoring import Scores, Utterance, score_utterances, write_predictions

if TYPE_CHECKING:
    from voxplug.data.interface import Example
    from voxplug.models.interface import ModelFamily
    from voxplug.plugins import PluginHost

AutocastFactory = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class GenerationSettings:
    """How transcripts are generated for evaluation."""

    max_new_tokens: int = 128
    batch_size: int = 8
    max_duration_s: float | None = None
    default_language: str | None = None


def transcribe_examples(
    family: ModelFamily, model: Any, processor: Any, examples: Sequence[Example], settings: GenerationSettings
) -> list[str]:
    """Greedy transcripts of ``examples``, decoding only one batch of audio at a time."""
    hypotheses: list[str] = []
    for start in range(0, len(examples), settings.batch_size):
        batch = examples[start : start + settings.batch_size]
        audios = [example.load_audio(settings.max_duration_s) for example in batch]
        languages = [example.language or settings.default_language for example in batch]
        hypotheses.extend(
            family.transcribe(
                model, processor, audios, languages, max_new_tokens=settings.max_new_tokens, batch_size=len(batch)
            )
        )
    return hypotheses


def transcribe_on_all_ranks(
    family: ModelFamily,
    model: Any,
    processor: Any,
    examples: Sequence[Example],
    settings: GenerationSettings,
    *,
    autocast: AutocastFactory = nullcontext,
) -> list[Utterance]:
    """Transcribe ``examples`` with every process taking a shard; every rank returns all utterances in order."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    if not examples:
        return []
    state = PartialState()
    rank, world = state.process_index, state.num_processes
    shard_size = math.ceil(len(examples) / world)
    mine = list(examples[rank * shard_size : (rank + 1) * shard_size])
    padded = mine + [examples[0]] * (shard_size - len(mine))
    with autocast():
        hypotheses = transcribe_examples(family, model, processor, padded, settings)
    pairs = [(rank * shard_size + offset, text) for offset, text in enumerate(hypotheses[: len(mine)])]
    by_index = dict(gather_object(pairs) if world > 1 else pairs)
    return [
        Utterance(example.id, example.language or settings.default_language, example.text, by_index[index])
        for index, example in enumerate(examples)
    ]


class GenerationEvaluator:
    """WER/CER of greedy transcripts of the eval split, run by the trainer at every evaluation.

    All ranks call :meth:`evaluate`; only the main process writes ``eval_predictions/step-N.jsonl`` and fires
    the ``after_evaluate`` hook. :attr:`last` keeps the latest result so the run can reuse it at the end.
    """

    def __init__(
        self,
        family: ModelFamily,
        processor: Any,
        examples: Sequence[Example],
        settings: GenerationSettings,
        *,
        predictions_dir: Path,
        host: PluginHost | None = None,
    ) -> None:
        self.family = family
        self.processor = processor
        self.examples = list(examples)
        self.settings = settings
        self.predictions_dir = predictions_dir
        self.host = host
        self.last: tuple[int, Scores, Path | None] | None = None

    def evaluate(self, model: Any, *, step: int, autocast: AutocastFactory = nullcontext) -> dict[str, float]:
        """Transcribe, score, record and return ``{"wer", "cer", "samples"}`` (the same on every rank)."""
        from accelerate import PartialState

        utterances = transcribe_on_all_ranks(
            self.family, model, self.processor, self.examples, self.settings, autocast=autocast
        )
        scores = score_utterances(utterances)
        path = None
        if PartialState().is_main_process:
            path = write_predictions(self.predictions_dir / f"step-{step:06d}.jsonl", scores.rows)
            if self.host is not None:
                self.host.after_evaluate(metrics=scores.metrics(), predictions_path=path, step=step)
        self.last = (step, scores, path)
        return scores.metrics()
