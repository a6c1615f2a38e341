"""The first hour of a new user, through the command line: their own dataset (with the careless rows a first
dataset has), a config beside it, training, resuming, evaluating, publishing and the demo.

One project is trained once (then resumed once) for the whole module; each test checks one thing a user sees.
Commands run from a folder other than the project's, as they do when a user runs them from elsewhere.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from voxplug.testing import free_port

from .conftest import SPEECH, bundled_rows, run_cli, write_config

pytestmark = pytest.mark.slow  # one module-wide training run and its resume, then evaluations and a demo

GOOD_CLIPS = 8
STEPS, RESUMED_STEPS = 10, 20


def project_config() -> dict[str, Any]:
    """The config a user writes beside their dataset: every path relative to its own folder."""
    return {
        "name": "my-voice",
        "data": {"source": "jsonl", "jsonl": {"path": "my-voice/data.jsonl"}, "split": {"eval_fraction": 0.25}},
        "model": {"name_or_path": "tiny", "family": "voxtral"},
        "training": {
            "method": "lora",
            "lora": {"r": 8, "alpha": 16},
            "max_steps": STEPS,
            "batch_size": 2,
            "learning_rate": 5e-3,
            "logging_steps": 1,
            "eval_steps": 5,
            "save_steps": 5,
        },
        "evaluation": {"max_new_tokens": 4, "batch_size": 8},
        "publish": {"target": None},
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> dict[str, Path]:
    """``project/``: a tiny base model, a dataset imported with the CLI (licence cc-by-4.0) plus three bad rows
    added by hand, and ``my-run.yaml``; commands run from ``elsewhere/``."""
    root = tmp_path_factory.mktemp("first-hour")
    project, elsewhere, clips = root / "project", root / "elsewhere", root / "recordings"
    for folder in (project, elsewhere, clips):
        folder.mkdir()
    shutil.copytree(tiny_model, project / "tiny")
    with (clips / "transcripts.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text"])
        for row in bundled_rows()[:GOOD_CLIPS]:
            shutil.copy(SPEECH / row["file"], clips / row["file"])
            writer.writerow([row["file"], row["text"]])
    dataset = project / "my-voice"
    run_cli(["data", "create", str(dataset), "--language", "en", "--licence", "cc-by-4.0"], cwd=elsewhere)
    run_cli(["data", "import", str(dataset), str(clips), "--manifest", str(clips / "transcripts.csv")], cwd=elsewhere)
    soundfile.write(dataset / "audio" / "long.wav", 0.1 * np.sin(np.arange(31 * 16000) / 20.0), 16000)
    with (dataset / "data.jsonl").open("a", encoding="utf-8") as manifest:
        manifest.write(json.dumps({"id": "gone", "audio_path": "audio/gone.wav", "text": "not here"}) + "\n")
        manifest.write("{this line is not json\n")
        manifest.write(json.dumps({"id": "long", "audio_path": "audio/long.wav", "text": "a long hum"}) + "\n")
    config = write_config(project / "my-run.yaml", project_config())
    return {"root": root, "project": project, "elsewhere": elsewhere, "dataset": dataset, "config": config}


@pytest.fixture(scope="module")
def trained(project: dict[str, Path]) -> dict[str, Any]:
    """``train --allow-dropped`` for 10 steps, then ``--resume`` to 20 steps: both commands' output and the run."""
    config = str(project["config"])
    first = run_cli(["train", "-c", config, "--allow-dropped"], cwd=project["elsewhere"])
    resumed = run_cli(
        ["train", "-c", config, "--allow-dropped", "--resume", f"training.max_steps={RESUMED_STEPS}"],
        cwd=project["elsewhere"],
    )
    run_dir = project["project"] / "runs" / "my-voice"
    state = json.loads((run_dir / "trainer_state.json").read_text(encoding="utf-8"))
    return {"first": first, "resumed": resumed, "run_dir": run_dir, "state": state}


