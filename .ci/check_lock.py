"""Fail when the installed packages are not exactly the lock's: a dependency added or bumped without re-locking.

``pip install -c constraints.txt`` pins what the lock names but installs anything it does not name unpinned, so a
new dependency would slip past the lock silently; this check turns that into a failed CI run.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from voxplug.lock import canonical_name, read_lock


def main(lock_path: str) -> int:
    locked = read_lock(Path(lock_path))
    problems = []
    for dist in metadata.distributions():
        name = canonical_name(dist.metadata["Name"])
        if name in {"voxplug", "pip", "setuptools", "wheel"}:
            continue
        installed = dist.version.split("+", 1)[0]
        if name not in locked:
            problems.append(f"{name}=={installed} is installed but not in {lock_path}")
        elif locked[name] != installed:
            problems.append(f"{name}=={installed} is installed but {lock_path} pins {locked[name]}")
    for problem in sorted(problems):
        print(problem, file=sys.stderr)
    if problems:
        print("re-lock with .ci/lock and run the tests on the new set", file=sys.stderr)
        return 1
    print(f"installed packages match {lock_path} ({len(locked)} pinned)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
