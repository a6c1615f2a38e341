"""A problem found while checking one clip or transcript, shared by the audio and text checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """One problem with a clip or transcript.

    ``severity`` is ``"error"`` when the item must not be used and ``"warning"`` when it can be used but a
    person should look at it. ``code`` is a stable machine-readable name (``"too_long"``, ``"silent"``, …)
    and ``message`` a sentence a user can act on, without the file name (see :meth:`describe`).
    """

    severity: Severity
    code: str
    message: str

    @property
    def is_error(self) -> bool:
        """Whether this issue makes the item unusable."""
        return self.severity == "error"

    def describe(self, source: str | None = None) -> str:
        """Return the message as one line, prefixed with ``source`` (a file name or row) when given."""
        prefix = f"{source}: " if source else ""
        return f"{prefix}{self.message} ({self.severity}: {self.code})"
