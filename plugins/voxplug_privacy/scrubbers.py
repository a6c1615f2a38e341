"""The built-in text scrubbers: e-mail addresses, phone numbers, URLs and long digit runs.

Each replaces what it finds by a token (``[EMAIL]``, ``[PHONE]``, ``[URL]``, ``[NUMBER]`` by default; set
``replacement`` in its options). Transcripts of read speech often spell these out, so ``email`` and ``url`` also
catch the spoken forms ("jane dot doe at example dot com", "example dot org") unless ``spoken: false``.
Run them most specific first: ``email, url, phone, digits``.
"""

from __future__ import annotations

import re

from pydantic import Field

from voxplug.api import PatternScrubber, PluginOptions

TOP_LEVEL_DOMAINS = (
    "com", "org", "net", "edu", "gov", "int", "mil", "io", "co", "ai", "app", "dev", "info", "biz", "me", "tv",
    "uk", "us", "ca", "au", "de", "fr", "es", "it", "nl", "be", "ch", "at", "se", "no", "dk", "fi", "pl", "pt",
    "ie", "in", "jp", "cn", "br", "ru", "eu",
)  # fmt: skip
"""Endings that make a bare ``name.tld`` (or spoken ``name dot tld``) count as a web address."""
_TLD = "|".join(TOP_LEVEL_DOMAINS)
_URL_TAIL = r"(?:/[^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"


_DATE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")


def _digit_count(text: str) -> int:
    return sum(character.isdigit() for character in text)


def looks_like_date(text: str) -> bool:
    """``12.05.2024``, ``2024-05-12``, ``12/05/24``: three groups with the same separator, not personal data."""
    return _DATE.fullmatch(text) is not None


class EmailOptions(PluginOptions):
    """Options of the ``email`` scrubber."""

    replacement: str = Field("[EMAIL]", description="what an address is replaced by")
    spoken: bool = Field(True, description="also catch spoken addresses: 'jane dot doe at example dot com'")


class EmailScrubber(PatternScrubber):
    """E-mail addresses, written (``jane.doe@example.com``) or spoken (``jane dot doe at example dot com``)."""

    name = "email"
    description = "e-mail addresses, written or spoken"
    Options = EmailOptions
    options: EmailOptions

    def pattern(self) -> re.Pattern[str]:
        """``local@domain.tld``, and with ``spoken`` also ``local [dot part] at domain dot tld``."""
        written = r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}"
        spoken = r"\b[\w-]+(?:\s+dot\s+[\w-]+)*\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)*\s+dot\s+(?:" + _TLD + r")\b"
        return re.compile(f"{written}|{spoken}" if self.options.spoken else written, self.flags)


class PhoneOptions(PluginOptions):
    """Options of the ``phone`` scrubber."""

    replacement: str = Field("[PHONE]", description="what a phone number is replaced by")
    min_digits: int = Field(7, ge=3, description="fewer digits than this is not a phone number")
    max_digits: int = Field(15, ge=3, description="more digits than this (E.164's limit) is not a phone number")


class PhoneScrubber(PatternScrubber):
    """Phone numbers: ``+44 20 7946 0958``, ``(555) 123-4567``, ``0612345678``, 7 to 15 digits by default."""

    name = "phone"
    description = "phone numbers (7 to 15 digits, with +country code, brackets, spaces, dots or dashes)"
    Options = PhoneOptions
    options: PhoneOptions

    def pattern(self) -> re.Pattern[str]:
        """An optional ``+`` country code and bracketed area code, then digit groups separated by ``[ .-]``."""
        return re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d+(?:[ .-]\d+)*(?!\w)")

    def accept(self, match: re.Match[str]) -> bool:
        """Only matches with a phone number's count of digits that are not dates."""
        text = match.group(0)
        return self.options.min_digits <= _digit_count(text) <= self.options.max_digits and not looks_like_date(text)


class UrlOptions(PluginOptions):
    """Options of the ``url`` scrubber."""

    replacement: str = Field("[URL]", description="what a web address is replaced by")
    bare_domains: bool = Field(True, description="also catch addresses without http:// or www. ('example.org/x')")
    spoken: bool = Field(True, description="also catch spoken addresses: 'example dot org'")


class UrlScrubber(PatternScrubber):
    """Web addresses: ``https://…``, ``www.…``, bare ``example.org/path`` and spoken ``example dot org``."""

    name = "url"
    description = "web addresses (http(s)://, www., bare or spoken domains)"
    Options = UrlOptions
    options: UrlOptions

    def pattern(self) -> re.Pattern[str]:
        """A scheme or ``www.`` address, plus bare and spoken domains with a known ending when enabled."""
        forms = [r"\b(?:https?|ftp)://[^\s<>\"']*[^\s<>\"'.,;:!?)\]]", r"\bwww\.[\w-]+(?:\.[\w-]+)+" + _URL_TAIL]
        if self.options.bare_domains:
            forms.append(r"(?<![\w@.])(?:[\w-]+\.)+(?:" + _TLD + r")\b(?![.@]\w)" + _URL_TAIL)
        if self.options.spoken:
            forms.append(r"\b[\w-]+(?:\s+dot\s+[\w-]+)*\s+dot\s+(?:" + _TLD + r")\b")
        return re.compile("|".join(forms), self.flags)


class DigitsOptions(PluginOptions):
    """Options of the ``digits`` scrubber."""

    replacement: str = Field("[NUMBER]", description="what a long digit run is replaced by")
    min_digits: int = Field(6, ge=2, description="runs of at least this many digits are replaced")


class DigitsScrubber(PatternScrubber):
    """Long digit runs (card, account, ID numbers): 6 or more digits, spaces, dots or dashes between groups."""

    name = "digits"
    description = "long digit runs such as card, account or ID numbers (6+ digits by default)"
    Options = DigitsOptions
    options: DigitsOptions

    def pattern(self) -> re.Pattern[str]:
        """Digits, possibly grouped by single spaces, dots or dashes, at least ``min_digits`` of them."""
        return re.compile(rf"(?<!\w)\d(?:[ .-]?\d){{{self.options.min_digits - 1},}}(?!\w)")

    def accept(self, match: re.Match[str]) -> bool:
        """Every long run except dates."""
        return not looks_like_date(match.group(0))
