"""Fixtures of the publishing tests: tiny Voxtral run folders (LoRA and full, built once) and a test Hub."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PLUGINS = HERE.parents[1] / "plugins"
for folder in (HERE, PLUGINS):  # helpers for the test modules; plugins for a checkout without an editable install
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from publishing_helpers import READ_TOKEN, SPEECH_WAV, build_full_run, build_lora_run  # noqa: E402

from voxplug.testing.hub_server import DEFAULT_TOKEN, HubServer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Voxtral checkpoint with the real processor."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("tiny") / "base")


@pytest.fixture(scope="session")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A finished LoRA run folder (adapter, merged model, results, a checkpoint that must never be published)."""
    return build_lora_run(tmp_path_factory.mktemp("runs") / "lora-run", tiny_base)


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A finished full fine-tuning run folder."""
    return build_full_run(tmp_path_factory.mktemp("runs") / "full-run", tiny_base)


@pytest.fixture
def speech_wav() -> Path:
    """A few seconds of real speech (bundled with the repository)."""
    assert SPEECH_WAV.is_file()
    return SPEECH_WAV


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A test Hub on loopback; this process's token is its write token, and no login file is read.

    ``HF_HUB_DISABLE_XET`` makes huggingface_hub take the Git LFS path (the server does not speak Xet).
    """
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    monkeypatch.setenv("HF_TOKEN", DEFAULT_TOKEN)
    monkeypatch.delenv("HF_READ_TOKEN", raising=False)
    with HubServer(tmp_path / "hub") as server:
        server.add_token(READ_TOKEN, "tester", write=False)
        yield server
