"""Transcript cleaning, checking, decoding and WER/CER scoring in voxplug.data.text."""

from __future__ import annotations

import pytest

from voxplug.data.text import (
    MAX_TRANSCRIPT_CHARS,
    check_transcript,
    clean_transcript,
    decode_transcript_bytes,
    normalize_for_wer,
    wer_cer,
)
from voxplug.errors import DataError

# --- clean_transcript --------------------------------------------------------------------------------------


def test_clean_composes_to_nfc() -> None:
    decomposed = "cafe\u0301 nai\u0308ve"
    assert clean_transcript(decomposed) == "caf\u00e9 na\u00efve"
    assert len(clean_transcript("e\u0301")) == 1


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  hello   world  ", "hello world"),
        ("hello\tworld\nagain\r\n", "hello world again"),
        ("hello\u00a0world\u202fagain\u3000end", "hello world again end"),
        ("line one\u2028line two", "line one line two"),
    ],
)
def test_clean_collapses_every_kind_of_whitespace(raw: str, cleaned: str) -> None:
    assert clean_transcript(raw) == cleaned


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("hel\u200blo", "hello"),  # zero-width space
        ("\ufeffhello", "hello"),  # byte-order mark
        ("co\u00adoperate", "cooperate"),  # soft hyphen
        ("word\u2060joiner", "wordjoiner"),
        ("\u200eleft-to-right mark", "left-to-right mark"),
        ("bell\x07 and nul\x00", "bell and nul"),  # control characters
        ("e\u200b\u0301", "\u00e9"),  # removal happens before composition
        ("\u200dedge joiners\u200c", "edge joiners"),
    ],
)
def test_clean_removes_invisible_and_control_characters(raw: str, cleaned: str) -> None:
    assert clean_transcript(raw) == cleaned


def test_clean_keeps_joiners_that_spell_a_word() -> None:
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # "I want", with a zero-width non-joiner
    assert clean_transcript(persian) == persian


def test_clean_keeps_case_and_punctuation_and_is_idempotent() -> None:
    text = "  Hello,\u00a0World!  It's 3\u200b pm. "
    cleaned = clean_transcript(text)
    assert cleaned == "Hello, World! It's 3 pm."
    assert clean_transcript(cleaned) == cleaned


# --- check_transcript --------------------------------------------------------------------------------------


def codes(text: str, **kwargs: int) -> list[str]:
    return [issue.code for issue in check_transcript(text, **kwargs)]


def test_check_transcript_finds_empty_blank_and_long_text() -> None:
    assert codes("") == ["empty"]
    assert codes(" \t\n\u00a0\u200b") == ["whitespace_only"]
    assert codes("a" * (MAX_TRANSCRIPT_CHARS + 1)) == ["too_long"]
    assert codes("a" * MAX_TRANSCRIPT_CHARS) == []
    assert codes("twelve chars", max_chars=10) == ["too_long"]
    assert all(issue.is_error for issue in check_transcript(""))


def test_check_transcript_passes_good_text_and_warns_on_mojibake() -> None:
    assert check_transcript("The cat sat on the mat.") == []
    [issue] = check_transcript("caf\ufffd au lait")
    assert (issue.severity, issue.code) == ("warning", "replacement_character")


def test_long_message_says_the_count_and_the_limit() -> None:
    [issue] = check_transcript("x" * 12, max_chars=10)
    assert issue.message == "the transcript has 12 characters, more than the 10 limit"


# --- decode_transcript_bytes -------------------------------------------------------------------------------


def test_decode_reads_utf8_and_drops_a_bom() -> None:
    assert decode_transcript_bytes("caf\u00e9\n".encode(), "a.txt") == "caf\u00e9\n"
    assert decode_transcript_bytes(b"\xef\xbb\xbfhello", "a.txt") == "hello"


def test_decode_names_file_line_and_byte_for_non_utf8() -> None:
    latin1 = "first line\ncaf\u00e9".encode("latin-1")
    with pytest.raises(DataError) as raised:
        decode_transcript_bytes(latin1, "transcripts.tsv")
    message = str(raised.value)
    assert message.startswith("transcripts.tsv: line 2: not valid UTF-8 (byte 0xe9 at offset 14)")
    assert "expected UTF-8" in message


