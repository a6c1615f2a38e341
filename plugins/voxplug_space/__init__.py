"""voxplug_space: the ``space`` deployer (a Gradio demo Space on the Hugging Face Hub) and the demo app itself.

``demo_app.py`` is self-contained: it is uploaded as the Space's ``app.py`` and also runs locally through
``voxplug demo --model PATH``, the command this plugin adds. This package registers through the ``voxplug``
entry-point group, like any third-party plugin.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import CommandGroups, Register


@hookimpl
def register_deployers(register: Register) -> None:
    """Hand voxplug the ``space`` deployer."""
    from voxplug_space.space import SpaceDeployer

    register(SpaceDeployer)


@hookimpl
def register_commands(cli: CommandGroups) -> None:
    """Add ``voxplug demo``."""
    from voxplug_space.demo_cmd import demo

    cli.app.command("demo")(demo)
