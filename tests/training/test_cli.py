"""``voxplug model tiny``, ``voxplug train`` and ``voxplug evaluate`` as a user runs them, and bad input as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from voxplug.cli import main

from .conftest import bundled_rows, run_cli, run_config, write_config, write_manifest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli")
    rows = bundled_rows()
    return {
        "folder": folder,
        "train": write_manifest(folder / "data", rows[:6], "train.jsonl"),
        "eval": write_manifest(folder / "data", rows[6:8], "eval.jsonl"),
        "empty": write_manifest(folder / "data", [], "empty.jsonl"),
    }


@pytest.mark.slow
def test_tiny_train_evaluate_from_the_command_line(workspace: dict[str, Path]) -> None:
    folder = workspace["folder"]
    run_cli(["model", "tiny", str(folder / "tiny")], cwd=folder)
    assert (folder / "tiny" / "config.json").is_file() and (folder / "tiny" / "tekken.json").is_file()
    config = run_config(folder, folder / "tiny", workspace["train"], eval_manifest=workspace["eval"], name="cli")
    path = write_config(folder / "run.yaml", config)
    trained = run_cli(["train", "-c", str(path), "training.epochs=1", "training.lora.r=4"], cwd=folder)
    run_dir = folder / "run"
    assert f"run folder: {run_dir}" in trained.stdout and "eval WER" in trained.stdout
    assert "step 3/3" in trained.stderr  # progress lines without a terminal
    assert json.loads((run_dir / "training_config.json").read_text())["resolved_options"]["training.lora"]["r"] == 4
    evaluated = run_cli(
        [
            "evaluate",
            "--model",
            str(run_dir / "model"),
            "--data",
            str(workspace["eval"]),
            "--out",
            str(folder / "eval"),
            "--max-new-tokens",
            "4",
        ],
        cwd=folder,
    )
    comparison = json.loads((folder / "eval" / "comparison.json").read_text())
    assert comparison["base"] == str(folder / "tiny") and comparison["samples"] == 2
    assert {"wer_delta", "cer_delta", "utterances", "model_metrics", "base_metrics"} <= comparison.keys()
    rows = [json.loads(line) for line in (folder / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in rows] == ["en_us_006", "en_us_007"] and "errors" in rows[0]
    assert (folder / "eval" / "base_predictions.jsonl").is_file()
    assert "WER" in evaluated.stdout and "base:" in evaluated.stdout


def one_line_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, lines
    return lines[0]


def config_file(workspace: dict[str, Path], tiny_model: Path, name: str, **overrides: Any) -> str:
    folder = workspace["folder"] / name
    folder.mkdir(exist_ok=True)
    config = run_config(folder, tiny_model, workspace["train"], name=name, **overrides)
    return str(write_config(folder / "run.yaml", config))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model__name_or_path": "/no/such/model"}, "/no/such/model"),
        ({"training__precision": "bf16"}, "training.precision=bf16 needs a CUDA GPU"),
        ({"model__attn_implementation": "flash_attention_2"}, "flash_attention_2 needs a CUDA GPU"),
        ({"training__lora": {"scopes": ["encoder"]}}, "training.lora.scopes"),
    ],
)
def test_bad_input_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], workspace: dict[str, Path], tiny_model: Path, overrides: dict, message: str
) -> None:
    from voxplug.training.devices import cuda_available

    if cuda_available():
        pytest.skip("GPU-only options are fine on this machine")
    path = config_file(workspace, tiny_model, "bad", **overrides)
    assert message in one_line_error(capsys, ["train", "-c", path])


def test_a_dataset_without_usable_rows_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], workspace: dict[str, Path], tiny_model: Path
) -> None:
    path = config_file(workspace, tiny_model, "empty", data__jsonl={"path": str(workspace["empty"])})
    assert "no rows" in one_line_error(capsys, ["train", "-c", path])


def test_an_unknown_hub_model_is_one_clear_line(
    capsys: pytest.CaptureFixture[str], workspace: dict[str, Path], tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time: no network wait
    path = config_file(workspace, tiny_model, "hub", model__name_or_path="nobody/no-such-voxtral")
    assert "nobody/no-such-voxtral" in one_line_error(capsys, ["train", "-c", path])


def test_an_earlier_run_is_never_overwritten_without_resume(
    capsys: pytest.CaptureFixture[str], workspace: dict[str, Path], tiny_model: Path
) -> None:
    path = config_file(workspace, tiny_model, "again")
    checkpoint = Path(path).parent / "run" / "checkpoints" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text("{}")
    assert "add --resume to continue it" in one_line_error(capsys, ["train", "-c", path])


@pytest.mark.parametrize(("compiled", "checkpointing"), [(False, False), (True, False), (False, True)])
def test_out_of_memory_says_what_to_change(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, compiled: bool, checkpointing: bool
) -> None:
    import torch

    from voxplug.config import validate_config
    from voxplug.errors import TrainingError
    from voxplug.training.context import decide
    from voxplug.training.run import TrainingRun

    class ExhaustedTrainer:
        state = type("State", (), {"global_step": 7})()

        def train(self, resume_from_checkpoint: Any = None) -> None:
            raise torch.OutOfMemoryError("CUDA out of memory")

    run = TrainingRun.__new__(TrainingRun)
    training = {"batch_size": 8, "gradient_checkpointing": checkpointing, "compile": compiled}
    run.config = validate_config({"training": training}, base_dir=tmp_path)
    run.resume_from = None
    run.context = decide(run.config, {}, train_rows=64, world_size=1)
    with pytest.raises(TrainingError, match=r"out of memory at step 7 with training.batch_size=8: ") as error:
        run._train(ExhaustedTrainer())
    message = str(error.value)
    assert "lower training.batch_size" in message
    assert ("training.gradient_checkpointing=true" in message) is not checkpointing  # the first thing to try
    assert ("training.compile=false" in message) is compiled


def test_a_failed_run_names_its_last_checkpoint_and_how_to_resume(tmp_path: Path) -> None:
    from voxplug.errors import TrainingError
    from voxplug.training.run import TrainingRun

    run = TrainingRun.__new__(TrainingRun)
    run.checkpoints_dir = tmp_path / "checkpoints"
    (run.checkpoints_dir / "checkpoint-4").mkdir(parents=True)
    (run.checkpoints_dir / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (run.checkpoints_dir / "checkpoint-6").mkdir()  # killed while writing: not complete, never resumed from
    explained = run._explained(RuntimeError("disk full"))
    assert isinstance(explained, TrainingError)
    assert "disk full" in str(explained) and "checkpoint-4" in str(explained) and "--resume" in str(explained)
    run.hf_trainer = None  # interrupted while loading: the checkpoint of an earlier run is what is kept
    interrupted = run._explained(KeyboardInterrupt())
    assert isinstance(interrupted, KeyboardInterrupt)
    assert str(interrupted).startswith("interrupted before training started; checkpoint-4 is kept")
    assert "--resume" in str(interrupted)
