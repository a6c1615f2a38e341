"""Train/eval split (seeded, per language, useful for tiny datasets) and ``load_training_data``."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest

from voxplug.config import SplitConfig, validate_config
from voxplug.data.interface import Example
from voxplug.data.loading import load_training_data
from voxplug.data.split import eval_row_count, split_examples
from voxplug.data.store import DatasetStore
from voxplug.errors import DataError


def examples(count: int, languages: tuple[str | None, ...] = ("en",)) -> list[Example]:
    return [
        Example(id=f"row-{index}", text=f"text {index}", language=languages[index % len(languages)])
        for index in range(count)
    ]


def ids(rows: list[Example]) -> list[str]:
    return [row.id for row in rows]


@pytest.mark.parametrize(("rows", "expected"), [(0, 0), (1, 0), (4, 0), (5, 1), (9, 1), (20, 2), (10_000, 200)])
def test_eval_row_count(rows: int, expected: int) -> None:
    assert eval_row_count(rows, SplitConfig()) == expected


def test_at_least_min_eval_rows_and_never_every_row() -> None:
    assert eval_row_count(5, SplitConfig(min_eval_rows=3)) == 3
    assert eval_row_count(5, SplitConfig(min_eval_rows=9)) == 4
    assert eval_row_count(1000, SplitConfig(eval_fraction=0.5, max_eval_rows=None)) == 500


def test_same_seed_same_split_other_seed_other_split() -> None:
    rows = examples(50)
    first = split_examples(rows, SplitConfig(seed=7))
    assert split_examples(list(rows), SplitConfig(seed=7)) == first
    assert ids(split_examples(rows, SplitConfig(seed=8))[1]) != ids(first[1])


def test_split_partitions_and_keeps_order() -> None:
    rows = examples(37, ("en", "fr"))
    train, evaluation = split_examples(rows, SplitConfig(eval_fraction=0.2))
    assert sorted(ids(train) + ids(evaluation)) == sorted(ids(rows))
    assert not set(ids(train)) & set(ids(evaluation))
    order = {row.id: index for index, row in enumerate(rows)}
    assert [order[i] for i in ids(train)] == sorted(order[i] for i in ids(train))


def test_every_language_is_held_out_when_the_budget_allows() -> None:
    rows = examples(40, ("en",)) + examples(4, ("fr",)) + examples(2, ("hi",))
    for index, row in enumerate(rows):
        row.id = f"{row.language}-{index}"
    _train, evaluation = split_examples(rows, SplitConfig(eval_fraction=0.1))
    assert Counter(row.language for row in evaluation) == {"en": 3, "fr": 1, "hi": 1}


def test_a_language_with_one_row_stays_in_training() -> None:
    rows = [*examples(20, ("en",)), Example(id="only-mt", text="x", language="mt")]
    train, evaluation = split_examples(rows, SplitConfig())
    assert "only-mt" in ids(train) and len(evaluation) == 2


def test_without_by_language_the_split_ignores_languages() -> None:
    rows = examples(100, ("en", "fr", "de", "sv"))
    _train, evaluation = split_examples(rows, SplitConfig(by_language=False, seed=1))
    assert len(evaluation) == 10


def test_split_properties_hold_for_many_shapes() -> None:
    rng = random.Random(0)
    for _ in range(300):
        count = rng.randint(0, 60)
        pool = tuple(rng.sample(["en", "fr", "de", None], rng.randint(1, 4)))
        config = SplitConfig(
            eval_fraction=rng.choice([0.0, 0.1, 0.3]), min_eval_rows=rng.randint(0, 3), seed=rng.randint(0, 9)
        )
        rows = [Example(id=str(index), text="t", language=rng.choice(pool)) for index in range(count)]
        train, evaluation = split_examples(rows, config)
        assert len(train) + len(evaluation) == count and len(evaluation) == eval_row_count(count, config)
        assert count < 5 or len(evaluation) >= min(config.min_eval_rows, count - 1)
        assert count == 0 or train
        assert split_examples(rows, config) == (train, evaluation)


# --- load_training_data -----------------------------------------------------------------------------------


def make_config(tmp_path: Path, **data: object):
    return validate_config({"data": data}, base_dir=tmp_path)


def test_load_training_data_checks_splits_and_summarises(plugin_host, filled_store: DatasetStore, zoo) -> None:
    silent = shutil.copy(zoo["silent"], filled_store.path / "audio" / "silent.wav")
    long = shutil.copy(zoo["too_long"], filled_store.path / "audio" / "long.wav")
    with (filled_store.path / "data.jsonl").open("a") as handle:
        handle.write(json.dumps({"id": "s", "audio_path": "audio/silent.wav", "text": "hush"}) + "\n")
        handle.write(json.dumps({"id": "l", "audio_path": "audio/long.wav", "text": "long"}) + "\n")
        handle.write('{"broken"\n')
        handle.write(json.dumps({"id": "e", "audio_path": "audio/long.wav", "text": "  "}) + "\n")
    config = make_config(filled_store.path, source="jsonl", jsonl={"path": "data.jsonl"})
    data = load_training_data(config, plugin_host)
    assert (len(data.train), len(data.eval)) == (5, 1)
    assert all(example.duration_s and example.duration_s > 1 for example in data.train + data.eval)
    summary = data.summary
    assert {"train_rows", "eval_rows", "train_seconds", "eval_seconds", "languages", "rejected"} <= set(summary)
    assert summary["languages"] == {"en": 6} and summary["audio_checked"] == "eager"
    reasons = {item["row"]: item["reason"] for item in summary["rejected"]}
    assert "silent" in reasons["data.jsonl line 7"] and "longer than the 30 s limit" in reasons["data.jsonl line 8"]
    assert "malformed JSON" in reasons["data.jsonl line 9"] and "empty transcript" in reasons["data.jsonl line 10"]
    assert Path(silent).exists() and Path(long).exists()


def median_duration(store: DatasetStore) -> float:
    return round(sorted(row["duration_s"] for row in store.rows())[3], 2)


@pytest.mark.parametrize("mode", ["eager", "lazy"])
def test_max_duration_rejects_rather_than_truncates(plugin_host, filled_store: DatasetStore, mode: str) -> None:
    limit = median_duration(filled_store)
    config = make_config(filled_store.path, source="jsonl", jsonl={"path": "data.jsonl"}, max_duration_s=limit)
    data = load_training_data(config, plugin_host, check_audio=mode)  # type: ignore[arg-type]
    kept = data.train + data.eval
    assert data.summary["audio_checked"] == mode
    assert all(example.duration_s <= limit for example in kept)  # lazy: the rows' recorded durations
    assert len(kept) == 4 and len(data.problems) == 2
    assert all(f"longer than the {limit:g} s limit" in problem.reason for problem in data.problems)


def test_explicit_eval_source_and_row_cap(plugin_host, filled_store: DatasetStore, speech_clips, tmp_path) -> None:
    other = DatasetStore.create(tmp_path / "eval", language="en")
    for path, text in speech_clips[10:12]:
        other.add(path, text)
    config = make_config(
        filled_store.path, source="jsonl", jsonl={"path": "data.jsonl"}, max_train_rows=4,
        eval={"source": "jsonl", "jsonl": {"path": str(other.path / "data.jsonl")}},
    )  # fmt: skip
    data = load_training_data(config, plugin_host)
    assert len(data.train) == 4 and [e.text for e in data.eval] == [text for _, text in speech_clips[10:12]]
    assert data.summary["eval_source"] == "data.eval (jsonl)"


def test_default_language_fills_rows_without_one(plugin_host, speech_clips, tmp_path) -> None:
    shutil.copytree(speech_clips[0][0].parent, tmp_path, dirs_exist_ok=True)
    lines = [json.dumps({"audio_path": path.name, "text": text}) for path, text in speech_clips[:5]]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    config = make_config(tmp_path, source="jsonl", jsonl={"path": "m.jsonl"}, language="cy")
    data = load_training_data(config, plugin_host)
    assert {e.language for e in data.train + data.eval} == {"cy"} and len(data.eval) == 1


def test_nothing_usable_is_one_clear_error(plugin_host, tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_path": "gone.wav", "text": "x"}) + "\n")
    config = make_config(tmp_path, source="jsonl", jsonl={"path": "m.jsonl"})
    with pytest.raises(DataError, match=r"no usable training rows; all 1 were rejected: m.jsonl line 1: audio file"):
        load_training_data(config, plugin_host)
