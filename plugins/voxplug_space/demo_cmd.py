"""``voxplug demo --model PATH``: run the demo app (the Space's ``app.py``) locally.

The command comes with this plugin, which adds it through the ``register_commands`` hook; gradio and the model
load only when it runs.
"""

from __future__ import annotations

import typer

from voxplug.api import ModelError, choose_port, port_taken_meanwhile


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
    from voxplug_space.demo_app import DemoLimits, build_demo, launch_demo

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
