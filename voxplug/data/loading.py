"""Load a run's training and evaluation examples from the configured data source(s), checked and split.

:func:`load_training_data` instantiates ``data.source`` with its validated options, takes the eval rows from
``data.eval`` when set, from the source's own eval split when it has one, or else holds them out with
:func:`voxplug.data.split.split_examples`. Every row is checked before training starts; a row that fails is
rejected (never truncated, never dropped silently) and listed in the summary that the ``after_data_load`` hook
receives.

How audio is checked (``check_audio``):

* ``"eager"``: each clip is decoded once, on a few threads: unreadable, too long, too short and silent clips are
  rejected now, and every example gets its exact ``duration_s`` (which length-grouped batching uses);
* ``"lazy"``: nothing is decoded; a row without a duration gets it from its audio header
  (``Example.read_duration_s``), and clips longer than ``data.max_duration_s`` are skipped and counted, so a long
  clip never reaches (and stops) training;
* ``"auto"`` (default): eager, except for sources that stream (``source.streaming`` is true), where decoding
  everything up front would mean downloading the whole corpus before the first step.

A training run (``allow_stream``) does not list the rows of a source that :func:`wants_stream`: it gets the
evaluation rows and a :class:`~voxplug.data.streaming.TrainStream` instead, whose readers check the training rows
as they pass.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from voxplug.data.audio import TARGET_RATE, ClipTooLongError, analyse_clip, check_clip
from voxplug.data.interface import DataSource, Example, RowProblem
from voxplug.data.parallel import map_ordered
from voxplug.data.prepare import check_language
from voxplug.data.scrub import scrub_training_data
from voxplug.data.split import eval_row_count, split_examples
from voxplug.data.store import duration_histogram
from voxplug.data.text import check_transcript
from voxplug.errors import DataError
from voxplug.tempfiles import write_json

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.data.scrub import ScrubReport
    from voxplug.data.streaming import TrainStream
    from voxplug.plugins import PluginHost

CheckMode = Literal["auto", "eager", "lazy"]

DATA_SUMMARY_FILE = "data_summary.json"
"""The file in a run folder that keeps the data stage's summary, every skipped row and why included."""

log = logging.getLogger("voxplug.data")


@dataclass
class TrainingData:
    """The rows a run trains and evaluates on, the rows rejected on the way, and a summary of both."""

    train: list[Example]
    eval: list[Example]
    problems: list[RowProblem] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    scrub_report: ScrubReport | None = None
    #: the training rows as a stream, when they are not listed (``train`` is then empty; see :func:`wants_stream`)
    stream: TrainStream | None = None
    #: how a model card names the data: Hub ids, else local names (never paths), in source order
    datasets: list[str] = field(default_factory=list)
    #: the licence of each local dataset that declares one, by the name in :attr:`datasets`
    dataset_licenses: dict[str, str] = field(default_factory=dict)

    @property
    def train_rows(self) -> int | None:
        """How many rows train: ``len(train)``, or a stream's size before checks (None when the source cannot say)."""
        return self.stream.estimated_rows if self.stream is not None else len(self.train)


