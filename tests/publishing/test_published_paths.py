"""Nothing published holds a path of this machine: every file of a published model, its Space and a pushed dataset.

The run, its base model and its dataset live under a folder named like a web-app workspace
(``browser-<marker>``), and the run's files record absolute paths into it, as a real run does (the base model's
folder, the data manifest, the run and checkpoint folders). Everything goes through the real ``huggingface_hub``
to the test Hub on loopback, is downloaded back with ``snapshot_download``, and every byte is searched for the
marker and for the machine's home, temporary and working folders.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest
from publishing_helpers import BASE_REPO, READ_TOKEN, hub_options, upload_base, write_json

from voxplug.errors import PublishError
from voxplug.publishing.publish import deploy_demo, publish_model
from voxplug.testing.hub_server import HubServer

MARKER = f"browser-{secrets.token_hex(16)}"


def machine_paths(tmp_path: Path) -> list[str]:
    """What no published file may contain: the marker, and this machine's home, temporary and working folders."""
    base_temp = str(tmp_path.parents[1])  # /tmp/pytest-of-<user>
    return [MARKER, base_temp, f"{Path.home()}/", f"{tempfile.gettempdir()}/", str(Path.cwd())]


def parquet_text(path: Path) -> str:
    """The strings of a Parquet file, decoded (column data may be compressed, so the raw bytes do not show them)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    metadata = {key.decode(): value.decode() for key, value in (table.schema.metadata or {}).items()}
    rows = [{key: value for key, value in row.items() if key != "audio"} for row in table.to_pylist()]
    audio_names = [row["audio"]["path"] for row in table.to_pylist()]
    return json.dumps([metadata, rows, audio_names])


def leaks(folder: Path, tmp_path: Path) -> list[str]:
    """``file: path`` for every downloaded file that holds the marker or a path of this machine."""
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or ".cache" in path.relative_to(folder).parts:
            continue
        content = path.read_bytes().decode("latin-1")
        if path.suffix == ".parquet":
            content += parquet_text(path)
        found += [f"{path.relative_to(folder)}: {needle}" for needle in machine_paths(tmp_path) if needle in content]
    return found


def download(hub: HubServer, repo_id: str, repo_type: str, into: Path) -> Path:
    from huggingface_hub import snapshot_download

    folder = into / repo_type / repo_id
    snapshot_download(repo_id, repo_type=repo_type, endpoint=hub.url, token=hub.token, local_dir=folder)
    return folder


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder named like a web-app workspace: its name is the key to a user's data."""
    return tmp_path / "app" / MARKER


@pytest.fixture
def marked_run(lora_run: Path, tiny_base: Path, workspace: Path) -> Path:
    """The LoRA run moved into the workspace, with absolute paths recorded where a real run records them."""
    run = workspace / "runs" / "lora-run"
    base = workspace / "models" / "tiny-voxtral"
    manifest = workspace / "datasets" / "my-voice" / "data.jsonl"
    shutil.copytree(lora_run, run)
    shutil.copytree(tiny_base, base)
    info = json.loads((run / "model" / "voxplug.json").read_text())
    write_json(run / "model" / "voxplug.json", {**info, "base_model": str(base), "datasets": [str(manifest)]})
    adapter_config = json.loads((run / "model" / "adapter_config.json").read_text())
    write_json(run / "model" / "adapter_config.json", {**adapter_config, "base_model_name_or_path": str(base)})
    config = json.loads((run / "training_config.json").read_text())
    config["model"]["name_or_path"] = str(base)
    config["data"] = {"source": "jsonl", "jsonl": {"path": str(manifest)}}
    config["training"]["output_dir"] = str(run)
    config["resolved_options"] = {"model.cache": {"folder": f"{Path.home()}/.cache/voxplug/encoder"}}
    write_json(run / "training_config.json", config)
    results = json.loads((run / "train_results.json").read_text())
    results |= {
        "best_checkpoint": str(run / "checkpoints" / "checkpoint-60"),
        "resumed_from": f"file://{run}/checkpoints/checkpoint-40",
        "note": f"encoder cache in {workspace}/cache, logs in {run}/train.log",
        str(workspace / "odd-key"): 1,
    }
    write_json(run / "train_results.json", results)
    return run


