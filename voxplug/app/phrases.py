"""Prompts to read aloud, from :mod:`voxplug.data.phrases` (26 languages), shaped for the Record tab.

The first batch shown when the page opens comes from the bundled offline list, so the app starts without touching
the network and works offline. Later batches may come from NVIDIA Granary when the app
allows it (``online``) and a token is available; :mod:`voxplug.data.phrases` falls back to the offline list by itself.
"""

from __future__ import annotations

import re
from functools import cache

from voxplug.data.phrases import bundled_languages, phrases

DEFAULT_LANGUAGE = "en"
BATCH_SIZE = 10
"""How many phrases "more phrases" adds."""


@cache
def language_name(code: str) -> str:
    """The English name of an ISO 639-1 ``code`` (``"el"`` → ``"Modern Greek"``), or the code when unknown."""
    try:
        import pycountry
    except ImportError:
        return code
    language = pycountry.languages.get(alpha_2=code)
    return re.sub(r"\s*\(.*\)$", "", language.name) if language is not None else code


def language_choices() -> list[tuple[str, str]]:
    """``(label, code)`` pairs for the language dropdown, English first, then by name."""
    codes = sorted(bundled_languages(), key=lambda code: (code != DEFAULT_LANGUAGE, language_name(code)))
    return [(f"{language_name(code)} ({code})", code) for code in codes]


def phrase_batch(
    language: str, count: int = BATCH_SIZE, *, seed: int = 0, skip: int = 0, online: bool = False
) -> list[str]:
    """``count`` phrases in ``language`` after the first ``skip`` of the seeded order (fewer when they run out)."""
    return phrases(language, skip + count, seed, online=None if online else False)[skip:]
