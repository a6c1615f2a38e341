"""The port a web app (``voxplug app``, ``voxplug demo``) serves on, chosen before gradio starts.

Choosing it here, rather than letting gradio look for a free one, means the URL the command prints is the one it
serves on, and a port that is taken is one line that says so, not gradio's traceback.
"""

from __future__ import annotations

import errno
import os
import socket

from voxplug.errors import ConfigError

DEFAULT_PORT = 7860
PORTS_TRIED = 100
"""Without ``--port``: the first free port from 7860 (or ``GRADIO_SERVER_PORT``) on, among this many."""


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now.

    The probe binds as the server does (uvicorn sets ``SO_REUSEADDR``), so a port whose last server just stopped and
    whose connections linger in TIME_WAIT counts as free, as it is to the server.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise ConfigError(f"--host {host}: cannot listen there ({exc.strerror})") from exc
    return True


def choose_port(host: str, wanted: int | None) -> int:
    """``wanted`` when it is free (else a one-line :class:`ConfigError`); without one, the first free port from 7860."""
    if wanted is not None:
        if not port_is_free(host, wanted):
            raise ConfigError(
                f"port {wanted} on {host} is in use (another voxplug app or demo?): stop it, or choose another "
                "port with --port, or leave --port out to take the next free one"
            )
        return wanted
    first = int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    for port in range(first, first + PORTS_TRIED):
        if port_is_free(host, port):
            return port
    raise ConfigError(f"no free port on {host} from {first} to {first + PORTS_TRIED - 1}; choose one with --port")


def port_taken_meanwhile(exc: OSError, host: str, port: int) -> ConfigError | None:
    """The one-line error when ``exc`` says the port was taken between choosing it and starting the server (gradio
    checks again); None for any other ``OSError``."""
    if exc.errno != errno.EADDRINUSE and "Cannot find empty port" not in str(exc):
        return None
    return ConfigError(f"port {port} on {host} was taken just now: run the command again, or choose one with --port")
