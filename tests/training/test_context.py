"""A run decides once (voxplug/training/context.py): plugin options are validated once per run, data sources are
made once, the decisions land in the run's files, the config is never changed, and the names that moved keep
working with a warning."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import model_validator
from voxplug_jsonl import JsonlOptions, JsonlSource

from voxplug import hookimpl
from voxplug.config import validate_config
from voxplug.errors import ConfigError, TrainingError

from .conftest import run_config, write_config


class CountedOptions(JsonlOptions):
    """The ``jsonl`` source's options, counting how often they are validated."""

    validations: ClassVar[int] = 0

    @model_validator(mode="after")
    def _count(self) -> CountedOptions:
        type(self).validations += 1
        return self


class CountedSource(JsonlSource):
    """The ``jsonl`` source, counting its instances."""

    name = "counted-jsonl"
    Options = CountedOptions
    instances: ClassVar[int] = 0

    def __init__(self, options: Any = None, *, base_dir: Path) -> None:
        super().__init__(options, base_dir=base_dir)
        type(self).instances += 1


class CountedPlugin:
    @hookimpl
    def register_data_sources(self, register: Any) -> None:
        register(CountedSource)


def counted_run(tmp_path: Path, tiny_model: Path, manifest: Path, register_plugin: Any, steps: int) -> dict[str, Any]:
    """A short run config that reads ``manifest`` through the counting source, with the counters at zero."""
    register_plugin(CountedPlugin())
    raw = run_config(tmp_path, tiny_model, manifest, training__max_steps=steps, evaluation__enabled=False)
    raw["data"] = {"source": "counted-jsonl", "counted-jsonl": {"path": str(manifest)}}
    CountedOptions.validations = CountedSource.instances = 0
    return raw


def test_a_run_from_the_cli_validates_plugin_options_once_and_makes_its_source_once(
    tmp_path: Path, tiny_model: Path, speech_manifest: Path, register_plugin: Any
) -> None:
    from voxplug.cli.options import load_run_config
    from voxplug.plugins import get_plugin_host
    from voxplug.training.run import train

    path = write_config(tmp_path / "run.yaml", counted_run(tmp_path, tiny_model, speech_manifest, register_plugin, 2))

    config, options = load_run_config([str(path)], [])  # what `voxplug train` does before training
    result = train(config, host=get_plugin_host(), options=options, progress=False)

    assert CountedOptions.validations == 1
    assert CountedSource.instances == 1  # the card's dataset names are recorded when the data loads
    assert config.training.compile is None  # auto stays auto: the decision lives in the run's context
    info = json.loads((result.model_dir / "voxplug.json").read_text(encoding="utf-8"))
    assert info["datasets"] == [speech_manifest.name]
    recorded = json.loads((result.run_dir / "training_config.json").read_text(encoding="utf-8"))
    assert recorded["training"]["compile"] is None
    decided = recorded["decided"]
    assert decided["compile"] is False and decided["precision"] == recorded["resolved_precision"] == "fp32"
    assert decided["plan"]["total_steps"] == result.train_results["planned_steps"] == 2
    assert decided["world_size"] == result.train_results["world_size"] == 1
    assert decided["speed"]["cuda_graphs"] is False  # no CUDA here
    assert result.train_results["cuda_graphs"] is None and "encoder_cache" in result.train_results


def test_train_without_options_validates_them_once(
    tmp_path: Path, tiny_model: Path, speech_manifest: Path, register_plugin: Any
) -> None:
    """An API user calls ``train(config)`` alone: the options are validated there, once, for the whole run."""
    from voxplug.training.run import train

    raw = counted_run(tmp_path, tiny_model, speech_manifest, register_plugin, 1)
    train(validate_config(raw, base_dir=tmp_path), progress=False)
    assert CountedOptions.validations == 1


