"""Granary transcripts as sentences to read aloud on the recording page (the ``reading_phrases`` hook)."""

from __future__ import annotations

from functools import cache

from voxplug.api import DataError, suitable_sentences
from voxplug_granary.catalog import CORPORA, GRANARY_REPO

MAX_ROWS_SCANNED = 3000
"""Granary rows read per language to build the pool (a few seconds of streaming)."""


@cache
def granary_pool(language: str) -> list[str]:
    """Suitable sentences from the first Granary ``asr`` manifest of ``language`` that can be streamed."""
    import datasets

    errors = []
    for corpus in CORPORA:
        try:
            rows = datasets.load_dataset(GRANARY_REPO, f"{language}_{corpus}", split="asr", streaming=True)
            pool = suitable_sentences(row.get("text") for row in rows.take(MAX_ROWS_SCANNED))
        except Exception as exc:  # a config that does not exist for this language; try the next corpus
            errors.append(f"{corpus}: {exc}")
            continue
        if pool:
            return pool
    raise DataError(f"no usable Granary transcripts for {language!r} ({'; '.join(errors) or 'all were filtered out'})")
