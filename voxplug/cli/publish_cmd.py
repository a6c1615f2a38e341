"""``voxplug publish``, ``voxplug deploy`` and ``voxplug demo``: share a finished run and try it.

Tokens are never options: the Hub token comes from ``HF_TOKEN`` (or ``hf auth login``), a Space's read token
from the environment variable ``--read-token-env`` names (``HF_READ_TOKEN`` by default).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from voxplug.errors import ConfigError

OPTION_HELP = "An option of the chosen publisher/deployer as key=value (repeatable), e.g. -o license=mit"


def register(app: typer.Typer) -> None:
    """Add the ``publish`` and ``deploy`` commands to ``app`` (``demo`` comes with the built-in ``space`` plugin)."""
    app.command("publish")(publish)
    app.command("deploy")(deploy)


def publish(
    source: Path = typer.Argument(..., help="A run folder (runs/<name>) or its model/ folder."),
    target: str = typer.Option(None, "--target", "-t", help="Publisher: local (default), hub, or a plugin's."),
    to: str = typer.Option(None, "--to", help="Hub repo id (hub) or folder (local); default from the run's name."),
    public: bool = typer.Option(False, "--public", help="Create the Hub repo public (it is private by default)."),
    no_merged: bool = typer.Option(False, "--no-merged", help="Leave the run's merged/ model out."),
    dataset: list[str] = typer.Option(
        None, "--dataset", help="A Hub dataset id the card names (repeatable), e.g. one pushed after training."
    ),
    base_model: str = typer.Option(
        None, "--base-model", help="The base model's Hub id, when the run trained from a local copy of it."
    ),
    option: list[str] = typer.Option(None, "--option", "-o", help=OPTION_HELP),
) -> None:
    """Publish a finished run: model, processor, model card and results, never checkpoints, secrets or local paths."""
    from voxplug.plugins import get_plugin_host
    from voxplug.publishing.publish import publish_model

    settings = _run_publish_settings(source)
    target = target or settings.get("target") or "local"
    table = dict(settings.get(target) or {})
    table.update(_parse_options(option))
    publisher = get_plugin_host().extension("publisher", target)
    flags = (
        ("--public", "private", False if public else None),
        ("--no-merged", "include_merged", False if no_merged else None),
        ("--base-model", "base_model", base_model),
        ("--dataset", "datasets", [*table.get("datasets", []), *dataset] if dataset else None),
    )
    for flag, key, value in flags:
        if value is not None:
            if key not in publisher.Options.model_fields:
                raise ConfigError(f"{flag} does not apply to the {target!r} publisher (it has no {key!r} option)")
            table[key] = value
    options = _validated_options(publisher, table, f"publisher {target!r}")
    with _progress(f"Publishing {source} with {target}"):
        result = publish_model(source, target=target, destination=to or settings.get("repo_id"), options=options)
    typer.echo(f"published {len(result.files)} files to {result.url or result.destination}")


def deploy(
    model_ref: str = typer.Argument(..., help="The published model's Hub repo id (user/name)."),
    target: str = typer.Option("space", "--target", "-t", help="Deployer: space, or a plugin's."),
    space_id: str = typer.Option(None, "--space-id", help="The Space repo id; default <user>/<model>-demo."),
    hardware: str = typer.Option(None, "--hardware", help="Hardware to request now, e.g. t4-small (needs billing)."),
    read_token_env: str = typer.Option(None, "--read-token-env", help="Env var with a READ token (HF_READ_TOKEN)."),
    private: bool = typer.Option(None, "--private/--public", help="Space visibility; default: as the model's."),
    option: list[str] = typer.Option(None, "--option", "-o", help=OPTION_HELP),
) -> None:
    """Deploy a demo Space for a published model (pinned requirements, model id as a Space variable)."""
    from voxplug.plugins import get_plugin_host
    from voxplug.publishing.publish import deploy_demo

    given = {"hardware": hardware, "read_token_env": read_token_env, "private": private}
    table = {**_parse_options(option), **{key: value for key, value in given.items() if value is not None}}
    options = _validated_options(get_plugin_host().extension("deployer", target), table, f"deployer {target!r}")
    with _progress(f"Deploying a demo of {model_ref} with {target}"):
        result = deploy_demo(model_ref, target=target, destination=space_id, options=options)
    typer.echo(f"deployed {result.destination}: {result.url}")


def _run_publish_settings(source: Path) -> dict[str, Any]:
    """The ``publish`` section of the run's ``training_config.json``, if ``source`` is a run with one."""
    for folder in (source, source.parent):
        path = folder / "training_config.json"
        if path.is_file():
            try:
                section = json.loads(path.read_text(encoding="utf-8")).get("publish")
            except ValueError as exc:
                raise ConfigError(f"{path}: unreadable JSON ({exc})") from exc
            return section if isinstance(section, dict) else {}
    return {}


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``["license=mit", "tags=[a, b]"]`` → ``{"license": "mit", "tags": ["a", "b"]}`` (values read as YAML)."""
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"option {pair!r}: expected key=value, e.g. -o license=mit")
        try:
            options[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"option {pair!r}: the value is not valid YAML ({exc})") from exc
    return options


def _validated_options(extension: type, table: dict[str, Any], what: str) -> Any:
    """The extension's ``Options`` built from ``table``; invalid keys or values are one :class:`ConfigError`."""
    from pydantic import ValidationError

    from voxplug.config import SECRET_KEY, format_validation_error

    secret_keys = [key for key in table if SECRET_KEY.search(key)]
    if secret_keys:
        raise ConfigError(f"{what}: {', '.join(secret_keys)}: secrets are never options; use environment variables")
    try:
        return extension.Options.model_validate(table)
    except ValidationError as exc:
        raise ConfigError(f"invalid options for {what}:\n" + format_validation_error(exc)) from None


@contextmanager
def _progress(message: str) -> Iterator[None]:
    """A spinner with ``message``, and voxplug's publishing log lines shown above it while it runs."""
    from rich.console import Console
    from rich.logging import RichHandler

    console = Console(stderr=True)
    logger = logging.getLogger("voxplug.publishing")
    handler = RichHandler(console=console, show_path=False, show_time=False)
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with console.status(message):
            yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
