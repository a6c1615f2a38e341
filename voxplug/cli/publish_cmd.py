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

from voxplug.errors import ConfigError, ModelError

OPTION_HELP = "An option of the chosen publisher/deployer as key=value (repeatable), e.g. -o license=mit"


def register(app: typer.Typer) -> None:
    """Add the ``publish``, ``deploy`` and ``demo`` commands to ``app``."""
    app.command("publish")(publish)
    app.command("deploy")(deploy)
    app.command("demo")(demo)


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


def demo(
    model: str = typer.Option(..., "--model", "-m", help="A model folder (runs/<name>/model) or a Hub repo id."),
    port: int = typer.Option(None, "--port", help="Port to serve on (default: 7860, or the next free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 to share on the network)."),
    base_model: str = typer.Option(None, "--base-model", help="Base of an adapter; default from voxplug.json."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest transcript, in tokens."),
    mcp_server: bool = typer.Option(False, "--mcp-server", help="Also serve Gradio's MCP endpoint."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, help="Transcriptions that run at once."),
    queue_size: int = typer.Option(16, "--queue-size", min=1, help="Requests that may wait; more are turned away."),
    max_audio_seconds: float = typer.Option(60.0, "--max-audio-seconds", min=0.1, help="Longest clip accepted."),
    max_file_mb: float = typer.Option(20.0, "--max-file-mb", min=0.01, help="Largest upload accepted, in MB."),
) -> None:
    """Run the demo app locally: pick a language (or Auto), upload or record audio, read the transcript."""
    try:
        from voxplug_space.demo_app import DemoLimits, build_demo, launch_demo
    except ImportError as exc:
        raise ModelError(f"the demo app comes with the built-in 'space' plugin, which failed to import: {exc}") from exc
    from voxplug.cli.ports import choose_port, port_taken_meanwhile

    port = choose_port(host, port)  # before the model loads: a port that is taken is said at once
    limits = DemoLimits(concurrency, queue_size, max_audio_seconds, max_file_mb)
    try:
        app = build_demo(model, base_model=base_model, max_new_tokens=max_new_tokens, limits=limits)
    except Exception as exc:  # loading a model fails in many ways; report it as one line naming the model
        raise ModelError(f"cannot load {model} for the demo: {type(exc).__name__}: {exc}") from exc
    typer.echo(
        f"serving {model} on http://{host}:{port} (Ctrl+C stops); {concurrency} at once, {queue_size} waiting, "
        f"clips up to {max_audio_seconds:g} s and {max_file_mb:g} MB"
    )
    try:
        launch_demo(app, limits, server_name=host, server_port=port, mcp_server=mcp_server, quiet=True)
    except OSError as exc:
        taken = port_taken_meanwhile(exc, host, port)
        if taken is None:
            raise
        raise taken from exc


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
