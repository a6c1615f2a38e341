"""The ``local`` publisher: the published repository layout, written atomically to a folder.

The folder loads like a Hub repo: ``VoxtralForConditionalGeneration.from_pretrained(folder)`` for a full
model, ``PeftModel.from_pretrained(base, folder)`` for an adapter. The files are written to a hidden sibling
folder first and renamed into place, so a crash never leaves a half-written model where a good one was.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from pydantic import Field

from voxplug.api import MODEL_INFO_FILE, PublishableModel, Publisher, PublishError, PublishResult, RepositoryOptions

DEFAULT_FOLDER = "published"


class LocalOptions(RepositoryOptions):
    """Options of the ``local`` publisher (the repository options: licence, tags, merged/).

    The folder is for this machine first, so a base model with no known Hub id keeps its local folder in
    ``voxplug.json`` and ``adapter_config.json`` (``voxplug evaluate`` and ``voxplug demo`` load it); set
    ``keep_local_base: false`` (or pass ``--base-model``) for a folder you will share.
    """

    keep_local_base: bool = Field(
        True,
        description="name a base model's local folder (one with no known Hub id) in voxplug.json and "
        "adapter_config.json, so that the folder loads on this machine; false for a folder you will share",
    )


class LocalPublisher(Publisher):
    """Writes the published layout (model, processor, card, results) to a local folder."""

    name = "local"
    description = "the Hub repository layout written to a local folder (default: runs/<name>/published)"
    Options = LocalOptions
    options: LocalOptions

    def resolve_destination(self, model: PublishableModel, destination: str | None) -> str:
        """The destination folder (default ``<run folder>/published``), refused if it holds anything else."""
        folder = (
            Path(destination).expanduser()
            if destination
            else (model.run_dir or model.model_dir.parent) / DEFAULT_FOLDER
        )
        folder = folder.resolve()
        if _overlaps_run(folder, model):
            raise PublishError(f"{folder}: cannot publish over the run's own folders; choose another destination")
        if folder.exists() and not _replaceable(folder):
            raise PublishError(
                f"{folder} exists and is not an earlier voxplug publish (no {MODEL_INFO_FILE}); "
                "choose another destination or remove it"
            )
        return str(folder)

    def publish(self, model_dir: Path, *, destination: str | None = None) -> PublishResult:
        """Copy the staged repository ``model_dir`` to ``destination``, replacing an earlier publish atomically."""
        if destination is None:
            raise PublishError("the local publisher needs a destination folder")
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
        try:
            shutil.copytree(model_dir, partial)
            _swap_into_place(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        files = sorted(path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file())
        return PublishResult(target=self.name, destination=str(target), url=target.as_uri(), files=files)


def _overlaps_run(folder: Path, model: PublishableModel) -> bool:
    """Whether ``folder`` is the run folder, or is or lies inside its model, merged or checkpoint folders."""
    if model.run_dir is not None and folder == model.run_dir.resolve():
        return True
    sources = [model.model_dir, model.merged_dir, model.run_dir / "checkpoints" if model.run_dir else None]
    return any(src is not None and (folder == src.resolve() or src.resolve() in folder.parents) for src in sources)


def _replaceable(folder: Path) -> bool:
    """An empty folder, or one an earlier publish wrote, may be replaced."""
    return folder.is_dir() and (not any(folder.iterdir()) or (folder / MODEL_INFO_FILE).is_file())


def _swap_into_place(partial: Path, target: Path) -> None:
    """Rename ``partial`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    if not target.exists():
        partial.rename(target)
        return
    previous = target.with_name(f".{target.name}.previous-{uuid.uuid4().hex[:8]}")
    target.rename(previous)
    try:
        partial.rename(target)
    except OSError:
        previous.rename(target)
        raise
    shutil.rmtree(previous, ignore_errors=True)
