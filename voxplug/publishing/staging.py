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

No staged file names a folder of this machine (:mod:`voxplug.publishing.local_paths`): ``voxplug.json``, the
results and ``training_config.json`` are written anew with local paths rewritten, the base model is a Hub id or
left out (``adapter_config.json`` included), and the staged files are checked for the machine's folders. The one
exception is ``keep_local_base`` (on for the ``local`` publisher only): a base with no known Hub id then keeps its
local folder in ``voxplug.json`` and ``adapter_config.json``, so that a folder used on this machine loads.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from voxplug.config import SECRET_KEY
from voxplug.extension import PluginOptions
from voxplug.publishing.local_paths import (
    LOCAL_PATH,
    LocalPathScrubber,
    hub_id_of_local_model,
    is_local_path,
    refuse_local_paths,
)
from voxplug.publishing.publishable import (
    MODEL_INFO_FILE,
    PROCESSOR_CONFIGS,
    RESULT_FILES,
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
log = logging.getLogger("voxplug.publishing")
CONFIG_SIZE_LIMIT = 1024 * 1024
"""Config files larger than this are not parsed for paths (none is; vocabularies are)."""


class RepositoryOptions(PluginOptions):
    """What goes into a published repository; publishers that write the standard layout extend these options."""

    license: str = Field("apache-2.0", description="licence id for the card (Voxtral-Mini is apache-2.0)")
    tags: list[str] = Field(default_factory=list, description="extra tags for the card")
    include_merged: bool = Field(True, description="publish runs/<name>/merged as the merged/ subfolder, if present")
    datasets: list[str] = Field(
        default_factory=list,
        description="Hub dataset ids the card names besides those the run recorded (a dataset pushed after training)",
    )
    base_model: str | None = Field(
        None,
        description="the Hub id of the base model, when the run trained from a local copy of it (published files "
        "never name a local folder; without this, an adapter's files name no base)",
    )
    keep_local_base: bool = Field(
        False,
        description="name a base model's local folder (one with no known Hub id) in voxplug.json and "
        "adapter_config.json, so that the folder loads on this machine; only for folders that stay here",
    )

    @field_validator("base_model")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        """A base model named here must be a Hub repo id (``owner/name``)."""
        from voxplug.publishing.card import hub_repo_ids

        if value is not None and (is_local_path(value) or not hub_repo_ids([value])):
            raise ValueError(f"{value!r} is not a Hub repo id (owner/name)")
        return value


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
    use it. Plugins add card sections through the ``model_card_sections`` hook of ``host``. No file holds a path
    of this machine (see :mod:`voxplug.publishing.local_paths`; ``keep_local_base`` aside): what the run recorded
    is rewritten, and the staged files are checked before this returns.
    """
    from voxplug.publishing.card import model_card_text

    options = options or RepositoryOptions()
    scrubber = path_scrubber(model, options)
    public = public_model(model, scrubber, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in model_files(model.model_dir):
        _place(path, out_dir / path.name)
    _write_json(out_dir / MODEL_INFO_FILE, public.info)
    _rewrite_adapter_base(out_dir, public, scrubber)
    _rewrite_config_paths(out_dir, scrubber)
    for path in model.result_files():
        if path.name in RESULT_FILES:
            _write_json(out_dir / path.name, _public_results(public, path.name))
        else:
            _place(path, out_dir / path.name)
    if model.merged_dir is not None and options.include_merged:
        _stage_merged(public, out_dir / MERGED_FOLDER, scrubber)
    elif model.merged_dir is not None:
        public = dataclasses.replace(public, merged_dir=None)  # the card must not mention an unpublished folder
    card_id = public_destination(model_id)
    card = model_card_text(public, model_id=card_id, license=options.license, tags=options.tags, host=host)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    kept = _keep_local_base(out_dir, model, public, options)
    if public.kind == "adapter" and not public.base_model and not kept:
        log.warning(
            "the run's base model is a local folder with no known Hub id: the published adapter names no base "
            "(pass --base-model <owner/name>, the Hub id it came from, so that loaders and Spaces find it)"
        )
    refuse_local_paths(out_dir, scrubber.folders, allowed=kept)
    return sorted(path.relative_to(out_dir).as_posix() for path in out_dir.rglob("*") if path.is_file())


def _keep_local_base(
    out_dir: Path, model: PublishableModel, public: PublishableModel, options: RepositoryOptions
) -> list[str]:
    """With ``keep_local_base``, name the base model's local folder where loaders look for the base.

    Only when the base has no known Hub id, and only in ``voxplug.json`` (also ``merged/``'s) and
    ``adapter_config.json``: the card and every other file stay free of it. Returns the path kept, if any.
    """
    if not options.keep_local_base or public.base_model or not _names_local_folder(model.base_model):
        return []
    base = str(Path(model.base_model).expanduser().resolve())
    for info_path in (out_dir / MODEL_INFO_FILE, out_dir / MERGED_FOLDER / MODEL_INFO_FILE):
        if info_path.is_file():
            _write_json(info_path, {**json.loads(info_path.read_text(encoding="utf-8")), "base_model": base})
    adapter_config = out_dir / "adapter_config.json"
    if public.kind == "adapter" and adapter_config.is_file():
        config = json.loads(adapter_config.read_text(encoding="utf-8"))
        _write_json(adapter_config, {**config, "base_model_name_or_path": base})
    return [base]


def path_scrubber(model: PublishableModel, options: RepositoryOptions) -> LocalPathScrubber:
    """The scrubber for ``model``'s files: its run folder, and its base model's local folder (if it had one)."""
    recorded = model.base_model
    local_models = {recorded: published_base_model(model, options)} if _names_local_folder(recorded) else {}
    return LocalPathScrubber(run_dir=model.run_dir or model.model_dir, local_models=local_models)


def published_base_model(model: PublishableModel, options: RepositoryOptions) -> str | None:
    """The Hub id the published files name as the base model, or None when the run's base has no known Hub id.

    The ``base_model`` option wins; a recorded Hub id is kept; a local folder becomes the Hub id its path names
    (a Hugging Face cache folder), else None.
    """
    from voxplug.publishing.card import hub_repo_ids

    recorded = model.base_model
    if options.base_model:
        return options.base_model
    if not recorded:
        return None
    if not _names_local_folder(recorded) and hub_repo_ids([recorded]):
        return recorded
    return hub_id_of_local_model(recorded)


def public_model(model: PublishableModel, scrubber: LocalPathScrubber, options: RepositoryOptions) -> PublishableModel:
    """``model`` as it is published: ``voxplug.json`` and the results with local paths rewritten, the base model a
    Hub id or absent, and the ``datasets`` option's ids added."""
    base = published_base_model(model, options)
    info: dict[str, Any] = {}
    for key, value in model.info.items():
        if key == "base_model":
            if base:
                info[key] = base
        elif key == "datasets":
            named = [*model.datasets, *options.datasets]
            kept = [name for name in (scrubber.value(item) for item in named) if name and name != LOCAL_PATH]
            info[key] = list(dict.fromkeys(kept))
        else:
            info[key] = scrubber.value(value)
    if "datasets" not in info and options.datasets:
        info["datasets"] = list(dict.fromkeys(options.datasets))
    return dataclasses.replace(
        model,
        info=info,
        train_results=_without_secret_keys(scrubber.value(model.train_results)),
        eval_results=_without_secret_keys(scrubber.value(model.eval_results)),
        training_config=_without_secret_keys(scrubber.value(model.training_config)),
    )


def public_destination(model_id: str) -> str:
    """The name a card uses for where the model lives: a Hub id as it is; a local folder relative to the working
    folder when inside it, else just its name (``./published``), never a path of this machine."""
    if not (is_local_path(model_id) or Path(model_id).exists()):
        return model_id
    folder = Path(model_id).expanduser().resolve()
    try:
        relative = folder.relative_to(Path.cwd().resolve())
    except ValueError:
        relative = Path(folder.name)
    return f"./{relative.as_posix()}"


def _names_local_folder(name: str) -> bool:
    return bool(name) and (is_local_path(name) or Path(name).expanduser().exists())


def _public_results(model: PublishableModel, name: str) -> dict[str, Any]:
    return {
        "train_results.json": model.train_results,
        "eval_results.json": model.eval_results,
        "training_config.json": model.training_config,
    }[name]


def _stage_merged(model: PublishableModel, merged_out: Path, scrubber: LocalPathScrubber) -> None:
    """Copy the merged model, with the processor files beside it so ``subfolder="merged"`` loads on its own."""
    assert model.merged_dir is not None
    merged_out.mkdir()
    for path in model_files(model.merged_dir):
        if path.name != MODEL_INFO_FILE:
            _place(path, merged_out / path.name)
    for name in PROCESSOR_FILES:
        if (model.model_dir / name).is_file() and not (merged_out / name).exists():
            _place(model.model_dir / name, merged_out / name)
    _rewrite_config_paths(merged_out, scrubber)
    _write_json(merged_out / MODEL_INFO_FILE, {**model.info, "kind": "full", "merged_from_adapter": True})


def _rewrite_adapter_base(out_dir: Path, model: PublishableModel, scrubber: LocalPathScrubber) -> None:
    """Point ``base_model_name_or_path`` at the published base model's Hub id when training used a local copy,
    or leave it out when none is known (``PeftModel.from_pretrained(base, repo)`` needs only the base given)."""
    config_path = out_dir / "adapter_config.json"
    if model.kind != "adapter" or not config_path.is_file():
        return
    config = json.loads(config_path.read_text(encoding="utf-8"))
    recorded = str(config.get("base_model_name_or_path") or "")
    if not _names_local_folder(recorded):
        return
    if model.base_model:
        config["base_model_name_or_path"] = model.base_model
    else:
        config.pop("base_model_name_or_path", None)
    _write_json(config_path, scrubber.value(config))


PATH_KEYS = ("_name_or_path", "name_or_path", "base_model_name_or_path")
"""Keys of transformers' and peft's config files that may hold the folder a model was loaded from."""


def _rewrite_config_paths(folder: Path, scrubber: LocalPathScrubber) -> None:
    """In the small config files of a model folder, rewrite the :data:`PATH_KEYS` that hold a local path.

    Only those keys: tokenizer and vocabulary files hold strings such as ``</s>`` that are no paths.
    """
    for path in sorted(folder.glob("*.json")):
        if path.name in (*TOKENIZER_FILES, MODEL_INFO_FILE) or path.stat().st_size > CONFIG_SIZE_LIMIT:
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        cleaned = _rewrite_path_keys(data, scrubber)
        if cleaned != data:
            _write_json(path, cleaned)


def _rewrite_path_keys(data: Any, scrubber: LocalPathScrubber) -> Any:
    if isinstance(data, list):
        return [_rewrite_path_keys(item, scrubber) for item in data]
    if not isinstance(data, dict):
        return data
    cleaned: dict[str, Any] = {}
    for key, value in data.items():
        if key in PATH_KEYS and isinstance(value, str) and _names_local_folder(value):
            value = scrubber.path(value)
            if value is None:
                continue
        cleaned[key] = _rewrite_path_keys(value, scrubber)
    return cleaned


def _without_secret_keys(data: Any) -> Any:
    """``data`` without keys that look like secrets (``token``, ``password`` ...), at any depth."""
    if isinstance(data, dict):
        return {key: _without_secret_keys(value) for key, value in data.items() if not SECRET_KEY.search(str(key))}
    if isinstance(data, list):
        return [_without_secret_keys(item) for item in data]
    return data


def _write_json(path: Path, data: Any) -> None:
    """Write ``data`` to ``path`` as a new file (replacing a hard link to the run's file, never writing through it)."""
    path.unlink(missing_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _place(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no copy), or copy it when linking is not possible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
