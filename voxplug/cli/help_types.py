"""Type names in ``--help`` as a user reads them: ``PATH``, ``TEXT``, ``INTEGER``, and none for flags.

typer writes each option's Python annotation (``<bool>``, ``<list[str]>``, ``<str>``); click's own names say what to
type. :func:`show_plain_type_names` relabels every parameter of a built command tree, plugin commands included.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, get_args, get_origin

PLAIN_NAMES: dict[Any, str] = {str: "TEXT", Path: "PATH", int: "INTEGER", float: "FLOAT"}


def plain_type_name(param: Any, ctx: Any, *, typer_display: Any) -> str | None:
    """``PATH`` / ``TEXT`` / ``INTEGER`` / ``FLOAT`` for ``param``; None for a flag; typer's own label otherwise
    (choices list their values)."""
    if getattr(param, "is_flag", False):
        return None
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if descriptor is None or descriptor.is_choice:
        return typer_display(ctx)
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        annotation = get_args(annotation)[0]
    return PLAIN_NAMES.get(annotation) or typer_display(ctx)


def show_plain_type_names(command: Any, parent: Any = None) -> None:
    """Relabel the parameters of ``command`` and of every sub-command (see the module docstring).

    The help option is built here, in a context made as the command line makes it (``-h`` as well as ``--help``
    comes from the root's settings), because it is made once and kept.
    """
    from typer._click import Context

    context = Context(command, parent=parent, **getattr(command, "context_settings", {}))
    help_option = command.get_help_option(context) if hasattr(command, "get_help_option") else None
    for param in [*getattr(command, "params", []), *([help_option] if help_option is not None else [])]:
        if hasattr(param, "display_type") and "display_type" not in vars(param):
            param.display_type = partial(plain_type_name, param, typer_display=param.display_type)
    for sub in getattr(command, "commands", {}).values():
        show_plain_type_names(sub, context)
