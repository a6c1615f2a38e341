"""voxplug_voxtral_realtime: Mistral's streaming Voxtral Realtime (loading, tiny offline checkpoints, streaming
targets, the word aligners they are placed by, streaming and live transcription, LoRA targets).

It registers like any third-party plugin, through the ``voxplug`` entry-point group: the ``voxtral-realtime``
model family, the ``voxtral-realtime-streaming`` collator, the ``words`` and ``whisper`` aligners and a model-card
section that records the streaming delay. Importing this package is cheap: torch and transformers are imported
inside the functions that need them.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_model_families(register: Register) -> None:
    """Register the ``voxtral-realtime`` model family."""
    from voxplug_voxtral_realtime.family import VoxtralRealtimeFamily

    register(VoxtralRealtimeFamily)


@hookimpl
def register_collators(register: Register) -> None:
    """Register the ``voxtral-realtime-streaming`` collator."""
    from voxplug_voxtral_realtime.family import VoxtralRealtimeCollator

    register(VoxtralRealtimeCollator)


@hookimpl
def register_aligners(register: Register) -> None:
    """Register the ``words`` (timings in the data) and ``whisper`` (computed with Whisper) aligners."""
    from voxplug_voxtral_realtime.aligners import WhisperAligner, WordsAligner

    register(WordsAligner)
    register(WhisperAligner)


@hookimpl
def model_card_sections(card) -> str | None:
    """For a Voxtral Realtime model: the streaming delay it was trained at, and how to stream with it."""
    if card.facts.get("family") != "voxtral-realtime":
        return None
    from voxplug_voxtral_realtime.card import streaming_section

    return streaming_section(card.facts)
