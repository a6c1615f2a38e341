"""Builders and constants for the publishing tests: run folders shaped like a finished training run."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

from voxplug.testing.hub_server import HubServer

BASE_REPO = "tester/tiny-voxtral"
READ_TOKEN = "hf_voxplug_test_read_only"
SPEECH_WAV = Path(__file__).resolve().parents[2] / "examples" / "speech" / "en" / "en_us_000.wav"


def tiny_png() -> bytes:
    """A valid 1x1 PNG, standing in for curves.png."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    )


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def write_run_extras(run_dir: Path, *, method: str) -> None:
    """Results, config, curves, predictions and a checkpoint with optimizer state, as a real run leaves them."""
    write_json(run_dir / "train_results.json", {
        "train_loss": 1.234, "train_runtime": 3725.4, "train_samples_per_second": 2.5, "global_step": 60,
        "epoch": 3.0, "hardware": {"device": "NVIDIA H100 80GB HBM3", "num_processes": 1},
    })  # fmt: skip
    write_json(
        run_dir / "eval_results.json", {"eval_loss": 0.5, "eval_wer": 0.125, "eval_cer": 0.0456, "eval_samples": 8}
    )
    write_json(run_dir / "training_config.json", {
        "name": run_dir.name,
        "model": {"name_or_path": BASE_REPO},
        "training": {"method": method, "epochs": 3.0, "batch_size": 2, "grad_accum": 4, "learning_rate": 5e-5,
                     "lr_scheduler": "linear", "precision": "bf16", "seed": 42, "lora": {"r": 4, "alpha": 8}},
        "publish": {"target": "local", "repo_id": None},
    })  # fmt: skip
    write_json(run_dir / "trainer_state.json", {"log_history": []})
    (run_dir / "curves.png").write_bytes(tiny_png())
    (run_dir / "predictions.jsonl").write_text('{"text": "private words"}\n', encoding="utf-8")
    checkpoint = run_dir / "checkpoints" / "checkpoint-60"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"optimizer state")
    (checkpoint / "adapter_model.safetensors").write_bytes(b"not the final weights")
    (checkpoint / "training_args.bin").write_bytes(b"may hold hub_token")


def model_info(kind: str, method: str) -> dict[str, Any]:
    return {
        "family": "voxtral", "base_model": BASE_REPO, "method": method, "kind": kind,
        "languages": ["en", "fr"], "datasets": ["tester/my-voice", "data/local.jsonl"], "voxplug_version": "0.1.0",
    }  # fmt: skip


def build_lora_run(run_dir: Path, base_dir: Path) -> Path:
    """runs/<name>/ with a LoRA adapter (non-zero B so it changes outputs), a merged model and the extras."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    torch.manual_seed(1)
    base = VoxtralForConditionalGeneration.from_pretrained(base_dir)
    processor = AutoProcessor.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)", task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    model.save_pretrained(run_dir / "model")
    processor.save_pretrained(run_dir / "model")
    write_json(run_dir / "model" / "voxplug.json", model_info("adapter", "lora"))
    merged = model.merge_and_unload()
    merged.save_pretrained(run_dir / "merged")
    processor.save_pretrained(run_dir / "merged")
    write_run_extras(run_dir, method="lora")
    return run_dir


def build_full_run(run_dir: Path, base_dir: Path) -> Path:
    """runs/<name>/ with a full model whose weights differ from the base."""
    import torch
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    torch.manual_seed(2)
    model = VoxtralForConditionalGeneration.from_pretrained(base_dir)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    model.save_pretrained(run_dir / "model")
    AutoProcessor.from_pretrained(base_dir).save_pretrained(run_dir / "model")
    write_json(run_dir / "model" / "voxplug.json", model_info("full", "full"))
    write_run_extras(run_dir, method="full")
    return run_dir


def hub_options(server: HubServer, **extra: Any) -> dict[str, Any]:
    """Options pointing a Hub-facing extension at ``server``, retrying fast."""
    return {"endpoint": server.url, "retry_wait_s": 0.01, **extra}


def upload_base(server: HubServer, base_dir: Path) -> None:
    """Put the tiny base model on the server as BASE_REPO (adapters name it as their base)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url, token=server.token)
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=base_dir)


def subprocess_env(server: HubServer, home: Path, **extra: str) -> dict[str, str]:
    """This process's environment pointed at ``server`` for a fresh interpreter (HF_ENDPOINT is read at import)."""
    return {**os.environ, **server.client_env(), "HF_HOME": str(home), "GRADIO_ANALYTICS_ENABLED": "False", **extra}


def build_whisper_run(run_dir: Path, base_dir: Path, kind: str) -> Path:
    """A Whisper run folder: a full model (weights nudged away from the base) or a LoRA adapter."""
    import torch
    from transformers import AutoProcessor, WhisperForConditionalGeneration

    torch.manual_seed(3)
    model = WhisperForConditionalGeneration.from_pretrained(base_dir)
    if kind == "adapter":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if kind == "full" or "lora_B" in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    model.save_pretrained(run_dir / "model")
    AutoProcessor.from_pretrained(base_dir).save_pretrained(run_dir / "model")
    info = {
        **model_info(kind, "lora" if kind == "adapter" else "full"),
        "family": "whisper",
        "base_model": str(base_dir),
    }
    write_json(run_dir / "model" / "voxplug.json", info)
    write_run_extras(run_dir, method=info["method"])
    return run_dir


def connect(url: str, process: subprocess.Popen | None = None, timeout: float = 90) -> Any:
    """A gradio_client for ``url`` once the app answers."""
    from gradio_client import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            return Client(url, verbose=False)
        except Exception:
            if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
