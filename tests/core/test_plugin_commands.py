"""Plugins add commands to the ``voxplug`` command line through the ``register_commands`` hook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
from voxplug import hookimpl


@hookimpl
def register_commands(cli):
    @cli.app.command("greet")
    def greet(name: str = "world") -> None:
        """Say hello from a plugin."""
        print(f"hello {name}")

    @cli.group("data").command("count-words")
    def count_words(text: str) -> None:
        """Count the words of TEXT."""
        print(len(text.split()))

    tools = cli.group("tools", help="Tools from a plugin.")

    @tools.command("ping")
    def ping() -> None:
        print("pong")
'''


def run_voxplug(*args: str, plugins_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if plugins_dir is not None:
        env["VOXPLUG_PLUGINS_DIR"] = str(plugins_dir)
    return subprocess.run(
        [sys.executable, "-m", "voxplug", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.slow
def test_a_plugin_adds_top_level_commands_groups_and_commands_in_existing_groups(tmp_path: Path) -> None:
    (tmp_path / "greeter.py").write_text(PLUGIN, encoding="utf-8")
    greeted = run_voxplug("greet", "--name", "Ada", plugins_dir=tmp_path)
    assert greeted.returncode == 0, greeted.stderr
    assert greeted.stdout.strip() == "hello Ada"
    counted = run_voxplug("data", "count-words", "one two three", plugins_dir=tmp_path)
    assert counted.stdout.strip() == "3", counted.stderr
    data_help = run_voxplug("data", "--help", plugins_dir=tmp_path).stdout
    assert "count-words" in data_help and "import" in data_help  # the built-in data commands are still there
    assert run_voxplug("tools", "ping", plugins_dir=tmp_path).stdout.strip() == "pong"
    assert "greet" in run_voxplug("--help", plugins_dir=tmp_path).stdout
    flagged = run_voxplug("--plugins-dir", str(tmp_path), "greet")  # the flag works like the variable
    assert flagged.returncode == 0 and flagged.stdout.strip() == "hello world", flagged.stderr
    without = run_voxplug("greet")
    assert without.returncode == 2 and "No such command" in without.stderr


@pytest.mark.slow
def test_the_whisper_plugin_adds_import_ct2_to_the_model_group() -> None:
    listed = run_voxplug("model", "--help")
    assert "import-ct2" in listed.stdout and "tiny" in listed.stdout
    blocked = subprocess.run(
        [sys.executable, "-m", "voxplug", "model", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "VOXPLUG_DISABLE_PLUGINS": "whisper"},
        timeout=120,
    )
    assert "import-ct2" not in blocked.stdout and "tiny" in blocked.stdout


def test_a_plugin_whose_register_commands_raises_costs_only_its_commands(tmp_path: Path) -> None:
    (tmp_path / "buggy.py").write_text(
        "from voxplug import hookimpl\n\n\n@hookimpl\ndef register_commands(cli):\n    raise ValueError('oops')\n",
        encoding="utf-8",
    )
    result = run_voxplug("config", "--help", plugins_dir=tmp_path)
    assert result.returncode == 0 and "show" in result.stdout
    assert "warning: plugin commands were not added: ValueError: oops" in result.stderr