def test_the_context_is_frozen_and_its_options_read_only(tmp_path: Path) -> None:
    from voxplug.training.context import decide

    context = decide(validate_config({}, base_dir=tmp_path), {"training.lora": "options"}, train_rows=8, world_size=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.compile = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        context.options["training.lora"] = "changed"  # type: ignore[index]
    assert context.options_of("training.lora") == "options" and context.options_of("data.jsonl") is None


def test_compile_under_deepspeed_is_refused_before_anything_loads(tmp_path: Path) -> None:
    from voxplug.training.context import check_run_options

    config = validate_config({"training": {"compile": True, "deepspeed": "deepspeed/zero2.json"}}, base_dir=tmp_path)
    with pytest.raises(TrainingError, match="training.compile=true is not supported under DeepSpeed"):
        check_run_options(config)


def test_the_world_size_the_run_is_given_shapes_its_plan_and_speed_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxplug.training import devices
    from voxplug.training.context import decide

    monkeypatch.setattr(devices, "cuda_available", lambda: True)
    config = validate_config({"training": {"batch_size": 2, "epochs": 1}}, base_dir=tmp_path)
    alone, together = (decide(config, {}, train_rows=16, world_size=n) for n in (1, 2))
    assert (alone.plan.steps_per_epoch, together.plan.steps_per_epoch) == (8, 4)
    assert alone.speed.cuda_graphs and not together.speed.cuda_graphs
    assert alone.speed.fused_kernels  # a CUDA precision (fp16 where bf16 is missing)
    assert alone.speed.encoder_cache_gb == config.training.speed.encoder_cache_gb == 8.0


@pytest.mark.parametrize(
    ("old", "old_name", "new", "value"),
    [
        ({"fused_kernels": False}, r"training\.fused_kernels", "fused_kernels", False),
        ({"encoder_cache_gb": 0.5}, r"training\.encoder_cache_gb", "encoder_cache_gb", 0.5),
        (
            {"method": "lora", "lora": {"cuda_graphs": False, "r": 4}},
            r"training\.lora\.cuda_graphs",
            "cuda_graphs",
            False,
        ),
    ],
)
def test_old_speed_keys_still_work_and_say_their_new_name(
    tmp_path: Path, old: dict[str, Any], old_name: str, new: str, value: Any
) -> None:
    with pytest.warns(FutureWarning, match=rf"{old_name} is renamed training\.speed\.{new}"):
        config = validate_config({"training": old}, base_dir=tmp_path)
    assert getattr(config.training.speed, new) == value
    if "lora" in old:
        assert config.training.plugin_tables()["lora"] == {"r": 4}
    both = {**old, "speed": {new: value}}
    with pytest.raises(ConfigError, match=rf"{old_name} is the old name of training\.speed\.{new}"):
        validate_config({"training": both}, base_dir=tmp_path)


def test_the_presets_use_the_speed_namespace_without_warnings() -> None:
    from voxplug.config import PRESETS_DIR, load_config

    for preset in sorted(PRESETS_DIR.glob("*.yaml")):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            load_config([str(preset)])


def test_a_method_written_for_the_old_prepare_model_still_runs_with_a_warning(tmp_path: Path) -> None:
    from voxplug.api import TrainingMethod
    from voxplug.training.context import decide
    from voxplug.training.interface import prepare_for_training

    class OldMethod(TrainingMethod):
        name = "old"

        def prepare_model(self, model: Any, family: Any, config: Any) -> Any:
            return (model, config)

    config = validate_config({}, base_dir=tmp_path)
    context = decide(config, {}, train_rows=8, world_size=1)
    with pytest.warns(DeprecationWarning, match=r"prepare_model\(model, family, config\) is the old signature"):
        assert prepare_for_training(OldMethod(), "model", None, context, config) == ("model", config)


def test_retired_api_functions_warn_and_still_answer(tmp_path: Path) -> None:
    import voxplug.api as api

    config = validate_config({"training": {"compile": True}}, base_dir=tmp_path)
    with pytest.warns(DeprecationWarning, match="compile_enabled is retired"):
        assert api.compile_enabled(config) is True
    with pytest.warns(DeprecationWarning, match="deepspeed_wanted is retired"):
        assert api.deepspeed_wanted(config) is False


def test_a_family_with_the_old_speed_methods_still_offers_them() -> None:
    from voxplug.api import ModelFamily

    class OldFamily(ModelFamily):
        name = "old-family"

        def fuse_kernels(self, model: Any) -> list[str]:
            return ["norm"]

    with pytest.warns(DeprecationWarning, match="fuse_kernels are replaced by ModelFamily.speed"):
        pieces = OldFamily().speed()
    assert pieces.fuse_kernels is not None and pieces.fuse_kernels(None) == ["norm"] and pieces.cuda_graphs is None
    assert ModelFamily().speed().fuse_kernels is None


def test_the_speed_namespace_switches_reach_the_context(tmp_path: Path) -> None:
    from voxplug.training.context import decide

    config = validate_config({"training": {"speed": {"label_logits": False}}}, base_dir=tmp_path)
    context = decide(config, {}, train_rows=8, world_size=1)
    assert context.speed.label_logits is False and context.speed.epoch_stream is True
    # several processes start each epoch afresh: the stream across epochs is a single-process path
    assert decide(config, {}, train_rows=8, world_size=2).speed.epoch_stream is False
    off = validate_config({"training": {"speed": {"epoch_stream": False, "encoder_cache_gb": 0}}}, base_dir=tmp_path)
    speed = decide(off, {}, train_rows=8, world_size=1).speed
    assert speed.epoch_stream is False and speed.encoder_cache_gb == 0
