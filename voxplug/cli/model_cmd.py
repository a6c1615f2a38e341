"""``voxplug model tiny OUT``: write a tiny random offline checkpoint of a model family (tests, quickstart).

Plugins add to this group through the ``register_commands`` hook (the whisper plugin adds ``import-ct2``).
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``model`` command group to ``app``."""
    group = typer.Typer(help="Model utilities.", no_args_is_help=True)
    group.command("tiny")(tiny)
    app.add_typer(group, name="model")


def tiny(
    out: Path = typer.Argument(..., help="Folder to write the checkpoint (model + processor) to."),
    family: str = typer.Option("voxtral", "--family", help="Model family to build."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights."),
) -> None:
    """Write a tiny random checkpoint with the family's real processor; it loads like a Hub checkpoint."""
    from voxplug.plugins import get_plugin_host

    family_class = get_plugin_host().extension("model family", family)
    path = family_class().build_tiny(out, seed=seed)
    typer.echo(f"tiny {family} checkpoint written to {path}")
