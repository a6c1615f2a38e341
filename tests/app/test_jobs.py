"""The job runner: exit codes decide (not the log's text), one job per lock, cancel, redaction, history on restart."""

from __future__ import annotations

import json
import time

import pytest

from voxplug.app.jobs import JobConflictError, JobRunner, JobSpec, JobStep, failure_reason
from voxplug.app.tokens import Secret
from voxplug.app.workspace import Workspace, new_browser_id, workspace_for

PRINT_PROGRESS = "import time\nfor s in (1, 2):\n    print(f'step {s}/2  loss {3.0 - s:.4f}', flush=True)\n"
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


def python_step(code: str, title: str = "step", tracks_training: bool = False) -> JobStep:
    return JobStep(title, ["-c", code], tracks_training=tracks_training)


def run(runner: JobRunner, workspace: Workspace, *steps: JobStep, env: dict | None = None, **spec: object):
    job = runner.start(JobSpec("train", "test job", list(steps), **spec), workspace, env=env or {"PATH": "/usr/bin"})
    assert runner.wait(job, 30)
    return job


def test_success_parses_training_progress(python_runner: JobRunner, workspace: Workspace) -> None:
    job = run(python_runner, workspace, python_step(PRINT_PROGRESS, tracks_training=True))
    assert job.record.status == "succeeded" and job.record.returncode == 0
    assert (job.progress.step, job.progress.max_steps) == (2, 2)
    assert [row["value"] for row in job.progress.rows()] == [2.0, 1.0]
    saved = json.loads(job.record_path.read_text())
    assert saved["status"] == "succeeded" and "step 2/2" in job.log_path.read_text()


def test_the_exit_status_decides_not_the_log(python_runner: JobRunner, workspace: Workspace) -> None:
    code = "print('exit code: 0')\nprint('error: the dataset has no rows')\nraise SystemExit(3)"
    job = run(python_runner, workspace, python_step(code, "train"), python_step("print('never')", "publish"))
    assert job.record.status == "failed" and job.record.returncode == 3
    assert "the dataset has no rows" in job.record.message and "'train'" in job.record.message
    assert "never" not in job.log_text()


def test_a_crash_reports_the_exception_line(python_runner: JobRunner, workspace: Workspace) -> None:
    job = run(python_runner, workspace, python_step("raise RuntimeError('out of memory')"))
    assert job.record.status == "failed"
    assert "RuntimeError: out of memory" in job.record.message


def test_one_job_per_lock_on_the_whole_server(python_runner: JobRunner, tmp_path) -> None:
    alice = workspace_for(tmp_path, username="alice", browser_id=None)
    bob = workspace_for(tmp_path, username="bob", browser_id=None)
    first = python_runner.start(JobSpec("train", "alice's run", [python_step(SLEEP)]), alice, env={})
    with pytest.raises(JobConflictError, match="another user started"):
        python_runner.start(JobSpec("train", "bob's run", [python_step(SLEEP)]), bob, env={})
    with pytest.raises(JobConflictError, match="you started"):
        python_runner.start(JobSpec("evaluate", "again", [python_step(SLEEP)]), alice, env={})
    other_lock = python_runner.start(JobSpec("publish", "push", [python_step("pass")], lock="hub:bob"), bob, env={})
    assert python_runner.wait(other_lock, 30) and other_lock.record.status == "succeeded"
    assert "no such job" in python_runner.cancel(first.id, bob)
    python_runner.cancel(first.id, alice)
    assert python_runner.wait(first, 30) and first.record.status == "cancelled"


def test_cancel_stops_the_process_and_frees_the_lock(python_runner: JobRunner, workspace: Workspace) -> None:
    job = python_runner.start(JobSpec("train", "long", [python_step(SLEEP)]), workspace, env={})
    deadline = time.time() + 20
    while "sleeping" not in job.log_text() and time.time() < deadline:
        time.sleep(0.05)
    started = time.time()
    assert "Cancelling" in python_runner.cancel(job.id, workspace)
    assert python_runner.wait(job, 20)
    assert job.record.status == "cancelled" and time.time() - started < 5
    assert job.process.poll() is not None
    again = run(python_runner, workspace, python_step("pass"))
    assert again.record.status == "succeeded"


def test_tokens_never_reach_the_log_or_the_record(python_runner: JobRunner, workspace: Workspace) -> None:
    token = "hf_secretValueForTheTest1234"
    code = "import os\ntoken = os.environ['HF_TOKEN']\nprint('token is', token)\nraise SystemExit('failed: ' + token)"
    job = run(python_runner, workspace, python_step(code), env={"HF_TOKEN": token}, lock="x")
    assert job.record.status == "failed"
    everything = job.log_text() + job.log_path.read_text() + job.record_path.read_text() + job.record.message
    assert token not in everything and "hf_***" in everything


@pytest.mark.slow
def test_history_survives_a_server_restart(python_runner: JobRunner, workspace: Workspace) -> None:
    done = run(python_runner, workspace, python_step("pass"))
    running = python_runner.start(JobSpec("train", "long", [python_step(SLEEP)]), workspace, env={})
    restarted = JobRunner()
    records = {record.id: record for record in restarted.history(workspace)}
    assert records[done.id].status == "succeeded"
    assert records[running.id].status == "interrupted"
    other = workspace_for(workspace.root, username=None, browser_id=new_browser_id())
    assert restarted.history(other) == []


def test_failure_reason_prefers_error_lines() -> None:
    assert failure_reason(["loading", "error: no such dataset", "Traceback", "x"]) == "no such dataset"
    assert failure_reason(["Traceback (most recent call last):", "ValueError: bad"]) == "ValueError: bad"
    assert failure_reason([]) == "no output"


def test_secret_objects_stay_out_of_records(python_runner: JobRunner, workspace: Workspace) -> None:
    job = python_runner.start(JobSpec("train", "t", [python_step("pass")]), workspace, env={}, secrets=(Secret("x"),))
    assert python_runner.wait(job, 30)
    assert "secret" not in job.record_path.read_text().lower()


def test_old_finished_jobs_leave_memory_but_keep_their_records(
    python_runner: JobRunner, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import voxplug.app.jobs as jobs

    monkeypatch.setattr(jobs, "MAX_JOBS_IN_MEMORY", 2)
    done = [run(python_runner, workspace, python_step("pass")) for _ in range(4)]
    assert python_runner.latest(workspace).id == done[-1].id
    assert python_runner.job(done[0].id, workspace) is None
    assert {record.id for record in python_runner.history(workspace)} >= {job.id for job in done}
