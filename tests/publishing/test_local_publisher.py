"""The ``local`` publisher: the repository layout in a folder that transformers and peft load, written atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from publishing_helpers import BASE_REPO

from voxplug import hookimpl
from voxplug.errors import PublishError
from voxplug.plugins import PluginHost
from voxplug.publishing.interface import PublishResult
from voxplug.publishing.publish import publish_model

NEVER = ("checkpoint", "optimizer", "trainer_state", "training_args", "predictions")


def assert_same_weights(left: dict, right: dict) -> None:
    import torch

    assert left.keys() == right.keys()
    assert all(torch.equal(left[key], right[key]) for key in left)


def test_lora_run_is_published_with_card_results_and_merged_model(lora_run: Path, tmp_path: Path, plugin_host) -> None:
    result = publish_model(lora_run, target="local", destination=str(tmp_path / "out"))
    assert result.target == "local" and result.destination == str(tmp_path / "out")
    assert set(result.files) == {
        "README.md", "adapter_config.json", "adapter_model.safetensors", "processor_config.json", "tekken.json",
        "voxplug.json", "train_results.json", "eval_results.json", "training_config.json", "curves.png",
        "merged/config.json", "merged/generation_config.json", "merged/model.safetensors",
        "merged/processor_config.json", "merged/tekken.json", "merged/voxplug.json",
    }  # fmt: skip
    assert not any(word in name for name in result.files for word in NEVER)
    adapter_config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == BASE_REPO  # not the local folder training used
    assert not list(tmp_path.glob(".out*")) and not list(lora_run.glob(".voxplug-publish-*"))  # nothing left over


def test_published_adapter_and_merged_model_load_with_identical_weights(
    lora_run: Path, tiny_base: Path, tmp_path: Path, plugin_host
) -> None:
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    out = Path(publish_model(lora_run, target="local", destination=str(tmp_path / "out")).destination)
    model = PeftModel.from_pretrained(VoxtralForConditionalGeneration.from_pretrained(tiny_base), out)
    assert_same_weights(
        get_peft_model_state_dict(model, save_embedding_layers=False),
        load_file(lora_run / "model" / "adapter_model.safetensors"),
    )
    merged = VoxtralForConditionalGeneration.from_pretrained(out, subfolder="merged")
    assert_same_weights(
        merged.state_dict(), VoxtralForConditionalGeneration.from_pretrained(lora_run / "merged").state_dict()
    )
    assert type(AutoProcessor.from_pretrained(out, subfolder="merged").tokenizer).__name__ == "MistralCommonBackend"


def test_published_full_model_loads_with_identical_weights(full_run: Path, tmp_path: Path, plugin_host) -> None:
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    out = Path(publish_model(full_run / "model", target="local", destination=str(tmp_path / "out")).destination)
    published = VoxtralForConditionalGeneration.from_pretrained(out)
    assert_same_weights(
        published.state_dict(), VoxtralForConditionalGeneration.from_pretrained(full_run / "model").state_dict()
    )
    assert type(AutoProcessor.from_pretrained(out).tokenizer).__name__ == "MistralCommonBackend"
    assert (out / "eval_results.json").is_file()  # found beside the model folder: model/.. is the run


def test_default_destination_is_inside_the_run_and_republishing_replaces_it(
    full_run: Path, tmp_path: Path, plugin_host
) -> None:
    run = shutil.copytree(full_run, tmp_path / "run", ignore=shutil.ignore_patterns("published"))
    first = Path(publish_model(run, target="local").destination)
    assert first == run / "published"
    (first / "stale.txt").write_text("from an earlier publish")
    second = Path(publish_model(run, target="local").destination)
    assert second == first and not (second / "stale.txt").exists() and (second / "README.md").is_file()


def test_refuses_a_folder_it_did_not_write_and_the_runs_own_folders(
    full_run: Path, tmp_path: Path, plugin_host
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(PublishError, match="not an earlier voxplug publish"):
        publish_model(full_run, target="local", destination=str(precious))
    assert (precious / "notes.txt").read_text() == "keep me"
    for inside in (full_run / "model", full_run, full_run / "checkpoints" / "x"):
        with pytest.raises(PublishError, match="run's own folders"):
            publish_model(full_run, target="local", destination=str(inside))


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        ("model/adapter_model.safetensors", "adapter_model.safetensors | adapter_model.bin"),
        ("model/tekken.json", "tekken.json | tokenizer.json"),
        ("model/voxplug.json", "missing voxplug.json"),
        ("merged/model.safetensors", "model.safetensors | model.safetensors.index.json"),
    ],
)
def test_incomplete_model_folder_is_refused_naming_the_missing_files(
    lora_run: Path, tmp_path: Path, removed: str, named: str, plugin_host
) -> None:
    run = shutil.copytree(lora_run, tmp_path / "run")
    (run / removed).unlink()
    with pytest.raises(PublishError, match="incomplete|missing") as error:
        publish_model(run, target="local", destination=str(tmp_path / "out"))
    assert named in str(error.value)
    assert not (tmp_path / "out").exists()


def test_sharded_model_missing_a_shard_is_refused(full_run: Path, tmp_path: Path, plugin_host) -> None:
    model_dir = shutil.copytree(full_run / "model", tmp_path / "model")
    (model_dir / "model.safetensors").rename(model_dir / "model-00001-of-00002.safetensors")
    weight_map = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(PublishError, match=r"missing: model-00002-of-00002\.safetensors"):
        publish_model(model_dir, target="local", destination=str(tmp_path / "out"))


def test_publish_hooks_fire_and_a_veto_leaves_nothing(
    full_run: Path, tmp_path: Path, plugin_host: PluginHost, register_plugin
) -> None:
    seen: list[tuple] = []

    class Watcher:
        @hookimpl
        def before_publish(self, target: str, model_dir: Path, destination: str) -> None:
            seen.append(("before", target, model_dir.name, destination))
            if destination.endswith("vetoed"):
                raise PublishError("vetoed by policy")

        @hookimpl
        def after_publish(self, result: PublishResult) -> None:
            seen.append(("after", result.target, result.destination))

        @hookimpl
        def on_publish_error(self, target: str, destination: str, error: BaseException) -> None:
            seen.append(("error", target, destination, str(error)))

    register_plugin(Watcher(), name="watcher")
    ok = str(tmp_path / "ok")
    publish_model(full_run, target="local", destination=ok)
    vetoed = str(tmp_path / "vetoed")
    with pytest.raises(PublishError, match="vetoed"):
        publish_model(full_run, target="local", destination=vetoed)
    assert seen == [
        ("before", "local", "model", ok),
        ("after", "local", ok),
        ("before", "local", "model", vetoed),
        ("error", "local", vetoed, "vetoed by policy"),
    ]
    assert not Path(vetoed).exists()


def test_unknown_target_names_the_known_ones(full_run: Path, plugin_host) -> None:
    from voxplug.errors import PluginError

    with pytest.raises(PluginError, match=r"unknown publisher 'hubb'; did you mean 'hub'\?.*known: .*local"):
        publish_model(full_run, target="hubb")


def test_publish_command_takes_its_defaults_from_the_run(full_run: Path, tmp_path: Path, capsys, plugin_host) -> None:
    from voxplug.cli import main

    run = shutil.copytree(full_run, tmp_path / "run", ignore=shutil.ignore_patterns("published"))
    with pytest.raises(SystemExit) as done:
        main(["publish", str(run), "-o", "license=mit", "-o", "tags=[mine]"])
    assert done.value.code == 0
    assert f"published 11 files to {(run / 'published').as_uri()}" in capsys.readouterr().out  # publish.target: local
    card = (run / "published" / "README.md").read_text()
    assert "license: mit" in card and "- mine" in card
    with pytest.raises(SystemExit):
        main(["publish", str(run), "--public"])
    assert "--public does not apply to the 'local' publisher" in capsys.readouterr().err


def test_a_dataset_pushed_after_training_is_named_with_dataset(
    full_run: Path, tmp_path: Path, capsys, plugin_host
) -> None:
    """``voxplug publish --dataset ID``: the card's ``datasets:`` and the published voxplug.json name it."""
    import json

    import yaml

    from voxplug.cli import main

    run = shutil.copytree(full_run, tmp_path / "run", ignore=shutil.ignore_patterns("published"))
    recorded = json.loads((run / "model" / "voxplug.json").read_text())
    with pytest.raises(SystemExit) as done:
        main(["publish", str(run), "--dataset", "me/my-voice", "--dataset", "me/more-voice"])
    assert done.value.code == 0, capsys.readouterr().err
    card = (run / "published" / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["datasets"][-2:] == ["me/my-voice", "me/more-voice"]
    assert "[me/my-voice](https://huggingface.co/datasets/me/my-voice)" in card
    published = json.loads((run / "published" / "voxplug.json").read_text())
    assert published["datasets"][-2:] == ["me/my-voice", "me/more-voice"]
    assert json.loads((run / "model" / "voxplug.json").read_text()) == recorded  # the run's own record is unchanged


def test_third_party_publish_target_gets_the_published_layout(
    lora_run: Path, tmp_path: Path, plugin_host: PluginHost, register_plugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example plugin's ``archive`` publisher zips the staged repository: card, model, results, no checkpoints."""
    import importlib
    import zipfile

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "voxplug-example"))
    register_plugin(importlib.import_module("voxplug_example"), name="example")
    monkeypatch.setenv("VOXPLUG_EXAMPLE_LOG", str(tmp_path / "log.txt"))
    monkeypatch.chdir(tmp_path)
    result = publish_model(lora_run, target="archive")
    with zipfile.ZipFile(result.destination) as archive:
        names = set(archive.namelist())
        card = archive.read("README.md").decode()
    assert (tmp_path / result.destination) == tmp_path / "archives" / "lora-run.zip"
    assert {"README.md", "adapter_model.safetensors", "eval_results.json", "merged/model.safetensors"} <= names
    assert not any(word in name for name in names for word in NEVER)
    assert "## Built with voxplug-example" in card and "library_name: peft" in card
    assert (tmp_path / "log.txt").read_text() == f"published model with archive to {result.destination}\n"