def evaluations(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [entry for entry in state["log_history"] if "eval_loss" in entry]


# -- 1. bad rows ------------------------------------------------------------------------------------------------


def test_too_many_dropped_rows_stop_the_run_before_training_and_say_which_and_why(project: dict[str, Path]) -> None:
    refused = run_cli(["train", "-c", str(project["config"]), "name=refused"], cwd=project["elsewhere"], check=False)
    assert refused.returncode == 1
    err = refused.stderr
    assert f"data: kept {GOOD_CLIPS} of {GOOD_CLIPS + 3} rows; dropped 3:" in err
    lines = err.splitlines()
    assert any(re.match(r"  data\.jsonl line 9: audio file audio/gone\.wav not found", line) for line in lines)
    assert any(re.match(r"  data\.jsonl line 10: malformed JSON", line) for line in lines)
    assert any(re.match(r"  data\.jsonl line 11: 31\.0 s is longer than the 30 s limit", line) for line in lines)
    error = [line for line in lines if line.startswith("error:")]
    assert len(error) == 1 and "3 of 11 rows (27%) cannot be used" in error[0] and "--allow-dropped" in error[0]
    run_dir = project["project"] / "runs" / "refused"
    records = [json.loads(line) for line in (run_dir / "dropped_rows.jsonl").read_text().splitlines()]
    assert [record["row"] for record in records] == [f"data.jsonl line {n}" for n in (9, 10, 11)]
    assert not (run_dir / "checkpoints").exists()  # it stopped before the model was even loaded
    assert "stage model_loading" not in err


def test_with_allow_dropped_it_trains_and_still_lists_them(trained: dict[str, Any]) -> None:
    err = trained["first"].stderr
    assert "dropped 3:" in err and "audio/gone.wav not found" in err
    assert f"data: {GOOD_CLIPS - 2} rows to train on, 2 to evaluate on" in err
    assert trained["state"]["global_step"] == RESUMED_STEPS


# -- 4. log lines outside a terminal; 10. no noise -----------------------------------------------------------------


def test_log_lines_outside_a_terminal_are_whole_lines(trained: dict[str, Any]) -> None:
    step_line = re.compile(r"^step \d+/\d+(  [a-z_]+ [-+.\de]+)+$")
    lines = trained["first"].stderr.splitlines()
    logged = [line for line in lines if line.startswith("step ")]
    assert len(logged) >= STEPS and all(step_line.match(line) for line in logged), logged
    assert all("samples_per_s" not in line or step_line.match(line) for line in lines)  # no field wrapped away
    assert any("samples_per_s" in line and "audio_s_per_s" in line for line in logged)


def test_a_run_prints_no_library_noise(trained: dict[str, Any]) -> None:
    for output in (trained["first"], trained["resumed"]):
        text = output.stdout + output.stderr
        assert "Setting accelerator to CPU" not in text
        assert "FutureWarning" not in text and "Traceback" not in text


# -- 3. the kept checkpoint --------------------------------------------------------------------------------------


def test_the_kept_model_is_the_best_evaluation_with_ties_broken_and_is_labelled(trained: dict[str, Any]) -> None:
    from safetensors.torch import load_file

    evaluated = evaluations(trained["state"])
    assert [entry["step"] for entry in evaluated] == [5, 10, 15, 20]  # each step once: nothing re-logged at the end

    def rank(entry: dict[str, Any]) -> tuple[float, ...]:  # WER, then CER, then loss, then the later step
        return (entry["eval_wer"], entry["eval_cer"], entry["eval_loss"], -entry["step"])

    best = min(evaluated, key=rank)
    results = json.loads((trained["run_dir"] / "eval_results.json").read_text())
    assert results["step"] == best["step"] and results["final_step"] == RESUMED_STEPS
    assert results["checkpoint"] == ("final" if best["step"] == RESUMED_STEPS else f"checkpoint-{best['step']}")
    assert {key: results[key] for key in ("eval_wer", "eval_cer", "eval_loss")} == {
        key: best[key] for key in ("eval_wer", "eval_cer", "eval_loss")
    }
    tied = [entry["step"] for entry in evaluated if entry is not best and entry["eval_wer"] == best["eval_wer"]]
    out = trained["resumed"].stdout
    assert f"kept:       {results['kept_because']}" in out
    assert f"(the kept model, step {best['step']})" in out
    assert ("tied with step" in results["kept_because"]) is bool(tied)
    saved = load_file(trained["run_dir"] / "model" / "adapter_model.safetensors")
    at_best = load_file(trained["run_dir"] / "checkpoints" / f"checkpoint-{best['step']}" / "adapter_model.safetensors")
    assert saved.keys() == at_best.keys() and all((saved[key] == at_best[key]).all() for key in saved)
    predictions = (trained["run_dir"] / "predictions.jsonl").read_text()
    assert predictions == (trained["run_dir"] / "eval_predictions" / f"step-{best['step']:06d}.jsonl").read_text()


# -- 5. the base model folder beside the config --------------------------------------------------------------------


def test_a_relative_model_path_is_read_from_the_config_folder_and_recorded_whole(
    project: dict[str, Path], trained: dict[str, Any]
) -> None:
    info = json.loads((trained["run_dir"] / "model" / "voxplug.json").read_text())
    assert info["base_model"] == str((project["project"] / "tiny").resolve())


# -- 7. evaluate on the training dataset ---------------------------------------------------------------------------


def test_evaluate_scores_the_held_out_rows_and_says_which_were_trained_on(
    project: dict[str, Path], trained: dict[str, Any]
) -> None:
    split = json.loads((trained["run_dir"] / "data_split.json").read_text())
    dataset = project["dataset"]
    lines = (dataset / "data.jsonl").read_text(encoding="utf-8").splitlines()[:GOOD_CLIPS]
    clip_of = {row["id"]: str((dataset / row["audio_path"]).resolve()) for row in map(json.loads, lines)}
    out = project["root"] / "evaluation"
    args = ["evaluate", "--model", str(trained["run_dir"] / "model"), "--data", str(dataset), "--no-compare"]
    args += ["--out", str(out), "--max-new-tokens", "2"]

    def scored_clips() -> set[str]:
        rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        return {clip_of[row["id"]] for row in rows if row["id"] in clip_of}

    held_out = run_cli(args, cwd=project["elsewhere"])
    readable = GOOD_CLIPS + 2  # the malformed line is no row; the missing and the long clip are
    said = f"{len(split['train'])} of {readable} rows were trained on by this model"
    assert said in held_out.stderr
    assert f"scoring the {readable - len(split['train'])} held-out rows" in held_out.stderr
    assert scored_clips() == set(split["eval"])
    assert not [path.name for path in dataset.iterdir() if path.name.startswith(".voxplug-held-out")]
    everything = run_cli([*args, "--all-rows"], cwd=project["elsewhere"])
    assert f"warning: {dataset}: {said}" in everything.stderr
    assert scored_clips() == set(split["train"]) | set(split["eval"])


# -- 8. the model card -------------------------------------------------------------------------------------------


def test_the_card_lists_the_local_dataset_with_its_licence_and_the_losses_of_the_whole_run(
    project: dict[str, Path], trained: dict[str, Any]
) -> None:
    published = project["root"] / "published"
    run_cli(["publish", str(trained["run_dir"]), "--to", str(published)], cwd=project["elsewhere"])
    card = (published / "README.md").read_text(encoding="utf-8")
    training_data = card.split("## Training data", 1)[1].split("##", 1)[0]
    assert "- `my-voice` (local), licence cc-by-4.0" in training_data and "not recorded" not in training_data
    losses = [(entry["step"], entry["loss"]) for entry in trained["state"]["log_history"] if "loss" in entry]
    assert losses[-1][0] == RESUMED_STEPS and losses[0][0] == 1  # the log carries over the resume
    previous_steps = [0, *(step for step, _loss in losses[:-1])]
    mean = sum(loss * (step - before) for (step, loss), before in zip(losses, previous_steps, strict=True)) / 20
    assert f"| final training loss | {losses[-1][1]:.4g} |" in card
    assert f"| mean training loss | {mean:.4g} |" in card


# -- 10. file modes ------------------------------------------------------------------------------------------------


def test_saved_weights_are_as_readable_as_the_files_beside_them(trained: dict[str, Any]) -> None:
    model = trained["run_dir"] / "model"
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in model.iterdir() if path.is_file()}
    assert modes["adapter_model.safetensors"] == modes["adapter_config.json"] == modes["tekken.json"], modes


