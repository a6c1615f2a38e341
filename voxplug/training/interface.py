"""The collator and training method extension types."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from voxplug.extension import Extension

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.models.interface import ModelFamily
    from voxplug.training.context import TrainingContext
    from voxplug.training.memory import TrainedWeights


class Collator(Extension):
    """Turns a list of examples into a batch of model inputs.

    Each example is a dict with ``audio`` (16 kHz mono float32), ``text``, ``language`` (None means automatic)
    and ``id``. The result maps input names to tensors and carries ``labels`` with -100 where no loss applies.
    """

    def __init__(self, options: Any = None, *, processor: Any, model_id: str = "") -> None:
        super().__init__(options)
        self.processor = processor
        self.model_id = model_id

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError


class TrainingMethod(Extension):
    """Decides which weights train and how the trained model is saved; the loop is transformers' Trainer.

    ``saves_adapter`` is True when :meth:`save` writes a PEFT adapter (its base model is then needed to load
    it). ``supports_cuda_graphs`` is True when the model it prepares may have its layers replayed as CUDA graphs
    (``training.speed.cuda_graphs``; tested with frozen base weights under adapters).
    """

    saves_adapter: ClassVar[bool] = False
    supports_cuda_graphs: ClassVar[bool] = False

    def prepare_model(self, model: Any, family: ModelFamily, context: TrainingContext) -> Any:
        """Freeze, wrap or otherwise prepare ``model`` for training and return the model to train.

        ``context`` holds what the run decided (precision, compile, DeepSpeed, the step plan, the speed paths
        allowed): read the run's facts from it rather than from the config or the machine.
        """
        raise NotImplementedError

    def save_model(self, model: Any, processor: Any, out_dir: Path) -> dict[str, Path]:
        """Write the final model (and processor) to ``out_dir``; return ``{"adapter"|"merged"|"model": path}``."""
        raise NotImplementedError

    def trained_weights(self, model: Any, family: ModelFamily) -> TrainedWeights | None:
        """What :meth:`prepare_model` would train in ``model``, which lives on the meta device (shapes, no weights),
        for the memory estimate made before the weights load. The default (None) skips the estimate."""
        return None


def prepare_for_training(
    method: TrainingMethod, model: Any, family: ModelFamily, context: TrainingContext, config: RunConfig
) -> Any:
    """Call ``method.prepare_model`` with the run's context; a method still written for the old
    ``prepare_model(model, family, config)`` gets the config, with a DeprecationWarning."""
    parameters = inspect.signature(method.prepare_model).parameters
    if "context" not in parameters and "config" in parameters:
        warnings.warn(
            f"{type(method).__name__}.prepare_model(model, family, config) is the old signature: take "
            "prepare_model(model, family, context) and read the run's facts from the TrainingContext",
            DeprecationWarning,
            stacklevel=2,
        )
        return method.prepare_model(model, family, config)
    return method.prepare_model(model, family, context)


def __getattr__(name: str) -> Any:
    """``Trainer`` is the old name of :class:`TrainingMethod`: it still works, with a DeprecationWarning."""
    if name == "Trainer":
        warnings.warn(
            "voxplug.training.interface.Trainer is renamed TrainingMethod (import it from voxplug.api)",
            DeprecationWarning,
            stacklevel=2,
        )
        return TrainingMethod
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
