"""LoRA target selection for Voxtral, scoped to its three parts.

Module names in ``VoxtralForConditionalGeneration`` (transformers 5; PEFT matches the full dotted name)::

    model.language_model.layers.N.self_attn.{q,k,v,o}_proj     model.language_model.layers.N.mlp.{gate,up,down}_proj
    model.audio_tower.layers.N.self_attn.{q,k,v,out}_proj      model.audio_tower.layers.N.{fc1,fc2}
    model.multi_modal_projector.{linear_1,linear_2}

Plain ``target_modules=["q_proj", ...]`` also hits the audio encoder's q/k/v projections; these regexes
anchor on the part's name so an excluded part never gets adapters.
"""

from __future__ import annotations

from collections.abc import Iterable

from voxplug.api import ConfigError

SCOPES = ("language_model", "audio_tower", "projector")
DEFAULT_SCOPE = frozenset({"language_model"})

_SCOPE_PATTERNS = {
    "language_model": r"language_model\.layers\.\d+\.(?:self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)",
    "audio_tower": r"audio_tower\.layers\.\d+\.(?:self_attn\.(?:q|k|v|out)_proj|fc1|fc2)",
    "projector": r"multi_modal_projector\.linear_[12]",
}


def lora_target_regex(scope: Iterable[str] = DEFAULT_SCOPE) -> str:
    """Return a PEFT ``target_modules`` regex matching the linear layers of the chosen Voxtral parts.

    ``scope`` is a non-empty subset of ``{"language_model", "audio_tower", "projector"}``; the default is the
    language model only (attention q/k/v/o and MLP gate/up/down). PEFT full-matches the regex against each
    module's dotted name, so the pattern allows any prefix (``model.``, ``base_model.model.``...). An unknown
    or empty scope raises :class:`voxplug.errors.ConfigError`.
    """
    chosen = set(scope)
    unknown = chosen.difference(SCOPES)
    if unknown or not chosen:
        raise ConfigError(f"LoRA scope must be a non-empty subset of {set(SCOPES)}, got {sorted(chosen) or 'nothing'}")
    alternatives = "|".join(_SCOPE_PATTERNS[part] for part in SCOPES if part in chosen)
    return rf"(?:.*\.)?(?:{alternatives})"
