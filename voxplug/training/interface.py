"""The collator and training method extension types."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from voxplug.extension import Extension

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.models.interface import ModelFamily


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
    it).
    """

    saves_adapter: ClassVar[bool] = False
    #: The :class:`~voxplug.training.cuda_graphs.LayerGraphs` that :meth:`prepare_model` set up, if any (the run
    #: reports what they did).
    cuda_graphs: Any = None

    def prepare_model(self, model: Any, family: ModelFamily, config: RunConfig) -> Any:
        """Freeze, wrap or otherwise prepare ``model`` for training and return the model to train."""
        raise NotImplementedError

    def save_model(self, model: Any, processor: Any, out_dir: Path) -> dict[str, Path]:
        """Write the final model (and processor) to ``out_dir``; return ``{"adapter"|"merged"|"model": path}``."""
        raise NotImplementedError


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