def load_training_data(
    config: RunConfig,
    host: PluginHost | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    check_audio: CheckMode = "auto",
    workers: int | None = None,
    allow_stream: bool = False,
) -> TrainingData:
    """Load, check and split the examples ``config.data`` describes (see the module docstring).

    ``options`` are the run's validated plugin options (:func:`voxplug.config.resolve_plugin_options`); without
    them, they are resolved here. With ``allow_stream`` (the caller trains from :attr:`TrainingData.stream`), a
    source that :func:`wants_stream` is not read here: only its evaluation rows are (:func:`_load_stream`). Raises
    :class:`DataError` when no training row is left, naming the source and the first rejections. The caller fires
    ``after_data_load`` with :attr:`TrainingData.summary` on the main process.
    """
    from voxplug.config import resolve_plugin_options
    from voxplug.plugins import get_plugin_host

    host = host or get_plugin_host()
    if options is None:
        options = resolve_plugin_options(config, host)
    data = config.data
    source = make_source(host, data.source, options.get(f"data.{data.source}"), config.base_dir)
    mode = _resolve_mode(check_audio, source)
    if allow_stream and wants_stream(config, source):
        streamed = _load_stream(config, host, options, source, mode, workers)
        if streamed is not None:
            return streamed
        source = make_source(host, data.source, options.get(f"data.{data.source}"), config.base_dir)
    checker = ExampleChecker(data.max_duration_s, data.language, mode, workers)
    train_stream = _limited(source.examples("train"), _read_limit(config))
    if data.eval is not None:
        eval_source = make_source(host, data.eval.source, options.get(f"data.eval.{data.eval.source}"), config.base_dir)
        train = checker.check(train_stream)
        evaluation = checker.check(eval_source.examples("eval"))
        eval_origin, sources = f"data.eval ({data.eval.source})", [source, eval_source]
    elif source.has_eval_split:
        train, evaluation = checker.check(train_stream), checker.check(source.examples("eval"))
        eval_origin, sources = f"the {data.source} source's eval split", [source]
    else:
        train, evaluation = split_examples(checker.check(train_stream), data.split)
        eval_origin, sources = "held out from the training rows", [source]
    if data.max_train_rows is not None:
        train = train[: data.max_train_rows]
    problems = [problem for each in sources for problem in each.problems] + checker.problems
    if not train:
        raise DataError(_nothing_left_message(data.source, problems))
    train, evaluation, scrubbed = scrub_training_data(config, host, options, train, evaluation)
    summary = summarise(train, evaluation, problems, source=data.source, eval_origin=eval_origin, mode=mode)
    summary["warnings"] = checker.warnings
    notices = [notice for each in sources for notice in each.notices]
    if notices:
        summary["notices"] = notices
        for notice in notices:
            log.info("%s", notice)
    if scrubbed is not None:
        summary["scrub"] = scrubbed.summary()  # counts only: the replaced text stays in scrub_report.json
    return TrainingData(
        train=train,
        eval=evaluation,
        problems=problems,
        summary=summary,
        scrub_report=scrubbed,
        **card_datasets(sources),
    )


def wants_stream(config: RunConfig, source: DataSource) -> bool:
    """Whether training streams ``source``: ``data.streaming`` when set, else when the source streams (a Hub stream,
    Granary, a large JSONL) and ``data.max_train_rows`` does not ask for a list of the first rows."""
    if config.data.streaming is not None:
        return config.data.streaming
    return source.streaming and config.data.max_train_rows is None


