"""Library messages that every run would print and no user can act on, left out of the console.

* DeepSpeed's "Setting accelerator to CPU" warning, logged on every import on a machine without a GPU (voxplug
  only uses DeepSpeed when the config asks for it);
* peft's use of transformers' deprecated ``is_gradient_checkpointing`` (a ``FutureWarning`` about peft's code).

Each is matched by its own text, so any other warning still shows.
"""

from __future__ import annotations

import logging
import warnings

QUIET_WARNINGS = (r"`is_gradient_checkpointing` is deprecated",)
"""Messages (regular expressions) of ``FutureWarning``\\ s about libraries' own code."""
QUIET_LOG_MESSAGES = {"DeepSpeed": ("Setting accelerator to CPU",)}
"""Per logger: the start of records that are dropped."""


class _DropMessages(logging.Filter):
    """Drops records whose message starts with one of ``prefixes``."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_library_noise() -> None:
    """Install the filters (idempotent): they hold for the whole process, the loggers' later setup included."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=FutureWarning)
    for name, prefixes in QUIET_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropMessages) for existing in logger.filters):
            logger.addFilter(_DropMessages(prefixes))