@pytest.mark.slow
def test_a_published_model_and_its_space_hold_no_local_path(
    marked_run: Path, tiny_base: Path, hub: HubServer, tmp_path: Path, monkeypatch, plugin_host
) -> None:
    """The base model named by its Hub id: the adapter still loads, the Space names the Hub base, nothing local."""
    from peft import PeftConfig, PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import VoxtralForConditionalGeneration

    upload_base(hub, tiny_base)
    publish_model(marked_run, target="hub", destination="marked", options=hub_options(hub, base_model=BASE_REPO))
    monkeypatch.setenv("HF_READ_TOKEN", READ_TOKEN)
    deploy_demo("tester/marked", options=hub_options(hub))
    model_files = download(hub, "tester/marked", "model", tmp_path / "downloads")
    space_files = download(hub, "tester/marked-demo", "space", tmp_path / "downloads")
    assert leaks(model_files, tmp_path) == [] and leaks(space_files, tmp_path) == []

    info = json.loads((model_files / "voxplug.json").read_text())
    assert info["base_model"] == BASE_REPO and info["datasets"] == []
    results = json.loads((model_files / "train_results.json").read_text())
    assert results["best_checkpoint"] == "checkpoints/checkpoint-60" and results["resumed_from"] == (
        "checkpoints/checkpoint-40"
    )
    assert results["note"] == "encoder cache in <local path>, logs in train.log"
    config = json.loads((model_files / "training_config.json").read_text())
    assert config["model"]["name_or_path"] == BASE_REPO and config["training"]["output_dir"] == "."
    assert config["data"]["jsonl"]["path"] == "<local path>"
    assert PeftConfig.from_pretrained(str(model_files)).base_model_name_or_path == BASE_REPO
    adapter = PeftModel.from_pretrained(VoxtralForConditionalGeneration.from_pretrained(tiny_base), str(model_files))
    published = get_peft_model_state_dict(adapter, save_embedding_layers=False)
    original = load_file(marked_run / "model" / "adapter_model.safetensors")
    assert published.keys() == original.keys() and all((published[k] == original[k]).all() for k in original)

    readme = (space_files / "README.md").read_text()
    assert f"- {BASE_REPO}" in readme and "https://huggingface.co//" not in readme
    assert hub.space_variables("tester/marked-demo")["VOXPLUG_BASE_MODEL_ID"] == BASE_REPO


@pytest.mark.slow
def test_an_adapter_trained_from_an_unnamed_local_base_is_published_without_one(
    marked_run: Path, tiny_base: Path, hub: HubServer, tmp_path: Path, monkeypatch, plugin_host
) -> None:
    """No Hub id is known for the local base: no file names it, the adapter loads onto a base given by hand, and a
    Space (which would need the base from the Hub) is refused before anything is created."""
    from peft import PeftConfig, PeftModel
    from transformers import VoxtralForConditionalGeneration

    publish_model(marked_run, target="hub", destination="unnamed-base", options=hub_options(hub))
    model_files = download(hub, "tester/unnamed-base", "model", tmp_path / "downloads")
    assert leaks(model_files, tmp_path) == []
    assert "base_model" not in json.loads((model_files / "voxplug.json").read_text())
    assert "base_model_name_or_path" not in json.loads((model_files / "adapter_config.json").read_text())
    assert PeftConfig.from_pretrained(str(model_files)).base_model_name_or_path is None
    adapter = PeftModel.from_pretrained(VoxtralForConditionalGeneration.from_pretrained(tiny_base), str(model_files))
    assert any("lora_B" in name for name, _ in adapter.named_parameters())
    card = (model_files / "README.md").read_text()
    assert 'base_id = "<base model id>"' in card and "loaded from a local folder" in card

    with pytest.raises(PublishError, match="names no base model on the Hub; deploy it with -o base_model="):
        deploy_demo("tester/unnamed-base", options=hub_options(hub))
    assert not any(kind == "space" for kind, _ in hub.store.repos)

    from huggingface_hub import HfApi

    info = json.loads((model_files / "voxplug.json").read_text())  # as an older voxplug published it: a local base
    old = json.dumps({**info, "base_model": str(tiny_base)}).encode()
    HfApi(endpoint=hub.url, token=hub.token).upload_file(
        path_or_fileobj=old, path_in_repo="voxplug.json", repo_id="tester/unnamed-base"
    )
    with pytest.raises(PublishError, match="names no base model on the Hub"):
        deploy_demo("tester/unnamed-base", options=hub_options(hub))
    monkeypatch.setenv("HF_READ_TOKEN", READ_TOKEN)
    deploy_demo("tester/unnamed-base", options=hub_options(hub, base_model=BASE_REPO))
    space_files = download(hub, "tester/unnamed-base-demo", "space", tmp_path / "downloads")
    assert leaks(space_files, tmp_path) == [] and f"- {BASE_REPO}" in (space_files / "README.md").read_text()
    assert hub.space_variables("tester/unnamed-base-demo")["VOXPLUG_BASE_MODEL_ID"] == BASE_REPO


