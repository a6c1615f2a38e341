"""Streamed training data through ``voxplug train``: a run SIGKILLed mid-stream and resumed sees the uninterrupted
run's data in the same order, in one process (two data-loader workers) and on two CPU ranks (``accelerate launch``),
and the rows the stream drops reach ``data_summary.json`` and ``train.log``.

Each test trains the same config three times: A uninterrupted, B killed right after writing checkpoint 5, C resumed
from B's run folder. A local plugin records the example ids of every batch per rank, and stalls B.
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

from .conftest import REPO, bundled_rows, launch_training, run_config, validated, write_config, write_manifest

STALL_AT_STEP = 5  # odd: with two workers, the batch after it comes from the second
STEPS = 12

RECORDING_PLUGIN = """
import json, os, time
from voxplug import hookimpl
from voxplug_voxtral.family import VoxtralTranscriptionCollator


class RecordingCollator(VoxtralTranscriptionCollator):
    name = "recording-voxtral"

    def __call__(self, examples):
        with open(os.environ["VOXPLUG_TEST_ID_LOG"] + ".rank" + os.environ.get("RANK", "0"), "a") as log:
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


def recorded(log: Path, rank: int, eval_ids: set[str]) -> list[list[str]]:
    """The training batches rank ``rank`` collated, in order (evaluation batches left out)."""
    path = Path(f"{log}.rank{rank}")
    batches = [json.loads(line) for line in path.read_text().splitlines()]
    return [batch for batch in batches if not set(batch) <= eval_ids]


