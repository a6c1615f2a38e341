"""The ``space`` deployer on the test Hub: files, pinned requirements, front matter, variables, secret, hardware."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import yaml
from publishing_helpers import BASE_REPO, READ_TOKEN, hub_options

from voxplug import hookimpl
from voxplug.errors import PublishError
from voxplug.publishing.interface import DeployResult
from voxplug.publishing.publish import deploy_demo, publish_model
from voxplug.testing.hub_server import DEFAULT_TOKEN, HubServer

DEMO_APP = Path(__file__).resolve().parents[2] / "plugins" / "voxplug_space" / "demo_app.py"


@pytest.fixture
def published(lora_run: Path, full_run: Path, hub: HubServer, plugin_host) -> HubServer:
    """The LoRA run published privately as tester/lora-run, the full run publicly as tester/full-run."""
    publish_model(lora_run, target="hub", options=hub_options(hub))
    publish_model(full_run, target="hub", options=hub_options(hub, private=False))
    return hub


def front_matter(readme: bytes) -> dict:
    return yaml.safe_load(readme.decode().split("---\n")[1])


@pytest.mark.slow
def test_private_adapter_demo_gets_files_variables_read_token_secret_and_hardware(
    published: HubServer, monkeypatch: pytest.MonkeyPatch, register_plugin
) -> None:
    hub = published
    seen: list[str] = []

    class Watcher:
        @hookimpl
        def before_deploy(self, target: str, model_ref: str) -> None:
            seen.append(f"before {target} {model_ref}")

        @hookimpl
        def after_deploy(self, result: DeployResult) -> None:
            seen.append(f"after {result.destination}")

    register_plugin(Watcher(), name="watcher")
    monkeypatch.setenv("HF_READ_TOKEN", READ_TOKEN)
    result = deploy_demo("tester/lora-run", options=hub_options(hub, hardware="t4-small"))
    assert result.destination == "tester/lora-run-demo" and result.url == f"{hub.url}/spaces/tester/lora-run-demo"
    assert seen == ["before space tester/lora-run", "after tester/lora-run-demo"]

    files = hub.repo_files("tester/lora-run-demo", "space")
    assert set(files) == {".gitattributes", "README.md", "app.py", "requirements.txt"}
    assert len(hub.repo_commits("tester/lora-run-demo", "space")) == 2  # creation + one upload commit
    assert files["app.py"] == DEMO_APP.read_bytes()
    for content in files.values():
        assert DEFAULT_TOKEN.encode() not in content and READ_TOKEN.encode() not in content
    assert hub.store.repos[("space", "tester/lora-run-demo")].private is True  # the model is private

    assert hub.space_variables("tester/lora-run-demo") == {
        "VOXPLUG_MODEL_ID": "tester/lora-run",
        "VOXPLUG_BASE_MODEL_ID": BASE_REPO,
        "VOXPLUG_MAX_NEW_TOKENS": "256",
        "VOXPLUG_MCP_SERVER": "0",
        "VOXPLUG_CONCURRENCY": "1",
        "VOXPLUG_QUEUE_SIZE": "16",
        "VOXPLUG_MAX_AUDIO_S": "60",
        "VOXPLUG_MAX_FILE_MB": "20",
    }
    assert hub.space_secrets("tester/lora-run-demo") == {"HF_TOKEN": READ_TOKEN}  # the read token, never the write one
    assert hub.space_hardware("tester/lora-run-demo") == "t4-small"


@pytest.mark.slow
def test_requirements_are_pinned_to_the_installed_versions(published: HubServer, monkeypatch) -> None:
    deploy_demo("tester/full-run", destination="tester/demo", options=hub_options(published))
    requirements = published.repo_files("tester/demo", "space")["requirements.txt"].decode().split()
    pins = dict(line.split("==") for line in requirements)
    assert {"torch", "transformers", "peft", "mistral-common[audio]", "huggingface_hub", "soundfile"} <= set(pins)
    assert pins["transformers"] == metadata.version("transformers")
    assert pins["torch"] == metadata.version("torch").split("+")[0]
    assert all(version[0].isdigit() for version in pins.values())


@pytest.mark.slow
def test_readme_front_matter(published: HubServer) -> None:
    deploy_demo("tester/full-run", options=hub_options(published, suggested_hardware="a10g-small", tags=["mine"]))
    matter = front_matter(published.repo_files("tester/full-run-demo", "space")["README.md"])
    assert matter["sdk"] == "gradio" and matter["sdk_version"] == metadata.version("gradio")
    assert matter["app_file"] == "app.py"
    assert matter["python_version"].count(".") == 1
    assert matter["suggested_hardware"] == "a10g-small"
    assert matter["models"] == ["tester/full-run"]  # a full model needs no base
    assert {"voxplug", "automatic-speech-recognition", "voxtral", "mine"} <= set(matter["tags"])
    assert 0 < len(matter["short_description"]) <= 60


@pytest.mark.slow
def test_public_model_needs_no_secret_and_requests_no_hardware(published: HubServer) -> None:
    deploy_demo("tester/full-run", options=hub_options(published))
    assert published.space_secrets("tester/full-run-demo") == {}
    assert published.space_hardware("tester/full-run-demo") == "cpu-basic"
    assert published.store.repos[("space", "tester/full-run-demo")].private is False
    assert "VOXPLUG_BASE_MODEL_ID" not in published.space_variables("tester/full-run-demo")


@pytest.mark.slow
def test_private_model_without_read_token_is_refused_before_creating_anything(published: HubServer) -> None:
    with pytest.raises(PublishError, match="the model is private, so the Space needs a READ token .* HF_READ_TOKEN"):
        deploy_demo("tester/lora-run", options=hub_options(published))
    assert not any(kind == "space" for kind, _ in published.store.repos)


@pytest.mark.slow
def test_an_existing_public_space_for_a_private_model_is_refused_before_uploading(
    published: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import HfApi

    HfApi(endpoint=published.url, token=published.token).create_repo(
        "tester/lora-run-demo", repo_type="space", space_sdk="gradio", private=False
    )
    monkeypatch.setenv("HF_READ_TOKEN", READ_TOKEN)
    with pytest.raises(PublishError, match=r"lora-run-demo is public, but you asked for a private space repo") as err:
        deploy_demo("tester/lora-run", options=hub_options(published))
    assert "hf repos settings tester/lora-run-demo --type space --private" in str(err.value)
    assert set(published.repo_files("tester/lora-run-demo", "space")) == {".gitattributes"}
    assert published.space_secrets("tester/lora-run-demo") == {}  # the read token never reached a public Space
    assert published.space_variables("tester/lora-run-demo") == {}


@pytest.mark.slow
def test_write_token_is_never_the_space_secret(published: HubServer, monkeypatch) -> None:
    monkeypatch.setenv("HF_READ_TOKEN", DEFAULT_TOKEN)
    with pytest.raises(PublishError, match="HF_READ_TOKEN holds your write token"):
        deploy_demo("tester/lora-run", options=hub_options(published))
    published.add_token("hf_another_write_token", "tester", write=True)
    monkeypatch.setenv("MY_TOKEN", "hf_another_write_token")
    with pytest.raises(PublishError, match="MY_TOKEN holds a write token"):
        deploy_demo("tester/lora-run", options=hub_options(published, read_token_env="MY_TOKEN"))
    assert not any(kind == "space" for kind, _ in published.store.repos)


@pytest.mark.slow
def test_unknown_hardware_is_refused_before_anything_is_created(published: HubServer) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown Space hardware 't4small'"):
        deploy_demo("tester/full-run", options=hub_options(published, hardware="t4small"))
    assert not any(kind == "space" for kind, _ in published.store.repos)


@pytest.mark.slow
def test_local_folder_and_unknown_model_are_refused(published: HubServer, lora_run: Path) -> None:
    with pytest.raises(PublishError, match="is a local folder: a Space loads its model from the Hub"):
        deploy_demo(str(lora_run / "model"), options=hub_options(published))
    with pytest.raises(PublishError, match="model tester/nope not found"):
        deploy_demo("tester/nope", options=hub_options(published))


@pytest.mark.slow
def test_deploy_command(published: HubServer, monkeypatch, capsys) -> None:
    from voxplug.cli import main

    monkeypatch.setenv("HF_READ_TOKEN", READ_TOKEN)
    options = ["-o", f"endpoint={published.url}", "-o", "retry_wait_s=0.01"]
    with pytest.raises(SystemExit) as done:
        main(["deploy", "tester/lora-run", "--space-id", "my-demo", "--hardware", "t4-medium", "--public", *options])
    assert done.value.code == 0
    assert f"deployed tester/my-demo: {published.url}/spaces/tester/my-demo" in capsys.readouterr().out
    assert published.store.repos[("space", "tester/my-demo")].private is False
    assert published.space_hardware("tester/my-demo") == "t4-medium"
    with pytest.raises(SystemExit) as failed:
        main(["deploy", "tester/lora-run", "-o", "hf_token=x"])
    assert failed.value.code == 1
    assert "secrets are never options" in capsys.readouterr().err
