"""Publish a local dataset to the Hugging Face Hub as a real Hub dataset (``voxplug data push``).

The rows become Parquet shards (``data/train-00000-of-0000N.parquet``) with an ``Audio`` feature and the 16 kHz WAV
bytes embedded, the layout ``datasets`` writes itself, plus a dataset card; everything lands in **one commit**, in
a **private** repo unless asked otherwise. ``datasets.load_dataset(repo_id)`` then gives the same rows back.

Resumable: shards are staged in ``<dataset>/.push/`` and reused while ``data.jsonl`` is unchanged, and the Hub skips
large files it already holds (LFS / Xet), so running the same push again after a failure finishes the job without
redoing what was done. The commit itself is atomic: a failed push leaves the repo as it was.

The token comes from ``HF_TOKEN`` or ``hf auth login`` (``huggingface_hub.get_token()``); it is never a
command-line argument and never printed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.data.dataset_card import FEATURES, render_dataset_card
from voxplug.data.store import DATA_FILE, DatasetStore
from voxplug.errors import DataError, PublishError
from voxplug.publishing.hub import RetryPolicy
from voxplug.publishing.interface import PublishResult

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from voxplug.data.interface import TextScrubber
    from voxplug.plugins import PluginHost

STAGING_DIR = ".push"
SHARD_BYTES = 256 * 1024 * 1024
"""Audio bytes per Parquet shard (the Hub's viewer and ``datasets`` work well with shards of a few hundred MB)."""
_STAGING_FORMAT = 1

ProgressCallback = Callable[[str, int, "int | None"], None]
"""Called as ``progress(stage, done, total)`` with stage ``"rows"`` while shards are written."""


@dataclass
class StagedDataset:
    """A dataset laid out for the Hub in a local folder: shard names, row count, bytes."""

    folder: Path
    shards: list[str]
    rows: int
    shard_bytes: int


def push_dataset(
    path: Path,
    repo_id: str,
    *,
    private: bool = True,
    endpoint: str | None = None,
    shard_bytes: int = SHARD_BYTES,
    retry: RetryPolicy | None = None,
    progress: ProgressCallback | None = None,
    host: PluginHost | None = None,
    scrubbers: Sequence[TextScrubber] = (),
) -> PublishResult:
    """Push the dataset at ``path`` to the Hub dataset ``repo_id`` (``owner/name``, or ``name`` for your account).

    The repo is created private unless ``private=False``; an existing repo whose visibility the Hub reports
    otherwise is refused before anything is uploaded. Transient Hub failures are retried with ``retry`` (default:
    5 tries, waits from 2 s doubling). Fires ``after_publish`` (or ``on_publish_error``) on ``host`` when one is
    given. ``scrubbers`` replace personal data in the pushed transcripts (the local dataset is left as it is).
    Raises :class:`~voxplug.errors.PublishError` with the repo and the reason when anything fails; the token never
    appears in messages.
    """
    from voxplug.publishing.hub import authenticate, full_repo_id, hub_api, hub_token

    store = DatasetStore.open(path)
    retry = retry or RetryPolicy()
    token = hub_token()
    try:
        api = hub_api(endpoint)
        repo_id = full_repo_id(repo_id, authenticate(api, token, retry=retry), repo_type="dataset")
        staged = stage_dataset(store, repo_id, shard_bytes=shard_bytes, progress=progress, scrubbers=scrubbers)
        result = _upload(api, token, staged, repo_id, private=private, retry=retry)
        store.set_hub_id(repo_id)
    except (PublishError, DataError) as exc:
        _report_error(host, repo_id, exc)
        raise
    except Exception as exc:  # huggingface_hub raises HTTP and OS errors of many kinds
        error = PublishError(f"pushing {path} to the Hub dataset {repo_id}: {_without_token(str(exc), token)}")
        _report_error(host, repo_id, error)
        raise error from exc
    if host is not None:
        host.after_publish(result=result)
    return result


def _without_token(message: str, token: str) -> str:
    """The error on one line, with the token (should a library ever echo it) masked."""
    return " ".join(message.replace(token, "***").split())


def _report_error(host: PluginHost | None, repo_id: str, error: Exception) -> None:
    if host is not None:
        host.on_publish_error(target="hub", destination=repo_id, error=error)


# --- staging ----------------------------------------------------------------------------------------------


def stage_dataset(
    store: DatasetStore,
    repo_id: str,
    *,
    shard_bytes: int = SHARD_BYTES,
    progress: ProgressCallback | None = None,
    scrubbers: Sequence[TextScrubber] = (),
) -> StagedDataset:
    """Write (or reuse) the Parquet shards and the card of ``store`` in ``<store>/.push/``, transcripts scrubbed."""
    from voxplug.data.scrub import scrubbers_fingerprint

    folder = store.path / STAGING_DIR
    fingerprint = _fingerprint(store, shard_bytes, scrubbers_fingerprint(scrubbers))
    staged = _reuse_staged(folder, fingerprint)
    if staged is None:
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "data").mkdir(parents=True)
        staged = _write_shards(store, folder, shard_bytes, progress, scrubbers)
        manifest = {
            "fingerprint": fingerprint,
            "shards": staged.shards,
            "rows": staged.rows,
            "bytes": staged.shard_bytes,
        }
        (folder / "staged.json").write_text(json.dumps(manifest), encoding="utf-8")
    metadata = store.metadata
    card = render_dataset_card(
        repo_id=repo_id,
        name=metadata.get("name") or store.path.name,
        description=metadata.get("description") or "",
        licence=metadata.get("licence"),
        summary=store.summary(),
        shard_bytes=staged.shard_bytes,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return staged


def _fingerprint(store: DatasetStore, shard_bytes: int, scrubbing: str = "") -> str:
    digest = hashlib.sha256(f"{_STAGING_FORMAT}:{shard_bytes}:".encode())
    digest.update(scrubbing.encode())  # no scrubbers: the same fingerprint as before scrubbing existed
    with (store.path / DATA_FILE).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reuse_staged(folder: Path, fingerprint: str) -> StagedDataset | None:
    try:
        manifest = json.loads((folder / "staged.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    shards = manifest.get("shards", [])
    if manifest.get("fingerprint") != fingerprint or not all((folder / shard).is_file() for shard in shards):
        return None
    return StagedDataset(folder, shards, manifest["rows"], manifest["bytes"])


def _write_shards(
    store: DatasetStore,
    folder: Path,
    shard_bytes: int,
    progress: ProgressCallback | None,
    scrubbers: Sequence[TextScrubber] = (),
) -> StagedDataset:
    """Write the rows as Parquet shards of about ``shard_bytes`` audio bytes each, holding one shard in memory."""
    total = store.summary()["rows"]
    if total == 0:
        raise PublishError(f"{store.path}: the dataset has no rows to push")
    temporary: list[Path] = []
    written = rows = 0
    for batch in _batches(store, shard_bytes, scrubbers):
        target = folder / "data" / f"part-{len(temporary):05d}.parquet"
        _write_shard(batch, target)
        temporary.append(target)
        rows += len(batch["id"])
        written += target.stat().st_size
        if progress:
            progress("rows", rows, total)
    shards = []
    for index, path in enumerate(temporary):  # the final names say how many shards there are
        name = f"data/train-{index:05d}-of-{len(temporary):05d}.parquet"
        path.rename(folder / name)
        shards.append(name)
    return StagedDataset(folder, shards, rows, written)


def _batches(
    store: DatasetStore, shard_bytes: int, scrubbers: Sequence[TextScrubber] = ()
) -> Iterator[dict[str, list[Any]]]:
    from voxplug.data.scrub import scrub_rows

    columns = [column for column, _dtype in FEATURES]
    batch: dict[str, list[Any]] = {column: [] for column in columns}
    size = 0
    for row in scrub_rows(store.rows(), scrubbers):
        audio = _audio_bytes(store, row)
        batch["audio"].append({"bytes": audio, "path": f"{row['id']}.wav"})
        for column in columns:
            if column != "audio":
                batch[column].append(row.get(column))
        size += len(audio)
        if size >= shard_bytes:
            yield batch
            batch, size = {column: [] for column in columns}, 0
    if batch["id"]:
        yield batch


def _audio_bytes(store: DatasetStore, row: dict[str, Any]) -> bytes:
    from voxplug.data.manifest import resolve_inside

    relative = row.get("audio_path")
    if not isinstance(relative, str):
        raise DataError(f"{store.path}: row {row.get('id')!r} has no audio_path; run `voxplug data validate --fix`")
    path = resolve_inside(store.path, relative)
    if not path.is_file():
        raise DataError(
            f"{store.path}: row {row.get('id')!r}: audio file {relative} not found; run `voxplug data validate --fix`"
        )
    return path.read_bytes()


def _write_shard(batch: dict[str, list[Any]], target: Path) -> None:
    """One Parquet file in ``datasets``' own layout (features in the schema metadata), no torchcodec needed."""
    import datasets

    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "audio": datasets.Audio(sampling_rate=16_000, decode=True),
            "text": datasets.Value("string"),
            "language": datasets.Value("string"),
            "duration_s": datasets.Value("float64"),
            "origin": datasets.Value("string"),
            "sha256": datasets.Value("string"),
        }
    )
    plain = features.copy()
    plain["audio"] = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    # Encoding through Audio() would import torchcodec; build the struct column plainly, then cast (no decoding).
    quiet = not datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        dataset = datasets.Dataset.from_dict(batch, features=datasets.Features(plain)).cast(features)
        dataset.to_parquet(str(target))
    finally:
        if not quiet:
            datasets.enable_progress_bars()


# --- uploading --------------------------------------------------------------------------------------------


def _upload(
    api: HfApi, token: str, staged: StagedDataset, repo_id: str, *, private: bool, retry: RetryPolicy
) -> PublishResult:
    """Create the repo if needed, then upload the card and shards in one commit (old shards are deleted in it)."""
    from voxplug.publishing.hub import ensure_repo, refuse_files_containing, repo_url

    refuse_files_containing(staged.folder, token)
    ensure_repo(api, token, repo_id, repo_type="dataset", private=private, retry=retry)
    retry.run(
        lambda: api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=staged.folder,
            allow_patterns=["README.md", "data/*.parquet"],
            delete_patterns=["data/*.parquet"],
            commit_message=f"Upload {staged.rows} rows with voxplug",
            token=token,
        ),
        what=f"uploading {len(staged.shards)} shard(s) and the card to {repo_id}",
    )
    return PublishResult(
        target="hub",
        destination=repo_id,
        url=repo_url(api, repo_id, "dataset"),
        files=["README.md", *staged.shards],
        kind="dataset",
    )
