"""The training fast paths, behind one entry point and one config namespace (``training.speed``). Each is exact:
it changes how fast a step runs, never what it computes (the masters' one-pass AdamW to the last bits of float32).

* ``apply.py``: the entry point. :func:`fuse_kernels` (at load) and :func:`apply_speed` (after the training method
  prepared the model) put on the paths the run allows, and return the :class:`SpeedReport` the run logs and writes
  to ``train_results.json``.
* ``cuda_graphs.py``: :class:`LayerGraphs`, a model's repeated layers replayed as CUDA graphs in training.
* ``encoder_cache.py``: a frozen audio encoder's outputs reused in later epochs.
* ``label_logits.py``: vocabulary logits only where a label is, positions found on the CPU.
* ``epoch_stream.py``: one batch stream across epochs, so workers prepare the next epoch meanwhile.
* ``masters_adamw.py``: AdamW over fp32 master weights in one pass, for full fine-tuning in bf16.
* ``trainer.py``: :class:`SpeedTrainerMixin`, the ``Trainer`` overrides that use the label logits and the epoch
  stream and keep the host from waiting on the GPU.

Which paths may apply is decided once, in :func:`voxplug.training.context.decide` (``context.speed``); which pieces
a model offers comes from :meth:`voxplug.models.interface.ModelFamily.speed`. The families' own kernels and graph
wiring live with them (``plugins/voxplug_voxtral/kernels.py``, ``graphs.py``, ``feature_cache.py``), and the
``lora`` method's one-node adapters in ``plugins/voxplug_trainers/lora_linear.py``.
"""

from voxplug.training.speed.apply import SpeedReport, apply_speed, fuse_kernels

__all__ = ["SpeedReport", "apply_speed", "fuse_kernels"]
