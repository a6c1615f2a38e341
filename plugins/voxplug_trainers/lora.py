"""The ``lora`` training method: low-rank adapters on the language model; everything else frozen.

Defaults: r 8, alpha 32, dropout 0.0. The targets are scoped by a regex from the model family, because plain
``q_proj``-style names would also hit the Whisper encoder, and the task type is ``CAUSAL_LM`` (Voxtral is a
decoder-only LM with audio embeddings, not a seq2seq model). Unless LoRA is put
on the audio encoder, the encoder runs without autograd.

Over a 4-bit base (``model.quantization``, QLoRA) the same adapters train on PEFT's bitsandbytes layers, in the
same precision as over a bf16 base: fp32 adapter weights computing in bf16 under autocast, with the frozen norms,
embeddings and head left in the load dtype. peft's ``prepare_model_for_kbit_training`` is not used: it would
upcast those frozen weights to fp32 (gigabytes more on a 24B model, and other numbers than the bf16 run) and turn
gradient checkpointing on behind ``training.gradient_checkpointing``'s back. A merge loads the base again in bf16
and merges the saved adapter into it, never into the 4-bit weights.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from voxplug.api import (
    PluginOptions,
    TrainedWeights,
    TrainingError,
    TrainingMethod,
    count_parameters,
    freeze_without_grad,
    lora_added_parameters,
)

if TYPE_CHECKING:
    from voxplug.api import ModelFamily, TrainingContext

log = logging.getLogger("voxplug.training")


class LoraOptions(PluginOptions):
    """Options of the ``lora`` training method."""

    r: int = Field(8, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    scopes: list[str] | None = Field(
        None,
        description="parts of the model that get adapters (None: the family's first scope; Voxtral: "
        "language_model, audio_tower, projector; Whisper: decoder, encoder)",
    )
    modules_to_save: list[str] = Field(
        default_factory=list, description="module names trained in full and saved beside the adapter"
    )
    merge: bool = Field(False, description="also write the base model with the adapter merged in, to merged/")
    one_node: bool = Field(
        True,
        description="compute each adapted linear layer as one autograd node (the same arithmetic as PEFT's, with "
        "fewer kernels and less Python a step); eager runs without DeepSpeed only. false: PEFT's forward",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """``fused`` is the old name of ``one_node``: it still works, with a warning naming the new key (a
        FutureWarning: Python shows those to the person running a command, where a DeprecationWarning stays hidden)."""
        if not isinstance(data, dict) or "fused" not in data:
            return data
        if "one_node" in data:
            raise ValueError("training.lora.fused is the old name of training.lora.one_node: set only one_node")
        warnings.warn("training.lora.fused is renamed training.lora.one_node", FutureWarning, stacklevel=2)
        return {("one_node" if key == "fused" else key): value for key, value in data.items()}


class LoraMethod(TrainingMethod):
    """Train LoRA adapters; save the adapter (and optionally a merged model) with the processor."""

    name = "lora"
    description = "LoRA adapters on the language model (audio encoder frozen, run without autograd)"
    Options = LoraOptions
    options: LoraOptions
    saves_adapter = True
    supports_cuda_graphs = True

    def prepare_model(self, model: Any, family: ModelFamily, context: TrainingContext) -> Any:
        """Freeze the encoder (unless adapted) and wrap ``model`` with PEFT adapters on the chosen scopes."""
        from peft import LoraConfig, get_peft_model

        from .lora_linear import shared_input_groups, use_one_node_lora

        scopes = self._checked_scopes(family)
        if family.encoder_scope not in scopes:
            freeze_without_grad(family.frozen_encoder(model))
        lora_config = LoraConfig(
            r=self.options.r,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=family.lora_target_modules(scopes),
            modules_to_save=self.options.modules_to_save or None,
            bias="none",
            task_type=family.peft_task_type,
        )
        peft_model = get_peft_model(model, lora_config)
        if not context.compile:  # compiled blocks fuse the adapters and casts themselves
            if self.options.one_node and context.speed.eager_adapters:
                fused = use_one_node_lora(peft_model, family.lora_shared_inputs)
                log.info(
                    "LoRA: %d adapted layers run as one autograd node each, but for %d groups of layers that share "
                    "their input, which run as one node a group (training.lora.one_node)",
                    fused,
                    shared_input_groups(peft_model),
                )
            skip_input_casts_under_autocast(peft_model)
        counts = count_parameters(peft_model)
        log.info("LoRA on %s: %d of %d parameters train", ", ".join(scopes), counts["trainable"], counts["total"])
        return peft_model

    def trained_weights(self, model: Any, family: ModelFamily) -> TrainedWeights:
        """The adapters on the chosen scopes' linear layers (and trained copies of ``modules_to_save``)."""
        scopes = self._checked_scopes(family)
        added = lora_added_parameters(model, family.lora_target_modules(scopes), self.options.r)
        for name, module in model.named_modules():
            if any(name == saved or name.endswith("." + saved) for saved in self.options.modules_to_save):
                added += sum(parameter.numel() for parameter in module.parameters())
        return TrainedWeights(base=frozenset(), added=added, scopes=frozenset(scopes))

    def _checked_scopes(self, family: ModelFamily) -> list[str]:
        scopes = family.lora_scopes[:1] if self.options.scopes is None else tuple(self.options.scopes)
        unknown = [scope for scope in scopes if scope not in family.lora_scopes]
        if unknown or not scopes:
            raise TrainingError(
                f"training.lora.scopes: {unknown or 'empty'} not parts of a {family.name} model "
                f"(choose from {', '.join(family.lora_scopes)})"
            )
        return list(scopes)

    def save_model(self, model: Any, processor: Any, out_dir: Path) -> dict[str, Path]:
        """Write the adapter and processor to ``out_dir``; with ``merge``, the merged model to ``out_dir/../merged``.

        Merging folds the adapter into ``model``'s weights in place, so it comes last; over a 4-bit base it folds
        the saved adapter into the base loaded again in bf16 (on the CPU) instead.
        """
        from .file_modes import follow_umask

        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        saved = {"adapter": out_dir}
        if self.options.merge:
            from voxplug.api import is_quantized, merge_into_bf16_base

            merged_dir = out_dir.parent / "merged"
            merged = merge_into_bf16_base(model, out_dir) if is_quantized(model) else model.merge_and_unload()
            merged.save_pretrained(merged_dir)
            processor.save_pretrained(merged_dir)
            saved["merged"] = merged_dir
        for folder in saved.values():
            follow_umask(folder)
        return saved


def skip_input_casts_under_autocast(model: Any) -> list[Any]:
    """Let ``model``'s LoRA layers skip casting their input to the adapters' dtype while autocast is on.

    PEFT keeps adapters in fp32 over a bf16 base and casts each adapter's input to fp32, and autocast then casts
    it straight back to bf16 for the matmul: two copies of every adapted activation (and two more in backward)
    that change no value. A pre-hook on each LoRA layer turns PEFT's cast off while autocast is on and back on
    otherwise (generation without autocast needs it). Returns the hooks' handles (``handle.remove()`` undoes one).
    """
    import torch

    from .lora_linear import decide_peft_input_cast

    def decide(module: Any, args: tuple[Any, ...]) -> None:
        if args and isinstance(args[0], torch.Tensor):
            decide_peft_input_cast(module, args[0])

    return [
        module.register_forward_pre_hook(decide)
        for module in model.modules()
        if hasattr(module, "cast_input_dtype_enabled")
        and hasattr(module, "lora_A")
        and "_peft_forward" not in module.__dict__  # one-node layers decide for themselves (lora_linear)
    ]
