"""Saved weights readable like every other file the run writes.

safetensors writes its files owner-only (mode 0600, whatever the umask), while the configs and the processor
beside them follow the umask (usually 0644); a model folder shared with a group, a demo or a web server then has
unreadable weights. :func:`follow_umask` gives such files the mode the umask gives any new file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

OWNER_ONLY = 0o600


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(folder: Path) -> list[Path]:
    """Give the owner-only files directly in ``folder`` the umask's mode for new files; return those changed."""
    wanted = 0o666 & ~current_umask()
    changed = []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode == OWNER_ONLY and wanted != OWNER_ONLY:
            path.chmod(wanted)
            changed.append(path)
    return changed
