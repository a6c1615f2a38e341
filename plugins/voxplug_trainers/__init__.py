"""voxplug_trainers: the ``lora`` and ``full`` training methods.

A training method decides which weights train and how the result is saved; the loop itself is transformers' Trainer
(see :mod:`voxplug.training.run`). This package registers through the ``voxplug`` entry-point group like any
third-party plugin, and imports torch and PEFT only when a run prepares or saves a model.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_training_methods(register: Register) -> None:
    """Register the ``lora`` and ``full`` training methods."""
    from voxplug_trainers.full import FullMethod
    from voxplug_trainers.lora import LoraMethod

    register(LoraMethod)
    register(FullMethod)
