"""Language codes: read the usual spellings, check they name a language, and map them to what a model accepts.

Datasets spell a language many ways: ``sv``, ``SV``, ``sv-SE`` (Common Voice locales), ``sv_SE`` (POSIX
locales), ``swe`` (ISO 639-3). :func:`canonical_language` turns each into one BCP 47 form (``sv``, ``sv-SE``)
after checking the language subtag against ISO 639, as pycountry lists it (the table mistral-common's own check
reads); region and script subtags are kept, so a family that can use them may. ``zz``, ``xx-notalang`` and ``""``
are not language codes.

A model family then says what its checkpoints accept with a :class:`LanguageSupport` (the codes its prompts take,
and whether it can translate), and :func:`resolve_run_languages` maps every row of a run to those codes before the
model is loaded, failing with the row, the code and the accepted codes when one cannot be mapped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from voxplug.errors import DataError

if TYPE_CHECKING:
    from voxplug.data.interface import Example

TRANSCRIBE = "transcribe"
TRANSLATE = "translate"
TASKS = (TRANSCRIBE, TRANSLATE)
"""What a row asks of the model: write down what was said, or translate it into ``target_language``."""

WITHDRAWN_CODES = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv", "mo": "ro"}
"""ISO 639-1 codes withdrawn from the standard and their replacements; Java locales and older vocabularies (some
Whisper tokenizers write Hebrew ``<|iw|>``) still use them, and pycountry does not list them."""

_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*$")
_EXAMPLES = "such as en, sv, pt-BR"


@lru_cache(maxsize=4096)
def _iso639(subtag: str) -> Any:
    """pycountry's record of an ISO 639 language code (639-1, 639-2/T, 639-2/B or 639-3), or None."""
    import pycountry

    for key in ("alpha_2", "alpha_3", "bibliographic") if len(subtag) == 3 else ("alpha_2",):
        found = pycountry.languages.get(**{key: subtag})
        if found is not None:
            return found
    return None


def canonical_language(code: object, *, name: str = "language") -> str:
    """The BCP 47 form of a language code: ``SV`` → ``sv``, ``sv_SE`` → ``sv-SE``, ``swe`` → ``sv``.

    The language subtag must be an ISO 639 code (a three-letter code becomes its two-letter equivalent where one
    exists, a withdrawn one its replacement: ``iw`` → ``he``); region subtags are upper-cased, script subtags
    title-cased, the rest kept. Anything else, the empty string included, raises :class:`DataError` prefixed with
    ``name``.
    """
    if not isinstance(code, str):
        raise DataError(f"{name}: the language must be a code {_EXAMPLES}, got {type(code).__name__}")
    spelled = code.strip().replace("_", "-")
    if not spelled:
        raise DataError(f"{name}: the language is empty (give a code {_EXAMPLES}, or leave it out for automatic)")
    if not _TAG.match(spelled):
        raise DataError(f"{name}: language {code!r} is not a language code (expected an ISO 639 code {_EXAMPLES})")
    primary, *rest = spelled.split("-")
    record = _iso639(WITHDRAWN_CODES.get(primary.lower(), primary.lower()))
    if record is None:
        which = "" if primary == code else f": {primary!r}"
        raise DataError(f"{name}: language {code!r}{which} is not an ISO 639 language code (expected one {_EXAMPLES})")
    language = getattr(record, "alpha_2", None) or primary.lower()
    return "-".join([language, *(_subtag(part) for part in rest)])


def _subtag(part: str) -> str:
    if len(part) == 2 and part.isalpha():
        return part.upper()  # a region: SE, BR
    if len(part) == 4 and part.isalpha():
        return part.title()  # a script: Latn, Hant
    return part


def primary_language(tag: str) -> str:
    """The language subtag of a canonical tag: ``sv-SE`` → ``sv``."""
    return tag.split("-", 1)[0]


def language_name(code: str) -> str | None:
    """The English name of a language code (``sv`` → ``Swedish``), or None when ISO 639 does not know it."""
    record = _iso639(primary_language(code).lower())
    return None if record is None else str(record.name)


def language_code_for_name(name: str) -> str | None:
    """The ISO 639 code (two letters where one exists) of a language's English name, or None: ``javanese`` → ``jv``."""
    import pycountry

    record = pycountry.languages.get(name=name)
    return None if record is None else str(getattr(record, "alpha_2", None) or record.alpha_3)


def check_row_language(value: object, *, name: str = "language") -> str | None:
    """Check a row's ``language`` field: absent (None) means automatic; otherwise return the canonical code.

    Where a blank form field means "not given" (:func:`voxplug.data.prepare.check_language`), a manifest row that
    writes ``"language": ""`` is an error: leave the field out (or null) for automatic language detection.
    """
    return None if value is None else canonical_language(value, name=name)


