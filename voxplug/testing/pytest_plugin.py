"""Pytest fixtures for testing voxplug plugins without GPUs or network access (see :mod:`voxplug.testing`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from voxplug.plugins import PluginHost, use_plugin_host


def pytest_configure(config: pytest.Config) -> None:
    """Keep transformers from fetching and running Hub kernels in any model a test loads (and its subprocesses)."""
    os.environ.setdefault("USE_HUB_KERNELS", "0")


if TYPE_CHECKING:
    from voxplug.testing.hub_server import HubServer


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


@pytest.fixture
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A Hub-compatible HTTP server on loopback for one test (see :mod:`voxplug.testing.hub_server`).

    In-process code passes ``endpoint=hub_server.url``; a subprocess gets ``hub_server.client_env()``, which also
    turns Xet off so large files take the Git LFS path this server implements.
    """
    from voxplug.testing.hub_server import HubServer

    with HubServer(tmp_path_factory.mktemp("hub")) as server:
        yield server


@pytest.fixture(scope="session")
def speech_clips() -> list[tuple[Path, str]]:
    """The bundled English speech clips (real espeak-ng audio, 16 kHz mono) with their transcripts."""
    package = Path(__file__).resolve().parents[1]  # a wheel ships the clips inside the package
    shipped, checkout = package / "examples" / "speech" / "en", package.parent / "examples" / "speech" / "en"
    folder = shipped if shipped.is_dir() else checkout
    lines = (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    clips = [(folder / name, text) for name, text in (line.split("\t", 1) for line in lines if line.strip())]
    if not clips:
        pytest.skip(f"no bundled speech under {folder}")
    return clips


@pytest.fixture(scope="session")
def tiny_voxtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Voxtral checkpoint with the real processor, built offline once per test session."""
    from voxplug.plugins import get_plugin_host

    family = get_plugin_host().extension("model family", "voxtral")()
    return family.build_tiny(tmp_path_factory.mktemp("tiny-voxtral") / "model")
