"""Test helpers for voxplug and for plugin authors.

Installing voxplug registers :mod:`voxplug.testing.pytest_plugin` with pytest, which provides fixtures:

* ``plugin_host``: a freshly loaded :class:`voxplug.plugins.PluginHost`, made the process-wide host for one test;
* ``register_plugin``: ``register_plugin(obj)`` registers a plugin object or module for one test only;
* ``tiny_voxtral``: a tiny offline Voxtral checkpoint folder with the real processor (built once per session);
* ``speech_clips``: a few seconds of real speech (espeak-ng, or the clips bundled with the repository);
* ``hub_server``: a Hub-compatible HTTP server on loopback (``voxplug.testing.hub_server``).
"""