def test_the_local_publisher_keeps_only_the_base_folder_this_machine_loads(
    marked_run: Path, workspace: Path, tmp_path: Path, plugin_host
) -> None:
    """A folder for this machine names the local base where loaders look for it, and nowhere else; a folder meant
    for sharing (``keep_local_base: false``) holds no local path at all."""
    from voxplug_space.demo_app import read_model_spec

    base = str((workspace / "models" / "tiny-voxtral").resolve())
    here = Path(publish_model(marked_run, target="local", destination=str(workspace / "published")).destination)
    kept_in = {leak.split(":")[0] for leak in leaks(here, tmp_path)}
    assert kept_in == {"voxplug.json", "adapter_config.json", "merged/voxplug.json"}
    assert json.loads((here / "voxplug.json").read_text())["base_model"] == base
    assert json.loads((here / "adapter_config.json").read_text())["base_model_name_or_path"] == base
    assert read_model_spec(str(here)).base_model == base  # what `voxplug demo` and `evaluate` load
    assert '"./published"' in (here / "README.md").read_text() and base not in (here / "README.md").read_text()

    options = {"keep_local_base": False}
    shared = publish_model(marked_run, target="local", destination=str(tmp_path / "share"), options=options)
    assert leaks(Path(shared.destination), tmp_path) == []


def test_a_file_still_holding_a_local_path_stops_the_publish(marked_run: Path, hub: HubServer, plugin_host) -> None:
    """A model config voxplug does not rewrite (an unknown key) still may not carry a path up."""
    processor_config = marked_run / "model" / "processor_config.json"
    config = json.loads(processor_config.read_text())
    write_json(processor_config, {**config, "feature_cache": str(marked_run / "features")})
    with pytest.raises(PublishError, match=r"processor_config.json holds the local path .*" + MARKER):
        publish_model(marked_run, target="hub", destination="stopped", options=hub_options(hub))
    assert ("model", "tester/stopped") not in hub.store.repos


@pytest.mark.slow
def test_a_pushed_dataset_holds_no_local_path(
    workspace: Path, speech_clips: list[tuple[Path, str]], hub: HubServer, tmp_path: Path
) -> None:
    from voxplug.data.push import push_dataset
    from voxplug.data.store import DatasetStore

    store = DatasetStore.create(workspace / "datasets" / "my-voice", language="en", licence="cc-by-4.0")
    clips = workspace / "uploads"
    clips.mkdir()
    for path, text in speech_clips[:3]:
        shutil.copyfile(path, clips / path.name)
        store.add(clips / path.name, text)
    push_dataset(store.path, "tester/my-voice", endpoint=hub.url, retry=None)
    files = download(hub, "tester/my-voice", "dataset", tmp_path / "downloads")
    assert {path.suffix for path in files.rglob("*") if path.is_file() and ".cache" not in path.parts} == {
        ".md",
        ".parquet",
        "",
    }
    assert leaks(files, tmp_path) == []


@pytest.mark.slow
def test_the_publish_command_takes_the_base_models_hub_id(marked_run: Path, hub: HubServer, capsys) -> None:
    from voxplug.cli import main

    options = ["-o", f"endpoint={hub.url}", "-o", "retry_wait_s=0.01"]
    with pytest.raises(SystemExit) as refused:
        main(["publish", str(marked_run), "-t", "hub", "--to", "from-cli", "--base-model", str(marked_run), *options])
    assert refused.value.code == 1 and "is not a Hub repo id (owner/name)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as warned:
        main(["publish", str(marked_run), "-t", "hub", "--to", "no-base", *options])
    assert warned.value.code == 0 and "pass --base-model <owner/name>" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["publish", str(marked_run), "-t", "hub", "--to", "from-cli", "--base-model", BASE_REPO, *options])
    assert done.value.code == 0
    assert json.loads(hub.repo_files("tester/from-cli")["voxplug.json"])["base_model"] == BASE_REPO
    adapter_config = json.loads(hub.repo_files("tester/from-cli")["adapter_config.json"])
    assert adapter_config["base_model_name_or_path"] == BASE_REPO
