"""The tested dependency set: ``constraints.txt``, every package pinned to the version the suites last passed on.

The file sits at the repository's root and is shipped inside the wheel as ``voxplug/constraints.txt``; what voxplug
writes for another machine to install (a Space's ``requirements.txt``) pins these versions, not whatever happens to
be installed here.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

LOCK_NAME = "constraints.txt"


def canonical_name(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503): ``Mistral_Common`` and ``mistral-common`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path() -> Path | None:
    """``constraints.txt`` inside the installed package, else beside the source tree (an editable install)."""
    package = Path(__file__).resolve().parent
    for candidate in (package / LOCK_NAME, package.parent / LOCK_NAME):
        if candidate.is_file():
            return candidate
    return None


def read_lock(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file of ``name==version`` lines (comments allowed)."""
    versions: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            versions[canonical_name(name.split("[", 1)[0])] = version.strip()
    return versions


@functools.cache
def locked_versions() -> dict[str, str]:
    """The lock's versions by canonical name; empty when no lock ships with this install."""
    path = lock_path()
    return read_lock(path) if path is not None else {}


def locked_version(name: str) -> str | None:
    """The locked version of a package (extras ignored), or None when the lock does not name it."""
    return locked_versions().get(canonical_name(name.split("[", 1)[0]))
