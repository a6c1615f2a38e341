"""voxplug_privacy: text scrubbers that take personal data out of transcripts.

Registers the ``email``, ``phone``, ``url`` and ``digits`` scrubbers (see :mod:`voxplug_privacy.scrubbers`).
Enable them for training with ``data.scrub: [email, url, phone, digits]`` or for a dataset push with
``voxplug data push DATASET REPO --scrub email,url,phone,digits``. This package registers through the
``voxplug`` entry-point group, like any third-party plugin.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_text_scrubbers(register: Register) -> None:
    """Hand voxplug the ``email``, ``phone``, ``url`` and ``digits`` scrubbers."""
    from voxplug_privacy.scrubbers import DigitsScrubber, EmailScrubber, PhoneScrubber, UrlScrubber

    for scrubber in (EmailScrubber, PhoneScrubber, UrlScrubber, DigitsScrubber):
        register(scrubber)
