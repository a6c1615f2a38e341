"""Scrubbing personal data out of transcripts before training and before any dataset push.

Text scrubbers are an extension type (:class:`voxplug.data.interface.TextScrubber`): plugins register them
through ``register_text_scrubbers`` and users enable them by name with ``data.scrub`` (training) or
``voxplug data push --scrub email,phone`` (publishing). The built-in ``privacy`` plugin registers ``email``,
``phone``, ``url`` and ``digits``; :class:`PatternScrubber` is the base a regex-based scrubber needs.

Scrubbers run in the order they are named; each sees the previous one's output, so name the most specific first
(``email, url, phone, digits``). The :class:`ScrubReport` says what was replaced:

* :meth:`ScrubReport.summary` holds counts only; it goes into logs, the ``after_data_load`` summary and the
  terminal, so no personal data ever reaches a plain log;
* :meth:`ScrubReport.write` writes ``scrub_report.json`` (readable by its owner only), which **does** list each
  original string so the user can check what was removed; it is never published.

Only transcripts are scrubbed: the audio still holds what was said. A row whose audio must not leave the machine
has to be removed from the dataset (``voxplug data remove``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from voxplug.data.interface import Example, Replacement, TextScrubber

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.plugins import PluginHost

SCRUB_REPORT_FILE = "scrub_report.json"
SCRUBBER_KIND = "text scrubber"


class PatternScrubber(TextScrubber):
    """A scrubber that replaces every match of one regular expression by ``options.replacement``.

    Subclasses implement :meth:`pattern` (compiled once per instance) and may override :meth:`accept` to skip
    matches that only look like personal data. Their ``Options`` must have a ``replacement`` field.
    """

    flags: ClassVar[int] = re.IGNORECASE

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._pattern = self.pattern()

    def pattern(self) -> re.Pattern[str]:
        """The compiled expression whose matches are personal data."""
        raise NotImplementedError

    def accept(self, match: re.Match[str]) -> bool:
        """Whether ``match`` is really personal data (default: every match is)."""
        return True

    def scrub(self, text: str) -> tuple[str, list[Replacement]]:
        """Return ``text`` with each accepted match replaced, and the replacements made."""
        made: list[Replacement] = []
        token = str(self.options.replacement)

        def substitute(match: re.Match[str]) -> str:
            if not self.accept(match):
                return match.group(0)
            made.append(Replacement(self.name, match.group(0), token))
            return token

        return self._pattern.sub(substitute, text), made


@dataclass
class RowScrub:
    """The replacements made in one row's transcript."""

    row: str
    replacements: list[Replacement]


