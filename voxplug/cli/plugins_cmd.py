"""``voxplug plugins``: what is loaded, from where, and which hooks and extensions each plugin provides."""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add the ``plugins`` command to ``app``."""
    app.command("plugins")(plugins)


def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List plugins: name, version, origin (built-in, entry point, local file), hooks and extensions."""
    from voxplug.plugins import EXTENSION_HOOKS, get_plugin_host

    host = get_plugin_host()
    provided: dict[str, list[str]] = {}
    for kind in EXTENSION_HOOKS:
        for name in host.extensions(kind):
            provided.setdefault(host.extension_plugin(kind, name), []).append(f"{kind}:{name}")
    rows = [
        {
            "name": info.name,
            "version": info.version,
            "origin": info.origin,
            "location": info.location,
            "hooks": info.hooks,
            "provides": provided.get(info.name, []),
        }
        for info in host.plugins()
    ]
    if as_json:
        typer.echo(json.dumps({"plugins": rows, "blocked": host.blocked()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "version", "origin", "hooks", "provides")
    for row in rows:
        table.add_row(
            row["name"], row["version"] or "-", row["origin"], "\n".join(row["hooks"]), "\n".join(row["provides"])
        )
    console = Console()
    console.print(table)
    if host.blocked():
        console.print(f"blocked by VOXPLUG_LOAD_PLUGINS / VOXPLUG_DISABLE_PLUGINS: {', '.join(host.blocked())}")
