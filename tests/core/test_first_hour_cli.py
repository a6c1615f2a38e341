"""What a new user sees from the commands that train nothing: ``--version`` and help, config mistakes, the data
commands on careless input, and the web apps on a port that is taken. Each runs ``python -m voxplug`` as a user
does."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech" / "en"


def voxplug(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voxplug", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# -- 10. --version and help --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_version_and_help_name_what_to_type(tmp_path: Path) -> None:
    from voxplug import __version__

    assert voxplug("--version", cwd=tmp_path).stdout.strip() == f"voxplug {__version__}"
    for command in ([], ["train"], ["data", "import"], ["evaluate"], ["app"], ["demo"]):
        shown = voxplug(*command, "--help", cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert not re.search(r"<(bool|str|path|int|float|list\[\w+\])>", shown.stdout), shown.stdout
    train = voxplug("train", "-h", cwd=tmp_path).stdout
    assert re.search(r"--config\s+-c\s+TEXT", train) and re.search(r"overrides\.\.\.\s+TEXT", train)
    assert re.search(r"--help\s+-h\s+Show this message", train)
    data_import = voxplug("data", "import", "--help", cwd=tmp_path).stdout
    assert re.search(r"folder\s+PATH", data_import) and re.search(r"--workers\s+INTEGER", data_import)


# -- 9. config mistakes, all at once ---------------------------------------------------------------------------------


def test_config_mistakes_are_reported_together_and_a_misspelled_key_only_once(tmp_path: Path) -> None:
    (tmp_path / "my-run.yaml").write_text(
        "data:\n  jsonl: {pth: my-voice/data.jsonl}\ntraining:\n  epocks: 3\n  batch_size: 0\n  lora: {rr: 4}\n",
        encoding="utf-8",
    )
    result = voxplug("train", "-c", "my-run.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert error_lines(result) == ["error: invalid config (my-run.yaml):"]
    problems = result.stderr.split("error: invalid config (my-run.yaml):\n", 1)[1]
    assert "training.batch_size: Input should be greater than or equal to 1, or auto (got 0)" in problems  # a core key
    assert "data.jsonl.pth: unknown key; did you mean 'path'?" in problems  # a plugin's option
    assert "training.epocks: unknown key; did you mean 'epochs'?" in problems
    assert "training.lora.rr: unknown key; did you mean 'r'?" in problems
    assert "Field required" not in problems  # path is not missing: it is misspelled


# -- 9. the data commands on careless input --------------------------------------------------------------------------


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    """Three bundled clips and a CSV of transcripts, one of them blank and one naming a file that is not there."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name in ("en_gb_000.wav", "en_gb_001.wav", "en_gb_002.wav"):
        shutil.copy(SPEECH / name, folder / name)
    (folder / "clips.csv").write_text(
        'file,text\nen_gb_000.wav,hello there\nen_gb_001.wav,"   "\nen_gb_002.wav,fine\nnope.wav,missing\n',
        encoding="utf-8",
    )
    return folder


def test_validate_points_a_csv_manifest_to_data_import(recordings: Path) -> None:
    result = voxplug("data", "validate", "recordings/clips.csv", cwd=recordings.parent)
    assert result.returncode == 1 and "malformed JSON" not in result.stdout + result.stderr
    [line] = error_lines(result)
    assert "recordings/clips.csv is a CSV manifest" in line
    assert "voxplug data import my-voice recordings --manifest recordings/clips.csv" in line


@pytest.mark.slow
def test_import_names_each_bad_row_once_with_its_file_and_line(recordings: Path) -> None:
    folder = recordings.parent
    assert voxplug("data", "create", "my-voice", "--language", "en", cwd=folder).returncode == 0
    result = voxplug("data", "import", "my-voice", "recordings", "--manifest", "recordings/clips.csv", cwd=folder)
    assert result.returncode == 1 and "imported 2 clip(s)" in result.stdout
    blank, missing = error_lines(result)
    assert blank.startswith("error: clips.csv line 3 (en_gb_001.wav): ") and blank.count("clips.csv line 3") == 1
    assert "only whitespace" in blank
    assert missing == "error: clips.csv line 5 (nope.wav): audio file nope.wav not found in recordings"


