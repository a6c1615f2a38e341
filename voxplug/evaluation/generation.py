"""Greedy transcription of evaluation examples, sharded over every process and gathered back in order.

Clips go to ranks in turn by length, so every rank gets as much audio; each rank's shard is padded to the same
number of clips, so that all ranks decode together: under DeepSpeed ZeRO-3 each forward pass gathers parameters
from every rank, so one rank decoding alone would hang the others (the decoder keeps them in step). The gathered
hypotheses are identical on every rank, and so are the WER/CER computed from them (the best-checkpoint choice must
agree across ranks). Each family's ``transcribe`` is the fast decoder of :mod:`voxplug.evaluation.batching`.
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
#: Clips whose audio is held at once: the decoder sorts and batches within such a window.
WINDOW_CLIPS = 1024


@dataclass(frozen=True)
class GenerationSettings:
    """How transcripts are generated for evaluation.

    ``max_new_tokens``: the most tokens of every transcript (None: a budget from each clip's length);
    ``batch_size``: the most clips decoded together (None: as many as free GPU memory holds, 8 on a CPU);
    ``cuda_graphs``: replay each decoding step as a CUDA graph on GPUs.
    """

    max_new_tokens: int | None = None
    batch_size: int | None = None
    max_duration_s: float | None = None
    default_language: str | None = None
    cuda_graphs: bool = True


def transcribe_examples(
    family: ModelFamily, model: Any, processor: Any, examples: Sequence[Example], settings: GenerationSettings
) -> list[str]:
    """Greedy transcripts of ``examples``, holding the audio of :data:`WINDOW_CLIPS` clips at a time."""
    hypotheses: list[str] = []
    for start in range(0, len(examples), WINDOW_CLIPS):
        window = examples[start : start + WINDOW_CLIPS]
        hypotheses.extend(
            family.transcribe(
                model,
                processor,
                [example.load_audio(settings.max_duration_s) for example in window],
                [example.language or settings.default_language for example in window],
                max_new_tokens=settings.max_new_tokens,
                batch_size=settings.batch_size,
                cuda_graphs=settings.cuda_graphs,
            )
        )
    return hypotheses


def shard(examples: Sequence[Example], rank: int, world: int) -> list[int]:
    """The indices of ``examples`` that ``rank`` of ``world`` transcribes: clips dealt in turn from the longest
    (by ``duration_s``; unknown durations count as 0), so every rank gets about as much audio."""
    by_length = sorted(range(len(examples)), key=lambda index: -(examples[index].duration_s or 0.0))
    return by_length[rank::world]


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
    mine = shard(examples, rank, world)
    padded = [examples[index] for index in mine] + [examples[0]] * (math.ceil(len(examples) / world) - len(mine))
    with autocast():
        hypotheses = transcribe_examples(family, model, processor, padded, settings)
    pairs = list(zip(mine, hypotheses, strict=False))
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