def losses(run_dir: Path) -> dict[int, float]:
    state = json.loads((run_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


def kill_after_checkpoint(command: list[str], run_dir: Path, env: dict[str, str]) -> None:
    """Run ``command`` until it stalls after checkpoint :data:`STALL_AT_STEP`, then SIGKILL its whole process group."""
    child = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, **env, "VOXPLUG_TEST_STALL_AT_STEP": str(STALL_AT_STEP)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 400
    while not (run_dir / "stalled").exists():
        if child.poll() is not None or time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            raise AssertionError(f"the run ended before stalling:\n{child.communicate()[0]}")
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """16 training clips, 2 eval clips, the recording plugin beside the configs."""
    rows = bundled_rows()
    folder = tmp_path_factory.mktemp("streaming")
    write_manifest(folder / "data", rows[:16], "train.jsonl")
    write_manifest(folder / "data", rows[16:18], "eval.jsonl")
    (folder / "voxplug_plugins.py").write_text(RECORDING_PLUGIN, encoding="utf-8")
    return {"path": folder, "eval_ids": {Path(row["file"]).stem for row in rows[16:18]}}


def stream_config(folder: Path, tiny_model: Path, name: str, *, workers: int, batch_size: int) -> dict[str, Any]:
    config = run_config(
        folder / name,
        tiny_model,
        folder / "data" / "train.jsonl",
        eval_manifest=folder / "data" / "eval.jsonl",
        name=name,
        model__collator="recording-voxtral",
        evaluation__enabled=False,
        training__method="full",
        training__learning_rate=1e-3,
        training__batch_size=batch_size,
        training__max_steps=STEPS,
        training__save_steps=STALL_AT_STEP,
        training__dataloader_workers=workers,
        data__streaming=True,
        data__shuffle_buffer=4,
    )
    return config


@pytest.mark.slow
def test_one_process_with_two_workers_resumes_mid_stream_exactly(folder: dict[str, Any], tiny_model: Path) -> None:
    from voxplug.plugins import PluginHost
    from voxplug.training.run import train

    base = folder["path"]
    host = PluginHost().load(config_dir=base)
    os.environ["VOXPLUG_TEST_ID_LOG"] = str(base / "one-a.ids")
    try:
        config_a = stream_config(base, tiny_model, "one-a", workers=2, batch_size=2)
        uninterrupted = train(validated(config_a, base), host=host, progress=False)
        config_b = stream_config(base, tiny_model, "one-b", workers=2, batch_size=2)
        path_b = write_config(base / "one-b.yaml", config_b)
        run_b = Path(config_b["training"]["output_dir"])
        command = [sys.executable, "-m", "voxplug", "train", "-c", str(path_b), "--no-progress"]
        kill_after_checkpoint(command, run_b, {"VOXPLUG_TEST_ID_LOG": str(base / "one-b.ids")})
        os.environ["VOXPLUG_TEST_ID_LOG"] = str(base / "one-c.ids")
        resumed = train(validated(config_b, base), host=host, resume=True, progress=False)
    finally:
        del os.environ["VOXPLUG_TEST_ID_LOG"]
    assert resumed.train_results["resumed_from"].endswith(f"checkpoint-{STALL_AT_STEP}")
    assert resumed.train_results["global_step"] == uninterrupted.train_results["global_step"] == STEPS
    before, after = losses(uninterrupted.run_dir), losses(resumed.run_dir)
    assert sorted(before) == sorted(after) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):  # different batches would give different losses
        assert after[step] == pytest.approx(before[step], rel=1e-4, abs=1e-5), step
    # 16 rows, 2 readers of 8 rows in batches of 2: the run crosses into the stream's second and third epochs
    position = json.loads((run_b / "checkpoints" / "checkpoint-10" / "voxplug_stream_rank0.json").read_text())
    assert position["batches"] == 10 and position["positions"] == {"0": [1, 1], "1": [1, 1]}
    summary = json.loads((run_b / "data_summary.json").read_text())
    assert summary["streaming"] is True and summary["stream_dropped_rows"] == 0


@pytest.mark.slow
def test_two_cpu_ranks_resume_mid_stream_exactly(folder: dict[str, Any], tiny_model: Path) -> None:
    base, eval_ids = folder["path"], folder["eval_ids"]
    runs = {}
    for name in ("two-a", "two-b"):
        config = stream_config(base, tiny_model, name, workers=0, batch_size=1)
        runs[name] = (write_config(base / f"{name}.yaml", config), Path(config["training"]["output_dir"]))
    launch_training(
        "cpu-2proc", runs["two-a"][0], env={"ACCELERATE_USE_CPU": "1", "VOXPLUG_TEST_ID_LOG": str(base / "two-a.ids")}
    )
    args = ["-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/cpu-2proc.yaml", "-m", "voxplug"]
    command = [sys.executable, *args, "train", "-c", str(runs["two-b"][0]), "--no-progress"]
    env = {"ACCELERATE_USE_CPU": "1", "VOXPLUG_TEST_ID_LOG": str(base / "two-b.ids")}
    kill_after_checkpoint(command, runs["two-b"][1], env)
    resume_env = {"ACCELERATE_USE_CPU": "1", "VOXPLUG_TEST_ID_LOG": str(base / "two-c.ids")}
    from .conftest import run_cli

    run_cli([*args, "train", "-c", str(runs["two-b"][0]), "--no-progress", "--resume"], cwd=REPO, env=resume_env)
    for rank in (0, 1):
        uninterrupted = recorded(base / "two-a.ids", rank, eval_ids)
        assert len(uninterrupted) == STEPS
        assert recorded(base / "two-c.ids", rank, eval_ids) == uninterrupted[STALL_AT_STEP:], rank
    # each rank reads its own half: 8 rows each, so the first 8 batches of the ranks share no row
    first_epoch = [
        {row for batch in recorded(base / "two-a.ids", rank, eval_ids)[:8] for row in batch} for rank in (0, 1)
    ]
    assert len(first_epoch[0]) == len(first_epoch[1]) == 8 and first_epoch[0].isdisjoint(first_epoch[1])
    before, after = losses(runs["two-a"][1]), losses(runs["two-b"][1])
    assert sorted(before) == sorted(after) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert after[step] == pytest.approx(before[step], rel=1e-4, abs=1e-5), step
    results = json.loads((runs["two-b"][1] / "train_results.json").read_text())
    assert results["world_size"] == 2 and results["resumed_from"].endswith(f"checkpoint-{STALL_AT_STEP}")


@pytest.mark.slow
def test_rows_dropped_while_streaming_reach_the_summary_and_the_log(tmp_path: Path, tiny_model: Path) -> None:
    from voxplug.training.run import train

    rows = bundled_rows()
    manifest = write_manifest(tmp_path / "data", rows[:8], "train.jsonl")
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"audio_path": "gone.wav", "text": "a file that is not there"}) + "\n")
        handle.write("{not json\n")
        handle.write(json.dumps({"audio_path": rows[0]["file"], "text": "words", "duration_s": 40.0}) + "\n")
    eval_manifest = write_manifest(tmp_path / "data", rows[8:10], "eval.jsonl")
    config = run_config(
        tmp_path,
        tiny_model,
        manifest,
        eval_manifest=eval_manifest,
        evaluation__enabled=False,
        training__epochs=1,
        training__batch_size=2,
        data__streaming=True,
    )
    result = train(validated(config, tmp_path), progress=False)
    # one epoch planned from the manifest's 11 lines at 2 rows a step; the stream runs on past its 8 usable rows
    assert result.train_results["steps_per_epoch"] == result.train_results["global_step"] == 6
    summary = json.loads((result.run_dir / "data_summary.json").read_text())
    assert summary["stream_dropped_rows"] == 3
    assert {entry["row"] for entry in summary["rejected"]} == {f"train.jsonl line {n}" for n in (9, 10, 11)}
    assert summary["rejected_counts"]["too_long"] == 1
    log = (result.run_dir / "train.log").read_text()
    assert "the stream dropped 3 training rows" in log and "too_long 1" in log
