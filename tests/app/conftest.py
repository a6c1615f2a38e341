"""Fixtures for the web app's tests: a workspace, a job runner whose program is plain Python, a headless Chromium."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # browser_helpers, for the test modules
    sys.path.insert(0, str(HERE))

from browser_helpers import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

from voxplug.app.jobs import JobRunner  # noqa: E402
from voxplug.app.workspace import Workspace, new_browser_id, workspace_for  # noqa: E402


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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (never a downloaded one: no `playwright install`)."""
    if not Path(CHROMIUM).is_file() and not shutil.which("chromium"):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Hub-compatible server on loopback; the app and its jobs talk to it (``HF_ENDPOINT``), with no server token."""
    from voxplug.testing.hub_server import HubServer

    saved = dict(os.environ)
    with HubServer(tmp_path_factory.mktemp("hub")) as server:
        os.environ.update({key: value for key, value in server.client_env().items() if key != "HF_TOKEN"})
        for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_WRITE_TOKEN"):
            os.environ.pop(key, None)
        os.environ["HF_TOKEN_PATH"] = os.devnull
        yield server
    os.environ.clear()
    os.environ.update(saved)
