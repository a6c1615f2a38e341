"""The training fast paths, behind one entry point (:func:`apply_speed`) and one config namespace
(``training.speed``). Each is exact: it changes how fast a step runs, never what it computes.

* ``apply.py``: :func:`fuse_kernels` (at load) and :func:`apply_speed` (after the method prepares the model), and
  the :class:`SpeedReport` the run logs and writes to ``train_results.json``.

Which paths may apply is decided in :func:`voxplug.training.context.decide`; which pieces a model offers comes
from :meth:`voxplug.models.interface.ModelFamily.speed`.
"""

from voxplug.training.speed.apply import SpeedReport, apply_speed, fuse_kernels

__all__ = ["SpeedReport", "apply_speed", "fuse_kernels"]
