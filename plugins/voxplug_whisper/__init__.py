"""voxplug_whisper: the Whisper model family (loading, tiny offline checkpoints, collation, generation, LoRA
targets) and the CTranslate2 (faster-whisper) checkpoint import.

It registers like any third-party plugin, through the ``voxplug`` entry-point group: the ``whisper`` model
family, the ``whisper-transcription`` collator and the ``voxplug model import-ct2`` command. Importing this
package is cheap: torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_model_families(register: Register) -> None:
    """Register the ``whisper`` model family."""
    from voxplug_whisper.family import WhisperFamily

    register(WhisperFamily)


@hookimpl
def register_collators(register: Register) -> None:
    """Register the ``whisper-transcription`` collator."""
    from voxplug_whisper.collator import WhisperTranscriptionCollator

    register(WhisperTranscriptionCollator)


@hookimpl
def register_commands(cli) -> None:
    """Add ``voxplug model import-ct2``."""
    from voxplug_whisper.cli import register_model_commands

    register_model_commands(cli.group("model"))
