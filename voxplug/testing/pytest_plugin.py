"""Pytest fixtures for testing voxplug plugins without GPUs or network access (see :mod:`voxplug.testing`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from voxplug.plugins import PluginHost, use_plugin_host


@pytest.fixture
def plugin_host() -> Iterator[PluginHost]:
    """A freshly loaded plugin host, installed as the process-wide host for the duration of one test."""
    host = PluginHost().load()
    with use_plugin_host(host):
        yield host


@pytest.fixture
def register_plugin(plugin_host: PluginHost) -> Iterator[Callable[..., str]]:
    """``register_plugin(obj, name=None)`` registers a plugin for this test only and returns its name."""
    names: list[str] = []

    def register(plugin: object, name: str | None = None) -> str:
        registered = plugin_host.register(plugin, name=name)
        names.append(registered)
        return registered

    yield register
    for name in reversed(names):
        if plugin_host.pm.has_plugin(name):
            plugin_host.unregister(name)
