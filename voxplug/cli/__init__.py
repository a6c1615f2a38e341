"""The ``voxplug`` command line: one sub-command per stage, plus plugin and config introspection.

Heavy libraries (torch, transformers, gradio) are imported inside the commands that need them, so
``voxplug --help`` stays fast.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from voxplug.errors import VoxplugError


def _print_version(value: bool) -> None:
    if value:
        from voxplug import __version__

        typer.echo(f"voxplug {__version__}")
        raise typer.Exit()


def _root(
    version: bool = typer.Option(
        False, "--version", help="Print voxplug's version and exit.", is_eager=True, callback=_print_version
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    plugins_dir: str = typer.Option(
        None,
        "--plugins-dir",
        help="Also load every *.py in this folder as a local plugin.",
        envvar="VOXPLUG_PLUGINS_DIR",
    ),
) -> None:
    """Fine-tune speech recognition models on your own voice, accent, vocabulary or language."""
    # --plugins-dir is acted on by main() before the commands are built (see _early_plugins_dir); it is declared
    # here so that typer accepts it and lists it in --help.


def build_app() -> tuple[typer.Typer, str | None]:
    """A fresh ``voxplug`` app: the built-in commands, then the commands plugins add (``register_commands``).

    Also returns why plugin commands could not be added, or None: the built-in commands work regardless.
    """
    app = typer.Typer(
        name="voxplug",
        help="Fine-tune speech recognition models on your own voice, accent, vocabulary or language.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    _register_commands(app)
    return app, _register_plugin_commands(app)


def _register_commands(app: typer.Typer) -> None:
    from voxplug.cli import (
        app_cmd,
        config_cmd,
        data_cmd,
        evaluate_cmd,
        model_cmd,
        plugins_cmd,
        publish_cmd,
        quickstart_cmd,
        train_cmd,
    )

    for module in (
        plugins_cmd,
        config_cmd,
        data_cmd,
        model_cmd,
        train_cmd,
        evaluate_cmd,
        publish_cmd,
        app_cmd,
        quickstart_cmd,
    ):
        module.register(app)


class CommandGroups:
    """What the ``register_commands`` hook receives: the root ``voxplug`` app and its command groups."""

    def __init__(self, root: typer.Typer) -> None:
        self.app = root

    def group(self, name: str, *, help: str | None = None) -> typer.Typer:
        """The command group ``voxplug NAME`` (``data``, ``model``, ...), created when no such group exists."""
        for info in self.app.registered_groups:
            if info.name == name and info.typer_instance is not None:
                return info.typer_instance
        group = typer.Typer(help=help, no_args_is_help=True)
        self.app.add_typer(group, name=name)
        return group


def _register_plugin_commands(app: typer.Typer) -> str | None:
    """Let plugins add commands; return why they could not (a plugin that fails to load, or a bug in one)."""
    from voxplug.plugins import get_plugin_host

    try:
        get_plugin_host().register_commands(cli=CommandGroups(app))
    except VoxplugError as exc:
        return str(exc)
    except Exception as exc:  # a bug in a plugin's register_commands: reported, the built-in commands still run
        return f"{type(exc).__name__}: {exc}"
    return None


def _early_plugins_dir(args: list[str]) -> None:
    """Honour ``--plugins-dir`` before the commands are built, so that its plugins can add commands too.

    It becomes the environment variable ``VOXPLUG_PLUGINS_DIR``, so that ``accelerate launch`` ranks started from
    here load the same plugins.
    """
    import os

    for index, arg in enumerate(args):
        if arg == "--plugins-dir" and index + 1 < len(args):
            os.environ["VOXPLUG_PLUGINS_DIR"] = args[index + 1]
        elif arg.startswith("--plugins-dir="):
            os.environ["VOXPLUG_PLUGINS_DIR"] = arg.split("=", 1)[1]
        if not arg.startswith("-"):
            return  # options after the command name belong to the command


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: a :class:`VoxplugError` becomes one ``error:`` line and exit status 1; an interruption
    (Ctrl+C) says what it interrupted and exits with 130."""
    from voxplug.cli.help_types import show_plain_type_names
    from voxplug.cli.quiet import quiet_library_noise

    args = sys.argv[1:] if argv is None else argv
    quiet_library_noise()
    _early_plugins_dir(args)
    app, plugin_problem = build_app()
    command = typer.main.get_command(app)
    show_plain_type_names(command)
    try:
        command(args=args, prog_name="voxplug")
    except VoxplugError as exc:
        if plugin_problem and plugin_problem != str(exc):
            print(f"warning: plugin commands were not added: {plugin_problem}", file=sys.stderr)
        if "--debug" in args:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        _report_interrupt(exc)
    except SystemExit as exc:
        interrupt = _interrupt_behind(exc)
        if interrupt is not None:  # typer turns Ctrl+C into a silent exit status 130
            _report_interrupt(interrupt)
        if plugin_problem:  # said last, so that it is not lost above the command's own output
            print(f"warning: plugin commands were not added: {plugin_problem}", file=sys.stderr)
        raise


def _interrupt_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The ``KeyboardInterrupt`` an exit was raised for (typer's ``Exit(130)`` chains it), or None."""
    seen: set[int] = set()
    current: Any = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _report_interrupt(interrupt: KeyboardInterrupt) -> None:
    """``interrupted: <what the command says it was doing>`` on stderr, then exit status 130."""
    detail = str(interrupt)
    said = detail if detail.startswith("interrupted") else f"interrupted{': ' + detail if detail else ''}"
    print(said, file=sys.stderr, flush=True)
    sys.exit(130)
