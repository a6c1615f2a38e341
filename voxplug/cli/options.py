"""Options shared by the commands that take a run config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from voxplug.config import RunConfig

CONFIG_OPTION: Any = typer.Option(
    None, "--config", "-c", help="Config YAML file or preset name from configs/ (repeat to layer several)."
)
OVERRIDES_ARGUMENT: Any = typer.Argument(None, help="Overrides such as training.epochs=5 data.jsonl.path=x.jsonl")
NO_LOCAL_PLUGINS_OPTION: Any = typer.Option(
    False,
    "--no-local-plugins",
    help="Refuse to run a voxplug_plugins.py found beside the run config (VOXPLUG_NO_LOCAL_PLUGINS=1 does too).",
)


def load_run_config(
    config: list[str] | None, overrides: list[str] | None, *, no_local_plugins: bool = False
) -> tuple[RunConfig, dict[str, Any]]:
    """Load, merge and fully validate a run config (plugin options included) before any work starts; every
    problem, in the core keys and in plugin options alike, is reported in one error.

    ``no_local_plugins`` refuses a ``voxplug_plugins.py`` beside the config, here and in every process this one
    starts (it sets ``VOXPLUG_NO_LOCAL_PLUGINS``).
    """
    import os

    from voxplug.config import check_config, read_config_sources
    from voxplug.plugins import ENV_NO_LOCAL_PLUGINS, get_plugin_host

    if no_local_plugins:
        os.environ[ENV_NO_LOCAL_PLUGINS] = "1"
    data, base_dir, origin = read_config_sources(config or [], overrides or [])
    host = get_plugin_host().load(config_dir=base_dir)
    return check_config(data, base_dir=base_dir, origin=origin, host=host)