@pytest.mark.slow
def test_a_blank_transcript_beside_its_audio_is_named_by_the_txt_file(recordings: Path) -> None:
    folder = recordings.parent
    voxplug("data", "create", "my-voice", "--language", "en", cwd=folder)
    beside = folder / "beside"
    beside.mkdir()
    for name, text in (("en_gb_000", "hello there"), ("en_gb_001", " \n\t\n")):
        shutil.copy(recordings / f"{name}.wav", beside / f"{name}.wav")
        (beside / f"{name}.txt").write_text(text, encoding="utf-8")
    result = voxplug("data", "import", "my-voice", "beside", cwd=folder)
    assert result.returncode == 1 and "imported 1 clip(s)" in result.stdout
    [line] = error_lines(result)
    assert line.startswith("error: en_gb_001.wav: en_gb_001.txt holds only whitespace"), line


@pytest.mark.slow
def test_a_blank_line_of_a_texts_file_is_named_by_file_and_line(recordings: Path) -> None:
    folder = recordings.parent
    voxplug("data", "create", "my-voice", "--language", "en", cwd=folder)
    (folder / "texts.txt").write_text("hello there\n   \n", encoding="utf-8")
    clips = ["recordings/en_gb_000.wav", "recordings/en_gb_001.wav"]
    result = voxplug("data", "add", "my-voice", *clips, "--texts-file", "texts.txt", cwd=folder)
    assert result.returncode == 1 and "added recordings/en_gb_000.wav" in result.stdout
    [line] = error_lines(result)
    assert line.startswith("error: texts.txt line 2 (for en_gb_001.wav): the transcript holds only whitespace")


@pytest.mark.slow
def test_validate_measures_durations_a_manifest_leaves_out(tmp_path: Path) -> None:
    import soundfile

    rows = []
    for name in ("en_us_000.wav", "en_us_001.wav", "en_us_002.wav"):
        shutil.copy(SPEECH / name, tmp_path / name)
        rows.append(json.dumps({"audio_path": name, "text": "some words", "language": "en"}))
    (tmp_path / "manifest.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = voxplug("data", "validate", "manifest.jsonl", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    seconds = sum(
        soundfile.info(tmp_path / name).duration for name in ("en_us_000.wav", "en_us_001.wav", "en_us_002.wav")
    )
    assert report["seconds"] == pytest.approx(seconds, abs=0.01) and report["hours"] > 0
    assert report["durations"]["0-1s"] == 0 and sum(report["durations"].values()) == 3


# -- 6. a port that is taken -----------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.mark.parametrize("command", [["app"], ["demo", "--model", "no-such-model-folder"]])
def test_asking_for_a_busy_port_is_one_line(tmp_path: Path, busy_port: int, command: list[str]) -> None:
    result = voxplug(*command, "--port", str(busy_port), cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    [line] = error_lines(result)
    assert line.startswith(f"error: port {busy_port} on 127.0.0.1 is in use") and "--port" in line


@pytest.mark.slow
def test_the_app_prints_the_port_it_serves_on_when_the_first_is_busy(tmp_path: Path, busy_port: int) -> None:
    env = {**os.environ, "GRADIO_SERVER_PORT": str(busy_port), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-m", "voxplug", "app", "--root", str(tmp_path / "workspaces")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        served = re.search(r"serving on (http://127\.0\.0\.1:(\d+)) ", first)
        assert served and int(served.group(2)) != busy_port, first
        assert _answers(served.group(1), process)
    finally:
        process.terminate()
        process.communicate(timeout=60)


def _answers(url: str, process: subprocess.Popen[str], timeout: float = 120) -> bool:
    """Whether ``url`` answers 200 once the server is up (False if the process ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.5)
    return False
