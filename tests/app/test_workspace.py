"""Workspaces keep users apart: one folder per signed-in user or per browser, and no path tricks."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxplug.app.workspace import check_name, new_browser_id, user_key, workspace_for
from voxplug.errors import DataError


def test_each_browser_and_user_gets_its_own_folder(tmp_path: Path) -> None:
    first = workspace_for(tmp_path, username=None, browser_id=new_browser_id())
    second = workspace_for(tmp_path, username=None, browser_id=new_browser_id())
    alice = workspace_for(tmp_path, username="alice", browser_id=new_browser_id())
    assert len({first.path, second.path, alice.path}) == 3
    assert alice.key == "user-alice" and alice.label == "user alice"
    for workspace in (first, second, alice):
        assert workspace.datasets_dir.is_dir() and workspace.jobs_dir.is_dir()
        assert workspace.path.parent == tmp_path


@pytest.mark.parametrize("browser_id", ["", "../../etc", "0" * 31, "g" * 32, None])
def test_a_malformed_browser_id_is_refused(tmp_path: Path, browser_id: str | None) -> None:
    with pytest.raises(DataError, match="malformed browser id"):
        workspace_for(tmp_path, username=None, browser_id=browser_id)


def test_user_names_are_made_safe_for_folders() -> None:
    assert user_key("../Bob Smith") == "user-_Bob_Smith"
    with pytest.raises(DataError):
        user_key("...")


@pytest.mark.parametrize("name", ["my voice", "../x", "", "-x", "a" * 65, "x/y"])
def test_bad_dataset_names_get_a_clear_message(name: str) -> None:
    with pytest.raises(DataError, match="letters, digits"):
        check_name(name, "dataset")


def test_lists_datasets_and_runs(tmp_path: Path) -> None:
    workspace = workspace_for(tmp_path, username="carol", browser_id=None)
    (workspace.dataset_path("voice") / "dataset.json").parent.mkdir(parents=True)
    (workspace.dataset_path("voice") / "dataset.json").write_text("{}")
    (workspace.datasets_dir / "not-a-dataset").mkdir()
    workspace.run_path("run-1").mkdir(parents=True)
    assert workspace.dataset_names() == ["voice"]
    assert workspace.run_names() == ["run-1"]
