"""The third-party example plugin, installed for real, is found and used without any change to voxplug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "voxplug-example"
SPEECH = REPO / "examples" / "speech" / "en"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the example into a private target folder (the project's venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def run_with(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(site), **env},
    )


@pytest.mark.slow
def test_voxplug_lists_the_installed_example(installed_example: Path) -> None:
    result = run_with(installed_example, "-m", "voxplug", "plugins", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["plugins"]}
    assert rows["example"]["origin"] == "entry point"
    assert rows["example"]["version"] == "0.1.0"
    assert set(rows["example"]["provides"]) == {"data source:tsv", "publisher:archive"}
    assert {"after_publish", "model_card_sections"} <= set(rows["example"]["hooks"])


def test_the_example_data_source_reads_bundled_speech(installed_example: Path) -> None:
    code = f"""
from voxplug.config import load_config, resolve_plugin_options
from voxplug.plugins import get_plugin_host
config = load_config([], ["data.source=tsv", "data.tsv.folder={SPEECH}", "data.tsv.language=en"])
host = get_plugin_host()
options = resolve_plugin_options(config, host)["data.tsv"]
source = host.extension("data source", "tsv")(options)
examples = list(source.examples())
audio = examples[0].load_audio()
print(len(examples), len(source.problems), examples[0].language, audio.dtype, round(len(audio) / 16000, 1) > 1)
"""
    result = run_with(installed_example, "-c", code)
    assert result.returncode == 0, result.stderr
    expected_rows = len((SPEECH / "transcripts.tsv").read_text().splitlines()) - 1
    assert result.stdout.split() == [str(expected_rows), "0", "en", "float32", "True"]


def test_the_example_is_absent_when_not_allowed(installed_example: Path) -> None:
    result = run_with(installed_example, "-m", "voxplug", "plugins", "--json", VOXPLUG_LOAD_PLUGINS="jsonl")
    assert [row["name"] for row in json.loads(result.stdout)["plugins"]] == ["jsonl"]
