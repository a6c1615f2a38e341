"""One small LoRA run through ``voxplug.training.run.train``: every output file, the hooks, the best model by WER."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxplug import hookimpl

from .conftest import run_config, validated

SCRIPTED_WER = [0.5, 0.9]  # per evaluation: the first checkpoint is the best, so the best is not the last


class HookRecorder:
    """A plugin that records every lifecycle hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    @hookimpl
    def after_data_load(self, summary: dict) -> None:
        self.calls.append(("after_data_load", {"summary": summary}))

    @hookimpl
    def before_train(self, run_dir: Path) -> None:
        self.calls.append(("before_train", {"run_dir": run_dir}))

    @hookimpl
    def on_log(self, logs: dict, step: int) -> None:
        self.calls.append(("on_log", {"logs": logs, "step": step}))

    @hookimpl
    def on_checkpoint(self, checkpoint_dir: Path, step: int) -> None:
        self.calls.append(
            (
                "on_checkpoint",
                {
                    "checkpoint_dir": checkpoint_dir,
                    "step": step,
                    "complete": (checkpoint_dir / "trainer_state.json").is_file(),
                },
            )
        )

    @hookimpl
    def after_evaluate(self, metrics: dict, predictions_path: Path | None, step: int | None) -> None:
        self.calls.append(("after_evaluate", {"metrics": metrics, "path": predictions_path, "step": step}))

    @hookimpl
    def after_train(self, results: dict) -> None:
        self.calls.append(("after_train", {"results": results}))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, speech_manifest: Path) -> Any:
    """Train the tiny model with LoRA (merge on, local publish, two data loader workers) once for every test in this
    module."""
    import voxplug.evaluation.generation as generation
    from voxplug.plugins import PluginHost
    from voxplug.training.run import train

    tmp_path = tmp_path_factory.mktemp("outputs")
    config = run_config(
        tmp_path,
        tiny_model,
        speech_manifest,
        training__lora={"merge": True},
        training__save_total_limit=1,
        training__dataloader_workers=2,  # batches in one stream across the two epochs (sampling.EpochSlices)
        publish__target="local",
    )
    host = PluginHost().load()
    recorder = HookRecorder()
    host.register(recorder, name="recorder")
    real_score, scripted = generation.score_utterances, iter(SCRIPTED_WER * 3)

    def scripted_score(utterances: Any) -> Any:
        scores = real_score(utterances)
        scores.wer = next(scripted)
        return scores

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generation, "score_utterances", scripted_score)
        result = train(validated(config, tmp_path), host=host, progress=False)
    return result, recorder


def test_every_output_file_is_written(finished_run: Any) -> None:
    result, _ = finished_run
    run = result.run_dir
    for name in (
        "train_results.json",
        "eval_results.json",
        "training_config.json",
        "trainer_state.json",
        "curves.png",
        "predictions.jsonl",
        "train.log",
    ):
        assert (run / name).is_file(), name
    model_files = {p.name for p in (run / "model").iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "tekken.json",
        "processor_config.json",
        "voxplug.json",
    } <= model_files
    merged_files = {p.name for p in (run / "merged").iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tekken.json", "voxplug.json"} <= merged_files
    assert (run / "published" / "adapter_model.safetensors").is_file() and result.published is not None
    assert "step" in (run / "train.log").read_text(encoding="utf-8")


def test_results_files_hold_the_metrics(finished_run: Any) -> None:
    result, _ = finished_run
    run = result.run_dir
    eval_results = json.loads((run / "eval_results.json").read_text())
    assert {"eval_loss", "eval_wer", "eval_cer", "eval_samples"} <= eval_results.keys()
    train_results = json.loads((run / "train_results.json").read_text())
    assert train_results["global_step"] == 10 and train_results["train_loss"] > 0
    assert train_results["parameters"]["trainable"] < train_results["parameters"]["total"]
    config = json.loads((run / "training_config.json").read_text())
    assert config["training"]["method"] == "lora" and config["resolved_options"]["training.lora"]["merge"] is True
    info = json.loads((run / "model" / "voxplug.json").read_text())
    assert info["family"] == "voxtral" and info["method"] == "lora" and info["kind"] == "adapter"
    assert info["languages"] == ["en"] and info["voxplug_version"]
    assert info["datasets"] == ["data.jsonl"] and info["dataset_licenses"] == {}  # a local manifest: its file name
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == eval_results["eval_samples"] == 3
    assert {"id", "reference", "hypothesis", "wer", "cer", "errors"} <= rows[0].keys()


def test_the_best_checkpoint_by_wer_is_the_saved_model(finished_run: Any) -> None:
    from safetensors.torch import load_file

    result, _ = finished_run
    state = json.loads((result.run_dir / "trainer_state.json").read_text())
    wers = [(entry["step"], entry["eval_wer"]) for entry in state["log_history"] if "eval_wer" in entry]
    assert wers[:2] == [(5, 0.5), (10, 0.9)]
    assert state["best_global_step"] == 5 and state["best_metric"] == 0.5
    best = Path(state["best_model_checkpoint"])
    assert best.name == "checkpoint-5" and best.is_dir()
    saved = load_file(result.run_dir / "model" / "adapter_model.safetensors")
    at_best = load_file(best / "adapter_model.safetensors")
    assert saved.keys() == at_best.keys() and all((saved[k] == at_best[k]).all() for k in saved)
    # save_total_limit=1: while training the best and the latest are kept; once finished, only the best
    assert sorted(p.name for p in (result.run_dir / "checkpoints").iterdir()) == ["checkpoint-5"]


def test_the_encoder_weights_are_unchanged(finished_run: Any, tiny_model: Path) -> None:
    from safetensors.torch import load_file

    result, _ = finished_run
    base = load_file(tiny_model / "model.safetensors")
    merged = load_file(result.run_dir / "merged" / "model.safetensors")
    encoder = [key for key in base if "audio_tower" in key]
    assert encoder and all(key in merged and (merged[key] == base[key]).all() for key in encoder)
    adapter = load_file(result.run_dir / "model" / "adapter_model.safetensors")
    assert adapter and not [key for key in adapter if "audio_tower" in key]


def test_lifecycle_hooks_fire_in_order(finished_run: Any) -> None:
    _, recorder = finished_run
    names = recorder.names()
    assert names[0] == "after_data_load" and names[1] == "before_train" and names[-1] == "after_train"
    checkpoints = [call for name, call in recorder.calls if name == "on_checkpoint"]
    assert [c["step"] for c in checkpoints] == [5, 10] and all(c["complete"] for c in checkpoints)
    evaluations = [call for name, call in recorder.calls if name == "after_evaluate"]
    assert [e["step"] for e in evaluations][:2] == [5, 10] and all(e["path"].is_file() for e in evaluations)
    logged_steps = [call["step"] for name, call in recorder.calls if name == "on_log" and "loss" in call["logs"]]
    assert logged_steps[:3] == [1, 2, 3]
