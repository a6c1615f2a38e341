"""The web app's Evaluate tab listens live with a streaming run's model (handlers called directly, no browser)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from voxplug.app.jobs import JobRunner
from voxplug.app.tabs.live_section import LiveSection
from voxplug.app.ui import AppContext, AppSettings, Session
from voxplug.app.workspace import Workspace, new_browser_id, workspace_for

from .conftest import manifest_rows


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return workspace_for(tmp_path / "root", username=None, browser_id=new_browser_id())


def section(workspace: Workspace) -> LiveSection:
    return LiveSection(AppContext(settings=AppSettings(root=workspace.root), runner=JobRunner(program=("true",))))


def with_run(workspace: Workspace, name: str, model: Path) -> None:
    shutil.copytree(model, workspace.run_path(name) / "model")


def test_a_streaming_run_transcribes_the_microphone_as_it_arrives(
    workspace: Workspace, realtime_tiny_dir: Path, word_clips: Path
) -> None:
    """Microphone chunks (int16, as Gradio sends them) stream into the run's model; the tokens are exactly those of
    streaming the same audio in one go, at the delay chosen on the slider."""
    from voxplug_voxtral_realtime.generation import transcribe_streaming
    from voxplug_voxtral_realtime.loading import load_realtime

    with_run(workspace, "realtime", realtime_tiny_dir)
    live, session = section(workspace), Session(workspace)
    pcm = (manifest_rows(word_clips)[3]["audio"] * 32767).astype(np.int16)
    stream = None
    for start in range(0, pcm.shape[0], 8000):
        text, stream = live.listen(session, "realtime", (16000, pcm[start : start + 8000]), stream, 320)
        assert isinstance(text, str) and not text.startswith("✗")
    result = stream.finish(timeout=120)
    model, processor = load_realtime(realtime_tiny_dir, device="cpu")
    expected = transcribe_streaming(model, processor, [pcm.astype(np.float32) / 32767], delay_ms=320)[0]
    assert stream.delay_ms == 320
    assert result.token_ids[: len(expected.token_ids)] == expected.token_ids


def test_an_offline_run_or_someone_elses_folder_is_refused(workspace: Workspace, tiny_voxtral: Path) -> None:
    with_run(workspace, "offline", tiny_voxtral)
    live, session = section(workspace), Session(workspace)
    chunk = (16000, np.zeros(1600, dtype=np.int16))
    text, stream = live.listen(session, "offline", chunk, None, 480)
    shown = re.sub(r"\\(.)", r"\1", text)  # error messages are escaped Markdown (they may quote user text)
    assert shown.startswith("✗") and "transcribes whole clips, not live" in shown and stream is None
    text, _ = live.listen(session, None, chunk, None, 480)
    assert "choose a finished run" in text
    text, stream = live.listen(session, "../../other-browser/runs/x", chunk, None, 480)
    assert text.startswith("✗") and "run" in text and stream is None
