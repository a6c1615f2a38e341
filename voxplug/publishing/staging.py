"""The published repository layout, written to a folder that publishers then move, upload or pack.

Every publisher gets the same layout (``local`` copies it to a folder, ``hub`` commits it, a third-party
publisher may zip it)::

    README.md                       the model card
    adapter_model.safetensors       an adapter: adapter_config.json + weights ...
    adapter_config.json
    model.safetensors ...           ... or a full model: config.json, generation_config.json, weights (+ index)
    tekken.json, processor_config.json, ...   the processor
    voxplug.json                    family, base model, method, languages, datasets
    train_results.json, eval_results.json, training_config.json, curves.png   what the run recorded
    merged/                         optional: the adapter merged into its base (a full model + processor)

Only top-level files of the model folder that match :data:`PUBLISHED_PATTERNS` are taken, so checkpoints,
optimizer and scheduler state, RNG state, ``training_args.bin`` (which can hold a Hub token) and logs never are.
Large files are hard-linked into the staging folder when the file system allows it, so staging costs no copy.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from voxplug.config import SECRET_KEY
from voxplug.extension import PluginOptions
from voxplug.publishing.publishable import (
    MODEL_INFO_FILE,
    PROCESSOR_CONFIGS,
    TOKENIZER_FILES,
    PublishableModel,
)

if TYPE_CHECKING:
    from voxplug.plugins import PluginHost

PUBLISHED_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "*.jinja",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "pytorch_model*.bin",
    "adapter_model.bin",
)
NEVER_PUBLISHED = (
    "README.md",
    "trainer_state.json",
    "training_args.bin",
    "optimizer*",
    "scheduler*",
    "scaler*",
    "rng_state*",
    "*.pt",
    "*.pth",
    ".*",
)
PROCESSOR_FILES = (
    *TOKENIZER_FILES,
    *PROCESSOR_CONFIGS,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
)
MERGED_FOLDER = "merged"


class RepositoryOptions(PluginOptions):
    """What goes into a published repository; publishers that write the standard layout extend these options."""

    license: str = Field("apache-2.0", description="licence id for the card (Voxtral-Mini is apache-2.0)")
    tags: list[str] = Field(default_factory=list, description="extra tags for the card")
    include_merged: bool = Field(True, description="publish runs/<name>/merged as the merged/ subfolder, if present")
    datasets: list[str] = Field(
        default_factory=list,
        description="Hub dataset ids the card names besides those the run recorded (a dataset pushed after training)",
    )


def is_published_file(name: str) -> bool:
    """Whether a top-level file of a model folder belongs in the published repository."""
    if any(fnmatch.fnmatch(name, pattern) for pattern in NEVER_PUBLISHED):
        return False
    return any(fnmatch.fnmatch(name, pattern) for pattern in PUBLISHED_PATTERNS)


def model_files(folder: Path) -> list[Path]:
    """The files of ``folder`` (top level only) that a published repository takes."""
    return sorted(path for path in folder.iterdir() if path.is_file() and is_published_file(path.name))


def stage_repository(
    model: PublishableModel,
    out_dir: Path,
    *,
    model_id: str,
    options: RepositoryOptions | None = None,
    host: PluginHost | None = None,
) -> list[str]:
    """Write the published layout of ``model`` into the empty folder ``out_dir``; return its files, sorted.

    ``model_id`` is where the model will live (a Hub repo id or a folder): the card's title and usage snippet
    use it. Plugins add card sections through the ``model_card_sections`` hook of ``host``.
    """
    from voxplug.publishing.card import model_card_text

    options = options or RepositoryOptions()
    if options.datasets:
        named = list(dict.fromkeys([*model.datasets, *options.datasets]))
        model = dataclasses.replace(model, info={**model.info, "datasets": named})
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in model_files(model.model_dir):
        _place(path, out_dir / path.name)
    if options.datasets and (out_dir / MODEL_INFO_FILE).is_file():  # the published voxplug.json names them too
        _write_json_copy(out_dir / MODEL_INFO_FILE, model.info)
    _rewrite_adapter_base(out_dir, model)
    for path in model.result_files():
        _place(path, out_dir / path.name)
    _sanitise_json(out_dir / "training_config.json")
    if model.merged_dir is not None and options.include_merged:
        _stage_merged(model, out_dir / MERGED_FOLDER)
    elif model.merged_dir is not None:
        model = dataclasses.replace(model, merged_dir=None)  # the card must not mention an unpublished folder
    card = model_card_text(model, model_id=model_id, license=options.license, tags=options.tags, host=host)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    return sorted(path.relative_to(out_dir).as_posix() for path in out_dir.rglob("*") if path.is_file())


def _stage_merged(model: PublishableModel, merged_out: Path) -> None:
    """Copy the merged model, with the processor files beside it so ``subfolder="merged"`` loads on its own."""
    assert model.merged_dir is not None
    merged_out.mkdir()
    for path in model_files(model.merged_dir):
        if path.name != MODEL_INFO_FILE:
            _place(path, merged_out / path.name)
    for name in PROCESSOR_FILES:
        if (model.model_dir / name).is_file() and not (merged_out / name).exists():
            _place(model.model_dir / name, merged_out / name)
    info = {**model.info, "kind": "full", "merged_from_adapter": True}
    (merged_out / MODEL_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _rewrite_adapter_base(out_dir: Path, model: PublishableModel) -> None:
    """Point ``base_model_name_or_path`` at the Hub id from voxplug.json when training used a local copy."""
    config_path = out_dir / "adapter_config.json"
    if model.kind != "adapter" or not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    recorded = str(config.get("base_model_name_or_path") or "")
    if recorded != model.base_model and (not recorded or os.path.isabs(recorded) or Path(recorded).exists()):
        config["base_model_name_or_path"] = model.base_model
        _write_json_copy(config_path, config)


def _sanitise_json(path: Path) -> None:
    """Drop keys that look like secrets (``token``, ``password`` ...) from a JSON file, at any depth."""
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    cleaned = _without_secret_keys(data)
    if cleaned != data:
        _write_json_copy(path, cleaned)


def _without_secret_keys(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _without_secret_keys(value) for key, value in data.items() if not SECRET_KEY.search(str(key))}
    if isinstance(data, list):
        return [_without_secret_keys(item) for item in data]
    return data


def _write_json_copy(path: Path, data: Any) -> None:
    """Replace ``path`` (possibly a hard link to the run's file) by a new file holding ``data``."""
    path.unlink()
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no copy), or copy it when linking is not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
