"""The base every extension class shares: a ``name`` users write in YAML and an ``Options`` model.

Data sources, collators, model families, trainers, publishers and deployers all derive from
:class:`Extension`. Plugins hand the classes over through the ``register_*`` hooks (see
:mod:`voxplug.hookspecs`); voxplug validates each one's options from the run config before any work starts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class PluginOptions(BaseModel):
    """Base of every plugin's options model. Unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid")


class Extension:
    """A named, configurable piece of voxplug provided by a plugin.

    Subclasses set ``name`` (unique within their extension type), a one-line ``description`` and, when they
    take options, a nested ``Options`` subclass of :class:`PluginOptions`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions | dict[str, Any] | None = None) -> None:
        if options is None:
            options = self.Options()
        elif isinstance(options, dict):
            options = self.Options.model_validate(options)
        self.options = options
