"""Open one split of a speech dataset for reading, whatever its layout, without torchcodec or FFmpeg.

``datasets`` 5 imports torchcodec to *encode* an ``Audio`` value, even a plain path, so its ``audiofolder`` and
``webdataset`` builders fail without it, streaming or not; Parquet and Arrow datasets only need their audio column
cast to ``Audio(decode=False)``. So each layout is read the way that needs neither:

* **table** (Parquet, Arrow, CSV/JSON of paths; most Hub datasets): ``load_dataset`` as usual, the audio column
  cast to ``Audio(decode=False)``;
* **webdataset** (``.tar`` shards of ``<key>.wav`` + ``<key>.txt``): ``load_dataset`` with the features declared,
  the audio keys as ``Value("binary")`` (the shard's first samples say which keys there are);
* **audiofolder** (audio files + ``metadata.csv`` / ``metadata.jsonl`` / ``metadata.parquet`` with ``file_name``):
  the metadata files are read with the ``csv`` / ``json`` / ``parquet`` builders and each ``file_name`` is found
  beside its metadata file: read from disk, fetched into the ``datasets`` cache, or (streaming) read as bytes.

Which layout a dataset has is what ``datasets.load_dataset_builder`` infers from its files.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from voxplug.api import DataError, DatasetAudio
from voxplug_hub_datasets.columns import pick_audio_column
from voxplug_hub_datasets.errors import explain_load_error

METADATA_BUILDERS = {"metadata.csv": "csv", "metadata.jsonl": "json", "metadata.parquet": "parquet"}
"""Metadata files of an audiofolder and the ``datasets`` builder that reads each."""

WEBDATASET_SAMPLES_FOR_FEATURES = 5
"""Samples of the first shard read to learn a WebDataset's keys and their types (what ``datasets`` itself reads)."""


