"""Streamed training data: JSONL line blocks, sharding over ranks and real data-loader worker processes (each row
exactly once per epoch), checks as rows pass with every drop recorded, the shuffle buffer, duration batches, and
resuming a stream exactly from a recorded position."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from voxplug.config import validate_config
from voxplug.data.loading import TrainingData, load_training_data
from voxplug.data.manifest import iter_jsonl
from voxplug.data.manifest_blocks import iter_block, plan_blocks
from voxplug.data.streaming import duration_batches, read_drops, shuffled
from voxplug.training.dataset import ExampleDataset
from voxplug.training.stream_dataset import (
    StreamCollator,
    StreamEpochs,
    StreamingTrainDataset,
    StreamPosition,
    read_position,
    streamed_summary,
    write_position,
)


def write_rows(folder: Path, speech_clips: list[tuple[Path, str]], count: int, extra: list[str] = ()) -> Path:
    """A manifest of ``count`` rows (ids r0, r1, ...) over the bundled clips, then the ``extra`` lines."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(count):
        path, text = speech_clips[index % len(speech_clips)]
        target = folder / path.name
        if not target.exists():
            target.write_bytes(path.read_bytes())
        lines.append(json.dumps({"id": f"r{index}", "audio_path": path.name, "text": text, "language": "en"}))
    manifest = folder / "train.jsonl"
    manifest.write_text("\n".join([*lines, *extra]) + "\n", encoding="utf-8")
    return manifest


def streamed(plugin_host: Any, manifest: Path, **data: Any) -> TrainingData:
    raw = {
        "data": {
            "source": "jsonl",
            "jsonl": {"path": str(manifest)},
            "streaming": True,
            "shuffle_buffer": 8,
            "split": {"max_eval_rows": 2},
            **data,
        }
    }
    return load_training_data(validate_config(raw, base_dir=manifest.parent), plugin_host, allow_stream=True)


def item_ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def reader_dataset(data: TrainingData, *, batch_size: int = 3, by_duration: bool = False, drops: Path | None = None):
    return StreamingTrainDataset(
        data.stream,
        ExampleDataset([]),
        batch_size=batch_size,
        by_duration=by_duration,
        batches_per_epoch=1,
        drops_dir=drops,
    )


def loader_of(dataset: StreamingTrainDataset, workers: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=StreamCollator(item_ids))


def ids_by_epoch(data: TrainingData, *, rank: int, world_size: int, workers: int, epochs: int) -> dict[int, list[str]]:
    """Every row id one rank's loader yields, per epoch, until each of its readers has begun epoch ``epochs``."""
    dataset = reader_dataset(data)
    readers = max(1, workers)
    dataset.place(rank=rank, world_size=world_size, readers=readers, start=StreamPosition())
    seen: dict[int, list[str]] = defaultdict(list)
    done: set[int] = set()
    for ids, tag in loader_of(dataset, workers):
        if tag.epoch >= epochs:
            done.add(tag.reader)
            if len(done) == readers:
                break
            continue
        seen[tag.epoch] += ids
    return seen


# -- JSONL blocks ------------------------------------------------------------------------------------------


def test_blocks_hold_every_line_of_a_manifest_once(tmp_path: Path) -> None:
    rng = random.Random(3)
    manifest = tmp_path / "m.jsonl"
    for case in range(25):
        lines = [json.dumps({"i": i, "text": "x" * rng.randint(0, 300)}) for i in range(rng.randint(0, 200))]
        lines = [line if rng.random() > 0.05 else "" for line in lines] + (["{not json"] if case % 3 == 0 else [])
        ending = "\n" if case % 2 else ""
        manifest.write_text("\n".join(lines) + ending, encoding="utf-8")
        plan = plan_blocks(manifest, block_bytes=rng.randint(40, 4000), min_blocks=rng.randint(1, 80))
        from_blocks = [(number, str(row)) for block in plan.blocks for number, row in iter_block(manifest, block)]
        assert from_blocks == [(number, str(row)) for number, row in iter_jsonl(manifest)], case
        assert plan.lines == len(manifest.read_text(encoding="utf-8").splitlines())


