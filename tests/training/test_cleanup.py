"""Temporary files: the run's ``.tmp`` folder is empty and gone after a run, a Ctrl+C (SIGINT) and a SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from voxplug.tempfiles import RUN_TEMP_DIR, run_temp_dir, temporary_folder

from .conftest import run_cli, write_config

LEAVES_A_TEMP_FILE = '''
"""A local plugin that leaves a temporary file behind, as a library writing a partial download would."""
import tempfile
from pathlib import Path

from voxplug import hookimpl


@hookimpl
def before_train(run_dir):
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=".partial")
    handle.write(b"half a download")
    handle.close()
    (Path(run_dir).parent / "temp-file.txt").write_text(handle.name)
'''


def training_folder(tmp_path: Path, make_config, **overrides) -> tuple[Path, Path]:
    """A config (with the plugin above beside it) and its run folder."""
    (tmp_path / "voxplug_plugins.py").write_text(LEAVES_A_TEMP_FILE, encoding="utf-8")
    config = make_config(**overrides)
    return write_config(tmp_path / "run.yaml", config), Path(config["training"]["output_dir"])


def assert_nothing_left(run_dir: Path, tmp_path: Path) -> None:
    temp_file = Path((tmp_path / "temp-file.txt").read_text())
    assert temp_file.is_relative_to(run_dir / RUN_TEMP_DIR)  # libraries' temporary files went to the run's folder
    assert not temp_file.exists()
    assert not (run_dir / RUN_TEMP_DIR).exists()


@pytest.mark.slow
def test_nothing_is_left_after_a_normal_run(tmp_path: Path, make_config) -> None:
    config, run_dir = training_folder(tmp_path, make_config, training__max_steps=1, evaluation__enabled=False)
    run_cli(["train", "-c", str(config), "--no-progress"], cwd=tmp_path)
    assert (run_dir / "model").is_dir()
    assert_nothing_left(run_dir, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_nothing_is_left_after_an_interrupted_run(tmp_path: Path, make_config, signum: int) -> None:
    config, run_dir = training_folder(tmp_path, make_config, training__max_steps=500, training__epochs=100)
    process = subprocess.Popen(
        [sys.executable, "-m", "voxplug", "train", "-c", str(config)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_line(process, "step 1/")
        assert (run_dir / RUN_TEMP_DIR / str(process.pid)).is_dir()
        process.send_signal(signum)
        output = process.communicate(timeout=120)[1]
    finally:
        process.kill()
    assert process.returncode == 130, output
    assert_nothing_left(run_dir, tmp_path)


def wait_for_line(process: subprocess.Popen, text: str, timeout: float = 300) -> None:
    """Read the process's stderr until a line holds ``text``."""
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    for line in process.stderr:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no {text!r} line after {timeout} s"
    raise AssertionError(f"the process ended (status {process.wait()}) before printing {text!r}")


def test_sigterm_inside_a_temporary_folder_unwinds_and_removes_it(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), temporary_folder(tmp_path) as folder:
        (folder / "upload.wav").write_bytes(b"RIFF")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert not folder.exists()
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_killed_process_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / RUN_TEMP_DIR / dead.stdout.strip()
    (orphan / "sub").mkdir(parents=True)
    with run_temp_dir(tmp_path) as folder:
        assert not orphan.exists()
        assert tempfile.gettempdir() == str(folder)
    assert tempfile.gettempdir() != str(folder)
    assert not (tmp_path / RUN_TEMP_DIR).exists()


def test_an_interrupt_swallowed_by_c_code_is_reported_as_the_interrupt(
    tmp_path: Path, make_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM that lands in soundfile's cffi write callback is dropped there, and libsndfile then fails its
    own way (seen in CI: an empty ``AssertionError``): the run still ends as interrupted (exit 130), not failed."""
    from voxplug import tempfiles
    from voxplug.training import run as run_module

    from .conftest import validated

    def stages(self) -> None:
        try:
            tempfiles._raise_interrupt(signal.SIGTERM, None)  # the handler, called inside a C callback...
        except KeyboardInterrupt:
            pass  # ...which prints "Exception ignored" and drops it
        raise AssertionError  # then the C library's caller fails

    monkeypatch.setattr(run_module.TrainingRun, "_stages", stages)
    config = validated(make_config(), tmp_path)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM") as raised:
        run_module.train(config, progress=False)
    assert isinstance(raised.value.__cause__, AssertionError)
    assert tempfiles.pending_interrupt() is None  # forgotten once the run's signal block ends
    assert not list((Path(config.run_dir) / RUN_TEMP_DIR).glob("*"))  # the run's temp folder is gone


class _Tensors(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.full((1024,), float(index))


def test_data_loader_workers_hand_tensors_over_inside_a_deep_run_folder(tmp_path: Path) -> None:
    """Workers pass tensors through a Unix socket in multiprocessing's temporary folder, whose path may not exceed
    107 bytes: it stays outside the run folder, however deep that is, while ``tempfile`` points into it."""
    run_dir = tmp_path / ("deep-" * 20) / "runs" / "a-run-with-a-long-name"
    with run_temp_dir(run_dir) as folder:
        assert tempfile.gettempdir() == str(folder) and len(str(folder)) > 107
        loader = torch.utils.data.DataLoader(_Tensors(), batch_size=2, num_workers=2, timeout=120)
        assert [batch[:, 0].tolist() for batch in loader] == [[0.0, 1.0], [2.0, 3.0]]
