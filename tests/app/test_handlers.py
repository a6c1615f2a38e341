"""The tabs' handlers called directly (no browser): what a click starts, and the messages bad input gets."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from voxplug.app import recording
from voxplug.app.jobs import JobRunner
from voxplug.app.tabs.evaluate_tab import EvaluateTab
from voxplug.app.tabs.publish_tab import PublishTab
from voxplug.app.tabs.train_tab import TrainTab
from voxplug.app.tokens import Secret
from voxplug.app.train_form import TrainForm
from voxplug.app.ui import AppContext, AppSettings, Session
from voxplug.app.workspace import Workspace

ECHO_ARGS = (sys.executable, "-c", "import os, sys; print('args', sys.argv[1:]); print('env', sorted(os.environ))")
SLEEP = (sys.executable, "-c", "import time; print('sleeping', flush=True); time.sleep(30)")
TOKEN = "hf_enteredTokenForHandlers1"


@pytest.fixture(autouse=True)
def no_server_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "SPACE_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", "/nonexistent/token")


def context(workspace: Workspace, program: tuple[str, ...]) -> AppContext:
    return AppContext(settings=AppSettings(root=workspace.root), runner=JobRunner(program=program, cancel_grace_s=1))


def form_values(**changes: Any) -> list[Any]:
    form = TrainForm(**changes)
    return [getattr(form, spec.name) for spec in fields(TrainForm)]


@pytest.fixture
def dataset(workspace: Workspace, speech_clips) -> str:
    for path, text in speech_clips[:5]:
        assert recording.save_clip(workspace, "voice", str(path), text, language="en").ok
    return "voice"


def test_training_needs_a_dataset_with_clips(workspace: Workspace) -> None:
    tab = TrainTab(context(workspace, ECHO_ARGS))
    notice, _ = tab.start(Session(workspace), "", *form_values(dataset=""))
    assert "choose a dataset" in notice
    notice, _ = tab.start(Session(workspace), "", *form_values(dataset="empty-one"))
    assert "no clips yet" in notice
    assert tab.ctx.runner.running() == []


def test_the_scrub_box_turns_on_the_privacy_scrubbers_for_the_run(workspace: Workspace, dataset: str) -> None:
    import yaml

    from voxplug.app.hub_steps import PUSH_SCRUBBERS
    from voxplug.app.train_form import write_run_config

    _name, path, config = write_run_config(TrainForm(dataset=dataset, model="tiny", scrub=True), workspace)
    assert config.data.scrub == list(PUSH_SCRUBBERS) == ["email", "url", "phone", "digits"]
    _name, path, config = write_run_config(TrainForm(dataset=dataset, model="tiny", run_name="plain"), workspace)
    assert config.data.scrub == [] and "scrub" not in yaml.safe_load(path.read_text())["data"]


def test_the_batch_fields_become_auto_or_a_fixed_micro_batch_with_the_same_clips_a_step(
    workspace: Workspace, dataset: str
) -> None:
    from voxplug.app.train_form import default_form, write_run_config
    from voxplug.config import RunConfig

    defaults = RunConfig().training
    assert default_form().batch_size == str(defaults.batch_size)
    _name, _path, config = write_run_config(TrainForm(dataset=dataset, model="tiny", run_name="a"), workspace)
    assert (config.training.batch_size, config.training.effective_batch) == ("auto", 8)
    form = TrainForm(dataset=dataset, model="tiny", run_name="b", batch_size=" 2 ", effective_batch=8)
    _name, _path, config = write_run_config(form, workspace)
    assert (config.training.batch_size, config.training.grad_accum, config.training.effective_batch) == (2, 4, None)
    for size, effective, expected in (("3", 8, "not a multiple of the batch size 3"), ("two", 8, "expected auto or")):
        tab = TrainTab(context(workspace, ECHO_ARGS))
        values = form_values(dataset=dataset, batch_size=size, effective_batch=effective)
        notice, _ = tab.start(Session(workspace), "", *values)
        assert expected in notice
    assert tab.ctx.runner.running() == []


def test_publishing_without_a_token_is_refused_before_anything_is_written(workspace: Workspace, dataset: str) -> None:
    tab = TrainTab(context(workspace, ECHO_ARGS))
    notice, _ = tab.start(Session(workspace), "", *form_values(dataset=dataset, publish_repo="me/model"))
    assert "need a Hugging Face token" in notice
    assert list(workspace.configs_dir.iterdir()) == []


def test_a_hub_pipeline_is_push_train_deploy_with_tokens_in_the_environment_only(
    workspace: Workspace, dataset: str
) -> None:
    ctx = context(workspace, ECHO_ARGS)
    session = Session(workspace, token=Secret(TOKEN), token_account="tester")
    values = form_values(dataset=dataset, dataset_repo="voice-data", publish_repo="my-model", deploy=True)
    notice, cleared = TrainTab(ctx).start(session, "hf_readOnlyTokenForSpace1", *values)
    assert "Started" in notice and cleared == ""
    job = ctx.runner.latest(workspace)
    assert ctx.runner.wait(job, 30) and job.record.status == "succeeded"
    assert job.record.steps == ["push the dataset", "train", "deploy the demo Space"]
    log = job.log_text()
    assert "'push', " in log and "'voice-data'" in log and "'tester/my-model'" in log
    assert "'--read-token-env=HF_READ_TOKEN'" in log and "'HF_READ_TOKEN'" in log and "'HF_TOKEN'" in log
    assert TOKEN not in log and "hf_readOnlyTokenForSpace1" not in log
    config = next(workspace.configs_dir.glob("*.yaml")).read_text()
    assert "hf_" not in config and "repo_id: my-model" in config


@pytest.mark.slow
def test_a_second_training_while_one_runs_gets_a_clear_message(workspace: Workspace, dataset: str) -> None:
    ctx = context(workspace, SLEEP)
    tab = TrainTab(ctx)
    first, _ = tab.start(Session(workspace), "", *form_values(dataset=dataset))
    second, _ = tab.start(Session(workspace), "", *form_values(dataset=dataset))
    assert "Started" in first
    assert "already running" in second and "you started" in second
    ctx.runner.shutdown()


def test_evaluate_needs_a_finished_run(workspace: Workspace) -> None:
    tab = EvaluateTab(context(workspace, ECHO_ARGS))
    assert "choose a finished run" in tab.start(Session(workspace), None)
    summary, _metrics, _rows = tab.show(Session(workspace), None)
    assert "Pick a finished run" in summary


def test_publishing_needs_names_and_a_token(workspace: Workspace, dataset: str) -> None:
    tab = PublishTab(context(workspace, ECHO_ARGS), banner=None)
    assert "choose a dataset" in tab.push_dataset(Session(workspace), None, "x", True)
    assert "enter the dataset repo" in tab.push_dataset(Session(workspace), dataset, " ", True)
    assert "no Hugging Face token" in tab.push_dataset(Session(workspace), dataset, "me/data", True)
    notice, _ = tab.deploy(Session(workspace), "", "", "", True, "")
    assert "enter the published model repo" in notice


def test_a_refused_token_is_not_kept(workspace: Workspace, hub_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    tab = PublishTab(context(workspace, ECHO_ARGS), banner=None)
    session, field, status, _banner = tab.use_token(Session(workspace), "hf_notAValidToken12345")
    assert session.token is None and field == "" and "refused" in status and "hf_notAValid" not in status
    session, field, status, banner = tab.use_token(Session(workspace), hub_server.token)
    assert session.token_account == "tester" and field == "" and hub_server.token not in status + banner
    session, status, banner = tab.forget_token(session)
    assert session.token is None and "no token" in status


def test_dataset_names_that_escape_the_workspace_are_refused(workspace: Workspace, tmp_path: Path) -> None:
    tab = TrainTab(context(workspace, ECHO_ARGS))
    notice, _ = tab.start(Session(workspace), "", *form_values(dataset="../../etc"))
    assert "is not valid" in notice


def test_the_tiny_model_choice_builds_it_first(workspace: Workspace, dataset: str) -> None:
    ctx = context(workspace, ECHO_ARGS)
    notice, _ = TrainTab(ctx).start(Session(workspace), "", *form_values(dataset=dataset, model="tiny-voxtral"))
    assert "Started" in notice
    job = ctx.runner.latest(workspace)
    assert ctx.runner.wait(job, 30) and job.record.steps == ["build the tiny model", "train"]
    folder = workspace.root / "models" / "tiny-voxtral"
    assert f"'model', 'tiny', '{folder}'" in job.log_text()
    assert f"name_or_path: {folder}" in next(workspace.configs_dir.glob("*.yaml")).read_text()
