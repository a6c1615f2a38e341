"""Resource monitoring of a real (tiny, CPU) run: readings in the logs, the on_log hook, train_results.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxplug import hookimpl
from voxplug.training.monitoring import STAGES, ResourceMonitor, stage_key

from .conftest import validated


class LogRecorder:
    """A plugin keeping every ``on_log`` call."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, dict[str, float]]] = []

    @hookimpl
    def on_log(self, logs: dict[str, float], step: int) -> None:
        self.calls.append((step, dict(logs)))


@pytest.mark.slow
def test_a_run_logs_throughput_memory_and_stage_times(
    tmp_path: Path, make_config, register_plugin, plugin_host
) -> None:
    from voxplug.training.callbacks import format_log_line
    from voxplug.training.run import train

    recorder = LogRecorder()
    register_plugin(recorder, name="log-recorder")
    config = make_config(training__epochs=1, training__max_steps=2, **{"data__scrub": ["email"]})
    config["publish"] = {"target": "local", "repo_id": str(tmp_path / "published")}
    result = train(validated(config, tmp_path), host=plugin_host, progress=False)

    training_logs = [logs for _step, logs in recorder.calls if "loss" in logs]
    assert training_logs and all(logs["samples_per_s"] > 0 and logs["audio_s_per_s"] > 0 for logs in training_logs)
    assert all("ram_gb" in logs for logs in training_logs)
    logged_stages = {key for _step, logs in recorder.calls for key in logs if key.startswith("time_")}
    assert logged_stages == {stage_key(stage) for stage in STAGES if stage != "publishing"}  # after after_train

    saved = json.loads((result.run_dir / "train_results.json").read_text(encoding="utf-8"))
    assert set(saved["stage_seconds"]) == set(STAGES)  # publishing was added after the file was written
    assert saved["train_samples_per_s"] > 0 and saved["train_audio_s_per_s"] > 0
    assert saved["hardware"].startswith("CPU")
    card = (tmp_path / "published" / "README.md").read_text(encoding="utf-8")
    assert "time per stage" in card and "audio seconds per second" in card
    assert (result.run_dir / "scrub_report.json").is_file()
    assert "samples_per_s" in format_log_line(training_logs[0], 1, 2)  # what the terminal and the app show


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throughput_leaves_evaluation_time_out() -> None:
    from types import SimpleNamespace

    clock = FakeClock()
    monitor = ResourceMonitor(clock=clock, show=False)
    args = SimpleNamespace(per_device_train_batch_size=2, gradient_accumulation_steps=1, world_size=1)
    loader = SimpleNamespace(dataset=SimpleNamespace(__len__=None, durations=lambda: [2.0, 4.0]))
    monitor.on_train_begin(args, SimpleNamespace(epoch=0.0, global_step=0), None)
    clock.now = 10.0
    eval_logs: dict[str, Any] = {"eval_loss": 1.0, "eval_runtime": 6.0}
    monitor.on_log(args, SimpleNamespace(epoch=0.5, global_step=2), None, logs=eval_logs, train_dataloader=loader)
    train_logs: dict[str, Any] = {"loss": 1.0}
    monitor.on_log(args, SimpleNamespace(epoch=1.0, global_step=4), None, logs=train_logs, train_dataloader=loader)
    assert "samples_per_s" not in eval_logs
    assert train_logs["samples_per_s"] == 2.0  # 4 steps x 2 samples in 10 s, of which 6 s were evaluation
    assert train_logs["audio_s_per_s"] == 6.0  # clips average 3 s
