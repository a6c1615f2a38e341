"""Names that changed keep working for a while: each old name warns naming the new one (plugin authors with a
DeprecationWarning, a config key with a FutureWarning, which the person running the command sees)."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplug.api import ConfigError, TrainingMethod
from voxplug.config import resolve_plugin_options, validate_config
from voxplug.plugins import PluginHost

DATA = {"data": {"source": "jsonl", "jsonl": {"path": "data.jsonl"}}}


def test_old_lora_key_fused_still_sets_one_node(tmp_path: Path) -> None:
    config = validate_config({**DATA, "training": {"method": "lora", "lora": {"fused": False}}}, base_dir=tmp_path)
    with pytest.warns(FutureWarning, match=r"training\.lora\.fused is renamed training\.lora\.one_node"):
        options = resolve_plugin_options(config, PluginHost().load())
    assert options["training.lora"].one_node is False


def test_the_person_running_a_config_with_the_old_key_is_told_the_new_one(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    (tmp_path / "data.jsonl").write_text("", encoding="utf-8")
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**DATA, "training": {"method": "lora", "lora": {"fused": False}}}), "utf-8")
    command = [sys.executable, "-m", "voxplug", "config", "show", "-c", str(path)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "training.lora.fused is renamed training.lora.one_node" in done.stderr, done.stderr


def test_old_and_new_lora_key_together_are_one_clear_error(tmp_path: Path) -> None:
    table = {**DATA, "training": {"method": "lora", "lora": {"fused": False, "one_node": True}}}
    config = validate_config(table, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"training\.lora\.fused is the old name of training\.lora\.one_node"):
        resolve_plugin_options(config, PluginHost().load())


def test_old_name_of_the_training_method_base_class_warns() -> None:
    import voxplug.training.interface as interface

    with pytest.warns(DeprecationWarning, match="Trainer is renamed TrainingMethod"):
        assert interface.Trainer is TrainingMethod