@dataclass(frozen=True)
class LanguageSupport:
    """What one checkpoint of a model family accepts as a row's language and task.

    ``codes`` are the codes its prompts take (None: any ISO 639 code, passed on in its canonical form);
    ``aliases`` maps ISO codes to the family's own spelling (Whisper writes Javanese ``jw``); ``tasks`` are
    :data:`TRANSCRIBE` and, where the family can, :data:`TRANSLATE` into one of ``translation_targets``.
    ``why_not_translate`` tells the user why a family refuses translation rows; ``requires_language`` says that
    every row needs a language (a model trained with a language token cannot learn "detect it" from data).
    """

    model: str
    codes: frozenset[str] | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    tasks: frozenset[str] = frozenset({TRANSCRIBE})
    translation_targets: frozenset[str] = frozenset()
    why_not_translate: str = ""
    requires_language: bool = False

    def normalize(self, code: str | None, *, where: str = "language") -> str | None:
        """The code this model is prompted with for ``code`` (None stays None: automatic detection, where allowed).

        The full canonical tag is kept when the model accepts it (a family listing ``pt-BR``), else its language
        subtag, else the family's alias of it. Raises :class:`DataError` naming ``where``, the code and the
        accepted codes when none fits.
        """
        if code is None:
            if self.requires_language:
                raise DataError(
                    f"{where}: no language; {self.model} is trained with a language token, so give each row a "
                    "language or set data.language (e.g. data.language=en)"
                )
            return None
        tag = canonical_language(code, name=where)
        primary = primary_language(tag)
        for candidate in (tag, primary, self.aliases.get(primary)):
            if candidate is not None and (self.codes is None or candidate in self.codes):
                return candidate
        raise DataError(f"{where}: language {code!r}{self.refusal(primary)}")

    def refusal(self, primary: str) -> str:
        """Why ``primary`` is refused and what is accepted, to follow the refused code in a message."""
        assert self.codes is not None
        named = language_name(primary)
        what = f" ({named})" if named else ""
        return f"{what} is not a language {self.model} accepts; it accepts: {', '.join(sorted(self.codes))}"

    def check_task(self, task: str, target_language: str | None, *, where: str = "row") -> str | None:
        """Check a row's task; return the normalised target language of a translation (None for transcripts)."""
        if task not in TASKS:
            raise DataError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
        if task == TRANSCRIBE:
            return None
        if TRANSLATE not in self.tasks:
            reason = self.why_not_translate or f"{self.model} is trained to transcribe only"
            raise DataError(f"{where}: a translation row cannot be trained: {reason}")
        target = primary_language(canonical_language(target_language or "", name=f"{where} target_language"))
        if target not in self.translation_targets:
            into = ", ".join(sorted(self.translation_targets))
            raise DataError(f"{where}: {self.model} translates only into {into}, not {target_language!r}")
        return target


def resolve_run_languages(
    examples: Iterable[Example],
    support: LanguageSupport,
    *,
    default_language: str | None = None,
) -> None:
    """Map every example's language to the code ``support`` accepts, in place, before anything is trained.

    ``default_language`` (``data.language``) is checked first, so a bad default is blamed on the config key and
    not on the rows it filled. An example whose code changed keeps the original in ``meta["language_tag"]``.
    Rows that cannot be mapped raise one :class:`DataError` naming the first such row (its file and line), how
    many rows share the problem, and what is accepted; nothing is mapped in that case.
    """
    if default_language is not None:
        support.normalize(default_language, where="data.language")
    mapped: list[tuple[Example, str | None, str | None]] = []
    failures: dict[str, list[str]] = {}
    for example in examples:
        where = example.origin or f"row {example.id}"
        try:
            target = support.check_task(example.task, example.target_language, where=where)
            language = support.normalize(example.language, where=where)
        except DataError as exc:
            reason = str(exc).removeprefix(f"{where}: ")
            failures.setdefault(reason, []).append(where)
            continue
        mapped.append((example, language, target))
    if failures:
        raise DataError(_failure_message(failures))
    for example, language, target in mapped:
        if language != example.language and example.language is not None:
            example.meta.setdefault("language_tag", example.language)
        example.language = language
        if target is not None:
            example.target_language = target


def map_example_language(example: Example, support: LanguageSupport) -> None:
    """Map one example's language (and translation target) to the codes ``support`` accepts, in place.

    What :func:`resolve_run_languages` does for a list, for a row of a stream: raises :class:`DataError` naming the
    row when its language or task cannot be mapped, and leaves the example unchanged then.
    """
    where = example.origin or f"row {example.id}"
    target = support.check_task(example.task, example.target_language, where=where)
    language = support.normalize(example.language, where=where)
    if language != example.language and example.language is not None:
        example.meta.setdefault("language_tag", example.language)
    example.language = language
    if target is not None:
        example.target_language = target


def _failure_message(failures: Mapping[str, Collection[str]]) -> str:
    reason, rows = next(iter(failures.items()))
    first = next(iter(rows))
    more = f" (and {len(rows) - 1} more row(s) like it)" if len(rows) > 1 else ""
    kinds = f"; {len(failures) - 1} other language or task problem(s) too" if len(failures) > 1 else ""
    return f"{first}{more}: {reason}{kinds}; fix or drop these rows before training"
