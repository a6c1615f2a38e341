"""A run killed with SIGKILL mid-training resumes from its last checkpoint and ends exactly like an uninterrupted run.

Three runs of the same config: A uninterrupted (in this process), B a ``voxplug train`` subprocess that stops
right after writing checkpoint 6 and is SIGKILLed there, C ``train(..., resume=True)`` on B's run folder. A local
plugin (``voxplug_plugins.py`` beside the config) records the example ids of every training batch and stalls B.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import bundled_rows, run_config, validated, write_config, write_manifest

STALL_AT_STEP = 6  # the first batch of epoch 2: resuming must skip one batch of that epoch

RECORDING_PLUGIN = """
import json, os, time
from voxplug import hookimpl
from voxplug_voxtral.family import VoxtralCollator


class RecordingCollator(VoxtralCollator):
    name = "recording-voxtral"

    def __call__(self, examples):
        with open(os.environ["VOXPLUG_TEST_ID_LOG"], "a") as log:
            log.write(json.dumps([example["id"] for example in examples]) + "\\n")
        return super().__call__(examples)


@hookimpl
def register_collators(register):
    register(RecordingCollator)


@hookimpl
def on_checkpoint(checkpoint_dir, step):
    if str(step) == os.environ.get("VOXPLUG_TEST_STALL_AT_STEP"):
        (checkpoint_dir.parent.parent / "stalled").write_text(str(step))
        time.sleep(600)
"""


def training_batches(log: Path, eval_ids: set[str]) -> list[list[str]]:
    batches = [json.loads(line) for line in log.read_text().splitlines()]
    return [batch for batch in batches if not set(batch) <= eval_ids]


def losses(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def train_in_process(config: dict[str, Any], folder: Path, log: Path, *, resume: bool) -> Any:
    from voxplug.plugins import PluginHost
    from voxplug.training.run import train

    host = PluginHost().load(config_dir=folder)
    os.environ["VOXPLUG_TEST_ID_LOG"] = str(log)
    try:
        return train(validated(config, folder), host=host, resume=resume, progress=False)
    finally:
        del os.environ["VOXPLUG_TEST_ID_LOG"]


def kill_after_checkpoint(config_path: Path, run_dir: Path, log: Path) -> None:
    env = {**os.environ, "VOXPLUG_TEST_ID_LOG": str(log), "VOXPLUG_TEST_STALL_AT_STEP": str(STALL_AT_STEP)}
    child = subprocess.Popen(
        [sys.executable, "-m", "voxplug", "train", "-c", str(config_path), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "stalled").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise AssertionError(f"the run ended before stalling:\n{child.communicate()[0]}")
        time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Any]:
    rows = bundled_rows()
    folder = tmp_path_factory.mktemp("resume")
    train_manifest = write_manifest(folder / "data", rows[:10], "train.jsonl")
    eval_manifest = write_manifest(folder / "data", rows[10:12], "eval.jsonl")
    (folder / "voxplug_plugins.py").write_text(RECORDING_PLUGIN, encoding="utf-8")

    def config(name: str) -> dict[str, Any]:
        return run_config(
            folder / name,
            tiny_model,
            train_manifest,
            eval_manifest=eval_manifest,
            name=name,
            model__collator="recording-voxtral",
            evaluation__enabled=False,
            training__save_steps=3,
            training__method="full",
            training__learning_rate=1e-3,
        )

    uninterrupted = train_in_process(config("a"), folder, folder / "a.ids", resume=False)
    config_b = config("b")
    kill_after_checkpoint(
        write_config(folder / "b.yaml", config_b), Path(config_b["training"]["output_dir"]), folder / "b.ids"
    )
    resumed = train_in_process(config_b, folder, folder / "c.ids", resume=True)
    eval_ids = {Path(row["file"]).stem for row in rows[10:12]}
    return {"a": uninterrupted, "c": resumed, "folder": folder, "eval_ids": eval_ids}


def test_resume_reaches_the_same_final_step(runs: dict[str, Any]) -> None:
    assert runs["c"].train_results["resumed_from"].endswith(f"checkpoint-{STALL_AT_STEP}")
    assert runs["c"].train_results["global_step"] == runs["a"].train_results["global_step"] == 10


def test_resume_sees_the_same_data_in_the_same_order(runs: dict[str, Any]) -> None:
    folder, eval_ids = runs["folder"], runs["eval_ids"]
    uninterrupted = training_batches(folder / "a.ids", eval_ids)
    resumed = training_batches(folder / "c.ids", eval_ids)
    assert len(uninterrupted) == 10
    assert resumed == uninterrupted[STALL_AT_STEP:]


def test_resume_has_the_same_losses(runs: dict[str, Any]) -> None:
    before, after = losses(runs["a"].run_dir), losses(runs["c"].run_dir)
    assert sorted(before) == sorted(after) == list(range(1, 11))
    for step in range(1, 11):
        assert after[step] == pytest.approx(before[step], rel=1e-4, abs=1e-5), step
