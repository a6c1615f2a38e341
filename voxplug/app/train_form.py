"""The Train tab's fields, their defaults (from ``configs/`` presets and the trainers' options) and the run config
they become.

The app never builds a command line out of form values: it writes a run config YAML into the workspace
(``configs/<run>.yaml``), validates it with the same code as ``voxplug train`` (plugin options included), and the
job runs ``voxplug train -c <preset> -c <that file>``. Secrets never go into the file (the config model refuses
them anyway). The base model is one the page offers, a folder of the user's own workspace or a Hub id
(:func:`check_base_model`): never another path on the server.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from voxplug.app.hub_steps import PUSH_SCRUBBERS, repo_name
from voxplug.app.workspace import Workspace, check_name
from voxplug.config import PRESETS_DIR, RunConfig, find_preset, load_config
from voxplug.errors import ConfigError, DataError

VOXTRAL_MINI = "mistralai/Voxtral-Mini-3B-2507"
VOXTRAL_SMALL = "mistralai/Voxtral-Small-24B-2507"
QUICKSTART_PRESET = "quickstart"
TINY_MODEL = "tiny-voxtral"
"""The Train tab's choice for a tiny random offline Voxtral (``voxplug model tiny``), built on first use."""
METHODS = ("lora", "full")


@dataclass
class TrainForm:
    """Everything the Train tab asks for; :func:`default_form` fills it, :meth:`run_config` turns it into YAML."""

    dataset: str = ""
    model: str = VOXTRAL_MINI
    method: str = "lora"
    run_name: str = ""
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: str = "auto"
    effective_batch: int = 8
    learning_rate: float = 5e-5
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    freeze_audio_tower: bool = True
    scrub: bool = False
    max_train_rows: int | None = None
    max_eval_rows: int | None = 200
    logging_steps: int = 5
    eval_steps: int | None = None
    save_steps: int | None = None
    dataset_repo: str = ""
    publish_repo: str = ""
    private: bool = True
    deploy: bool = False

    @property
    def uses_hub(self) -> bool:
        """Whether the job pushes, publishes or deploys (and so needs a token)."""
        return bool(self.dataset_repo.strip() or self.publish_repo.strip() or self.deploy)

    def resolved_run_name(self) -> str:
        """The run name, or ``<dataset>-<method>-<YYYYmmdd-HHMMSS>`` taken now (each start gets its own)."""
        if self.run_name.strip():
            return check_name(self.run_name, "run")
        base = self.dataset or "voxplug"
        return check_name(f"{base}-{self.method}-{time.strftime('%Y%m%d-%H%M%S')}", "run")

    def run_config(self, workspace: Workspace, run_name: str) -> dict[str, Any]:
        """The run config this form describes, with absolute paths into ``workspace``."""
        if self.method not in METHODS:
            raise ConfigError(f"training method {self.method!r}: expected one of {', '.join(METHODS)}")
        dataset_dir = _existing_dataset(workspace, self.dataset)
        return {
            "name": run_name,
            "data": self._data_section(dataset_dir),
            "model": {"name_or_path": self.model.strip()},
            "training": self._training_section(workspace.run_path(run_name)),
            "publish": self._publish_section(),
            "deploy": {"target": None},  # the app deploys in a job step of its own, after publishing
        }

    def _data_section(self, dataset_dir: Path) -> dict[str, Any]:
        section: dict[str, Any] = {"source": "jsonl", "jsonl": {"path": str(dataset_dir / "data.jsonl")}}
        if self.scrub:
            section["scrub"] = list(PUSH_SCRUBBERS)  # the set the app scrubs its dataset pushes with
        if self.max_train_rows:
            section["max_train_rows"] = int(self.max_train_rows)
        if self.max_eval_rows:
            section["split"] = {"max_eval_rows": int(self.max_eval_rows)}
        return section

    def _training_section(self, run_dir: Path) -> dict[str, Any]:
        section: dict[str, Any] = {
            "method": self.method,
            "output_dir": str(run_dir),
            "epochs": float(self.epochs),
            "max_steps": int(self.max_steps),
            **self._batch_keys(),
            "learning_rate": float(self.learning_rate),
            "logging_steps": int(self.logging_steps),
            "eval_steps": int(self.eval_steps) if self.eval_steps else None,
            "save_steps": int(self.save_steps) if self.save_steps else None,
        }
        if self.method == "lora":
            scopes = ["language_model"] if self.freeze_audio_tower else ["language_model", "audio_tower"]
            section["lora"] = {
                "r": int(self.lora_r),
                "alpha": int(self.lora_alpha),
                "dropout": float(self.lora_dropout),
                "scopes": scopes,
            }
        else:
            section["full"] = {"train_audio_tower": not self.freeze_audio_tower}
        return section

    def _batch_keys(self) -> dict[str, Any]:
        """The form's batch as config keys: ``auto`` keeps the clips a step and lets the run choose the micro-batch;
        a fixed micro-batch accumulates up to the clips a step, which it must divide."""
        effective = int(self.effective_batch)
        if effective < 1:
            raise ConfigError(f"clips per optimizer step {effective}: expected a whole number of at least 1")
        size = str(self.batch_size).strip().lower()
        if size == "auto":
            return {"batch_size": "auto", "effective_batch": effective}
        micro = int(size) if size.isascii() and size.isdigit() else 0
        if micro < 1:
            raise ConfigError(f"batch size {self.batch_size!r}: expected auto or a whole number of at least 1")
        if effective % micro:
            raise ConfigError(
                f"clips per optimizer step {effective} is not a multiple of the batch size {micro}: choose a batch "
                "size that divides it, or auto"
            )
        return {"batch_size": micro, "grad_accum": effective // micro}

    def _publish_section(self) -> dict[str, Any]:
        repo = self.publish_repo.strip()
        if not repo:
            return {"target": None}
        return {"target": "hub", "repo_id": repo_name(repo, "model repo"), "hub": {"private": bool(self.private)}}


def check_base_model(value: str, workspace: Workspace, offered: Collection[str]) -> str:
    """The base model the form names, as the run config gets it; raises :class:`ConfigError` for anything else.

    Accepted: a choice the page offers (``offered``: the presets and the server's ``--model``), a folder inside
    ``workspace`` (relative to it, returned as an absolute path; symbolic links must stay inside too), or a Hub model
    id (``name`` or ``owner/name``) that names nothing in the workspace, where jobs run. Any other path is refused
    with the same message whether it exists or not, so the field cannot be used to probe the server's files.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    name = (value or "").strip()
    if name in offered:
        return name
    folder = _workspace_folder(workspace, name)
    if folder is not None:
        return str(folder)
    try:
        validate_repo_id(name)
        if os.path.lexists(workspace.path / name):  # the job would read this entry (a link out), not the Hub
            raise HFValidationError(name)
    except HFValidationError:
        raise ConfigError(
            f"base model {name!r}: choose one from the list, a folder of your workspace (e.g. runs/<run>/model) "
            "or a Hugging Face model id (owner/name)"
        ) from None
    return name


def _existing_dataset(workspace: Workspace, name: str) -> Path:
    if not name:
        raise DataError("choose a dataset to train on (record or upload clips in the Record tab first)")
    path = workspace.dataset_path(name)
    if not (path / "data.jsonl").is_file() or not (path / "data.jsonl").stat().st_size:
        raise DataError(f"dataset {name!r} has no clips yet: record or upload some in the Record tab")
    return path


def tiny_model_dir(root: Path) -> Path:
    """Where the app keeps the tiny offline model it builds for :data:`TINY_MODEL` (shared by all workspaces)."""
    return Path(root) / "models" / TINY_MODEL


def base_presets(method: str) -> list[str]:
    """The presets a run of ``method`` layers under the app's config: ``configs/<method>.yaml`` when it exists."""
    return [method] if (PRESETS_DIR / f"{method}.yaml").is_file() else []


def _workspace_folder(workspace: Workspace, name: str) -> Path | None:
    """``name`` as a folder inside ``workspace`` (resolved, links followed), or None when it is not one."""
    inside = workspace.path.resolve()
    try:
        folder = (inside / name).resolve()
        return folder if name and folder != inside and folder.is_relative_to(inside) and folder.is_dir() else None
    except (OSError, ValueError):
        return None


def write_run_config(form: TrainForm, workspace: Workspace) -> tuple[str, Path, RunConfig]:
    """Write the form's config to ``configs/<run>.yaml`` and validate it fully (plugin options included).

    Returns ``(run name, config path, validated config)``; raises :class:`ConfigError`/:class:`DataError` with a
    message for the page. Neither the run folder nor the config may exist yet, so a run never overwrites another
    (nor the config of a running one); the file appears whole or not at all, and a config that fails validation is
    removed again.
    """
    from voxplug.config import resolve_plugin_options
    from voxplug.plugins import get_plugin_host

    run_name = form.resolved_run_name()
    path = workspace.ensure().configs_dir / f"{run_name}.yaml"
    taken = DataError(f"a run named {run_name!r} already exists in your workspace: choose another name")
    if workspace.run_path(run_name).exists() or path.exists():
        raise taken
    text = yaml.safe_dump(form.run_config(workspace, run_name), sort_keys=False)
    if not _create_exclusively(path, text):
        raise taken
    try:
        config = load_config([*base_presets(form.method), str(path)])
        resolve_plugin_options(config, get_plugin_host().load())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return run_name, path, config


def _create_exclusively(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it exists: written whole to a temporary file, then hard-linked into place
    (which never replaces a file). Returns whether ``path`` was created."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


def default_model(presets_dir: Path = PRESETS_DIR) -> str:
    """The quickstart preset's model when it is a local folder that exists (the tiny model), else Voxtral Mini."""
    try:
        config = load_config([str(find_preset(QUICKSTART_PRESET))])
    except ConfigError:
        return VOXTRAL_MINI
    model = Path(config.model.name_or_path)
    for candidate in (model, presets_dir / model, config.base_dir / model):
        if candidate.is_dir() and (candidate / "config.json").is_file():
            return str(candidate.resolve())
    return VOXTRAL_MINI


def default_form(model: str | None = None) -> TrainForm:
    """A form holding the defaults: ``configs/lora.yaml`` (when present) over the run config's own defaults."""
    try:
        config = load_config(base_presets("lora"))
    except ConfigError:
        config = RunConfig()
    training = config.training
    lora = dict(training.plugin_tables().get("lora") or {})
    defaults = TrainForm()
    return TrainForm(
        model=model or default_model(),
        epochs=training.epochs,
        max_steps=training.max_steps,
        batch_size=str(training.batch_size),
        effective_batch=training.samples_per_step,
        learning_rate=training.learning_rate,
        lora_r=int(lora.get("r", defaults.lora_r)),
        lora_alpha=int(lora.get("alpha", defaults.lora_alpha)),
        lora_dropout=float(lora.get("dropout", defaults.lora_dropout)),
        max_train_rows=config.data.max_train_rows,
        max_eval_rows=config.data.split.max_eval_rows,
        save_steps=training.save_steps,
        eval_steps=training.eval_steps,
    )
