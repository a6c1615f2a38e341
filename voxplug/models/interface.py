"""The model-family extension type: one ASR architecture (Voxtral, Whisper, ...)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from voxplug.data.languages import LanguageSupport
from voxplug.extension import Extension

if TYPE_CHECKING:
    import numpy as np

    from voxplug.training.memory import ModelShape


@dataclass(frozen=True)
class FamilySpeed:
    """The training fast paths a model family offers, each a function of the model (None: not offered).

    ``fuse_kernels(model) -> list[str]`` swaps fused GPU kernels into a freshly loaded model (CUDA only; called
    when ``training.speed.fused_kernels`` allows) and returns the names of what it fused. ``cuda_graphs(model) ->
    LayerGraphs | None`` replays the model's repeated decoder layers as CUDA graphs in training forwards (called on
    the prepared model where ``training.speed.cuda_graphs`` allows: one CUDA GPU, one process, no compile,
    DeepSpeed or gradient checkpointing) and returns the
    :class:`~voxplug.training.speed.cuda_graphs.LayerGraphs`, or None where it cannot.
    """

    fuse_kernels: Callable[[Any], list[str]] | None = None
    cuda_graphs: Callable[[Any], Any] | None = None


class ModelFamily(Extension):
    """Loads checkpoints of one architecture and knows how to adapt and run them.

    ``model_types`` lists the ``config.json`` ``model_type`` values the family handles, so voxplug can pick the
    family from a checkpoint. ``default_collator`` names the collator used unless ``model.collator`` says
    otherwise. ``lora_scopes`` names the parts LoRA may target (the first is the default scope); ``encoder_scope``
    says which of them is the audio encoder, and ``peft_task_type`` which PEFT task type wraps the model.
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    default_collator: ClassVar[str] = ""
    lora_scopes: ClassVar[tuple[str, ...]] = ("language_model",)
    #: The LoRA scope that is the audio encoder: frozen and run without autograd unless LoRA targets it.
    encoder_scope: ClassVar[str | None] = None
    #: PEFT's ``task_type`` for this architecture ("CAUSAL_LM" for decoder-only models, None where none fits).
    peft_task_type: ClassVar[str | None] = "CAUSAL_LM"
    #: Names of sibling linear layers that their parent's forward always calls on the same input (a Llama block's
    #: q/k/v and gate/up projections): the ``lora`` trainer computes their adapters together, as one node.
    lora_shared_inputs: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: The ``model.quantization`` values :meth:`load` takes (``"nf4"``: a 4-bit frozen base for LoRA); none by default.
    quantizations: ClassVar[tuple[str, ...]] = ()

    def load(
        self,
        name_or_path: str,
        *,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        device: str = "auto",
        hub_kernels: bool = False,
        quantization: str | None = None,
    ) -> tuple[Any, Any]:
        """Return ``(model, processor)`` for a Hub id or a local folder.

        ``hub_kernels`` lets transformers fetch and run kernels from the Hugging Face Hub at load
        (``from_pretrained(use_kernels=...)``); implementations pass it through and keep it off unless asked, so
        loading a model never downloads or runs code. ``quantization`` (one of :attr:`quantizations`, from
        ``model.quantization``) loads the frozen base in that format; training passes it only when it is set, so a
        family that offers none may leave it out of its signature.
        """
        raise NotImplementedError

    def load_processor(self, name_or_path: str) -> Any:
        """Return only the processor of a checkpoint (for collating on data workers)."""
        raise NotImplementedError

    def language_support(self, name_or_path: str) -> LanguageSupport:
        """The language codes and tasks a checkpoint of this family is trained with.

        Before the model loads, every row's language is mapped to these codes and every row's task checked
        (:func:`voxplug.data.languages.resolve_run_languages`), so a code the model cannot take fails the run with
        the row named instead of crashing a batch. The default accepts any ISO 639 code and transcription only.
        """
        return LanguageSupport(model=self.name)

    def lora_target_modules(self, scopes: list[str]) -> str | list[str]:
        """The PEFT ``target_modules`` (a regex or names) for LoRA on the given parts of the model."""
        raise NotImplementedError

    def scope_module(self, model: Any, scope: str) -> Any:
        """The submodule holding one part of the model (a name from :attr:`lora_scopes`), through any wrapper."""
        raise NotImplementedError

    def frozen_encoder(self, model: Any) -> Any | None:
        """The audio encoder module, which voxplug freezes and runs without autograd unless asked to train it."""
        return None

    def speed(self) -> FamilySpeed:
        """The fast paths this family offers for training (:mod:`voxplug.training.speed` applies those the run
        allows). The default offers none; a family that still defines the old ``fuse_kernels`` or
        ``use_cuda_graphs`` methods has them used, with a DeprecationWarning."""
        old = {name: getattr(self, name) for name in ("fuse_kernels", "use_cuda_graphs") if hasattr(self, name)}
        if old:
            warnings.warn(
                f"{type(self).__name__}: {' and '.join(old)} are replaced by ModelFamily.speed(), which returns a "
                "FamilySpeed",
                DeprecationWarning,
                stacklevel=2,
            )
        return FamilySpeed(fuse_kernels=old.get("fuse_kernels"), cuda_graphs=old.get("use_cuda_graphs"))

    def model_shape(self, name_or_path: str) -> ModelShape | None:
        """The checkpoint's architecture built on PyTorch's meta device (shapes, no weights) and its repeated layer
        stacks, read from its config alone, for the memory estimate that settles ``training.batch_size: auto`` and
        checks the fit before the weights load. The default (None) skips both: auto then takes a fixed size."""
        return None

    def transcribe(
        self,
        model: Any,
        processor: Any,
        audios: list[np.ndarray],
        languages: list[str | None],
        *,
        max_new_tokens: int | None = None,
        batch_size: int | None = None,
        cuda_graphs: bool = True,
    ) -> list[str]:
        """Greedy transcripts of 16 kHz mono clips, one per clip, in order.

        ``max_new_tokens`` caps every transcript (None: a budget from each clip's length); ``batch_size`` is the
        most clips decoded together (None: the family chooses, from free GPU memory where it can); ``cuda_graphs``
        lets a family replay its decoding steps as CUDA graphs.
        """
        raise NotImplementedError

    def build_tiny(self, out_dir: Path, *, seed: int = 0) -> Path:
        """Write a tiny random checkpoint with a real processor to ``out_dir`` (for tests and the quickstart)."""
        raise NotImplementedError
