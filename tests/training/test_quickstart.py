"""``voxplug quickstart``: one command from bundled audio to a published model, with a WER that shows learning."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import run_cli

pytestmark = pytest.mark.slow


def test_quickstart_trains_evaluates_and_publishes(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    result = run_cli(["quickstart", "--out", str(out)], cwd=tmp_path)
    report = result.stdout
    match = re.search(r"WER on the 20 training clips: ([0-9.]+) \(base model: ([0-9.]+)\)", report)
    assert match, report
    trained, base = float(match.group(1)), float(match.group(2))
    print(f"\nquickstart: training-clip WER {trained:.3f} (base {base:.3f})")
    assert trained < 0.6 < base
    assert "held-out clips" in report
    published = out / "run" / "published"
    assert (published / "adapter_model.safetensors").is_file() and (published / "README.md").is_file()
    assert json.loads((out / "run" / "model" / "voxplug.json").read_text())["kind"] == "adapter"
    assert (out / "dataset" / "dataset.json").is_file() and (out / "run" / "curves.png").is_file()
    again = run_cli(["quickstart", "--out", str(out)], cwd=tmp_path, check=False)
    assert again.returncode == 1 and "add --force" in again.stderr
