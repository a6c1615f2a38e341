"""Hooks a third-party plugin implements, called by voxplug's own code paths (for hooks no other test implements)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxplug import hookimpl
from voxplug.api import DataError, Deployer, DeployResult, ModelFamily, Publisher, PublishError, TrainingMethod
from voxplug.config import validate_config
from voxplug.publishing.publish import deploy_demo


class ThirdPartyFamily(ModelFamily):
    name = "third-party-family"


class ThirdPartyMethod(TrainingMethod):
    name = "third-party-method"


class ThirdPartyPublisher(Publisher):
    name = "third-party-publisher"


class FailingDeployer(Deployer):
    name = "failing-deployer"

    def deploy(self, model_ref: str, *, destination: str | None = None) -> DeployResult:
        raise PublishError(f"cannot deploy {model_ref}")


class Registrations:
    @hookimpl
    def register_model_families(self, register: Any) -> None:
        register(ThirdPartyFamily)

    @hookimpl
    def register_training_methods(self, register: Any) -> None:
        register(ThirdPartyMethod)

    @hookimpl
    def register_publishers(self, register: Any) -> None:
        register(ThirdPartyPublisher)

    @hookimpl
    def register_deployers(self, register: Any) -> None:
        register(FailingDeployer)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("model family", ThirdPartyFamily),
        ("training method", ThirdPartyMethod),
        ("publisher", ThirdPartyPublisher),
        ("deployer", FailingDeployer),
    ],
)
def test_hook_register_extensions_of_a_third_party_plugin(plugin_host: Any, kind: str, cls: type) -> None:
    plugin_host.register(Registrations(), name="third-party")
    assert plugin_host.extension(kind, cls.name) is cls
    assert plugin_host.extension_plugin(kind, cls.name) == "third-party"


def test_hook_on_deploy_error_sees_the_failure(plugin_host: Any) -> None:
    seen: list[tuple[str, str, str]] = []

    class Watcher:
        @hookimpl
        def on_deploy_error(self, target: str, model_ref: str, error: BaseException) -> None:
            seen.append((target, model_ref, str(error)))

    plugin_host.register(Registrations(), name="third-party")
    plugin_host.register(Watcher(), name="watcher")
    with pytest.raises(PublishError, match="cannot deploy tester/model"):
        deploy_demo("tester/model", target="failing-deployer", host=plugin_host)
    assert seen == [("failing-deployer", "tester/model", "cannot deploy tester/model")]


def test_hook_on_train_error_sees_the_failure(tmp_path: Path, plugin_host: Any) -> None:
    from voxplug.training.run import train

    seen: list[tuple[Path, str]] = []

    class Watcher:
        @hookimpl
        def on_train_error(self, config: Any, run_dir: Path, error: BaseException) -> None:
            seen.append((run_dir, str(error)))

    plugin_host.register(Watcher(), name="watcher")
    (tmp_path / "data.jsonl").write_text('{"audio_path": "missing.wav", "text": "hello there"}\n', encoding="utf-8")
    table = {"data": {"source": "jsonl", "jsonl": {"path": "data.jsonl"}}, "training": {"output_dir": "run"}}
    config = validate_config(table, base_dir=tmp_path)
    with pytest.raises(DataError, match="no usable training rows"):
        train(config, host=plugin_host)
    [(run_dir, message)] = seen
    assert run_dir == tmp_path / "run" and "audio file missing.wav not found" in message


def test_hook_register_trainers_under_its_old_name_still_registers_with_a_warning(plugin_host: Any) -> None:
    """A plugin written before the rename keeps working and is told the new hook name."""

    class OldPlugin:
        @hookimpl
        def register_trainers(self, register: Any) -> None:
            register(ThirdPartyMethod)

    with pytest.warns(DeprecationWarning, match="register_trainers hook is renamed register_training_methods"):
        plugin_host.register(OldPlugin(), name="old-plugin")
    assert plugin_host.extension("training method", "third-party-method") is ThirdPartyMethod
    assert plugin_host.extension_plugin("training method", "lora") == "trainers"  # the built-ins are still there
    with pytest.warns(DeprecationWarning, match="extension type 'trainer' is renamed 'training method'"):
        assert plugin_host.extension("trainer", "third-party-method") is ThirdPartyMethod
