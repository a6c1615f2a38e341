"""Pick the model family of a checkpoint from its ``config.json`` ``model_type`` (no family is named here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.errors import ModelError

if TYPE_CHECKING:
    from voxplug.config import RunConfig
    from voxplug.models.interface import ModelFamily
    from voxplug.plugins import PluginHost

ADAPTER_CONFIG = "adapter_config.json"


def read_checkpoint_config(name_or_path: str) -> dict[str, Any]:
    """The ``config.json`` of a local folder or a Hub model id (an adapter folder gives its base's config)."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return _folder_config(folder)
    if folder.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelError(f"model {name_or_path!r}: no such folder (expected a model folder or a Hub model id)")
    return _hub_config(name_or_path)


def _folder_config(folder: Path) -> dict[str, Any]:
    config_path = folder / "config.json"
    if config_path.is_file():
        return json.loads(config_path.read_text(encoding="utf-8"))
    adapter_path = folder / ADAPTER_CONFIG
    if adapter_path.is_file():
        base = json.loads(adapter_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
        if base:
            return read_checkpoint_config(base)
    raise ModelError(f"model folder {folder}: no config.json (expected a saved model or a LoRA adapter folder)")


def _hub_config(repo_id: str) -> dict[str, Any]:
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id, "config.json")
    except Exception as exc:  # offline, unknown repo, gated repo, bad id: all mean "cannot use this model"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"model {repo_id!r}: not a local folder, and its config.json could not be fetched from the Hub "
            f"({type(exc).__name__}: {reason})"
        ) from exc
    return json.loads(Path(path).read_text(encoding="utf-8"))


def detect_family(name_or_path: str, host: PluginHost) -> type[ModelFamily]:
    """The registered family whose ``model_types`` include the checkpoint's ``model_type``."""
    model_type = read_checkpoint_config(name_or_path).get("model_type")
    families = host.extensions("model family")
    for family in families.values():
        if model_type in family.model_types:
            return family
    handled = ", ".join(f"{name} ({', '.join(cls.model_types)})" for name, cls in sorted(families.items())) or "none"
    raise ModelError(
        f"model {name_or_path!r}: no installed model family handles model_type {model_type!r} (families: {handled})"
    )


def resolve_family(config: RunConfig, host: PluginHost, options: dict[str, Any] | None = None) -> ModelFamily:
    """The family instance for ``config.model``: the one named by ``model.family``, or the detected one."""
    if config.model.family:
        family_class = host.extension("model family", config.model.family)
    else:
        family_class = detect_family(config.model.name_or_path, host)
    return family_class((options or {}).get(f"model.{family_class.name}"))
