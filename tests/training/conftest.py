"""Fixtures for the training tests: a tiny offline Voxtral, a JSONL of the bundled speech clips, run configs."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from voxplug.testing import free_port

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "examples" / "speech" / "en"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Voxtral checkpoint (model + real Tekken processor), built once per session."""
    from voxplug_voxtral.family import VoxtralFamily

    return VoxtralFamily().build_tiny(tmp_path_factory.mktemp("tiny-voxtral"))


def write_manifest(folder: Path, rows: list[dict[str, str]], name: str = "data.jsonl") -> Path:
    """A JSONL manifest of bundled clips (audio copied beside it, so paths stay inside the dataset folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for row in rows:
        target = folder / row["file"]
        if not target.exists():
            target.write_bytes((SPEECH / row["file"]).read_bytes())
        lines.append(
            json.dumps({"id": Path(row["file"]).stem, "audio_path": row["file"], "text": row["text"], "language": "en"})
        )
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bundled_rows() -> list[dict[str, str]]:
    """The 24 bundled English clips: ``{"file", "text"}``."""
    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def rank_test_config(folder: Path, model: Path, name: str, per_device_batch: int, **overrides: Any) -> dict[str, Any]:
    """A multi-process test's run ``name`` in ``folder``: 8 training clips (2 steps an epoch at 4 clips a step over
    the processes), 3 eval clips, ``per_device_batch`` clips on each process, batches in the sampler's order."""
    rows = bundled_rows()
    train = write_manifest(folder / "data", rows[:8], "train.jsonl")
    evaluation = write_manifest(folder / "data", rows[8:11], "eval.jsonl")
    return run_config(
        folder / name,
        model,
        train,
        eval_manifest=evaluation,
        name=name,
        training__batch_size=per_device_batch,
        training__group_by_length=False,
        evaluation__max_new_tokens=4,
        **overrides,
    )


def lora_voxtral(folder: Path, dtype: str, **options: Any) -> Any:
    """The tiny Voxtral (``dtype``: fp32 or bf16) with fp32 LoRA adapters on its language model, as the ``lora``
    trainer builds it with ``options``, and with non-zero B."""
    import torch
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral.family import VoxtralFamily
    from voxplug_voxtral.loading import load_voxtral
    from voxplug_voxtral.tiny import build_tiny_voxtral

    from voxplug.config import validate_config
    from voxplug.training.context import decide

    torch.manual_seed(0)
    model, _ = load_voxtral(build_tiny_voxtral(folder), dtype="fp32", device="cpu")
    model.to({"fp32": torch.float32, "bf16": torch.bfloat16}[dtype])  # any CPU: no check for native bf16
    config = validate_config({"model": {"name_or_path": "tiny"}}, base_dir=Path.cwd())
    context = decide(config, {}, train_rows=1, world_size=1)
    model = LoraMethod(LoraOptions(**options)).prepare_model(model, VoxtralFamily(), context)
    for name, parameter in model.named_parameters():  # B starts at zero; random B makes the adapters matter
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    return model


def uneven_audio_rows(count: int = 4) -> list[dict[str, Any]]:
    """The first ``count`` bundled clips decoded as collator rows, every second transcript said twice (so the rows
    have labels of different lengths): ``{"audio", "text", "language"}``."""
    import soundfile

    rows = []
    for index, clip in enumerate(bundled_rows()[:count]):
        audio, _ = soundfile.read(SPEECH / clip["file"], dtype="float32")
        rows.append({"audio": audio, "text": " ".join([clip["text"]] * (1 + index % 2)), "language": "en"})
    return rows


@pytest.fixture(scope="session")
def speech_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL of 12 bundled clips (three speakers)."""
    return write_manifest(tmp_path_factory.mktemp("speech"), bundled_rows()[::2])


def run_config(
    tmp_path: Path, model: Path, manifest: Path, *, eval_manifest: Path | None = None, **overrides: Any
) -> dict[str, Any]:
    """A small CPU run config as a mapping (``overrides`` use dotted keys, e.g. ``training__epochs``)."""
    config: dict[str, Any] = {
        "name": "test-run",
        "data": {"source": "jsonl", "jsonl": {"path": str(manifest)}, "split": {"eval_fraction": 0.25}},
        "model": {"name_or_path": str(model)},
        "training": {
            "method": "lora",
            "output_dir": str(tmp_path / "run"),
            "epochs": 2,
            "batch_size": 2,
            "grad_accum": 1,
            "learning_rate": 5e-3,
            "logging_steps": 1,
            "save_total_limit": 2,
        },
        "evaluation": {"max_new_tokens": 8, "batch_size": 8},
        "publish": {"target": None},
    }
    if eval_manifest is not None:
        config["data"]["eval"] = {"source": "jsonl", "jsonl": {"path": str(eval_manifest)}}
    for dotted, value in overrides.items():
        node = config
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as YAML to ``path``."""
    import yaml

    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def validated(config: dict[str, Any], base_dir: Path) -> Any:
    """The :class:`RunConfig` of a mapping."""
    from voxplug.config import validate_config

    return validate_config(config, base_dir=base_dir)


def run_cli(
    args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m voxplug ARGS`` (or another module when ``args[0] == "-m"``) and return the result."""
    command = [sys.executable, *args] if args[:1] == ["-m"] else [sys.executable, "-m", "voxplug", *args]
    result = subprocess.run(
        command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{without_warnings(result.stderr)}"
        )
    return result


def without_warnings(stderr: str) -> str:
    """``stderr`` less the library warnings that every rank repeats, so that the error itself shows in CI's tail."""
    kept: list[str] = []
    skip_next = False
    for line in stderr.splitlines():
        if skip_next:
            skip_next = False
            continue
        if "Warning: " in line and ".py:" in line:  # "path.py:N: FutureWarning: ..." and the source line after it
            skip_next = True
            continue
        if "[WARNING]" in line or re.match(r"[WI]\d{4} ", line) or not line.strip():  # glog-style W1125 / I1125
            continue
        kept.append(line)
    return "\n".join(kept)


def launch_training(
    accelerate_config: str, config_path: Path, *, num_processes: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``accelerate launch --config_file configs/accelerate/<name>.yaml -m voxplug train -c CONFIG``."""
    processes = ["--num_processes", str(num_processes)] if num_processes is not None else []
    processes += ["--main_process_port", str(free_port())]
    args = ["-m", "accelerate.commands.launch", "--config_file", f"configs/accelerate/{accelerate_config}.yaml"]
    return run_cli(
        [*args, *processes, "-m", "voxplug", "train", "-c", str(config_path), "--no-progress"], cwd=REPO, env=env
    )


@pytest.fixture
def make_config(tmp_path: Path, tiny_model: Path, speech_manifest: Path) -> Callable[..., dict[str, Any]]:
    """``make_config(**overrides)``: a small run config on the tiny model and the 12-clip manifest."""

    def make(**overrides: Any) -> dict[str, Any]:
        return run_config(tmp_path, tiny_model, speech_manifest, **overrides)

    return make
