"""Sentences to read aloud when recording a dataset, in 26 languages, online or offline.

``phrases(language, n, seed)`` picks ``n`` sentences for a recording session:

* from an **online corpus** a plugin offers through the ``reading_phrases`` hook (the built-in Granary plugin reads
  NVIDIA Granary transcripts) when a Hub token is available (``HF_TOKEN`` or ``hf auth login``) and the network is
  allowed (``HF_HUB_OFFLINE`` unset): real sentences of everyday length, 11–120 characters and at most 18 words;
* else from the **bundled offline list** (``phrases.json`` beside this module): 22 short everyday sentences for
  each of the 25 Granary languages plus Hindi (bg cs da de el en es et fi fr hi hr hu it lt lv mt nl pl pt ro ru sk
  sl sv uk).

Any failure of the online path (no token, no network, a changed dataset) falls back to the offline list, and
:func:`choose_phrases` says which source answered. The same ``seed`` gives the same choice from the same source.
Phrases are not a data source (they have no audio); the web app and scripts import this module.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from voxplug.errors import DataError

PHRASES_FILE = Path(__file__).with_name("phrases.json")
MIN_CHARS, MAX_CHARS, MAX_WORDS = 11, 120, 18


@dataclass(frozen=True)
class PhraseSelection:
    """Sentences chosen for one session, their language and where they came from."""

    language: str
    texts: list[str]
    source: str
    """``"bundled"``, or the name of the online corpus that answered (``"granary"``)."""


def phrases(language: str, n: int = 20, seed: int | None = None, *, online: bool | None = None) -> list[str]:
    """Return ``n`` sentences to read aloud in ``language`` (fewer if the source holds fewer), without repeats.

    ``online`` None tries Granary when a token is available and falls back to the bundled list; False never goes
    online; True goes online or raises :class:`DataError`.
    """
    return choose_phrases(language, n, seed, online=online).texts


def choose_phrases(
    language: str, n: int = 20, seed: int | None = None, *, online: bool | None = None
) -> PhraseSelection:
    """Like :func:`phrases`, also saying whether the sentences came from an online corpus or the bundled list."""
    code = normalise_language(language)
    if n < 1:
        raise DataError(f"phrases: n must be at least 1, got {n}")
    if online is not False and (online or _online_allowed()):
        from voxplug.plugins import get_plugin_host

        try:
            answer = get_plugin_host().reading_phrases(language=code)
        except Exception as exc:  # any failure online means: use the offline list (unless online was demanded)
            if online:
                raise DataError(f"phrases: could not read online sentences for {code!r}: {exc}") from exc
            answer = None
        if answer is not None and (pool := suitable_sentences(answer[1])):
            return PhraseSelection(code, _pick(pool, n, seed), answer[0])
    return PhraseSelection(code, _pick(bundled_phrases(code), n, seed), "bundled")


def bundled_languages() -> list[str]:
    """The language codes of the bundled offline list."""
    return sorted(_bundled())


def bundled_phrases(language: str) -> list[str]:
    """Every bundled sentence of ``language``, in file order."""
    code = normalise_language(language)
    return list(_bundled()[code])


def normalise_language(language: str) -> str:
    """``pt-BR`` / ``pt_BR`` / ``PT`` → ``pt``; raises :class:`DataError` for a language without phrases."""
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code not in _bundled():
        known = ", ".join(bundled_languages())
        raise DataError(f"phrases: no sentences for language {language!r} (available: {known})")
    return code


@cache
def _bundled() -> dict[str, list[str]]:
    return json.loads(PHRASES_FILE.read_text(encoding="utf-8"))["languages"]


def _pick(pool: list[str], n: int, seed: int | None) -> list[str]:
    chosen = list(pool)
    random.Random(seed).shuffle(chosen)
    return chosen[:n]


def _online_allowed() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    from huggingface_hub import get_token

    return get_token() is not None


def suitable_sentences(texts: object) -> list[str]:
    """Unique texts of reading length: 11–120 characters, at most 18 words, mostly letters."""
    seen: dict[str, None] = {}
    for text in texts:  # type: ignore[attr-defined]
        if not isinstance(text, str):
            continue
        sentence = " ".join(text.split())
        letters = sum(char.isalpha() for char in sentence)
        if (
            MIN_CHARS <= len(sentence) <= MAX_CHARS
            and len(sentence.split()) <= MAX_WORDS
            and letters > len(sentence) / 2
        ):
            seen.setdefault(sentence, None)
    return list(seen)
