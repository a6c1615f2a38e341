"""voxplug_trainers: the ``lora`` and ``full`` trainers.

A trainer decides which weights train and how the result is saved; the loop itself is transformers' Trainer
(see :mod:`voxplug.training.run`). This package registers through the ``voxplug`` entry-point group like any
third-party plugin, and imports torch and PEFT only when a run prepares or saves a model.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_trainers(register: Register) -> None:
    """Register the ``lora`` and ``full`` trainers."""
    from voxplug_trainers.full import FullTrainer
    from voxplug_trainers.lora import LoraTrainer

    register(LoraTrainer)
    register(FullTrainer)
