"""What a finished run hands to publishers: the model folder, its ``voxplug.json`` and the run's results.

A training run writes::

    runs/<name>/model/               the final model: a LoRA adapter or a full model, the processor, voxplug.json
    runs/<name>/merged/              optional: the adapter merged into its base (a full model)
    runs/<name>/train_results.json   steps, runtime, loss, hardware
    runs/<name>/eval_results.json    eval_loss, eval_wer, eval_cer, eval_samples
    runs/<name>/training_config.json the resolved run config
    runs/<name>/curves.png           training curves
    runs/<name>/checkpoints/ ...     never published

:func:`find_publishable_model` accepts the run folder or the model folder, checks that the model folder is
complete (naming every missing file) and reads the metadata. Nothing here imports torch or the Hub client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from voxplug.errors import PublishError

MODEL_INFO_FILE = "voxplug.json"
RESULT_FILES = ("train_results.json", "eval_results.json", "training_config.json")
CURVES_FILE = "curves.png"

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
FULL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tekken.json", "tokenizer.json", "tokenizer.model", "vocab.json")
PROCESSOR_CONFIGS = ("processor_config.json", "preprocessor_config.json")

ModelKind = Literal["adapter", "full"]


@dataclass
class PublishableModel:
    """A complete model folder and what the run around it recorded.

    ``info`` is ``voxplug.json`` (family, base_model, method, kind, languages, datasets, voxplug_version);
    ``run_dir`` is the run folder when the model folder sits in one (it holds the results files), else None.
    """

    model_dir: Path
    info: dict[str, Any]
    run_dir: Path | None = None
    merged_dir: Path | None = None
    train_results: dict[str, Any] = field(default_factory=dict)
    eval_results: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> ModelKind:
        """``adapter`` (a PEFT adapter that needs its base model) or ``full`` (a standalone model)."""
        return self.info["kind"]

    @property
    def base_model(self) -> str:
        """The checkpoint the run started from (a Hub id, normally)."""
        return str(self.info.get("base_model") or "")

    @property
    def languages(self) -> list[str]:
        """ISO 639-1 codes of the training data, as recorded in ``voxplug.json``."""
        return [str(code) for code in self.info.get("languages") or []]

    @property
    def datasets(self) -> list[str]:
        """The datasets the run trained on, as recorded in ``voxplug.json``."""
        return [str(name) for name in self.info.get("datasets") or []]

    @property
    def name(self) -> str:
        """The run's name: ``name`` from the training config, else the run (or model) folder's name."""
        return str(self.training_config.get("name") or (self.run_dir or self.model_dir).name)

    def result_files(self) -> list[Path]:
        """The run's results files that exist (published beside the model)."""
        if self.run_dir is None:
            return []
        return [self.run_dir / name for name in (*RESULT_FILES, CURVES_FILE) if (self.run_dir / name).is_file()]


def find_publishable_model(path: str | Path) -> PublishableModel:
    """Read a run folder (``runs/<name>``) or a model folder (``runs/<name>/model``) and check it is complete.

    Raises :class:`PublishError` naming the folder and every missing file when the model cannot be published.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise PublishError(f"{path}: no such folder (expected a run folder or its model/ folder)")
    model_dir, run_dir = _locate_model_dir(path)
    info = read_model_info(model_dir)
    check_model_files(model_dir, info["kind"])
    merged_dir = run_dir / "merged" if run_dir is not None and (run_dir / "merged").is_dir() else None
    if merged_dir is not None:
        check_model_files(merged_dir, "full", need_processor=False)
    return PublishableModel(
        model_dir=model_dir,
        info=info,
        run_dir=run_dir,
        merged_dir=merged_dir,
        train_results=_read_optional_json(run_dir, "train_results.json"),
        eval_results=_read_optional_json(run_dir, "eval_results.json"),
        training_config=_read_optional_json(run_dir, "training_config.json"),
    )


def _locate_model_dir(path: Path) -> tuple[Path, Path | None]:
    """Return ``(model folder, run folder or None)`` for a run folder or a model folder."""
    if (path / "model" / MODEL_INFO_FILE).is_file() or (path / "model").is_dir():
        return path / "model", path
    if (path / MODEL_INFO_FILE).is_file():
        parent = path.parent
        is_run = any((parent / name).is_file() for name in RESULT_FILES)
        return path, parent if is_run else None
    raise PublishError(
        f"{path}: neither a run folder (no model/ inside) nor a model folder (no {MODEL_INFO_FILE}); "
        "pass runs/<name> or runs/<name>/model"
    )


def read_model_info(model_dir: Path) -> dict[str, Any]:
    """Read and check ``voxplug.json``: ``kind`` must be adapter or full, and an adapter needs ``base_model``."""
    info_path = model_dir / MODEL_INFO_FILE
    if not info_path.is_file():
        raise PublishError(f"{model_dir}: incomplete model folder, missing {MODEL_INFO_FILE}")
    info = _read_json(info_path)
    kind = info.get("kind")
    if kind not in ("adapter", "full"):
        raise PublishError(f"{info_path}: 'kind' must be 'adapter' or 'full', got {kind!r}")
    if kind == "adapter" and not info.get("base_model"):
        raise PublishError(f"{info_path}: an adapter needs 'base_model' (the checkpoint it was trained on)")
    for key in ("languages", "datasets"):
        if not isinstance(info.get(key, []), list):
            raise PublishError(f"{info_path}: {key!r} must be a list, got {info[key]!r}")
    return info


def missing_model_files(model_dir: Path, kind: ModelKind, *, need_processor: bool = True) -> list[str]:
    """The files (or alternatives, joined by ``|``) a model folder of this kind lacks; empty when complete."""
    wanted: list[tuple[str, ...]] = (
        [(ADAPTER_CONFIG,), ADAPTER_WEIGHTS] if kind == "adapter" else [("config.json",), FULL_WEIGHTS]
    )
    if need_processor:
        wanted += [TOKENIZER_FILES, PROCESSOR_CONFIGS]
    missing = [" | ".join(options) for options in wanted if not any((model_dir / n).is_file() for n in options)]
    return missing + _missing_shards(model_dir)


def _missing_shards(model_dir: Path) -> list[str]:
    """Weight shards a ``*.index.json`` in ``model_dir`` names but the folder lacks."""
    missing: set[str] = set()
    for index in model_dir.glob("*.index.json"):
        weight_map = _read_json(index).get("weight_map", {})
        missing.update(shard for shard in weight_map.values() if not (model_dir / shard).is_file())
    return sorted(missing)


def check_model_files(model_dir: Path, kind: ModelKind, *, need_processor: bool = True) -> None:
    """Raise :class:`PublishError` naming every file a model folder of this kind lacks."""
    missing = missing_model_files(model_dir, kind, need_processor=need_processor)
    if missing:
        label = "LoRA adapter" if kind == "adapter" else "full model"
        raise PublishError(f"{model_dir}: incomplete {label} folder, missing: {', '.join(missing)}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PublishError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_optional_json(folder: Path | None, name: str) -> dict[str, Any]:
    if folder is None or not (folder / name).is_file():
        return {}
    return _read_json(folder / name)
