"""Clean and check transcripts, and score hypotheses against them (WER and CER).

Two kinds of text are kept apart: :func:`clean_transcript` gives the text a model is trained on (case and
punctuation kept, only invisible damage repaired), :func:`normalize_for_wer` gives the text errors are counted
on (case, punctuation and spacing differences ignored).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any, TypedDict

import jiwer

from voxplug.data.issues import Issue
from voxplug.errors import DataError

MAX_TRANSCRIPT_CHARS = 1000
"""Generous for 30 s of speech (fast speech is about 600 characters in 30 s)."""

_JOINERS = {"\u200c", "\u200d"}  # ZWNJ and ZWJ spell words in Persian, Indic scripts and emoji sequences.
_APOSTROPHES = {"'", "\u2019", "\u02bc"}


class UtteranceScore(TypedDict):
    """Error counts of one reference/hypothesis pair, on normalised text."""

    reference: str
    hypothesis: str
    wer: float
    cer: float
    reference_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int


class WerReport(TypedDict):
    """Corpus-level word and character error rates plus the per-utterance scores they sum."""

    wer: float
    cer: float
    reference_words: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    reference_chars: int
    char_errors: int
    utterances: list[UtteranceScore]


# --- training text ----------------------------------------------------------------------------------------


def clean_transcript(text: str) -> str:
    """Return ``text`` ready for training: invisible characters removed, NFC-composed, spaces collapsed.

    Control and format characters (zero-width space, BOM, soft hyphen, bidi marks, …) are removed, except a
    zero-width (non-)joiner between two letters, where it is part of the spelling. Every run of whitespace
    (tabs, newlines, no-break spaces, …) becomes one space, and the ends are stripped. Case and punctuation
    are kept.
    """
    visible = "".join(char for index, char in enumerate(text) if not _is_invisible_junk(text, index, char))
    return " ".join(unicodedata.normalize("NFC", visible).split())


def check_transcript(text: str, max_chars: int = MAX_TRANSCRIPT_CHARS) -> list[Issue]:
    """Return the problems of a transcript: errors ``empty``, ``whitespace_only``, ``too_long``;
    warning ``replacement_character`` (U+FFFD, a sign the text was once decoded with the wrong encoding).
    """
    if text == "":
        return [Issue("error", "empty", "the transcript is empty")]
    cleaned = clean_transcript(text)
    if cleaned == "":
        return [Issue("error", "whitespace_only", "the transcript holds only whitespace or invisible characters")]
    issues = []
    if len(cleaned) > max_chars:
        message = f"the transcript has {len(cleaned)} characters, more than the {max_chars} limit"
        issues.append(Issue("error", "too_long", message))
    if "\ufffd" in cleaned:
        message = "the transcript contains U+FFFD (\ufffd): it was decoded with the wrong encoding somewhere"
        issues.append(Issue("warning", "replacement_character", message))
    return issues


def decode_transcript_bytes(data: bytes, name_for_errors: str) -> str:
    """Decode a transcript file's bytes as UTF-8, dropping a leading byte-order mark.

    Raises :class:`~voxplug.errors.DataError` naming ``name_for_errors``, the line and the offending byte for
    anything that is not UTF-8 (including UTF-16, which is recognised by its byte-order mark).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{name_for_errors}: the text is UTF-16 encoded; expected UTF-8 (re-save it as UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{name_for_errors}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); expected UTF-8 text, re-save the file as UTF-8"
        ) from exc


def _is_invisible_junk(text: str, index: int, char: str) -> bool:
    category = unicodedata.category(char)
    if category == "Cc":
        return not char.isspace()
    if category != "Cf":
        return False
    return not (char in _JOINERS and _joins_letters(text, index))


def _joins_letters(text: str, index: int) -> bool:
    if index == 0 or index == len(text) - 1:
        return False
    return all(unicodedata.category(text[i])[0] in "LMS" for i in (index - 1, index + 1))


# --- scoring text -----------------------------------------------------------------------------------------


def normalize_for_wer(text: str) -> str:
    """Return ``text`` as WER is counted on it: cleaned, NFKC, casefolded, punctuation removed, spaces collapsed.

    Apostrophes are dropped (``don't`` → ``dont``), every other punctuation character (Unicode categories
    ``P*``) becomes a space (``well-known`` → ``well known``). Accents, digits and symbols are kept.
    """
    folded = unicodedata.normalize("NFKC", clean_transcript(text).casefold())
    unpunctuated = "".join(_without_punctuation(char) for char in folded)
    return " ".join(unpunctuated.split())


def _without_punctuation(char: str) -> str:
    if char in _APOSTROPHES:
        return ""
    return " " if unicodedata.category(char).startswith("P") else char


def wer_cer(references: Sequence[str], hypotheses: Sequence[str]) -> WerReport:
    """Score ``hypotheses`` against ``references`` after :func:`normalize_for_wer`, with jiwer.

    Corpus rates are total errors over total reference words (or characters), as jiwer computes them.
    Nothing divides by zero: a denominator of zero counts as one, so an empty reference with an empty
    hypothesis scores 0.0 and one with three inserted words scores 3.0.
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} references but {len(hypotheses)} hypotheses; pair them one to one")
    pairs = zip(references, hypotheses, strict=True)
    utterances = [_score_pair(normalize_for_wer(ref), normalize_for_wer(hyp)) for ref, hyp in pairs]
    word_totals = _sum_word_counts(utterances)
    char_totals = _character_counts([u["reference"] for u in utterances], [u["hypothesis"] for u in utterances])
    return WerReport(**word_totals, **char_totals, utterances=utterances)


def _score_pair(reference: str, hypothesis: str) -> UtteranceScore:
    words = jiwer.process_words(reference, hypothesis)
    characters = jiwer.process_characters(reference, hypothesis)
    reference_words = words.hits + words.substitutions + words.deletions
    errors = words.substitutions + words.deletions + words.insertions
    return UtteranceScore(
        reference=reference,
        hypothesis=hypothesis,
        wer=errors / max(reference_words, 1),
        cer=float(characters.cer),
        reference_words=reference_words,
        hits=words.hits,
        substitutions=words.substitutions,
        deletions=words.deletions,
        insertions=words.insertions,
    )


def _sum_word_counts(utterances: list[UtteranceScore]) -> dict[str, Any]:
    keys = ("reference_words", "hits", "substitutions", "deletions", "insertions")
    totals = {key: sum(utterance[key] for utterance in utterances) for key in keys}
    errors = totals["substitutions"] + totals["deletions"] + totals["insertions"]
    return {"wer": errors / max(totals["reference_words"], 1), **totals}


def _character_counts(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    if not references:
        return {"cer": 0.0, "reference_chars": 0, "char_errors": 0}
    characters = jiwer.process_characters(references, hypotheses)
    reference_chars = characters.hits + characters.substitutions + characters.deletions
    char_errors = characters.substitutions + characters.deletions + characters.insertions
    return {
        "cer": char_errors / max(reference_chars, 1),
        "reference_chars": reference_chars,
        "char_errors": char_errors,
    }