@dataclass
class ScrubReport:
    """What the scrubbers replaced across a set of rows (see the module docstring for what is kept where)."""

    scrubbers: list[str]
    rows_checked: int = 0
    rows: list[RowScrub] = field(default_factory=list)

    def note(self, row: str, replacements: list[Replacement]) -> None:
        """Count one checked row and keep its replacements, if any."""
        self.rows_checked += 1
        if replacements:
            self.rows.append(RowScrub(row, replacements))

    @property
    def counts(self) -> dict[str, int]:
        """Replacements per scrubber name (every enabled scrubber is listed, 0 when it found nothing)."""
        found = Counter(item.scrubber for row in self.rows for item in row.replacements)
        return {name: found.get(name, 0) for name in self.scrubbers}

    def summary(self) -> dict[str, Any]:
        """Counts only, never the replaced text: safe for logs, hooks and the terminal."""
        return {
            "scrubbers": list(self.scrubbers),
            "rows_checked": self.rows_checked,
            "rows_changed": len(self.rows),
            "replacements": self.counts,
        }

    def describe(self) -> str:
        """One line for the terminal, e.g. ``scrubbed 3 row(s) of 40: email 2, phone 1`` (no personal data)."""
        counts = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        return f"scrubbed {len(self.rows)} row(s) of {self.rows_checked}: {counts or 'no scrubbers'}"

    def to_dict(self) -> dict[str, Any]:
        """The full report, **including the original strings** (for ``scrub_report.json`` only)."""
        return {
            **self.summary(),
            "note": "lists the personal data that was replaced; keep this file private, never publish it",
            "rows": [
                {
                    "row": row.row,
                    "replacements": [
                        {"scrubber": item.scrubber, "original": item.original, "replacement": item.replacement}
                        for item in row.replacements
                    ],
                }
                for row in self.rows
            ],
        }

    def write(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``, readable and writable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
        os.chmod(path, 0o600)  # an existing file keeps its old mode through O_TRUNC
        return path


def make_scrubbers(
    names: Sequence[str], host: PluginHost | None = None, options: dict[str, Any] | None = None
) -> list[TextScrubber]:
    """Instantiate the scrubbers named in ``names``, in order; ``options`` maps a name to its options.

    An unknown name is a :class:`~voxplug.errors.PluginError` listing the registered ones.
    """
    from voxplug.plugins import get_plugin_host

    host = host or get_plugin_host()
    return [host.extension(SCRUBBER_KIND, name)((options or {}).get(name)) for name in names]


def parse_scrubber_names(text: str | None) -> list[str]:
    """``"email, phone"`` → ``["email", "phone"]`` (the ``--scrub`` option's value); duplicates dropped."""
    names = [name.strip() for name in (text or "").split(",")]
    return list(dict.fromkeys(name for name in names if name))


def scrub_text(text: str, scrubbers: Iterable[TextScrubber]) -> tuple[str, list[Replacement]]:
    """Run ``scrubbers`` over ``text`` in order; return the cleaned text and every replacement made."""
    made: list[Replacement] = []
    for scrubber in scrubbers:
        text, replacements = scrubber.scrub(text)
        made.extend(replacements)
    return text, made


def scrub_examples(
    examples: Iterable[Example], scrubbers: Sequence[TextScrubber], report: ScrubReport | None = None
) -> tuple[list[Example], ScrubReport]:
    """Scrubbed copies of ``examples`` (the originals are not modified) and the report of what changed.

    Pass ``report`` to add to an existing one (e.g. the training rows, then the evaluation rows).
    """
    report = report or ScrubReport([scrubber.name for scrubber in scrubbers])
    cleaned = []
    for example in examples:
        text, replacements = scrub_text(example.text, scrubbers)
        report.note(example.origin or example.id, replacements)
        cleaned.append(replace(example, text=text) if replacements else example)
    return cleaned, report


def scrub_training_data(
    config: RunConfig, host: PluginHost, options: dict[str, Any], train: list[Example], evaluation: list[Example]
) -> tuple[list[Example], list[Example], ScrubReport | None]:
    """Scrub a run's training and evaluation rows with the scrubbers ``config.data.scrub`` names.

    ``options`` is what :func:`voxplug.config.resolve_plugin_options` returned (scrubber options are under
    ``data.scrub.<name>``). Returns the rows unchanged and no report when no scrubber is enabled.
    """
    names = config.data.scrub
    if not names:
        return train, evaluation, None
    scrubber_options = {name: options.get(f"data.scrub.{name}") for name in names}
    scrubbers = make_scrubbers(names, host, scrubber_options)
    train, report = scrub_examples(train, scrubbers)
    evaluation, report = scrub_examples(evaluation, scrubbers, report)
    return train, evaluation, report


def write_scrub_report(run_dir: Path, report: ScrubReport | None) -> Path | None:
    """Write ``report`` as ``scrub_report.json`` in ``run_dir`` (main process only); None when there is none."""
    return report.write(Path(run_dir) / SCRUB_REPORT_FILE) if report is not None else None


def scrub_rows(
    rows: Iterable[dict[str, Any]], scrubbers: Sequence[TextScrubber], report: ScrubReport | None = None
) -> Iterator[dict[str, Any]]:
    """Yield dataset rows (``{"id", "text", ...}``) with scrubbed ``text``, noting each in ``report``.

    Rows are copied only when something was replaced; with no scrubbers they pass through untouched.
    """
    for row in rows:
        if not scrubbers:
            yield row
            continue
        text, replacements = scrub_text(str(row.get("text") or ""), scrubbers)
        if report is not None:
            report.note(str(row.get("id", "?")), replacements)
        yield {**row, "text": text} if replacements else row


def scrub_report_for_rows(rows: Iterable[dict[str, Any]], scrubbers: Sequence[TextScrubber]) -> ScrubReport:
    """What scrubbing ``rows`` would replace, without changing anything (the report a push prints)."""
    report = ScrubReport([scrubber.name for scrubber in scrubbers])
    for _row in scrub_rows(rows, scrubbers, report):
        pass
    return report


def scrubbers_fingerprint(scrubbers: Sequence[TextScrubber]) -> str:
    """A stable text naming the scrubbers and their options (staged files made with others are not reused).

    Empty when there are no scrubbers.
    """
    if not scrubbers:
        return ""
    return json.dumps([[scrubber.name, scrubber.options.model_dump(mode="json")] for scrubber in scrubbers])
