"""What NVIDIA Granary (``nvidia/Granary``) holds: its languages, corpora, tasks and manifest fields.

Facts from the dataset card and NVIDIA's NeMo speech-data-processor configs (see the project's
``reference/voxtral.md``, section 5): transcripts only (JSONL manifests), CC-BY-4.0, 25 European languages, configs
named ``<language>_<corpus>``, splits ``asr`` (transcripts) and ``ast`` (translations to English).
"""

from __future__ import annotations

GRANARY_REPO = "nvidia/Granary"
GRANARY_LICENCE = "cc-by-4.0"

LANGUAGES = (
    "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "hr", "hu", "it",
    "lt", "lv", "mt", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "uk",
)  # fmt: skip
"""The 25 languages of Granary (ISO 639-1)."""

CORPORA = ("voxpopuli", "ytc", "yodas", "librilight")
"""The source corpora: VoxPopuli, YouTube-Commons, YODAS2 and LibriLight (the last via MOSEL, English)."""

TASKS = ("asr", "ast")
"""``asr``: speech with its transcript; ``ast``: speech with an English translation."""

TEXT_FIELDS = {"asr": "text", "ast": "answer"}
"""The manifest field holding the target text of each task."""


def config_name(language: str, corpus: str) -> str:
    """The Hub configuration name of one language and corpus, e.g. ``sv_voxpopuli``."""
    return f"{language}_{corpus}"
