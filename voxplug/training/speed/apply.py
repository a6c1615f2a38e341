"""The one entry point of the training fast paths: :func:`fuse_kernels` at load, :func:`apply_speed` after the
training method has prepared the model, and the :class:`SpeedReport` the run logs and records.

Which paths may apply is decided once, in :func:`voxplug.training.context.decide` (``context.speed``); which the
model offers comes from its family (:meth:`~voxplug.models.interface.ModelFamily.speed`). Nothing here reads the
config or the machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voxplug.models.interface import ModelFamily
    from voxplug.training.context import TrainingContext
    from voxplug.training.interface import TrainingMethod

log = logging.getLogger("voxplug.training")


@dataclass
class SpeedReport:
    """What the fast paths did to the model: the fused kernels' names, the layer graphs and the encoder cache
    (None where a path did not apply), and the paths that stepped aside for this model, each with why. Their
    counters grow as the run trains; :meth:`results` reads them."""

    fused_kernels: list[str] = field(default_factory=list)
    cuda_graphs: Any = None
    encoder_cache: Any = None
    stepped_aside: dict[str, str] = field(default_factory=dict)

    def results(self) -> dict[str, Any]:
        """The report for ``train_results.json``: ``encoder_cache`` and ``cuda_graphs`` counters, fused kernels."""
        return {
            "encoder_cache": self.encoder_cache.stats() if self.encoder_cache else None,
            "cuda_graphs": self.cuda_graphs.stats() if self.cuda_graphs else None,
            "fused_kernels": list(self.fused_kernels),
            "speed_stepped_aside": dict(self.stepped_aside),
        }

    def line(self) -> str:
        """One log line naming the paths in use."""
        used = [f"fused kernels ({', '.join(self.fused_kernels)})"] if self.fused_kernels else []
        used += ["CUDA graphs for the decoder layers"] if self.cuda_graphs is not None else []
        used += ["frozen-encoder cache"] if self.encoder_cache is not None else []
        line = "speed: " + (", ".join(used) if used else "no fast path applies")
        aside = "; ".join(f"{path} off: {why}" for path, why in self.stepped_aside.items())
        return f"{line} ({aside})" if aside else line


def fuse_kernels(family: ModelFamily, model: Any, context: TrainingContext) -> list[str]:
    """Swap the family's fused GPU kernels into a freshly loaded ``model`` where the run allows them
    (``training.speed.fused_kernels``); return the names of what was fused. Runs before the training method
    prepares the model."""
    pieces = family.speed()
    if not context.speed.fused_kernels or pieces.fuse_kernels is None:
        return []
    return list(pieces.fuse_kernels(model) or [])


def apply_speed(
    model: Any,
    family: ModelFamily,
    context: TrainingContext,
    *,
    method: TrainingMethod,
    fused_kernels: list[str] | None = None,
) -> SpeedReport:
    """Put the fast paths the run allows on the prepared ``model``: CUDA graphs for its repeated layers (where
    ``method`` supports them) and the frozen encoder's output cache. ``fused_kernels`` is what :func:`fuse_kernels`
    did at load, carried into the report."""
    from voxplug.training.speed.encoder_cache import cache_frozen_encoder

    report = SpeedReport(fused_kernels=list(fused_kernels or []), stepped_aside=stepped_aside(context))
    pieces = family.speed()
    if method.supports_cuda_graphs and context.speed.cuda_graphs and pieces.cuda_graphs is not None:
        report.cuda_graphs = pieces.cuda_graphs(model)
        if report.cuda_graphs is not None:
            log.info(
                "the language model's layers replay as CUDA graphs, one per batch shape (training.speed.cuda_graphs)"
            )
    report.encoder_cache = cache_frozen_encoder(family, model, context.speed.encoder_cache_gb)
    return report


#: The paths that do not run over a 4-bit base (``model.quantization``), and why. The fused kernels, the frozen
#: encoder's cache and label-only logits do run: they touch the norms, activations, encoder and output head, which
#: stay in the load dtype.
QUANTIZED_BASE_STEPS_ASIDE = {
    "cuda_graphs": "bitsandbytes' 4-bit layers are untested inside captured CUDA graphs",
    "lora.one_node": "one-node adapters read the base layer's weight, which a 4-bit base packs; PEFT's 4-bit "
    "layers run instead",
}


def stepped_aside(context: TrainingContext) -> dict[str, str]:
    """The fast paths that step aside for this run's model (:data:`QUANTIZED_BASE_STEPS_ASIDE` over a 4-bit
    base), each with why; :func:`~voxplug.training.context.decide` has already left them off."""
    return dict(QUANTIZED_BASE_STEPS_ASIDE) if context.quantization else {}
