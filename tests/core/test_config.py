"""Run configuration: presets, layering, overrides, plugin options and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplug.config import (
    RunConfig,
    config_schema,
    deep_merge,
    load_config,
    parse_override,
    resolve_plugin_options,
)
from voxplug.errors import ConfigError
from voxplug.plugins import PluginHost


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_voxfactory_recipe() -> None:
    config = RunConfig()
    # VoxFactory's 2 x 4 samples per optimizer step, as the largest micro-batch the GPU's free memory allows
    assert config.training.samples_per_step == 2 * 4
    assert (config.training.batch_size, config.training.gradient_checkpointing) == ("auto", "auto")
    assert (config.training.learning_rate, config.training.epochs) == (5e-5, 3.0)
    assert config.model.name_or_path == "mistralai/Voxtral-Mini-3B-2507"
    assert config.training.method == "lora"


@pytest.mark.parametrize("preset", ["voxtral-mini-lora", "voxtral-mini-full"])
def test_voxtral_presets_keep_voxfactorys_global_batch_in_one_micro_batch(preset: str) -> None:
    training = load_config([preset]).training
    # one micro-batch of 8 is faster on a GPU than 2 x 4 and takes the same optimizer steps (benchmarks/NOTES.md)
    assert (training.batch_size, training.grad_accum) == (8, 1)
    assert training.speed.encoder_cache_gb > 0
    # full fine-tuning decides checkpointing from the longest row's estimate (long transcripts need it at 8 x 1)
    # and keeps its fp32 masters in the optimizer
    full = training.method == "full"
    assert training.gradient_checkpointing == ("auto" if full else False)
    assert training.master_weights == ("optimizer" if full else "model")


def test_the_voxtral_small_preset_is_the_mini_lora_recipe_on_the_24b_checkpoint() -> None:
    small, mini = load_config(["voxtral-small-lora"]), load_config(["voxtral-mini-lora"])
    assert small.model.name_or_path == "mistralai/Voxtral-Small-24B-2507"
    assert small.training.method == "lora" and small.model.dtype == "auto"  # bf16 frozen base under adapters
    assert small.training.plugin_tables()["lora"]["scopes"] == ["language_model"]
    # the effective batch of 8 in micro-batches of 2 beside the 24 B frozen weights, without checkpointing (the layers
    # stay CUDA graphs); everything else (adapters, schedule, evaluation, fast paths) is Mini's
    assert (small.training.batch_size, small.training.grad_accum) == (2, 4)
    assert mini.training.batch_size * mini.training.grad_accum == 8
    assert not small.training.gradient_checkpointing and not mini.training.gradient_checkpointing
    differ = {"name", "base_dir", "run_dir"}

    def recipe(config: RunConfig) -> dict:
        data = config.model_dump()
        data["model"].pop("name_or_path")
        data["training"].pop("batch_size")
        data["training"].pop("grad_accum")
        data["training"].pop("eval_batch_size")  # Mini's follows its micro-batch of 8; Small's is 4 beside 2 x 4
        return {key: value for key, value in data.items() if key not in differ}

    assert recipe(small) == recipe(mini)


#: What a card-size preset changes of its model's recipe to fit: the micro-batch, checkpointing, the fast paths the
#: smaller micro-batch settles, and (24 GB) the 4-bit base.
MEMORY_KEYS = {
    ("training", "batch_size"),
    ("training", "eval_batch_size"),
    ("training", "grad_accum"),
    ("training", "gradient_checkpointing"),
    ("training", "speed"),
    ("model", "quantization"),
}


@pytest.mark.parametrize(
    ("preset", "recipe_preset"),
    [("voxtral-mini-lora-16gb", "voxtral-mini-lora"), ("voxtral-small-qlora-24gb", "voxtral-small-lora")],
)
def test_the_card_size_presets_are_their_models_recipe_with_the_memory_choices(preset: str, recipe_preset: str) -> None:
    small_card, recipe = load_config([preset]), load_config([recipe_preset])
    training = small_card.training
    # the recipe's effective batch of 8, in small micro-batches with checkpointing
    assert training.batch_size * training.grad_accum == 8 and training.batch_size <= 2
    assert training.gradient_checkpointing
    assert small_card.model.quantization == ("nf4" if "qlora" in preset else None)

    def without_memory_keys(config: RunConfig) -> dict:
        data = config.model_dump()
        for section, key in MEMORY_KEYS:
            data[section].pop(key)
        return {key: value for key, value in data.items() if key not in {"name", "base_dir"}}

    assert without_memory_keys(small_card) == without_memory_keys(recipe)


def test_switching_to_auto_keeps_the_effective_batch_of_the_layers_below(tmp_path: Path) -> None:
    # a preset's 2 x 4 under batch_size=auto: auto chooses the micro-batch for the same 8 samples a step
    training = load_config(["voxtral-mini-lora-16gb"], ["training.batch_size=auto"]).training
    assert (training.batch_size, training.grad_accum, training.effective_batch) == ("auto", 1, 8)
    base = write(tmp_path / "base.yaml", "training:\n  batch_size: 3\n  grad_accum: 4\n")
    training = load_config([str(base)], ["training.batch_size=auto"]).training
    assert (training.grad_accum, training.effective_batch) == (1, 12)
    # and back: a fixed size over an explicit auto accumulates up to its effective batch where it divides it
    auto = write(tmp_path / "auto.yaml", "training:\n  batch_size: auto\n  effective_batch: 12\n")
    training = load_config([str(auto)], ["training.batch_size=4"]).training
    assert (training.batch_size, training.grad_accum, training.effective_batch) == (4, 3, None)
    training = load_config([str(auto)], ["training.batch_size=5"]).training
    assert (training.batch_size, training.grad_accum) == (5, 1)
    # a layer that says how to accumulate is taken as written; so is a fixed size over a fixed size
    training = load_config([str(base)], ["training.batch_size=auto", "training.effective_batch=16"]).training
    assert (training.grad_accum, training.effective_batch) == (1, 16)
    training = load_config([str(base)], ["training.batch_size=6"]).training
    assert (training.batch_size, training.grad_accum) == (6, 4)
    with pytest.raises(ConfigError, match="batch_size=auto decides grad_accum"):
        load_config([str(base)], ["training.batch_size=auto", "training.grad_accum=2"])


def test_an_accumulation_without_a_batch_size_names_both_ways_out(tmp_path: Path) -> None:
    """``batch_size`` is auto by default, so ``grad_accum`` alone has no micro-batch to multiply: the error says to
    fix the micro-batch or to ask for the effective batch instead, and either way then loads."""
    alone = write(tmp_path / "alone.yaml", "training:\n  grad_accum: 4\n")
    with pytest.raises(ConfigError) as error:
        load_config([str(alone)])
    message = str(error.value)
    assert "training.grad_accum=4" in message and "auto by default" in message
    assert "set training.batch_size" in message and "training.effective_batch" in message
    assert load_config([str(alone)], ["training.batch_size=2"]).training.samples_per_step == 8
    instead = load_config([], ["training.effective_batch=16"]).training
    assert (instead.batch_size, instead.samples_per_step) == ("auto", 16)


def test_files_layer_and_overrides_win(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "name: base\ntraining:\n  epochs: 2\n  batch_size: 8\n")
    top = write(tmp_path / "top.yaml", "training:\n  epochs: 5\n")
    config = load_config([str(base), str(top)], ["training.learning_rate=1e-3", "name=mine"])
    assert config.training.epochs == 5
    assert config.training.batch_size == 8
    assert config.training.learning_rate == 1e-3
    assert config.name == "mine"
    assert config.base_dir == tmp_path.resolve()
    assert config.run_dir == tmp_path.resolve() / "runs" / "mine"


def test_override_parsing() -> None:
    assert parse_override("training.lora.r=16") == {"training": {"lora": {"r": 16}}}
    assert parse_override("data.language=null") == {"data": {"language": None}}
    assert parse_override("model.name_or_path=a/b=c") == {"model": {"name_or_path": "a/b=c"}}
    for bad in ("training.epochs", "=3", "training..epochs=3"):
        with pytest.raises(ConfigError, match="expected key.sub=value"):
            parse_override(bad)


def test_deep_merge_does_not_mutate() -> None:
    base = {"a": {"b": 1, "c": 2}}
    merged = deep_merge(base, {"a": {"b": 3}})
    assert merged == {"a": {"b": 3, "c": 2}} and base == {"a": {"b": 1, "c": 2}}


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "training:\n  epochs: 3\n   batch_size: [2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: line \d+, column \d+: malformed YAML"):
        load_config([str(bad)])


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping of config sections at the top, got list"):
        load_config([str(write(tmp_path / "list.yaml", "- a\n- b\n"))])


def test_non_utf8_yaml(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml: not UTF-8"):
        load_config([str(path)])


def test_missing_config_file_lists_presets() -> None:
    with pytest.raises(ConfigError, match=r"config 'nope.yaml': no such file, and no preset of that name \(presets:"):
        load_config(["nope.yaml"])


def test_wrong_type_and_unknown_core_key_name_the_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config([], ["training.epochs=many", "evaluation.beam=4"])
    message = str(excinfo.value)
    assert "training.epochs: Input should be a valid number" in message and "'many'" in message
    assert "evaluation.beam: unknown key" in message


def test_constraint_errors_say_what_was_expected() -> None:
    with pytest.raises(ConfigError, match="training.batch_size: Input should be greater than or equal to 1"):
        load_config([], ["training.batch_size=0"])
    with pytest.raises(ConfigError, match="training.precision: Input should be 'auto', 'bf16', 'fp16' or 'fp32'"):
        load_config([], ["training.precision=int3"])


def test_secrets_are_never_config_values() -> None:
    with pytest.raises(ConfigError, match="publish.hub.token: secrets are never config values; set HF_TOKEN"):
        load_config([], ["publish.hub.token=hf_abc"])


def test_plugin_options_are_validated_under_the_plugin_name(plugin_host: PluginHost, tmp_path: Path) -> None:
    config = load_config([], [f"data.jsonl.path={tmp_path / 'd.jsonl'}"])
    resolved = resolve_plugin_options(config, plugin_host)
    assert resolved["data.jsonl"].path == tmp_path / "d.jsonl"


def test_plugin_option_errors_name_the_key(plugin_host: PluginHost) -> None:
    config = load_config([], ["data.jsonl.pth=x.jsonl"])
    with pytest.raises(ConfigError) as excinfo:
        resolve_plugin_options(config, plugin_host)
    message = str(excinfo.value)
    # the misspelling is the one problem: "path" is not reported missing beside it
    assert "data.jsonl.pth: unknown key; did you mean 'path'?" in message
    assert "Field required" not in message
    config = load_config([], ["data.jsonl.allow_outside=true"])
    with pytest.raises(ConfigError, match="data.jsonl.path: Field required"):
        resolve_plugin_options(config, plugin_host)


def test_unknown_plugin_name_and_misplaced_table(plugin_host: PluginHost) -> None:
    config = load_config([], ["data.source=jsnl", "training.epochz=3"])
    with pytest.raises(ConfigError) as excinfo:
        resolve_plugin_options(config, plugin_host)
    message = str(excinfo.value)
    assert "data.source: unknown data source 'jsnl' (known: " in message
    assert "training.epochz: unknown key; did you mean 'epochs'?" in message


def test_schema_includes_plugin_options(plugin_host: PluginHost) -> None:
    schema = config_schema(plugin_host)
    data = schema["$defs"]["DataConfig"]["properties"]
    assert "jsonl" in data
    assert "path" in data["jsonl"]["properties"]
    assert "options of the data source 'jsonl'" in data["jsonl"]["description"]
