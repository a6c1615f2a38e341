"""Run every GPU test (``-m gpu``) and write the result as JSON: the card, the package versions, each test's outcome.

Run on a GPU machine with the packages of ``benchmarks/gpu_wheels.sh`` (the locked set, less what the device image
provides): ``python3 benchmarks/gpu_tests.py --out results.json``. The JSON records where each package was
imported from, so a run on the image's own copy of a locked package shows. Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from voxplug.tempfiles import write_json

if TYPE_CHECKING:
    from collections.abc import Callable

REPO = Path(__file__).resolve().parents[1]
PACKAGES = (
    "torch",
    "triton",
    "numpy",
    "transformers",
    "accelerate",
    "peft",
    "deepspeed",
    "huggingface_hub",
    "mistral_common",
    "tokenizers",
    "safetensors",
    "kernels",
    "bitsandbytes",
    "pydantic",
    "voxplug",
)


class Outcomes:
    """A pytest plugin that records each test's outcome and duration, and calls ``after_each`` once a test is done
    (so that a run stopped by a time limit keeps what it had)."""

    def __init__(self, after_each: Callable[[], None] = lambda: None) -> None:
        self.tests: dict[str, dict[str, Any]] = {}
        self.after_each = after_each

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0})
        entry["seconds"] = round(entry["seconds"] + report.duration, 2)
        if report.skipped:
            entry["outcome"] = "skipped"
        elif report.failed:
            entry["outcome"] = "failed" if report.when == "call" else f"error in {report.when}"
            entry["message"] = str(report.longrepr)[-2000:]
        if report.when == "teardown":
            self.after_each()


def gpu_test_files() -> list[str]:
    """The test modules that hold a GPU test: collecting the others would import what only the CPU suite needs."""
    files = sorted(path for path in (REPO / "tests").rglob("test_*.py") if "mark.gpu" in path.read_text("utf-8"))
    return [str(path) for path in files]


def versions() -> dict[str, dict[str, str]]:
    """Each package's version and the folder it is imported from."""
    found: dict[str, dict[str, str]] = {}
    for name in PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = {"version": "missing"}
            continue
        found[name] = {"version": dist.version, "from": str(dist.locate_file(""))}
    return found


def card() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"name": None}
    properties = torch.cuda.get_device_properties(0)
    return {
        "name": properties.name,
        "count": torch.cuda.device_count(),
        "memory_gib": round(properties.total_memory / 2**30, 1),
        "cuda": torch.version.cuda,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help="test paths and pytest options (default: every module that holds a GPU test); only tests marked gpu run",
    )
    args = parser.parse_args()
    started = time.time()
    header = {"date": time.strftime("%Y-%m-%d"), "card": card(), "python": platform.python_version()}
    header["packages"] = versions()

    def save(status: int | None) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for entry in outcomes.tests.values():
            counts[entry["outcome"]] = counts.get(entry["outcome"], 0) + 1
        result = {
            **header,
            "wall_s": round(time.time() - started, 1),
            "exit_status": status,  # None while the run is still going (or was stopped)
            "counts": counts,
            "tests": outcomes.tests,
        }
        write_json(args.out, result)
        return result

    outcomes = Outcomes(lambda: save(None))
    targets = args.pytest_args or gpu_test_files()
    status = int(pytest.main(["-p", "no:cacheprovider", "-q", "-m", "gpu", *targets], plugins=[outcomes]))
    result = save(status)
    print(json.dumps({"card": result["card"].get("name"), "counts": result["counts"]}))
    return status


if __name__ == "__main__":
    sys.exit(main())
