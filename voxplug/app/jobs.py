"""Background jobs: voxplug commands run as subprocesses, watched from the page, cancellable.

A job is a list of steps (``voxplug train``, then ``voxplug publish``, ...), each a subprocess started with
``sys.executable -m voxplug ...`` and stopped at the first failure. What decides success is each process's real
exit status, never a pattern in its output (a log line can claim anything). Jobs that share a *lock* run one at
a time on the whole server: every training and evaluation job takes the ``accelerator`` lock, so two users cannot
start two trainings at once; a publishing job takes a lock of its own workspace.

The state lives on the server (:class:`JobRunner`), not in the browser: reloading the page finds the running job
again. Each job also leaves ``jobs/<id>.json`` (its record) and ``jobs/<id>.log`` (its output, token-redacted)
in its workspace, so the history survives a server restart; a job that was running when the server stopped is
shown as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from voxplug.app.progress import TrainingProgress
from voxplug.app.tokens import Secret, redact
from voxplug.app.workspace import Workspace
from voxplug.errors import VoxplugError
from voxplug.tempfiles import write_json

JobStatus = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
ACCELERATOR_LOCK = "accelerator"
MAX_LOG_LINES = 2000
MAX_JOBS_IN_MEMORY = 200
CANCEL_GRACE_S = 10.0
CHILD_ENV = {"PYTHONUNBUFFERED": "1", "COLUMNS": "400"}
"""Unbuffered output, and lines rich does not wrap at 80 columns (progress lines are parsed whole)."""


class JobConflictError(VoxplugError):
    """A job cannot start because another job holds the same lock."""


@dataclass
class JobStep:
    """One command of a job: its title and the arguments after ``python -m voxplug``."""

    title: str
    args: list[str]
    tracks_training: bool = False


@dataclass
class JobSpec:
    """What to run: the kind (``train``, ``evaluate``, ``publish``), a title, the steps and the lock they need."""

    kind: str
    title: str
    steps: list[JobStep]
    lock: str = ACCELERATOR_LOCK
    run_dir: Path | None = None


@dataclass
class JobRecord:
    """The persistent part of a job (``jobs/<id>.json``): never the token, never the environment."""

    id: str
    kind: str
    title: str
    workspace: str
    status: JobStatus
    steps: list[str]
    step_index: int = 0
    returncode: int | None = None
    message: str = ""
    started: float = field(default_factory=time.time)
    ended: float | None = None
    run_dir: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the job is over, whatever the outcome."""
        return self.status != "running"

    @property
    def elapsed_s(self) -> float:
        """Seconds from start to end (or to now while running)."""
        return (self.ended or time.time()) - self.started


class Job:
    """A running or finished job: its record, its live output and its training progress."""

    def __init__(self, spec: JobSpec, workspace: Workspace, secrets: tuple[Secret, ...]) -> None:
        self.spec = spec
        self.workspace = workspace
        self.secrets = secrets
        self.record = JobRecord(
            id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
            kind=spec.kind,
            title=spec.title,
            workspace=workspace.key,
            status="running",
            steps=[step.title for step in spec.steps],
            run_dir=str(spec.run_dir) if spec.run_dir else None,
        )
        self.lines: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self.line_count = 0
        self.progress = TrainingProgress()
        self.process: subprocess.Popen[str] | None = None
        self.cancel_requested = False
        self.done = threading.Event()
        self._lock = threading.Lock()

    @property
    def id(self) -> str:
        """The job id (a timestamp plus a random suffix)."""
        return self.record.id

    @property
    def record_path(self) -> Path:
        """Where the job record is kept."""
        return self.workspace.jobs_dir / f"{self.id}.json"

    @property
    def log_path(self) -> Path:
        """Where the job's output is kept."""
        return self.workspace.jobs_dir / f"{self.id}.log"

    def add_line(self, line: str) -> None:
        """Keep one line of output (redacted), in memory and in the log file."""
        text = redact(line.rstrip("\r\n"), self.secrets)
        with self._lock:
            self.lines.append(text)
            self.line_count += 1
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
        if self.spec.steps[self.record.step_index].tracks_training:
            self.progress.feed(text)

    def log_text(self, last: int = 400) -> str:
        """The last ``last`` lines of output."""
        with self._lock:
            return "\n".join(list(self.lines)[-last:])

    def save(self) -> None:
        """Write the job record."""
        write_record(self.record_path, self.record)

    def finish(self, status: JobStatus, returncode: int | None, message: str) -> None:
        """Mark the job over, save its record and wake up waiters."""
        self.record.status = status
        self.record.returncode = returncode
        self.record.message = redact(message, self.secrets)
        self.record.ended = time.time()
        if status == "succeeded" and any(step.tracks_training for step in self.spec.steps):
            self.progress.mark_complete()
        self.save()
        self.done.set()


