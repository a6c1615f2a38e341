"""The model-card section of a Voxtral Realtime fine-tune: its trained delay and a streaming usage example."""

from __future__ import annotations

from typing import Any

COLLATOR_OPTIONS = "model.voxtral-realtime-streaming"


def trained_delay(facts: dict[str, Any]) -> str:
    """The delay the run trained at, in words, from its collator options (``card.facts["plugin_options"]``)."""
    options = (facts.get("plugin_options") or {}).get(COLLATOR_OPTIONS, {})
    if options.get("delay_range_ms"):
        low, high = options["delay_range_ms"]
        return (
            f"over delays drawn from {low} to {high} ms (one per batch); its processor keeps the base model's "
            "default delay"
        )
    if options.get("delay_ms"):
        return f"at a delay of **{options['delay_ms']} ms** ({options['delay_ms'] // 80} tokens of 80 ms)"
    return "at the base model's default delay (`transcription_delay_ms` in its `tekken.json`)"


def streaming_section(facts: dict[str, Any]) -> str:
    """Markdown: the delay the model was trained at, and what the delay trades."""
    return f"""## Streaming delay

This model was fine-tuned {trained_delay(facts)}. The delay is how far behind the speaker the transcript runs: a
longer one (up to 2400 ms) is more accurate, a shorter one (down to 80 ms) answers sooner. Any delay in that range
can be asked for at inference (`transcription_delay_ms` in `tekken.json`, or the delay of a streaming session);
the trained one works best.
"""
