"""voxplug_voxtral: the Voxtral model family (loading, tiny offline checkpoints, collation, generation, LoRA targets).

It registers like any third-party plugin, through the ``voxplug`` entry-point group: the ``voxtral`` model
family and the ``voxtral-transcription`` collator. Importing this package is cheap: torch and transformers are
imported inside the functions that need them.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_model_families(register: Register) -> None:
    """Register the ``voxtral`` model family."""
    from voxplug_voxtral.family import VoxtralFamily

    register(VoxtralFamily)


@hookimpl
def register_collators(register: Register) -> None:
    """Register the ``voxtral-transcription`` collator."""
    from voxplug_voxtral.family import VoxtralTranscriptionCollator

    register(VoxtralTranscriptionCollator)