def _load_stream(
    config: RunConfig, host: PluginHost, options: Mapping[str, Any], source: DataSource, mode: str, workers: int | None
) -> TrainingData | None:
    """A stream of the training rows, and a small fixed evaluation set read now: the first rows of ``data.eval`` or
    of the source's eval split, or else the first rows of the training split, which the stream then leaves out.

    Nothing else is read before training: training rows are checked as they stream, and the rows dropped then are
    recorded by the readers (:class:`~voxplug.data.streaming.DropLog`). With ``data.streaming`` left to choose, a
    source whose training split ends within the evaluation set's size is small enough to list: None says so.
    """
    from voxplug.data.scrub import make_scrubbers
    from voxplug.data.streaming import RowGate, TrainStream, first_rows, row_key, stream_eval_rows

    data = config.data
    if data.max_train_rows is not None:
        raise DataError(
            "data.max_train_rows takes the first rows of a list; a stream (data.streaming) is bounded by "
            "training.max_steps instead: set one of them, not both"
        )
    pieces = source.stream_pieces("train")
    count = stream_eval_rows(pieces, data.split)
    checker = ExampleChecker(data.max_duration_s, data.language, mode, workers)
    held_out: frozenset[str] = frozenset()
    holds_out = data.eval is None and not source.has_eval_split
    leading = list(first_rows(source, pieces, count + 1)) if holds_out or data.streaming is None else []
    if data.streaming is None and len(leading) <= count:
        return None
    if data.eval is not None:
        eval_source = make_source(host, data.eval.source, options.get(f"data.eval.{data.eval.source}"), config.base_dir)
        evaluation = checker.check(itertools.islice(eval_source.examples("eval"), count))
        eval_origin, sources = f"the first {count} rows of data.eval ({data.eval.source})", [source, eval_source]
    elif source.has_eval_split:
        evaluation = checker.check(itertools.islice(source.examples("eval"), count))
        eval_origin, sources = f"the first {count} rows of the {data.source} source's eval split", [source]
    else:
        if len(leading) <= count:  # a stream (data.streaming: true) smaller than the eval set: keep rows to train
            count = eval_row_count(len(leading), data.split)
        candidates = leading[:count]
        held_out = frozenset(row_key(example) for example in candidates)
        evaluation = checker.check(candidates)
        eval_origin, sources = f"the first {len(candidates)} rows, held out of the stream", [source]
    problems = [problem for each in sources for problem in each.problems] + checker.problems
    for each in sources:
        each.problems.clear()  # reported here; the stream's readers report what they find themselves
    _, evaluation, scrubbed = scrub_training_data(config, host, options, [], evaluation)
    scrubbers = make_scrubbers(data.scrub, host, {name: options.get(f"data.scrub.{name}") for name in data.scrub})
    gate = RowGate(ExampleChecker(data.max_duration_s, data.language, "lazy", 1), scrubbers)
    stream = TrainStream(source, pieces, gate, held_out, seed=config.training.seed, shuffle_buffer=data.shuffle_buffer)
    summary = summarise([], evaluation, problems, source=data.source, eval_origin=eval_origin, mode="as rows stream")
    summary.update(
        streaming=True,
        train_rows=None,
        train_rows_before_checks=stream.estimated_rows,
        train_seconds=None,
        unknown_durations=None,
        warnings=checker.warnings,
    )
    notices = [notice for each in sources for notice in each.notices]
    if notices:
        summary["notices"] = notices
        for notice in notices:
            log.info("%s", notice)
    if scrubbed is not None:
        summary["scrub"] = scrubbed.summary()
    return TrainingData(
        train=[],
        eval=evaluation,
        problems=problems,
        summary=summary,
        scrub_report=scrubbed,
        stream=stream,
        **card_datasets(sources),
    )


def card_datasets(sources: list[DataSource]) -> dict[str, Any]:
    """``datasets`` (Hub ids, else local names: never paths) and ``dataset_licenses`` of the sources a run reads,
    as ``voxplug.json`` and the model card name them."""
    names: list[str] = []
    licenses: dict[str, str] = {}
    for source in sources:
        hub_id = source.dataset_id()
        local = None if hub_id else source.local_dataset()
        name = hub_id or (local or {}).get("name")
        if name and name not in names:
            names.append(name)
        if name and local and local.get("license"):
            licenses[name] = local["license"]
    return {"datasets": names, "dataset_licenses": licenses}


def make_source(host: PluginHost, name: str, options: Any, base_dir: Path) -> DataSource:
    """Instantiate the data source registered as ``name`` with its validated options."""
    cls = host.extension("data source", name)
    return cls(options, base_dir=base_dir)


def _resolve_mode(mode: CheckMode, source: DataSource) -> Literal["eager", "lazy"]:
    if mode == "auto":
        return "lazy" if source.streaming else "eager"
    return mode


def _read_limit(config: RunConfig) -> int | None:
    """How many rows to read at most: enough for ``max_train_rows`` plus the eval rows held out of them."""
    data = config.data
    if data.max_train_rows is None:
        return None
    if data.eval is not None:
        return data.max_train_rows
    fraction = data.split.eval_fraction
    held_out = math.ceil(data.max_train_rows * fraction / (1 - fraction)) + data.split.min_eval_rows
    if data.split.max_eval_rows is not None:
        held_out = min(held_out, data.split.max_eval_rows)
    return data.max_train_rows + held_out


def _limited(examples: Iterator[Example], limit: int | None) -> Iterator[Example]:
    return examples if limit is None else itertools.islice(examples, limit)