@dataclass(frozen=True)
class DatasetRequest:
    """What to open: the arguments ``datasets.load_dataset`` receives, and a name for messages."""

    path: str
    config: str | None
    revision: str | None
    data_files: Any
    data_dir: str | None
    streaming: bool
    name: str

    def load_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``load_dataset`` and ``load_dataset_builder``."""
        return {
            "path": self.path,
            "name": self.config,
            "revision": self.revision,
            "data_files": self.data_files,
            "data_dir": self.data_dir,
        }


@dataclass
class OpenedSplit:
    """One split ready to read: its rows without decoded audio, and how to reach a row's audio.

    ``rows`` yields ``(row, audio_ref)``; ``audio_of(audio_ref)`` returns the :class:`LazyExample` fields that
    reach the audio (``audio_bytes``, ``audio_path`` or ``fetch_audio``) or raises :class:`DataError`.
    ``columns`` is None when a stream does not know them before its first row. ``shards`` is how many pieces
    (data files) a streamed table can be cut into (``open_split(..., shard=(index, shards))`` opens one), and
    ``num_rows`` the split's size when its card says it; both None when unknown.
    """

    layout: str
    columns: list[str] | None
    features: Any
    audio_column: str | None
    rows: Iterator[tuple[dict[str, Any], Any]]
    audio_of: Callable[[Any], dict[str, Any]]
    shards: int | None = None
    num_rows: int | None = None


def open_split(
    request: DatasetRequest, split: str, audio_column: str | None, *, shard: tuple[int, int] | None = None
) -> OpenedSplit:
    """Open ``split`` in the layout ``datasets`` infers for ``request`` (see the module docstring); with ``shard``
    (``(index, count)``, a streamed table only), only that piece of it (``IterableDataset.shard``)."""
    import datasets

    builder = _call(request, split, datasets.load_dataset_builder, **request.load_kwargs())
    layout = builder.name if builder.name in ("audiofolder", "webdataset") else "table"
    if layout == "table":
        return _open_table(request, split, audio_column, shard=shard)
    files = _split_files(request, builder, split)
    if layout == "webdataset":
        features = webdataset_features(request, files[0])
        return _open_table(request, split, audio_column, features=features, shard=shard)
    return _open_audiofolder(request, split, files)


def _call(request: DatasetRequest, split: str, function: Callable[..., Any], /, **kwargs: Any) -> Any:
    try:
        return function(**kwargs)
    except Exception as exc:  # datasets raises many types; all mean "this dataset/split cannot be opened"
        raise DataError(f"hub dataset {describe(request, split)}: cannot be loaded: {explain_load_error(exc)}") from exc


def describe(request: DatasetRequest, split: str) -> str:
    """``'user/x' config 'sv' split 'train'``, for messages."""
    config = f" config {request.config!r}" if request.config else ""
    return f"{request.name!r}{config} split {split!r}"


def _split_files(request: DatasetRequest, builder: Any, split: str) -> list[str]:
    data_files = builder.config.data_files or {}
    files = data_files.get(split)
    if not files:
        known = ", ".join(str(name) for name in data_files) or "none"
        raise DataError(f"hub dataset {describe(request, split)}: no such split (its splits: {known})")
    return [str(file) for file in files]


# -- table layouts (Parquet, Arrow, ...) and WebDataset ---------------------------------------------------------


def _open_table(
    request: DatasetRequest,
    split: str,
    audio_column: str | None,
    features: Any = None,
    shard: tuple[int, int] | None = None,
) -> OpenedSplit:
    import datasets

    kwargs = request.load_kwargs() | ({"features": features} if features is not None else {})
    dataset = _call(request, split, datasets.load_dataset, split=split, streaming=request.streaming, **kwargs)
    columns = dataset.column_names
    audio = audio_column or pick_audio_column(columns or [], dataset.features)
    if audio is None or (columns is not None and audio not in columns):
        return OpenedSplit("table", columns, dataset.features, audio, iter(()), _no_audio)
    feature = dataset.features.get(audio) if dataset.features is not None else None
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary")):
        try:
            dataset = dataset.cast_column(audio, datasets.Audio(decode=False))
        except Exception as exc:
            raise DataError(
                f"hub dataset {describe(request, split)}: column {audio!r} is not audio "
                f"(expected an Audio feature, file paths or file bytes): {exc}"
            ) from exc
    layout = "webdataset" if features is not None else "table"
    if request.streaming:
        shards, num_rows = dataset.num_shards, _split_size(dataset, split)
        if shard is not None:
            dataset = dataset.shard(num_shards=shard[1], index=shard[0])
        rows = ((row, row.get(audio)) for row in all_rows(dataset))
        audio_of = lambda value: _streamed_audio(value, audio)  # noqa: E731
        return OpenedSplit(layout, columns, dataset.features, audio, rows, audio_of, shards, num_rows)
    indexed = enumerate(dataset.remove_columns([audio]))
    rows = ((row, index) for index, row in indexed)
    return OpenedSplit(
        layout, columns, dataset.features, audio, rows, lambda index: _arrow_audio(dataset, index, audio)
    )


ROWS_PER_READ = 64
"""Rows a streamed dataset hands over at a time (see :func:`all_rows`)."""


def all_rows(dataset: Any) -> Iterator[dict[str, Any]]:
    """Every row of ``dataset``, in order, also when read inside a PyTorch data-loader worker.

    Iterated there directly, a ``datasets.IterableDataset`` takes itself for the loader's dataset and keeps only that
    worker's share of its files; voxplug's stream readers choose their share themselves, so a streamed dataset is
    read through ``IterableDataset.iter``, which reads every row wherever it runs.
    """
    import datasets

    if not isinstance(dataset, datasets.IterableDataset):
        yield from dataset
        return
    for batch in dataset.iter(batch_size=ROWS_PER_READ):
        columns = list(batch)
        for values in zip(*(batch[column] for column in columns), strict=True):
            yield dict(zip(columns, values, strict=True))


def _split_size(dataset: Any, split: str) -> int | None:
    """The split's row count as the dataset's card records it, or None."""
    info = getattr(dataset.info, "splits", None) or {}
    size = getattr(info.get(split), "num_examples", None)
    return int(size) if size else None


def _no_audio(_ref: Any) -> dict[str, Any]:
    raise DataError("the dataset has no audio column")


def _streamed_audio(value: Any, column: str) -> dict[str, Any]:
    """The bytes or the readable local path of a streamed row's audio cell."""
    if isinstance(value, bytes) and value:
        return {"audio_bytes": value}
    if not isinstance(value, dict):
        raise DataError(f"no audio in column {column!r} (got {type(value).__name__})")
    if value.get("bytes"):
        return {"audio_bytes": value["bytes"]}
    return {"audio_path": _readable_path(value.get("path"))}


