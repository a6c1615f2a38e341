"""Test helpers for voxplug and for plugin authors.

Installing voxplug registers :mod:`voxplug.testing.pytest_plugin` with pytest, which provides fixtures:

* ``plugin_host``: a freshly loaded :class:`voxplug.plugins.PluginHost`, made the process-wide host for one test;
* ``register_plugin``: ``register_plugin(obj)`` registers a plugin object or module for one test only;
* ``tiny_voxtral``: a tiny offline Voxtral checkpoint folder with the real processor (built once per session);
* ``speech_clips``: a few seconds of real speech (espeak-ng, or the clips bundled with the repository);
* ``hub_server``: a Hub-compatible HTTP server on loopback (``voxplug.testing.hub_server``).

and :func:`free_port`, for a server or a rendezvous a test starts itself.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