# -- sharding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pieces", ["blocks", "fewer blocks than readers", "none"])
def test_each_row_exactly_once_per_epoch_across_two_ranks_of_two_workers(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]], pieces: str
) -> None:
    manifest = write_rows(tmp_path, speech_clips, 150)
    data = streamed(plugin_host, manifest)
    assert data.stream is not None and len(data.stream.pieces.pieces) >= 4 and data.train_rows == 148
    if pieces == "fewer blocks than readers":  # three blocks for four readers: two readers share one
        thirds = plan_blocks(manifest, block_bytes=10**9, min_blocks=3).blocks
        data.stream = dataclasses.replace(data.stream, pieces=dataclasses.replace(data.stream.pieces, pieces=thirds))
    elif pieces == "none":  # every reader reads all the rows and keeps every fourth
        data.stream = dataclasses.replace(data.stream, pieces=None)
    expected = sorted(f"r{index}" for index in range(150) if f"r{index}" not in {e.id for e in data.eval})
    ranks = [ids_by_epoch(data, rank=rank, world_size=2, workers=2, epochs=2) for rank in (0, 1)]
    for epoch in (0, 1):
        every = [row for rank in ranks for row in rank[epoch]]
        assert Counter(every) == Counter(expected), epoch  # nothing twice, nothing missing
        assert set(ranks[0][epoch]).isdisjoint(ranks[1][epoch])
    assert ranks[0][0] != ranks[0][1]  # each epoch shuffles anew


