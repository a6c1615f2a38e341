"""Write the "your own voice" section of docs/quickstart.md by running it: the commands, then a recording of what
each one printed in an 80-column terminal.

Run it from the repository root after changing the journey or what its commands print::

    python docs/record_journey.py          # needs the test extras (pexpect, pyte)

It lives beside the page it writes: it is documentation tooling, not a benchmark (benchmarks/ measures speed) nor
a test (the journey's behaviour is tested in tests/training/test_first_hour.py). It works in a temporary folder
laid out like a checkout (``examples/`` beside ``my-voice-project/``), runs each command in a pseudo-terminal 80
columns wide, reads the screen through a VT100 emulator (so progress bars appear as a user sees them when they
end), and replaces the part of docs/quickstart.md between the ``journey`` markers. Nothing in it is edited by
hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect
import pyte

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "quickstart.md"
START = "<!-- journey: start (written by docs/record_journey.py; edit the script, not this part) -->"
END = "<!-- journey: end -->"
COLUMNS, ROWS = 80, 3000
SHOWN_ROOT = "/home/me/voxplug"
"""How the recording names the temporary checkout it ran in; the temporary folder's path is made as long, so that
what the terminal wrapped and what tables measured stays in place."""

CONFIG = """\
# my-run.yaml: LoRA on the tiny offline Voxtral, on a CPU, in a minute or two. Relative paths are read from
# this file's folder. On a GPU: model.name_or_path: mistralai/Voxtral-Mini-3B-2507 and the training section of
# configs/voxtral-mini-lora.yaml.
name: my-voice
data:
  source: jsonl
  jsonl: {path: my-voice/data.jsonl}
  language: en
model:
  name_or_path: tiny              # the folder `voxplug model tiny tiny` wrote
  family: voxtral
training:
  method: lora
  lora: {r: 32, alpha: 32, scopes: [language_model], modules_to_save: [lm_head, multi_modal_projector]}
  max_steps: 60
  batch_size: 8
  learning_rate: 5.0e-3           # high: a random tiny model learns to read the audio from scratch
  lr_scheduler: constant_with_warmup
  warmup_ratio: 0.05
  eval_steps: 20
evaluation: {max_new_tokens: 24}
publish: {target: null}           # published below, with `voxplug publish`
"""

WRITE_CONFIG = f"cat > my-run.yaml <<'EOF'\n{CONFIG}EOF"
STEPS: list[str] = [
    "voxplug --version",
    "voxplug model tiny tiny",
    "voxplug data create my-voice --language en --licence cc-by-4.0",
    "voxplug data import my-voice ../examples/speech/en --manifest ../examples/speech/en/transcripts.tsv",
    "voxplug data validate my-voice",
    WRITE_CONFIG,
    "voxplug train -c my-run.yaml",
    "voxplug evaluate --model runs/my-voice/model --data my-voice",
    "voxplug publish runs/my-voice --to my-voice-model",
]
LAST = "voxplug demo --model my-voice-model        # http://127.0.0.1:7860; Ctrl+C stops it"
"""Shown, not run: it serves until stopped."""


def run_in_terminal(command: str, cwd: Path) -> tuple[int, list[str]]:
    """Run ``command`` with bash in an 80-column pseudo-terminal; its exit status and the screen it leaves."""
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env.update(TERM="xterm-256color", PYTHONUNBUFFERED="1")
    child = pexpect.spawn("bash", ["-c", command], cwd=str(cwd), env=env, dimensions=(ROWS, COLUMNS), timeout=1800)
    output = child.read()
    child.close()
    screen = pyte.Screen(COLUMNS, ROWS)
    pyte.ByteStream(screen).feed(output)
    rows = [row.rstrip() for row in screen.display]
    while rows and not rows[-1]:
        rows.pop()
    return child.exitstatus, rows


def record(root: Path) -> list[str]:
    """Run every step in ``root/my-voice-project``; the recording, as lines of text."""
    project = root / "my-voice-project"
    project.mkdir()
    (root / "examples").symlink_to(REPO / "examples")
    lines: list[str] = []
    for command in STEPS:
        status, screen = run_in_terminal(command, project)
        shown = command if command != WRITE_CONFIG else "cat > my-run.yaml <<'EOF' ... EOF      # the config above"
        lines += [f"$ {shown}", *screen]
        if status != 0:
            raise SystemExit(f"{command!r} failed ({status}):\n" + "\n".join(screen))
    return [_shown_paths(line, root) for line in lines]


def _shown_paths(line: str, root: Path) -> str:
    for path in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
        line = line.replace(path, SHOWN_ROOT)
    return line


def section(recording: list[str]) -> str:
    """The commands to paste, then the recording."""
    commands = "\n".join(["mkdir -p my-voice-project && cd my-voice-project", *STEPS, LAST])
    return "\n".join(
        [
            START,
            "```bash",
            commands,
            "```",
            "",
            f"What it printed, in a terminal {COLUMNS} columns wide (recorded by running it, paths shortened to",
            f"`{SHOWN_ROOT}`; timings and the tiny model's random numbers differ from run to run):",
            "",
            "```text",
            *recording,
            "```",
            END,
        ]
    )


def main() -> None:
    """Record the journey and write it into docs/quickstart.md."""
    page = PAGE.read_text(encoding="utf-8")
    if START not in page or END not in page:
        raise SystemExit(f"{PAGE}: the journey markers are missing ({START!r} ... {END!r})")
    version = subprocess.run([sys.executable, "-m", "voxplug", "--version"], capture_output=True, text=True)
    if version.returncode != 0:
        raise SystemExit("voxplug does not run here: install it first (pip install -e '.[test]')")
    random_part = 8  # mkdtemp's random suffix
    prefix = "v" * max(1, len(SHOWN_ROOT) - len(tempfile.gettempdir()) - 1 - random_part)
    with tempfile.TemporaryDirectory(prefix=prefix) as temporary:
        recording = record(Path(temporary))
    before, rest = page.split(START, 1)
    after = rest.split(END, 1)[1]
    PAGE.write_text(before + section(recording) + after, encoding="utf-8")
    print(f"wrote {len(recording)} lines of recording into {PAGE.relative_to(REPO)}")


if __name__ == "__main__":
    main()
