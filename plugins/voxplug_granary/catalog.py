"""What NVIDIA Granary (``nvidia/Granary``) holds: its languages, corpora, tasks and manifest fields.

Facts from the dataset card and NVIDIA's NeMo speech-data-processor configs (see the project's
``reference/real-datasets.md`` and ``reference/voxtral.md``, section 5): transcripts only (JSONL manifests),
CC-BY-4.0, 25 European languages, configs named ``<language>_<corpus>``, splits ``asr`` (transcripts) and ``ast``
(translations to English). English has no ``ast`` split (it is the translation target); LibriLight is English only;
the YODAS part covers 23 of the languages (not Maltese or Slovenian).

The YODAS audio is published separately by ESPnet (``espnet/yodas-granary``): Parquet with the audio embedded,
configs named by the full language name (``English``, ``Swedish``, ...), splits ``asr_only`` and ``ast``.
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

YODAS_LANGUAGES = tuple(code for code in LANGUAGES if code not in ("mt", "sl"))
"""The languages Granary's YODAS part covers."""

LANGUAGE_NAMES = {
    "bg": "Bulgarian", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "fi": "Finnish", "fr": "French", "hr": "Croatian", "hu": "Hungarian",
    "it": "Italian", "lt": "Lithuanian", "lv": "Latvian", "mt": "Maltese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sv": "Swedish",
    "uk": "Ukrainian",
}  # fmt: skip
"""English names of the languages: the configuration names of ``espnet/yodas-granary``."""

YODAS_AUDIO_REPO = "espnet/yodas-granary"
"""ESPnet's Parquet release of the YODAS audio behind Granary's ``yodas`` manifests."""

YODAS_AUDIO_SPLITS = {"asr": "asr_only", "ast": "ast"}
"""The ``espnet/yodas-granary`` split holding the audio of each Granary task."""


def config_name(language: str, corpus: str) -> str:
    """The Hub configuration name of one language and corpus, e.g. ``sv_voxpopuli``."""
    return f"{language}_{corpus}"


def corpora_of(language: str) -> tuple[str, ...]:
    """The corpora Granary has for ``language``, in :data:`CORPORA` order."""
    available = {"voxpopuli", "ytc"}
    if language in YODAS_LANGUAGES:
        available.add("yodas")
    if language == "en":
        available.add("librilight")
    return tuple(corpus for corpus in CORPORA if corpus in available)


def tasks_of(language: str) -> tuple[str, ...]:
    """The tasks (splits) Granary has for ``language``: English has no translation split."""
    return ("asr",) if language == "en" else TASKS


def granary_configs() -> list[str]:
    """Every ``<language>_<corpus>`` configuration of Granary."""
    return [config_name(language, corpus) for language in LANGUAGES for corpus in corpora_of(language)]


def combination_problem(language: str, corpus: str, task: str) -> str | None:
    """Why Granary has no ``task`` split of ``<language>_<corpus>``, listing what it has; None when it exists."""
    corpora = corpora_of(language)
    if corpus not in corpora:
        holders = [code for code in LANGUAGES if corpus in corpora_of(code)]
        where = "English only" if holders == ["en"] else f"in {len(holders)} languages, not {language!r}"
        return (
            f"Granary has no {config_name(language, corpus)} (corpus {corpus!r} is {where}); "
            f"{language} has: {', '.join(config_name(language, each) for each in corpora)}"
        )
    if task not in tasks_of(language):
        return (
            f"Granary {config_name(language, corpus)} has no {task!r} split (English is the translation target, "
            f"so English has only 'asr'); use task: asr"
        )
    return None
