"""The demo app: an adapter really applied to its base, or a full model; Auto means None; gradio_client works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from publishing_helpers import BASE_REPO, READ_TOKEN, connect, hub_options, subprocess_env, upload_base

from voxplug.publishing.publish import publish_model
from voxplug.testing import free_port
from voxplug.testing.hub_server import HubServer

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def published_adapter(lora_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The LoRA run published to a local folder."""
    return Path(
        publish_model(lora_run, target="local", destination=str(tmp_path_factory.mktemp("pub") / "a")).destination
    )


def test_auto_is_none_and_trained_languages_come_first() -> None:
    from voxplug_space.demo_app import AUTO, ModelSpec, language_choices, to_language

    assert [to_language(value) for value in (AUTO, "auto", "", None, "fr")] == [None, None, None, None, "fr"]
    values = [value for _label, value in language_choices(ModelSpec("m", "full", languages=["fr", "sw"]))]
    assert values[:3] == [AUTO, "fr", "sw"] and "en" in values and values.count("fr") == 1


def test_adapter_spec_comes_from_voxplug_json(published_adapter: Path, full_run: Path) -> None:
    from voxplug_space.demo_app import read_model_spec

    spec = read_model_spec(str(published_adapter))
    assert (spec.kind, spec.base_model, spec.languages) == ("adapter", BASE_REPO, ["en", "fr"])
    assert read_model_spec(str(full_run / "model")).kind == "full"


def test_adapter_is_really_applied_to_its_base(published_adapter: Path, tiny_base: Path, speech_wav: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import VoxtralForConditionalGeneration
    from voxplug_space.demo_app import Transcriber, read_model_spec

    transcriber = Transcriber(read_model_spec(str(published_adapter), base_model=str(tiny_base)), max_new_tokens=4)
    assert isinstance(transcriber.model, PeftModel)
    assert any("lora_B" in name for name, _ in transcriber.model.named_parameters())
    inputs = transcriber.processor.apply_transcription_request(language="en", audio=str(speech_wav), model_id="m")
    base = VoxtralForConditionalGeneration.from_pretrained(tiny_base).eval()
    with torch.inference_mode():
        tuned_logits = transcriber.model(**inputs).logits
        base_logits = base(**inputs).logits
    assert not torch.allclose(tuned_logits, base_logits)


def test_a_missing_base_model_stops_the_demo_instead_of_serving_something_else(
    published_adapter: Path, tmp_path: Path
) -> None:
    from voxplug_space.demo_app import build_demo

    with pytest.raises(OSError):
        build_demo(str(published_adapter), base_model=str(tmp_path / "no-such-base"))


def test_local_demo_answers_gradio_client(published_adapter: Path, tiny_base: Path, speech_wav: Path) -> None:
    from gradio_client import handle_file
    from voxplug_space.demo_app import build_demo

    demo = build_demo(str(published_adapter), base_model=str(tiny_base), max_new_tokens=4)
    demo.queue().launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        client = connect(demo.local_url)
        for language in ("Auto", "fr"):
            transcript = client.predict(handle_file(str(speech_wav)), language, api_name="/transcribe")
            assert isinstance(transcript, str)
    finally:
        demo.close()


@pytest.mark.slow
def test_demo_command_serves_a_private_hub_model_with_a_read_token(
    lora_run: Path, tiny_base: Path, hub: HubServer, tmp_path: Path, speech_wav: Path, plugin_host
) -> None:
    """What a deployed Space does: the model id from VOXPLUG-style settings, HF_TOKEN holding a read token."""
    from gradio_client import handle_file

    upload_base(hub, tiny_base)
    publish_model(lora_run, target="hub", options=hub_options(hub))
    port = free_port()
    env = {**subprocess_env(hub, tmp_path / "hf-home"), "HF_TOKEN": READ_TOKEN}
    command = [sys.executable, "-m", "voxplug", "demo", "--model", "tester/lora-run", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--max-new-tokens", "4"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = connect(f"http://127.0.0.1:{port}/", process)
        assert isinstance(client.predict(handle_file(str(speech_wav)), "Auto", api_name="/transcribe"), str)
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert "serving tester/lora-run" in output
    assert READ_TOKEN not in output


def test_demo_command_reports_an_unloadable_model_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from voxplug.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as failed:
        main(["demo", "--model", str(tmp_path)])
    assert failed.value.code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: cannot load {tmp_path} for the demo:")


def test_demo_app_is_self_contained() -> None:
    """The Space cannot install voxplug (it is not on PyPI): app.py may import only what requirements.txt pins,
    besides imports it does without (inside ``try: ... except ImportError``: voxplug's decoder, used locally)."""
    import ast

    from voxplug_space import demo_app
    from voxplug_space.space_files import PINNED_PACKAGES

    tree = ast.parse(Path(demo_app.__file__).read_text())
    optional = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.Try)
        and any(ast.unparse(handler.type or ast.Name("")) == "ImportError" for handler in node.handlers)
        for statement in node.body
        for inner in ast.walk(statement)
    }
    imports = [
        node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in optional
    ]
    imported = {alias.name.split(".")[0] for node in imports if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in imports if isinstance(node, ast.ImportFrom) and node.module}
    assert any(id(node) in optional for node in ast.walk(tree))  # the check below sees past the optional imports
    allowed = (
        {name.split("[")[0].replace("-", "_") for name in PINNED_PACKAGES} | {"gradio"} | set(sys.stdlib_module_names)
    )
    assert imported <= allowed, imported - allowed