# -- 5 and 10. the demo of the published folder, run from elsewhere -------------------------------------------------


def test_the_published_folder_demos_from_anywhere_and_user_errors_print_no_traceback(
    project: dict[str, Path], trained: dict[str, Any]
) -> None:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    published = project["root"] / "demo-published"
    run_cli(["publish", str(trained["run_dir"]), "--to", str(published)], cwd=project["elsewhere"])
    short = project["root"] / "short.wav"
    audio, rate = soundfile.read(SPEECH / bundled_rows()[0]["file"])
    soundfile.write(short, audio[: rate // 2], rate)
    port = free_port()
    command = [sys.executable, "-m", "voxplug", "demo", "--model", str(published), "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--max-audio-seconds", "1", "--max-new-tokens", "2"],
        cwd=project["elsewhere"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},  # the base is the local folder voxplug.json names
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = _connect(f"http://127.0.0.1:{port}/", process)
        assert isinstance(client.predict(handle_file(str(short)), "Auto", api_name="/transcribe"), str)
        with pytest.raises(AppError, match="up to 1 s"):
            client.predict(handle_file(str(SPEECH / bundled_rows()[0]["file"])), "Auto", api_name="/transcribe")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=60)[0]
        finally:
            process.kill()  # nothing once it has exited; a server that ignored Ctrl+C is not left running
    assert f"serving {published} on http://127.0.0.1:{port}" in output
    assert "Traceback" not in output


def _connect(url: str, process: subprocess.Popen, timeout: float = 120) -> Any:
    """A gradio_client for ``url`` once the app answers (or the process's output, if it ended)."""
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if process.poll() is not None:
                raise AssertionError(process.communicate()[0]) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