def test_decode_recognises_utf16() -> None:
    with pytest.raises(DataError, match=r"^notes.txt: the text is UTF-16 encoded; expected UTF-8"):
        decode_transcript_bytes("hello".encode("utf-16"), "notes.txt")


# --- normalize_for_wer -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("Hello, World!", "hello world"),
        ("  The   END.  ", "the end"),
        ("don't stop", "dont stop"),
        ("it\u2019s fine", "its fine"),
        ("well-known (sort of)", "well known sort of"),
        ("\u00abBonjour\u00bb, dit-il\u2026", "bonjour dit il"),
        ("\u00bfQu\u00e9 tal?", "qu\u00e9 tal"),
        ("Stra\u00dfe", "strasse"),
        ("\uff21\uff22\uff23 \ufb01ne", "abc fine"),  # full-width letters and a ligature
        ("2 + 2 = 4 \u20ac", "2 + 2 = 4 \u20ac"),  # digits and symbols (S*) stay
        ("salt & pepper", "salt pepper"),  # "&" is punctuation (Po)
        ("cafe\u0301", "caf\u00e9"),
        ("?!...", ""),
    ],
)
def test_normalize_for_wer(text: str, normalized: str) -> None:
    assert normalize_for_wer(text) == normalized


def test_normalisation_does_not_touch_training_text() -> None:
    assert clean_transcript("Hello, World!") == "Hello, World!"


# --- wer_cer -----------------------------------------------------------------------------------------------


def test_wer_cer_on_a_hand_counted_example() -> None:
    report = wer_cer(["The cat sat on the mat.", "Hello world"], ["the cat sit on mat", "hello, world!"])

    # Utterance 1: "sat"->"sit" is 1 substitution and the second "the" 1 deletion: 2 errors over 6 words.
    # Characters: 1 substitution (a->i) and 4 deletions ("the ") over 22 characters.
    first, second = report["utterances"]
    assert (first["substitutions"], first["deletions"], first["insertions"], first["hits"]) == (1, 1, 0, 4)
    assert first["wer"] == pytest.approx(2 / 6)
    assert first["cer"] == pytest.approx(5 / 22)
    assert first["reference"] == "the cat sat on the mat"
    assert (second["wer"], second["cer"]) == (0.0, 0.0)  # case and punctuation are not errors

    assert report["wer"] == pytest.approx(2 / 8)
    assert report["cer"] == pytest.approx(5 / 33)
    assert (report["reference_words"], report["hits"], report["substitutions"], report["deletions"]) == (8, 6, 1, 1)
    assert (report["insertions"], report["reference_chars"], report["char_errors"]) == (0, 33, 5)


def test_wer_counts_insertions() -> None:
    report = wer_cer(["a b c d"], ["a b x c d e"])
    assert (report["insertions"], report["substitutions"], report["deletions"]) == (2, 0, 0)
    assert report["wer"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("reference", "hypothesis", "wer", "insertions", "deletions"),
    [
        ("", "", 0.0, 0, 0),
        ("", "three extra words", 3.0, 3, 0),
        ("?!", "", 0.0, 0, 0),  # nothing left after normalisation
        ("two words", "", 1.0, 0, 2),
    ],
)
def test_empty_sides_do_not_crash(reference: str, hypothesis: str, wer: float, insertions: int, deletions: int) -> None:
    report = wer_cer([reference], [hypothesis])
    assert report["wer"] == pytest.approx(wer)
    assert (report["insertions"], report["deletions"]) == (insertions, deletions)


def test_corpus_wer_sums_errors_over_reference_words() -> None:
    report = wer_cer(["", "x y"], ["z", "x y"])
    assert report["wer"] == pytest.approx(1 / 2)
    assert [utterance["wer"] for utterance in report["utterances"]] == [1.0, 0.0]


def test_wer_cer_of_nothing_and_of_mismatched_lists() -> None:
    empty = wer_cer([], [])
    assert (empty["wer"], empty["cer"], empty["utterances"]) == (0.0, 0.0, [])
    with pytest.raises(ValueError, match="got 2 references but 1 hypotheses"):
        wer_cer(["a", "b"], ["a"])
