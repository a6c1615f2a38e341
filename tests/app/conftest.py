"""Fixtures for the web app's tests: a workspace and a job runner whose program is plain Python."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voxplug.app.jobs import JobRunner
from voxplug.app.workspace import Workspace, new_browser_id, workspace_for


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A fresh browser workspace under a temporary root."""
    return workspace_for(tmp_path / "root", username=None, browser_id=new_browser_id())


@pytest.fixture
def python_runner() -> Iterator[JobRunner]:
    """A job runner whose steps are ``python <args>``, stopped after the test."""
    runner = JobRunner(program=(sys.executable,), cancel_grace_s=2.0)
    yield runner
    runner.shutdown()
