"""``voxplug train`` in a real terminal (a pseudo-terminal, read through a VT100 emulator): the progress display at
80 and 120 columns, ``--no-progress``, and Ctrl+C (the terminal's own SIGINT to the foreground process)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_config, write_config

pexpect = pytest.importorskip("pexpect")
pyte = pytest.importorskip("pyte")

ROWS = 200
HIDE_CURSOR, SHOW_CURSOR = b"\x1b[?25l", b"\x1b[?25h"


def terminal_train(args: list[str], *, cwd: Path, columns: int) -> Any:
    """``python -m voxplug train ARGS`` in a pseudo-terminal ``columns`` wide."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    return pexpect.spawn(
        sys.executable,
        ["-m", "voxplug", "train", *args],
        cwd=str(cwd),
        env=env,
        dimensions=(ROWS, columns),
        timeout=900,
    )


def screen_of(output: bytes, columns: int) -> list[str]:
    """What the terminal shows after ``output``: its non-empty rows."""
    screen = pyte.Screen(columns, ROWS)
    pyte.ByteStream(screen).feed(output)
    return [row.rstrip() for row in screen.display if row.strip()]


def finished(child: Any) -> bytes:
    output = child.read()
    child.close()
    return output


@pytest.fixture
def short_run(tmp_path: Path, tiny_model: Path, speech_manifest: Path) -> Path:
    config = run_config(tmp_path, tiny_model, speech_manifest, training__max_steps=12, training__eval_steps=6)
    return write_config(tmp_path / "run.yaml", config)


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 120])
def test_the_bar_keeps_step_count_bar_and_eta_on_one_row_with_the_metrics_below(
    short_run: Path, tmp_path: Path, columns: int
) -> None:
    child = terminal_train(["-c", str(short_run)], cwd=tmp_path, columns=columns)
    output = finished(child)
    assert child.exitstatus == 0, output.decode(errors="replace")[-3000:]
    rows = screen_of(output, columns)
    bar = [index for index, row in enumerate(rows) if re.search(r"\b12/12\b", row) and row.startswith("training")]
    assert bar, "\n".join(rows)
    row = rows[bar[-1]]
    assert "━" * 10 in row and re.search(r"12/12 +\d+:\d\d:\d\d eta +\d+:\d\d:\d\d$", row), row
    metrics = rows[bar[-1] + 1]
    assert metrics.startswith(("loss ", "eval_loss ")) and "eval_wer" in metrics and len(metrics) <= columns
    assert HIDE_CURSOR in output and output.rindex(SHOW_CURSOR) > output.rindex(HIDE_CURSOR)


@pytest.mark.slow
def test_no_progress_prints_log_lines_in_a_terminal(short_run: Path, tmp_path: Path) -> None:
    child = terminal_train(["-c", str(short_run), "--no-progress"], cwd=tmp_path, columns=80)
    output = finished(child)
    assert child.exitstatus == 0, output.decode(errors="replace")[-3000:]
    text = output.decode()
    assert re.search(r"^step 1/12  loss \d", text, re.MULTILINE)
    assert re.search(r"^step 12/12  eval_loss \d", text, re.MULTILINE)
    assert HIDE_CURSOR not in output  # no bar


@pytest.mark.slow
def test_ctrl_c_says_the_step_the_kept_checkpoint_and_how_to_resume(
    tmp_path: Path, tiny_model: Path, speech_manifest: Path
) -> None:
    config = run_config(
        tmp_path,
        tiny_model,
        speech_manifest,
        training__max_steps=5000,  # far longer than the test: it is interrupted once the first checkpoint is written
        training__save_steps=4,
        training__eval_steps=4,
        evaluation__enabled=False,
    )
    path = write_config(tmp_path / "run.yaml", config)
    first_checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    child = terminal_train(["-c", str(path)], cwd=tmp_path, columns=100)
    output = b""
    while not first_checkpoint.is_file():
        try:
            output += child.read_nonblocking(1 << 16, timeout=1)
        except pexpect.TIMEOUT:
            continue
        except pexpect.EOF:
            raise AssertionError(output.decode(errors="replace")[-3000:]) from None
    child.sendintr()  # Ctrl+C: the terminal sends SIGINT to the foreground process group
    output += finished(child)
    assert child.exitstatus == 130, output.decode(errors="replace")[-3000:]
    text = " ".join(screen_of(output, 100))
    unwrapped = "".join(text.split())  # the terminal hard-wraps the long checkpoint path at any column
    said = re.search(
        r"interruptedatstep(\d+)of5000;checkpoint-(\d+)iskept\(.*?\):runthesamecommandwith--resumetocontinuefromit",
        unwrapped,
    )
    assert said, text
    step, kept = int(said.group(1)), int(said.group(2))
    assert kept >= 4 and kept <= step < 5000
    assert (tmp_path / "run" / "checkpoints" / f"checkpoint-{kept}" / "trainer_state.json").is_file()
    assert output.rindex(SHOW_CURSOR) > output.rindex(HIDE_CURSOR)  # the cursor is shown again
    assert b"Traceback" not in output