def _arrow_audio(dataset: Any, index: int, column: str) -> dict[str, Any]:
    """A fetcher of row ``index``'s audio from the memory-mapped Arrow table, once the row is known to have some."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cell = dataset.data.fast_slice(index, 1).column(column)
    if pa.types.is_struct(cell.type):
        if pc.struct_field(cell, "bytes").null_count != 0:
            _readable_path(pc.struct_field(cell, "path").to_pylist()[0])
    elif cell.null_count != 0:
        raise DataError(f"no audio in column {column!r} (the cell is empty)")
    return {"fetch_audio": DatasetAudio(dataset, index, column)}


def _readable_path(path: str | None) -> Path:
    if path and Path(path).is_file():
        return Path(path)
    raise DataError(f"the audio is not available: no bytes and no readable file (path {path!r})")


def webdataset_features(request: DatasetRequest, first_shard: str) -> Any:
    """The features of a WebDataset, learned from its first shard's first samples, with audio keys as binary.

    This is the inference ``datasets``' own WebDataset builder makes, minus its last step (turning audio keys into
    ``Audio`` features, which needs torchcodec to write a row).
    """
    import datasets
    import pyarrow as pa
    from datasets.download.streaming_download_manager import StreamingDownloadManager
    from datasets.features.features import cast_to_python_objects
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    try:
        archive = StreamingDownloadManager().iter_archive(first_shard)
        pipeline = WebDataset._get_pipeline_from_tar(first_shard, archive)
        samples = list(itertools.islice(pipeline, WEBDATASET_SAMPLES_FOR_FEATURES))
    except Exception as exc:
        raise DataError(f"hub dataset {request.name!r}: cannot read the shard {first_shard}: {exc}") from exc
    if not samples:
        raise DataError(f"hub dataset {request.name!r}: the shard {first_shard} holds no samples")
    tables = [pa.Table.from_pylist(cast_to_python_objects([sample], only_1d_for_numpy=True)) for sample in samples]
    return datasets.Features.from_arrow_schema(pa.concat_tables(tables, promote_options="default").schema)


# -- audiofolder ------------------------------------------------------------------------------------------------


def _open_audiofolder(request: DatasetRequest, split: str, files: list[str]) -> OpenedSplit:
    metadata = [file for file in files if PurePosixPath(file).name in METADATA_BUILDERS]
    if not metadata:
        raise DataError(
            f"hub dataset {describe(request, split)}: an audiofolder without a metadata file "
            f"({', '.join(METADATA_BUILDERS)}) with file_name and a transcript column; speech recognition needs "
            "the transcripts"
        )
    tables = [(file, _metadata_table(request, split, file)) for file in metadata]
    columns = tables[0][1].column_names
    if columns is not None:
        columns = ["audio" if name == "file_name" else name for name in columns]
    rows = _audiofolder_rows(tables)
    return OpenedSplit("audiofolder", columns, tables[0][1].features, "audio", rows, _folder_audio(request.streaming))


def _metadata_table(request: DatasetRequest, split: str, file: str) -> Any:
    import datasets

    builder = METADATA_BUILDERS[PurePosixPath(file).name]
    return _call(request, split, datasets.load_dataset, path=builder, data_files=[file], split="train",
                 streaming=request.streaming)  # fmt: skip


def _audiofolder_rows(tables: list[tuple[str, Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
    for metadata_file, table in tables:
        folder = metadata_file.rsplit("/", 1)[0] if "/" in metadata_file else "."
        for row in all_rows(table):
            name = row.pop("file_name", None)
            row["audio"] = name
            yield row, (folder, name)


def _folder_audio(streaming: bool) -> Callable[[Any], dict[str, Any]]:
    """Where an audiofolder row's file is: on disk, in the ``datasets`` cache, or read as bytes when streaming."""

    def audio_of(ref: tuple[str, Any]) -> dict[str, Any]:
        folder, name = ref
        relative = _inside_folder(name)
        location = f"{folder}/{relative}"
        if "://" not in folder:
            return {"audio_path": _readable_path(location)}
        from datasets.utils.file_utils import cached_path, xopen

        try:
            if streaming:
                with xopen(location, "rb") as handle:
                    return {"audio_bytes": handle.read()}
            return {"audio_path": Path(cached_path(location))}
        except Exception as exc:
            raise DataError(f"file_name {name!r}: cannot be fetched: {explain_load_error(exc)}") from exc

    return audio_of


def _inside_folder(name: Any) -> str:
    """``name`` as a relative path inside the metadata file's folder; absolute paths, ``..`` and URLs are refused."""
    if not isinstance(name, str) or not name.strip():
        raise DataError("no file_name (expected the audio file's path relative to the metadata file)")
    path = PurePosixPath(name.replace("\\", "/"))
    if "://" in name or path.is_absolute() or ".." in path.parts:
        raise DataError(f"file_name {name!r} is not a path inside the dataset folder")
    return str(path)