def write_parquet_files(folder: Path, speech_clips: list[tuple[Path, str]], files: int, rows: int) -> list[str]:
    """``files`` Parquet files of ``rows`` rows each, with an ``Audio`` column holding the clips' bytes."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = datasets.Features({"audio": datasets.Audio(), "sentence": datasets.Value("string")})
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for file in range(files):
        clips = [speech_clips[(file * rows + row) % len(speech_clips)] for row in range(rows)]
        table = {
            "audio": [{"bytes": p.read_bytes(), "path": p.name} for p, _ in clips],
            "sentence": [t for _, t in clips],
        }
        names.append(str(folder / f"train-{file:05d}.parquet"))
        pq.write_table(pa.Table.from_pydict(table, schema=features.arrow_schema), names[-1])
    return names


@pytest.mark.slow
@pytest.mark.parametrize("files", [5, 1])
def test_a_streamed_hub_dataset_is_dealt_out_by_data_file(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]], files: int
) -> None:
    paths = write_parquet_files(tmp_path / "hub", speech_clips, files=files, rows=30 // files)
    hub = {"repo": "parquet", "data_files": {"train": paths}, "streaming": True, "text_column": "sentence"}
    raw = {"data": {"source": "hub", "hub": {**hub, "language": "en"}, "split": {"max_eval_rows": 2}}}
    data = load_training_data(validate_config(raw, base_dir=tmp_path), plugin_host, allow_stream=True)
    assert data.stream is not None and (len(data.stream.pieces.pieces) == 5 if files == 5 else not data.stream.pieces)
    ranks = [ids_by_epoch(data, rank=rank, world_size=2, workers=2, epochs=2) for rank in (0, 1)]
    if files == 5:  # rows are named by their file
        every = [f"train-{file}-{row}" for file in range(5) for row in range(6)]
    else:  # one file: every reader reads it and keeps every fourth row (datasets must not split it further)
        every = [f"train-{row}" for row in range(30)]
    assert [example.id for example in data.eval] == every[:2]
    expected = every[2:]
    for epoch in (0, 1):
        assert Counter(ranks[0][epoch] + ranks[1][epoch]) == Counter(expected), epoch
        if files == 5:
            files_read = [{row.split("-")[1] for row in rank[epoch]} for rank in ranks]
            assert files_read[0].isdisjoint(files_read[1])  # no rank reads a file another trains on


def test_a_local_granary_manifest_streams_in_blocks(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    root = tmp_path / "audio"
    root.mkdir()
    lines = []
    for index in range(80):
        path, text = speech_clips[index % len(speech_clips)]
        (root / path.name).write_bytes(path.read_bytes()) if not (root / path.name).exists() else None
        row = {"audio_filepath": f"/data/sv/{path.name}", "duration": None, "text": text, "source_lang": "sv"}
        lines.append(json.dumps(row))
    (tmp_path / "sv_asr.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    granary = {"language": "sv", "corpus": "voxpopuli", "manifest": "sv_asr.jsonl", "audio_root": "audio"}
    raw = {"data": {"source": "granary", "granary": granary, "streaming": True, "split": {"max_eval_rows": 4}}}
    data = load_training_data(validate_config(raw, base_dir=tmp_path), plugin_host, allow_stream=True)
    assert data.stream is not None and len(data.stream.pieces.pieces) > 4 and data.train_rows == 76
    ranks = [ids_by_epoch(data, rank=rank, world_size=2, workers=2, epochs=1) for rank in (0, 1)]
    assert Counter(ranks[0][0] + ranks[1][0]) == Counter(f"sv_voxpopuli-asr-{line}" for line in range(5, 81))


def test_held_out_rows_never_train(plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]) -> None:
    data = streamed(
        plugin_host, write_rows(tmp_path, speech_clips, 40), split={"max_eval_rows": 5, "eval_fraction": 0.5}
    )
    assert [example.id for example in data.eval] == ["r0", "r1", "r2", "r3", "r4"]
    seen = ids_by_epoch(data, rank=0, world_size=1, workers=0, epochs=1)
    assert sorted(seen[0]) == sorted(f"r{index}" for index in range(5, 40))


# -- checks as rows pass ------------------------------------------------------------------------------------


def test_stream_reads_only_the_eval_rows_before_training(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    missing = [json.dumps({"audio_path": f"gone-{index}.wav", "text": "lost"}) for index in range(50)]
    data = streamed(plugin_host, write_rows(tmp_path, speech_clips, 10, missing))
    assert len(data.eval) == 2 and data.summary["rejected"] == [] and data.summary["streaming"] is True
    assert data.train_rows == 58  # lines, before checks


def test_rows_dropped_as_they_pass_are_recorded_once_with_their_reasons(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]], zoo: dict[str, Path]
) -> None:
    for case in ("silent", "not_audio", "too_long"):
        (tmp_path / f"{case}.wav").write_bytes(zoo[case].read_bytes())
    bad = [
        "{not json",
        json.dumps({"audio_path": "gone.wav", "text": "a missing file"}),
        json.dumps({"audio_path": speech_clips[0][0].name, "text": "   "}),
        json.dumps({"audio_path": speech_clips[0][0].name, "text": "words", "duration_s": 45.0}),
        json.dumps({"audio_path": "not_audio.wav", "text": "not audio at all"}),
        json.dumps({"audio_path": "silent.wav", "text": "nothing said", "duration_s": 1.0}),
        json.dumps({"audio_path": "too_long.wav", "text": "far too long"}),
        json.dumps({"audio_path": speech_clips[0][0].name, "text": "words", "language": "not a language"}),
    ]
    data = streamed(plugin_host, write_rows(tmp_path, speech_clips, 12, bad), split={"max_eval_rows": 1})
    drops = tmp_path / "run" / "streamed_rows"
    dataset = reader_dataset(data, drops=drops)
    dataset.place(rank=0, world_size=1, readers=2, start=StreamPosition())
    trained = []
    for ids, tag in loader_of(dataset, 2):
        if tag.epoch > 1:
            break
        trained += ids if tag.epoch == 0 else []
    assert sorted(trained) == sorted(f"r{index}" for index in range(1, 12))
    dropped = {problem.row: problem for problem in read_drops(drops)}
    assert sorted(dropped) == [f"train.jsonl line {line}" for line in range(13, 21)]  # each once, epoch 2 too
    assert dropped["train.jsonl line 18"].code == "silent"
    assert dropped["train.jsonl line 16"].code == "too_long" and dropped["train.jsonl line 19"].code == "too_long"
    summary = streamed_summary(tmp_path / "run", data.summary, None)
    assert summary["stream_dropped_rows"] == 8 and sum(summary["rejected_counts"].values()) == 8
    assert {entry["row"] for entry in summary["rejected"]} == set(dropped)


# -- order: buffer, duration batches, resuming ------------------------------------------------------------


def test_shuffle_buffer_keeps_every_item_and_depends_on_the_seed_alone() -> None:
    items = list(range(1000))
    first = list(shuffled(items, 64, random.Random("a")))
    assert sorted(first) == items and first != items
    assert first == list(shuffled(items, 64, random.Random("a"))) != list(shuffled(items, 64, random.Random("b")))
    assert list(shuffled(items, 1, random.Random("a"))) == items  # a buffer of one keeps the order
    # the buffer holds 64 items: the n-th item out was among the first n + 64 read
    assert all(item < position + 64 for position, item in enumerate(first))


def test_duration_batches_hold_clips_of_neighbouring_durations() -> None:
    from voxplug.data.interface import Example

    durations = [1.5**index for index in range(40)]  # far enough apart that a 10% jitter cannot reorder them
    rows = [Example(id=str(index), text="x", duration_s=duration) for index, duration in enumerate(durations)]
    random.Random(0).shuffle(rows)
    batches = list(duration_batches(rows, 4, random.Random("x")))
    assert sorted(e.id for batch in batches for e in batch) == sorted(str(index) for index in range(40))
    window = sorted(durations[i] for i in range(40) if str(i) in {e.id for e in rows[:32]})
    for batch in batches[:8]:  # the first window: 32 rows, sorted, cut in fours
        ranks = sorted(window.index(example.duration_s) for example in batch)
        assert ranks == list(range(ranks[0], ranks[0] + 4)) and ranks[0] % 4 == 0
    assert [len(batch) for batch in batches] == [4] * 10


@pytest.mark.parametrize("by_duration", [False, True])
def test_a_stream_resumes_from_its_recorded_position_exactly(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]], by_duration: bool
) -> None:
    data = streamed(plugin_host, write_rows(tmp_path, speech_clips, 60), split={"max_eval_rows": 1})

    def batches(start: StreamPosition, count: int) -> tuple[list[list[str]], StreamPosition]:
        dataset = reader_dataset(data, batch_size=4, by_duration=by_duration)
        dataset.place(rank=1, world_size=2, readers=2, start=start)
        epochs = StreamEpochs(loader_of(dataset, 2), count, start)
        return list(epochs), epochs.position

    uninterrupted, _ = batches(StreamPosition(), 19)  # a rank's epoch here is about 8 batches: this crosses two
    first, position = batches(StreamPosition(), 5)  # odd: the next batch comes from the second worker
    write_position(tmp_path / "checkpoint-5", 1, 2, 2, position)
    resumed, _ = batches(read_position(tmp_path / "checkpoint-5", 1, 2, 2), 14)
    assert first + resumed == uninterrupted
    assert position.batches == 5 and set(position.readers) == {0, 1}


def test_a_position_is_refused_for_another_layout(tmp_path: Path) -> None:
    from voxplug.errors import TrainingError

    write_position(tmp_path, 0, 2, 2, StreamPosition(3, {0: (0, 2), 1: (0, 1)}))
    assert read_position(tmp_path, 0, 2, 2) == StreamPosition(3, {0: (0, 2), 1: (0, 1)})
    with pytest.raises(TrainingError, match="resume with the same number of processes"):
        read_position(tmp_path, 0, 2, 4)
    with pytest.raises(TrainingError, match="no stream position for rank 1"):
        read_position(tmp_path, 1, 2, 2)


def test_a_large_manifest_streams_unless_asked_not_to(
    plugin_host: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    manifest = write_rows(tmp_path, speech_clips, 30)
    auto = streamed(plugin_host, manifest, streaming=None, jsonl={"path": str(manifest), "stream_above_mb": 0.001})
    small = streamed(plugin_host, manifest, streaming=None)
    listed = streamed(plugin_host, manifest, streaming=False, jsonl={"path": str(manifest), "stream_above_mb": 0.001})
    assert auto.stream is not None and not auto.train
    assert small.stream is None and listed.stream is None and len(small.train) + len(small.eval) == 30
