"""Keeping this machine's paths out of everything a publish uploads.

A run records where things were on this machine: the base model's folder, the data manifest, the run and
checkpoint folders. A published repo holds none of them: they name the machine's users and folders, and in the
web app the workspace folder, whose name is the key to a user's data. :class:`LocalPathScrubber` rewrites what a
run recorded before it is staged:

- a path inside the run folder becomes relative to it (``checkpoints/checkpoint-60``, ``.`` for the folder);
- the base model's local folder becomes the Hub id it came from (the ``base_model`` publishing option, or the
  ``models--owner--name`` folder of a Hugging Face cache), or is removed when no Hub id is known;
- any other local path becomes ``<local path>``.

:func:`refuse_local_paths` then reads every staged file (weights over 64 MiB aside) and refuses the publish when
one still holds a folder of this machine, naming the file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from voxplug.errors import PublishError

LOCAL_PATH = "<local path>"
"""What a local path outside the run folder becomes in published files."""
SCANNED_SIZE_LIMIT = 64 * 1024 * 1024
WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
CACHE_FOLDER = re.compile(r"^models--([^/]+?)--([^/]+)$")
PATH_TAIL = r"(?:[\\/][^\s\"'<>|,;]*|(?![\w.-]))"
"""What may follow a known folder inside longer text: the rest of the path, or nothing that continues the name."""


def is_local_path(value: str) -> bool:
    """Whether ``value`` is a path on this machine rather than a name: absolute, ``~``, ``file:`` or with ``..``."""
    text = value.strip()
    if not text:
        return False
    if text.startswith(("/", "\\\\", "file:")) or text == "~" or text.startswith(("~/", "~\\")):
        return True
    return bool(WINDOWS_DRIVE.match(text)) or ".." in re.split(r"[\\/]", text)


def hub_id_of_local_model(path: str) -> str | None:
    """The Hub id a local model folder was downloaded from, when its path says so; None otherwise.

    A folder inside a Hugging Face cache (``.../models--owner--name/snapshots/<commit>``) names its repo.
    """
    for part in reversed(Path(path).expanduser().parts):
        match = CACHE_FOLDER.match(part)
        if match:
            return f"{match.group(1)}/{match.group(2)}"
    return None


def path_forms(path: str | Path) -> list[str]:
    """The spellings of one absolute path: as written, with ``~`` expanded, and with symbolic links resolved."""
    raw = os.fspath(path).removeprefix("file://")
    expanded = os.path.expanduser(raw)
    forms = [raw, expanded, os.path.normpath(expanded)]
    if os.path.isabs(expanded):
        forms.append(os.path.realpath(expanded))
    return [form.rstrip("/\\") or form for form in dict.fromkeys(forms) if os.path.isabs(form)]


def machine_folders(paths: Iterable[str | Path]) -> list[str]:
    """The folders whose names would say whose machine this is: the given paths and their ancestors two levels
    deep or more (``/home/alice``, ``/srv/app/browser-3f9c…``), the home folder, the working folder and the
    temporary folder (when two levels deep or more). Longest first."""
    found: set[str] = set()
    for path in [*paths, Path.home(), Path.cwd(), tempfile.gettempdir()]:
        for form in path_forms(path):
            current = Path(form)
            for folder in (current, *current.parents):
                if len(folder.parts) >= 3:
                    found.add(str(folder))
    return sorted(found, key=len, reverse=True)


class LocalPathScrubber:
    """Rewrites the local paths in what a run recorded into what a published repo may hold (see the module)."""

    def __init__(self, *, run_dir: Path | None, local_models: Mapping[str, str | None] | None = None) -> None:
        self.run_forms = path_forms(run_dir) if run_dir is not None else []
        self.models: dict[str, str | None] = {}
        for path, hub_id in (local_models or {}).items():
            for form in path_forms(path):
                self.models[form] = hub_id
        self.folders = machine_folders([*([run_dir] if run_dir is not None else []), *self.models])
        alternatives = "|".join(re.escape(folder) for folder in self.folders)
        self._embedded = re.compile(f"(?:file://)?(?:{alternatives}){PATH_TAIL}") if alternatives else None

    def path(self, value: str) -> str | None:
        """What one local path becomes: relative to the run folder, a Hub id, None (a local model with no known Hub
        id) or :data:`LOCAL_PATH`."""
        for form in path_forms(value.strip()):
            if form in self.models:
                return self.models[form]
            for run in self.run_forms:
                if form == run:
                    return "."
                if form.startswith(run + os.sep):
                    return Path(form[len(run) + 1 :]).as_posix()
        return LOCAL_PATH

    def value(self, value: Any) -> Any:
        """A JSON value with every local path rewritten, in strings and in dict keys, at any depth."""
        if isinstance(value, dict):
            return {self.text(key) if isinstance(key, str) else key: self.value(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.path(value) if is_local_path(value) else self.text(value)
        return value

    def text(self, text: str) -> str:
        """``text`` with the paths under this machine's folders that appear inside it rewritten."""
        if self._embedded is None:
            return text
        return self._embedded.sub(lambda match: self.path(match.group(0)) or LOCAL_PATH, text)


def refuse_local_paths(folder: Path, local_folders: Iterable[str], *, allowed: Iterable[str] = ()) -> None:
    """Raise :class:`PublishError` when a file under ``folder`` holds one of ``local_folders`` (a path of this
    machine). Files over 64 MiB (weights) are not read; the paths in ``allowed`` (kept on purpose) are skipped."""
    needles = [(name, name.encode()) for name in local_folders]
    skipped = [path.encode() for path in allowed]
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.stat().st_size > SCANNED_SIZE_LIMIT:
            continue
        content = path.read_bytes()
        for kept in skipped:
            content = content.replace(kept, b"")
        for name, needle in needles:
            if needle in content:
                raise PublishError(
                    f"refusing to publish: {path.relative_to(folder).as_posix()} holds the local path {name} "
                    "(published files name no folder of this machine); remove it from the run's files"
                )