class ExampleChecker:
    """Checks examples (text, language, and audio when eager), collecting rejections and counting warnings."""

    def __init__(self, max_duration_s: float, default_language: str | None, mode: str, workers: int | None) -> None:
        self.max_duration_s = max_duration_s
        self.default_language = default_language
        self.mode = mode
        self.workers = workers
        self.problems: list[RowProblem] = []
        self.warnings = 0

    def check(self, examples: Iterable[Example]) -> list[Example]:
        """Return the examples that pass; rejected ones become :attr:`problems`."""
        kept = []
        workers = self.workers if self.mode == "eager" else 1
        for example, outcome in map_ordered(self.check_one, examples, workers=workers):
            if isinstance(outcome, DataError):
                reason = _without_prefix(str(outcome), example)
                code = getattr(outcome, "code", "rejected")
                self.problems.append(RowProblem(example.origin or example.id, reason, code=code))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                self.warnings += outcome
                kept.append(example)
        return kept

    def check_one(self, example: Example) -> int:
        """Check one example in place (filling its duration and language); return its warning count."""
        issues = check_transcript(example.text)
        errors = [issue.message for issue in issues if issue.is_error]
        if errors:
            raise DataError("; ".join(errors))
        example.language = check_language(example.language, name="language") or self.default_language
        if self.mode == "lazy":
            return len(issues) + self._check_known_duration(example)
        samples = example.load_audio(max_duration_s=self.max_duration_s)
        example.duration_s = round(len(samples) / TARGET_RATE, 3)
        clip_issues = check_clip(analyse_clip(samples), max_duration_s=self.max_duration_s)
        clip_errors = [issue for issue in clip_issues if issue.is_error]
        if clip_errors:
            raise _RowRejected("; ".join(issue.message for issue in clip_errors), clip_errors[0].code)
        return len(issues) + len(clip_issues)

    def _check_known_duration(self, example: Example) -> int:
        """Reject a clip over the limit by its duration, read from the audio header when the row has none."""
        if example.duration_s is None:
            example.duration_s = round(example.read_duration_s(), 3)
        if example.duration_s > self.max_duration_s:
            raise ClipTooLongError(f"{example.duration_s:.1f} s is longer than the {self.max_duration_s:g} s limit")
        return 0


class _RowRejected(DataError):
    """A row that failed a check, with the check's code (``too_short``, ``silent``, ...) for counting."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _without_prefix(message: str, example: Example) -> str:
    for prefix in (example.origin, example.id):
        if prefix and message.startswith(f"{prefix}: "):
            return message[len(prefix) + 2 :]
    return message


def summarise(
    train: list[Example],
    evaluation: list[Example],
    problems: list[RowProblem],
    *,
    source: str,
    eval_origin: str,
    mode: str,
) -> dict[str, Any]:
    """The ``after_data_load`` summary: row and second counts, languages, durations, rejected rows."""
    known = [example.duration_s for example in train if example.duration_s is not None]
    return {
        "source": source,
        "eval_source": eval_origin,
        "audio_checked": mode,
        "train_rows": len(train),
        "eval_rows": len(evaluation),
        "train_seconds": round(sum(known), 3),
        "eval_seconds": round(sum(e.duration_s or 0.0 for e in evaluation), 3),
        "unknown_durations": len(train) - len(known),
        "languages": dict(sorted(Counter(e.language or "unknown" for e in [*train, *evaluation]).items())),
        "durations": duration_histogram(known),
        "rejected_counts": dict(sorted(Counter(problem.code for problem in problems).items())),
        "rejected": [{"row": problem.row, "reason": problem.reason, "code": problem.code} for problem in problems],
    }


def write_data_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary`` to ``run_dir/data_summary.json`` (through a temporary file and a rename) and return it.

    The file keeps every row the data stage skipped, with its reason and code, beside the run's other outputs.
    """
    return write_json(run_dir / DATA_SUMMARY_FILE, summary)


def _nothing_left_message(source: str, problems: list[RowProblem]) -> str:
    if not problems:
        return f"data source {source!r} yielded no rows (expected at least one clip with a transcript)"
    shown = "; ".join(str(problem) for problem in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"data source {source!r}: no usable training rows; all {len(problems)} were rejected: {shown}{more}"
