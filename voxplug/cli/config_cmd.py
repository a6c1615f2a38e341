"""``voxplug config show|schema``: the resolved run config and its JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from voxplug.cli.options import CONFIG_OPTION, NO_LOCAL_PLUGINS_OPTION, OVERRIDES_ARGUMENT


def register(app: typer.Typer) -> None:
    """Add the ``config`` command group to ``app``."""
    group = typer.Typer(help="Show the resolved run config or its JSON schema.", no_args_is_help=True)
    group.command("show")(show)
    group.command("schema")(schema)
    app.add_typer(group, name="config")


def show(
    config: list[str] = CONFIG_OPTION,
    overrides: list[str] = OVERRIDES_ARGUMENT,
    no_local_plugins: bool = NO_LOCAL_PLUGINS_OPTION,
) -> None:
    """Print the resolved config (presets merged, overrides applied, plugin options validated) as YAML."""
    import yaml

    from voxplug.cli.options import load_run_config

    run_config, _ = load_run_config(config, overrides, no_local_plugins=no_local_plugins)
    typer.echo(yaml.safe_dump(run_config.public_dict(), sort_keys=False, allow_unicode=True))


def schema(output: Path = typer.Option(None, "--output", "-o", help="Write the schema to this file.")) -> None:
    """Print the JSON schema of a run config, including every registered plugin's options."""
    from voxplug.config import config_schema
    from voxplug.plugins import get_plugin_host

    text = json.dumps(config_schema(get_plugin_host()), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)
