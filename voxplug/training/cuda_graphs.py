"""The old home of :class:`~voxplug.training.speed.cuda_graphs.LayerGraphs`, which the model-family docs named:
importing it from here still works, with a DeprecationWarning (plugins import it from :mod:`voxplug.api`)."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "LayerGraphs":
        warnings.warn(
            "voxplug.training.cuda_graphs.LayerGraphs moved: import LayerGraphs from voxplug.api",
            DeprecationWarning,
            stacklevel=2,
        )
        from voxplug.training.speed.cuda_graphs import LayerGraphs

        return LayerGraphs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
