"""The ``full`` training method: every language-model weight trains; the audio encoder stays frozen by default.

Weights are loaded in fp32 (the run does this for trainers that do not save adapters) and the forward pass
runs under bf16/fp16 autocast on GPUs, so the optimizer updates fp32 master weights: in pure bf16, updates
smaller than a weight's rounding step would be lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from voxplug.api import (
    PluginOptions,
    TrainedWeights,
    TrainingError,
    TrainingMethod,
    count_parameters,
    freeze_parameters,
    freeze_without_grad,
    write_json,
)

if TYPE_CHECKING:
    from voxplug.api import ModelFamily, TrainingContext

log = logging.getLogger("voxplug.training")


class FullOptions(PluginOptions):
    """Options of the ``full`` training method."""

    train_audio_tower: bool = Field(
        False, description="also train the audio encoder (3x its compute, much more memory)"
    )
    train_projector: bool = Field(True, description="train the audio-to-text projector")
    save_dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32",
        description="dtype of the saved model: bf16 halves its size (Voxtral Mini: ~9.4 instead of ~18.7 GB); "
        "training keeps fp32 master weights either way",
    )


class FullMethod(TrainingMethod):
    """Fine-tune all weights except the frozen parts; save the full model (safetensors) with the processor."""

    name = "full"
    description = "full fine-tuning of the language model (and projector); audio encoder frozen by default"
    Options = FullOptions
    options: FullOptions

    def prepare_model(self, model: Any, family: ModelFamily, context: TrainingContext) -> Any:
        """Freeze the encoder (run without autograd) and, if asked, the projector; return ``model``."""
        if not self.options.train_audio_tower:
            freeze_without_grad(family.frozen_encoder(model))
        if not self.options.train_projector:
            try:
                projector = family.scope_module(model, "projector")
            except (NotImplementedError, ValueError) as exc:
                raise TrainingError(
                    f"training.full.train_projector=false: the {family.name} family has no projector to freeze"
                ) from exc
            freeze_parameters(projector)
        counts = count_parameters(model)
        log.info("full fine-tuning: %d of %d parameters train", counts["trainable"], counts["total"])
        return model

    def trained_weights(self, model: Any, family: ModelFamily) -> TrainedWeights:
        """Every weight but the encoder's (unless ``train_audio_tower``) and the projector's (unless
        ``train_projector``)."""
        frozen: set[int] = set()
        scopes = set(family.lora_scopes)
        if not self.options.train_audio_tower:
            frozen.update(id(p) for p in family.frozen_encoder(model).parameters())
            scopes.discard(family.encoder_scope or "")
        if not self.options.train_projector and "projector" in family.lora_scopes:
            frozen.update(id(p) for p in family.scope_module(model, "projector").parameters())
            scopes.discard("projector")
        base = frozenset(name for name, parameter in model.named_parameters() if id(parameter) not in frozen)
        return TrainedWeights(base=base, added=0, scopes=frozenset(scopes))

    def save_model(self, model: Any, processor: Any, out_dir: Path) -> dict[str, Path]:
        """Write the model (safetensors, config, generation config) and the processor to ``out_dir``.

        Floating-point weights are written in ``save_dtype`` (from a copy where the model in memory holds another
        dtype: its fp32 weights, or a frozen encoder's bf16 ones beside fp32 masters) and ``config.json`` says so.
        """
        import torch

        from .file_modes import follow_umask

        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[self.options.save_dtype]
        floating = {tensor.dtype for tensor in model.state_dict().values() if tensor.is_floating_point()}
        if floating <= {dtype} and dtype == torch.float32:
            model.save_pretrained(out_dir)
        else:
            state = {
                name: tensor.to(dtype) if tensor.is_floating_point() else tensor
                for name, tensor in model.state_dict().items()
            }
            model.save_pretrained(out_dir, state_dict=state)
            _record_dtype(out_dir / "config.json", str(dtype).removeprefix("torch."))
        processor.save_pretrained(out_dir)
        follow_umask(out_dir)
        return {"model": out_dir}


def _record_dtype(config_file: Path, dtype: str) -> None:
    """Set ``dtype`` in a saved ``config.json`` (transformers writes the dtype of the weights in memory)."""
    import json

    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["dtype"] = dtype
    write_json(config_file, config)
