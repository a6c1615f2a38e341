"""The model card: Hub-valid metadata per kind of model, training details, usage, plugin sections, no secrets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from publishing_helpers import BASE_REPO, tiny_png

from voxplug import hookimpl
from voxplug.plugins import PluginHost
from voxplug.publishing.card import format_duration, load_template, model_card_text
from voxplug.publishing.interface import ModelCard
from voxplug.publishing.publishable import find_publishable_model
from voxplug.testing.hub_server import HubServer


def card_parts(text: str) -> tuple[dict, str]:
    """The card's YAML metadata and Markdown body."""
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def render(run: Path, model_id: str = "tester/my-model", host: PluginHost | None = None) -> str:
    return model_card_text(find_publishable_model(run), model_id=model_id, license="apache-2.0", tags=["x"], host=host)


def test_adapter_card_metadata(lora_run: Path, plugin_host: PluginHost) -> None:
    metadata, body = card_parts(render(lora_run))
    assert metadata["library_name"] == "peft"
    assert metadata["base_model"] == BASE_REPO
    assert metadata["pipeline_tag"] == "automatic-speech-recognition"
    assert metadata["language"] == ["en", "fr"]
    assert metadata["datasets"] == ["tester/my-voice"]  # the local jsonl is named in the body, not the metadata
    assert metadata["license"] == "apache-2.0"
    assert {"voxplug", "voxtral", "lora", "x"} <= set(metadata["tags"])
    (result,) = metadata["model-index"][0]["results"]
    assert metadata["model-index"][0]["name"] == "tester/my-model"
    assert result["task"]["type"] == "automatic-speech-recognition"
    assert result["dataset"]["type"] == "tester/my-voice"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"wer": 12.5, "cer": 4.56}
    assert "PeftModel.from_pretrained(base, adapter_id)" in body
    assert f'base_id = "{BASE_REPO}"' in body and 'adapter_id = "tester/my-model"' in body
    assert 'subfolder="merged"' in body


def test_a_local_base_model_is_left_out_of_the_metadata(lora_run: Path, tmp_path: Path, plugin_host) -> None:
    """The Hub validates ``base_model`` as a model id: a base trained from a local folder is named in the body."""
    run = shutil.copytree(lora_run, tmp_path / "run")
    info_file = run / "model" / "voxplug.json"
    info = json.loads(info_file.read_text())
    info["base_model"] = str(tmp_path / "models" / "my-base")
    info_file.write_text(json.dumps(info))
    metadata, body = card_parts(render(run))
    assert "base_model" not in metadata and metadata["library_name"] == "peft"
    assert "my-base" in body


def test_full_card_metadata_and_usage(full_run: Path, plugin_host: PluginHost) -> None:
    metadata, body = card_parts(render(full_run))
    assert metadata["library_name"] == "transformers"
    assert "full-fine-tune" in metadata["tags"] and "lora" not in metadata["tags"]
    assert "VoxtralForConditionalGeneration.from_pretrained(model_id, dtype=torch.bfloat16" in body
    assert "apply_transcription_request(language=None" in body
    assert "PeftModel" not in body and "merged" not in body


def test_card_shows_training_details_results_and_limitations(lora_run: Path, plugin_host: PluginHost) -> None:
    _, body = card_parts(render(lora_run))
    for expected in (
        "| WER | 12.50 % |",
        "| CER | 4.56 % |",
        "| learning rate | 5e-05 |",
        "| gradient accumulation | 4 |",
        "| lora r | 4 |",
        "| duration | 1 h 02 min 05 s |",
        "NVIDIA H100 80GB HBM3",
        "| optimizer steps | 60 |",
        "![Training curves](curves.png)",
        "`data/local.jsonl` (local)",
        "## Limitations",
    ):
        assert expected in body, expected


def test_card_yaml_is_accepted_by_the_hub_validator(
    lora_run: Path, full_run: Path, plugin_host: PluginHost, tmp_path: Path
) -> None:
    with HubServer(tmp_path / "hub") as hub:
        for run in (lora_run, full_run):
            answer = httpx.post(f"{hub.url}/api/validate-yaml", json={"content": render(run), "repoType": "model"})
            assert answer.status_code == 200, answer.text


def test_plugins_add_sections_and_tags(lora_run: Path, plugin_host: PluginHost, register_plugin) -> None:
    class Sections:
        @hookimpl
        def model_card_sections(self, card: ModelCard) -> list[str]:
            card.metadata["tags"].append("from-plugin")
            return [f"## Evaluated by plugin\n\nkind={card.facts['kind']} wer={card.facts['eval']['eval_wer']}"]

    register_plugin(Sections(), name="sections")
    metadata, body = card_parts(render(lora_run, host=plugin_host))
    assert "from-plugin" in metadata["tags"]
    assert "## Evaluated by plugin\n\nkind=adapter wer=0.125" in body
    assert body.index("## Limitations") < body.index("## Evaluated by plugin")


def test_card_never_holds_a_token(
    tmp_path: Path, lora_run: Path, plugin_host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_in_env_0123456789")
    run = shutil.copytree(lora_run, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints"))
    config = json.loads((run / "training_config.json").read_text())
    config["publish"]["hub_token"] = "hf_secret_in_config_0123456789"
    (run / "training_config.json").write_text(json.dumps(config))
    text = render(run)
    assert "hf_secret" not in text


def test_card_without_results_says_so(tmp_path: Path, full_run: Path, plugin_host: PluginHost) -> None:
    model_dir = shutil.copytree(full_run / "model", tmp_path / "model")
    metadata, body = card_parts(render(model_dir))
    assert "model-index" not in metadata
    assert "No evaluation results were recorded" in body
    assert (tmp_path / "curves.png").exists() is False and tiny_png()  # the run's extras are not required


def test_template_is_read_from_the_package_not_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert "$usage" in load_template("model_card.md").template


@pytest.mark.parametrize(("seconds", "shown"), [(42.25, "42.2 s"), (125, "2 min 05 s"), (3725.4, "1 h 02 min 05 s")])
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_a_qlora_card_says_the_base_was_4bit(lora_run: Path, tmp_path: Path, plugin_host: PluginHost) -> None:
    """A run over a 4-bit base (``model.quantization``) says so in the summary, the training table, the usage and
    the tags; the same run without it says nothing of 4 bits."""
    run = shutil.copytree(lora_run, tmp_path / "run")
    config_file = run / "training_config.json"
    config = json.loads(config_file.read_text())
    plain_metadata, plain_body = card_parts(render(run))
    config.setdefault("model", {})["quantization"] = "nf4"
    config_file.write_text(json.dumps(config))
    metadata, body = card_parts(render(run))
    assert "4-bit" not in plain_body and "qlora" not in plain_metadata["tags"]
    assert {"lora", "qlora", "4-bit"} <= set(metadata["tags"])
    assert "over the base quantized to 4-bit NF4: QLoRA" in body
    assert "| base weights in training | 4-bit NF4 (bitsandbytes), computing in bf16 |" in body
    assert 'bnb_4bit_quant_type="nf4"' in body
    assert metadata["base_model"] == BASE_REPO  # the adapter still names the bf16 base it loads on
