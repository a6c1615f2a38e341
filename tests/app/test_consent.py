"""Consent before recording: the notice, the refusal without it, and the record kept in ``dataset.json``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from voxplug.app import consent
from voxplug.app.jobs import JobRunner
from voxplug.app.tabs.record_tab import RecordTab
from voxplug.app.ui import AppContext, AppSettings, Session
from voxplug.app.workspace import Workspace
from voxplug.data.store import DatasetStore


def record_tab(workspace: Workspace) -> RecordTab:
    return RecordTab(AppContext(settings=AppSettings(root=workspace.root), runner=JobRunner()))


def test_the_notice_says_where_clips_are_stored_and_that_they_stay_here(workspace: Workspace) -> None:
    notice = consent.storage_notice(workspace.root)
    assert f"`{workspace.root}/<your workspace>/datasets/<dataset>/`" in notice
    assert "this server" in notice and "nothing, unless you push" in notice
    assert consent.CONSENT_TEXT in notice


def test_no_clip_is_saved_before_consent_and_consent_is_kept_in_dataset_json(
    workspace: Workspace, speech_clips: list[tuple[Path, str]]
) -> None:
    tab, session = record_tab(workspace), Session(workspace=workspace)
    (first, first_text), (second, second_text) = speech_clips[:2]

    refused = tab.save_uploads(session, "voice", "en", [str(first)], first_text, agreed=False)
    assert refused[0] == consent.REFUSAL
    assert not workspace.dataset_path("voice").exists()  # nothing written, not even an empty dataset

    saved = tab.save_uploads(session, "voice", "en", [str(first)], first_text, agreed=True)
    assert saved[0].startswith("✓ saved")
    record = DatasetStore.open(workspace.dataset_path("voice")).metadata["consent"]
    assert record["agreed_by"] == "anonymous browser"  # never the workspace key or its folder
    assert record["text"] == consent.CONSENT_TEXT
    assert record["text_sha256"] == hashlib.sha256(consent.CONSENT_TEXT.encode()).hexdigest()
    assert record["agreed_at"].endswith("+00:00") and record["stored_in"] == "this server's workspace, datasets/voice"

    again = tab.save_recording(session, "voice", "en", str(second), second_text, [], 0, [], agreed=False)
    assert again[0].startswith("✓ saved")  # the dataset has consent on file: not asked again
    assert "Consent: given" in tab.show_dataset(session, "voice")[0]


def test_each_new_dataset_asks_again(workspace: Workspace, speech_clips: list[tuple[Path, str]]) -> None:
    path, text = speech_clips[0]
    tab, session = record_tab(workspace), Session(workspace=workspace, username="alice")
    assert tab.save_uploads(session, "one", "en", [str(path)], text, agreed=True)[0].startswith("✓ saved")
    assert tab.save_recording(session, "two", "en", str(path), text, [], 0, [], agreed=False)[0] == consent.REFUSAL
    assert consent.dataset_consent(workspace, "one")["agreed_by"] == "Hugging Face user alice"
    assert "not given yet" in consent.consent_line(workspace, "two")