def write_record(path: Path, record: JobRecord) -> None:
    """Write a job record atomically."""
    write_json(path, asdict(record))


def read_record(path: Path) -> JobRecord | None:
    """Read a job record; None when the file is unreadable."""
    try:
        return JobRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def failure_reason(lines: list[str]) -> str:
    """The most telling line of a failed command's output: its ``error:`` line, else the exception, else the last."""
    meaningful = [line.strip() for line in lines if line.strip()]
    for line in reversed(meaningful):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    for line in reversed(meaningful):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception", "Interrupt")) and " " not in head:
            return line
    return meaningful[-1] if meaningful else "no output"


class JobRunner:
    """Starts jobs in background threads, enforces their locks, cancels them and finds them again.

    Each step runs ``program + step.args`` (``python -m voxplug …`` unless a test passes another program).
    """

    def __init__(
        self, *, program: tuple[str, ...] = (sys.executable, "-m", "voxplug"), cancel_grace_s: float = CANCEL_GRACE_S
    ) -> None:
        self.program = program
        self.cancel_grace_s = cancel_grace_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    # -- starting -------------------------------------------------------------------------------------------

    def start(
        self,
        spec: JobSpec,
        workspace: Workspace,
        *,
        env: dict[str, str],
        secrets: tuple[Secret, ...] = (),
    ) -> Job:
        """Start ``spec`` in the background; raises :class:`JobConflictError` when its lock is taken."""
        with self._lock:
            holder = self._lock_holder(spec.lock)
            if holder is not None:
                raise JobConflictError(self._conflict_message(holder, workspace))
            job = Job(spec, workspace.ensure(), secrets)
            self._jobs[job.id] = job
            self._forget_old_jobs()
        job.save()
        thread = threading.Thread(target=self._run, args=(job, env), name=f"voxplug-job-{job.id}", daemon=True)
        thread.start()
        return job

    def _forget_old_jobs(self) -> None:
        """Keep at most :data:`MAX_JOBS_IN_MEMORY` jobs; the oldest finished ones live on in their records."""
        finished = sorted((job for job in self._jobs.values() if job.record.finished), key=lambda j: j.record.started)
        for job in finished[: max(0, len(self._jobs) - MAX_JOBS_IN_MEMORY)]:
            del self._jobs[job.id]

    def _lock_holder(self, lock: str) -> Job | None:
        return next((job for job in self._jobs.values() if job.spec.lock == lock and not job.record.finished), None)

    @staticmethod
    def _conflict_message(holder: Job, workspace: Workspace) -> str:
        """Why a job cannot start; another user's job is named by nothing but its start time."""
        started = time.strftime("%H:%M:%S", time.localtime(holder.record.started))
        if holder.workspace.key == workspace.key:
            return (
                f"a job is already running: {holder.record.title!r}, which you started at {started}. "
                "Only one training or evaluation runs at a time on this server; wait for it to finish or cancel it."
            )
        return (
            f"a job is already running, which another user started at {started}. "
            "Only one training or evaluation runs at a time on this server; wait for it to finish."
        )

    def check_free(self, lock: str, workspace: Workspace) -> None:
        """Raise :class:`JobConflictError` when a job holding ``lock`` runs (checked before anything is written)."""
        with self._lock:
            holder = self._lock_holder(lock)
            if holder is not None:
                raise JobConflictError(self._conflict_message(holder, workspace))

    # -- running --------------------------------------------------------------------------------------------

    def _run(self, job: Job, env: dict[str, str]) -> None:
        try:
            for index, step in enumerate(job.spec.steps):
                job.record.step_index = index
                job.save()
                returncode = self._run_step(job, step, env)
                if job.cancel_requested:
                    job.finish("cancelled", returncode, f"cancelled during {step.title!r}")
                    return
                if returncode != 0:
                    reason = failure_reason(list(job.lines)[-60:])
                    job.finish("failed", returncode, f"{step.title!r} failed (exit status {returncode}): {reason}")
                    return
            job.finish("succeeded", 0, "")
        except Exception as exc:  # a job must always end with a status the page can show
            job.finish("failed", None, f"could not run the job: {type(exc).__name__}: {exc}")

    def _run_step(self, job: Job, step: JobStep, env: dict[str, str]) -> int:
        argv = [*self.program, *step.args]
        job.add_line(f"$ {Path(self.program[-1]).name} {' '.join(step.args)}")
        process = subprocess.Popen(
            argv,
            cwd=job.workspace.path,
            env={**env, **CHILD_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
        job.process = process
        assert process.stdout is not None
        for line in process.stdout:
            job.add_line(line)
        return process.wait()

    # -- cancelling -----------------------------------------------------------------------------------------

    def cancel(self, job_id: str, workspace: Workspace) -> str:
        """Stop job ``job_id`` of ``workspace`` (SIGTERM, then SIGKILL after a grace period); returns a message."""
        job = self._jobs.get(job_id)
        if job is None or job.workspace.key != workspace.key:
            return "There is no such job in your workspace."
        if job.record.finished:
            return f"The job already ended ({job.record.status})."
        job.cancel_requested = True
        self._signal(job, signal.SIGTERM)
        timer = threading.Timer(self.cancel_grace_s, self._kill_if_alive, args=(job,))
        timer.daemon = True
        timer.start()
        return f"Cancelling {job.record.title!r}…"

    def _kill_if_alive(self, job: Job) -> None:
        if job.process is not None and job.process.poll() is None:
            self._signal(job, signal.SIGKILL)

    @staticmethod
    def _signal(job: Job, signum: int) -> None:
        process = job.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            pass

    def shutdown(self) -> None:
        """Stop every running job (the server is going away) and wait briefly for them."""
        running = [job for job in self._jobs.values() if not job.record.finished]
        for job in running:
            job.cancel_requested = True
            self._signal(job, signal.SIGTERM)
        for job in running:
            if not job.done.wait(self.cancel_grace_s):
                self._signal(job, signal.SIGKILL)

    # -- finding --------------------------------------------------------------------------------------------

    def job(self, job_id: str, workspace: Workspace) -> Job | None:
        """Job ``job_id`` if it belongs to ``workspace``."""
        job = self._jobs.get(job_id)
        return job if job is not None and job.workspace.key == workspace.key else None

    def latest(self, workspace: Workspace, kinds: tuple[str, ...] | None = None) -> Job | None:
        """The most recently started job of ``workspace`` (of one of ``kinds``) in this server's lifetime."""
        jobs = [
            job
            for job in self._jobs.values()
            if job.workspace.key == workspace.key and (kinds is None or job.spec.kind in kinds)
        ]
        return max(jobs, key=lambda job: job.record.started, default=None)

    def running(self) -> list[Job]:
        """Jobs running now, on the whole server."""
        return [job for job in self._jobs.values() if not job.record.finished]

    def history(self, workspace: Workspace, limit: int = 50) -> list[JobRecord]:
        """Records of ``workspace``'s jobs, newest first, including those of earlier server lifetimes."""
        live = {job.id: job.record for job in self._jobs.values() if job.workspace.key == workspace.key}
        records = dict(live)
        for path in workspace.jobs_dir.glob("*.json") if workspace.jobs_dir.is_dir() else []:
            if path.stem not in records and (record := read_record(path)) is not None:
                if record.status == "running":
                    record.status, record.message = "interrupted", "the server stopped while this job ran"
                records[record.id] = record
        return sorted(records.values(), key=lambda record: record.started, reverse=True)[:limit]

    def wait(self, job: Job, timeout: float | None = None) -> bool:
        """Block until ``job`` ends (tests, scripts); returns whether it did within ``timeout``."""
        return job.done.wait(timeout)
