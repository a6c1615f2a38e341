"""``voxplug app``: the web app (record, train, evaluate, publish and deploy in a browser)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from voxplug.errors import ConfigError

SPACE_STORAGE = Path("/data/voxplug-workspaces")
"""Where workspaces go on a Space with persistent storage (which mounts at ``/data``)."""


def register(app: typer.Typer) -> None:
    """Add the ``app`` command to ``app``."""
    app.command("app")(serve_app)


def serve_app(
    host: str = typer.Option(
        None, "--host", help="Address to listen on: 127.0.0.1 (on a Space: 0.0.0.0); 0.0.0.0 shares it on the network."
    ),
    port: int = typer.Option(None, "--port", help="Port (default: 7860, or the next free one)."),
    root: Path = typer.Option(
        None,
        "--root",
        help="Folder holding one workspace per user or browser: ./voxplug-workspaces (on a Space with persistent "
        "storage: /data/voxplug-workspaces).",
    ),
    share: bool = typer.Option(False, "--share/--no-share", help="Also open a public gradio.live link."),
    model: str = typer.Option(None, "--model", help="Default base model in the Train tab (a Hub id or a folder)."),
    server_token: str = typer.Option(
        "auto",
        "--server-token",
        help="Who may use this server's HF_TOKEN: auto (loopback only; on a Space, its owner), always, never.",
    ),
    online_phrases: bool = typer.Option(
        False, "--online-phrases/--offline-phrases", help="Let later phrase batches come from NVIDIA Granary."
    ),
) -> None:
    """Serve the web app: record a dataset, train, evaluate, publish and deploy, from a browser."""
    from voxplug.app.ui import AppSettings, serve
    from voxplug.cli.ports import choose_port, port_taken_meanwhile

    if server_token not in ("auto", "always", "never"):
        raise ConfigError(f"--server-token {server_token!r}: expected auto, always or never")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    on_space = bool(os.environ.get("SPACE_ID"))
    host = host or ("0.0.0.0" if on_space else "127.0.0.1")
    root = root or (SPACE_STORAGE if on_space and SPACE_STORAGE.parent.is_dir() else Path("voxplug-workspaces"))
    settings = AppSettings(
        root=root.resolve(),
        host=host,
        server_token=server_token,  # type: ignore[arg-type]
        model=str(Path(model).resolve()) if model and Path(model).exists() else model,  # jobs run in workspaces
        online_phrases=online_phrases,
        share=share,
    )
    port = choose_port(host, port)
    typer.echo(f"workspaces in {settings.root}; serving on http://{host}:{port} (Ctrl+C stops)")
    try:
        serve(settings, port=port)
    except OSError as exc:
        taken = port_taken_meanwhile(exc, host, port)
        if taken is None:
            raise
        raise taken from exc
