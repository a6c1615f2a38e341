"""Workspaces: one folder per user (Hugging Face login on a Space) or per browser, so users never clobber each other.

Layout under the app's root folder (``voxplug app --root``)::

    <root>/
      user-alice/                 a signed-in Hugging Face user (OAuth on a Space)
      browser-<sha256 of its id>/ an anonymous browser, identified by a random id kept in its local storage
        datasets/<name>/          voxplug datasets (DatasetStore): what recording saves and training reads
        runs/<name>/              training run folders (model/, eval_results.json, predictions.jsonl, ...)
        configs/<name>.yaml       the run configs the app generated
        jobs/<id>.json, <id>.log  job records and their (token-redacted) output

A browser id is 32 random hex digits made on the server: it is the key to the workspace, so it is never derived
from anything guessable, and ids of any other shape are refused (no path tricks). The folder is named by a SHA-256
of the id, never by the id itself: paths end up in logs, run files and error messages, and a folder name read there
cannot be sent back as an id (finding the id from its hash is a preimage of SHA-256 over 128 random bits). The app
never shows or writes the id; only the browser that holds it can open the workspace.

Folders named ``browser-<32 hex digits>`` come from versions that named a workspace by its id. Those versions lost
every browser's id at each restart (so no owner can reach them any more), while their ids may have been published
in run files: they are never opened again, only counted at start (:func:`legacy_browser_folders`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from voxplug.errors import DataError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Dataset and run names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-`` (64 at most)."""
BROWSER_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
USER_PREFIX = "user-"
BROWSER_PREFIX = "browser-"
_FOLDER_HASH_DOMAIN = b"voxplug browser workspace\0"
"""Prefixed to the id before hashing, so the folder hash is never the same as a SHA-256 of the bare id elsewhere."""


def new_browser_id() -> str:
    """A fresh random browser id (128 bits, hex)."""
    return secrets.token_hex(16)


def is_browser_id(value: object) -> bool:
    """Whether ``value`` has the shape of an id made by :func:`new_browser_id`."""
    return isinstance(value, str) and bool(BROWSER_ID_PATTERN.match(value))


def check_name(name: str, what: str) -> str:
    """Return ``name`` stripped, or raise :class:`DataError` saying what a valid ``what`` name looks like."""
    cleaned = (name or "").strip()
    if not NAME_PATTERN.match(cleaned):
        raise DataError(
            f"{what} name {cleaned!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (e.g. my-voice)"
        )
    return cleaned


def user_key(username: str) -> str:
    """The workspace folder name of a signed-in user (characters outside ``[A-Za-z0-9._-]`` become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", username.strip())[:64].lstrip(".")
    if not safe:
        raise DataError(f"cannot make a workspace name from the user name {username!r}")
    return USER_PREFIX + safe


def browser_key(browser_id: str) -> str:
    """The workspace folder name of an anonymous browser: ``browser-`` and the SHA-256 of its id (64 hex digits).

    Raises :class:`DataError` for a malformed id.
    """
    if not is_browser_id(browser_id):
        raise DataError("malformed browser id (expected 32 hex digits)")
    return BROWSER_PREFIX + hashlib.sha256(_FOLDER_HASH_DOMAIN + browser_id.encode("ascii")).hexdigest()


def legacy_browser_folders(root: Path) -> list[Path]:
    """Workspace folders named by a browser id itself (``browser-<32 hex digits>``), which the app never opens."""
    if not Path(root).is_dir():
        return []
    return sorted(
        path
        for path in Path(root).iterdir()
        if path.is_dir() and path.name.startswith(BROWSER_PREFIX) and is_browser_id(path.name[len(BROWSER_PREFIX) :])
    )


@dataclass(frozen=True)
class Workspace:
    """One user's or browser's folder of datasets, runs, configs and jobs."""

    root: Path
    key: str

    @property
    def path(self) -> Path:
        """The workspace folder."""
        return self.root / self.key

    @property
    def datasets_dir(self) -> Path:
        """Where this workspace's datasets live."""
        return self.path / "datasets"

    @property
    def runs_dir(self) -> Path:
        """Where this workspace's training runs write their folders."""
        return self.path / "runs"

    @property
    def configs_dir(self) -> Path:
        """Where the run configs the app generates are written."""
        return self.path / "configs"

    @property
    def jobs_dir(self) -> Path:
        """Where job records and logs are kept."""
        return self.path / "jobs"

    @property
    def label(self) -> str:
        """A short description for the page: the user name, or "this browser" (never any part of its id)."""
        if self.key.startswith(USER_PREFIX):
            return f"user {self.key.removeprefix(USER_PREFIX)}"
        return "this browser"

    def ensure(self) -> Workspace:
        """Create the workspace's folders if they do not exist yet; returns itself."""
        for folder in (self.datasets_dir, self.runs_dir, self.configs_dir, self.jobs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def dataset_path(self, name: str) -> Path:
        """The folder of dataset ``name`` (validated)."""
        return self.datasets_dir / check_name(name, "dataset")

    def run_path(self, name: str) -> Path:
        """The folder of run ``name`` (validated)."""
        return self.runs_dir / check_name(name, "run")

    def dataset_names(self) -> list[str]:
        """The names of this workspace's datasets, sorted."""
        return _child_names(self.datasets_dir, marker="dataset.json")

    def run_names(self) -> list[str]:
        """The names of this workspace's run folders, newest first."""
        if not self.runs_dir.is_dir():
            return []
        folders = [path for path in self.runs_dir.iterdir() if path.is_dir() and NAME_PATTERN.match(path.name)]
        return [path.name for path in sorted(folders, key=lambda path: path.stat().st_mtime, reverse=True)]


def _child_names(folder: Path, *, marker: str) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(path.name for path in folder.iterdir() if (path / marker).is_file() and NAME_PATTERN.match(path.name))


def workspace_for(root: Path, *, username: str | None, browser_id: str | None) -> Workspace:
    """The workspace of a signed-in ``username``, else of ``browser_id``; created on first use."""
    key = user_key(username) if username else browser_key(browser_id or "")
    return Workspace(Path(root), key).ensure()
