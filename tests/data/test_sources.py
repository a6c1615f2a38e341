"""The data-source plugins: ``hub`` on a local Parquet dataset, ``granary`` on a local manifest, and phrases."""

from __future__ import annotations

import io
import json
import pickle
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from voxplug_granary import GranarySource
from voxplug_hub_datasets import HubDatasetSource
from voxplug_phrases import bundled_languages, bundled_phrases, choose_phrases, phrases

from voxplug.data.audio import TARGET_RATE, load_audio_16k
from voxplug.errors import DataError

GRANARY_AND_VOXFACTORY = "bg cs da de el en es et fi fr hr hu it lt lv mt nl pl pt ro ru sk sl sv uk hi".split()


def write_parquet(target: Path, rows: list[dict]) -> None:
    """A Parquet file with an ``Audio`` column in ``datasets``' layout, written with pyarrow as it is given."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = datasets.Features(
        {"audio": datasets.Audio(), "sentence": datasets.Value("string"), "locale": datasets.Value("string")}
    )
    columns = {key: [row[key] for row in rows] for key in features}
    pq.write_table(pa.Table.from_pydict(columns, schema=features.arrow_schema), target)


@pytest.fixture
def parquet_dataset(tmp_path: Path, speech_clips) -> Path:
    folder = tmp_path / "hubdata"
    folder.mkdir()
    rows = [
        {"audio": {"bytes": path.read_bytes(), "path": path.name}, "sentence": text, "locale": "en"}
        for path, text in speech_clips[:4]
    ]
    rows.append({"audio": {"bytes": None, "path": "/nowhere/lost.wav"}, "sentence": "lost", "locale": "en"})
    write_parquet(folder / "train.parquet", rows)
    eval_rows = [
        {"audio": {"bytes": path.read_bytes(), "path": path.name}, "sentence": text, "locale": "en-GB"}
        for path, text in speech_clips[4:6]
    ]
    write_parquet(folder / "validation.parquet", eval_rows)
    return folder


def hub_source(base: Path, **options: object) -> HubDatasetSource:
    defaults = {
        "repo": "parquet",
        "data_files": {"train": "hubdata/train.parquet", "validation": "hubdata/validation.parquet"},
        "text_column": "sentence",
        "language_column": "locale",
    }
    return HubDatasetSource({**defaults, **options}, base_dir=base)


@pytest.mark.parametrize("streaming", [False, True])
def test_hub_source_reads_local_parquet_without_torchcodec(parquet_dataset: Path, speech_clips, streaming: bool):
    source = hub_source(parquet_dataset.parent, streaming=streaming, eval_split="validation")
    train = list(source.examples("train"))
    assert [example.text for example in train] == [text for _, text in speech_clips[:4]]
    assert {example.language for example in train} == {"en"} and source.streaming is streaming
    expected = load_audio_16k(speech_clips[0][0]).samples
    assert np.array_equal(train[0].load_audio(), expected)
    if not streaming:  # local Arrow data is read when a batch needs it, not held by the examples
        assert train[0].audio_bytes is None and train[0].audio_path is None
        assert np.array_equal(pickle.loads(pickle.dumps(train[0])).load_audio(), expected)
    assert [str(problem) for problem in source.problems] == [
        "parquet [train] row 4: the audio is not available: no bytes and no readable file (path '/nowhere/lost.wav')"
    ]
    assert source.has_eval_split and [e.language for e in source.examples("eval")] == ["en-GB", "en-GB"]
    assert source.dataset_id() is None


def test_hub_source_names_missing_columns(parquet_dataset: Path) -> None:
    source = hub_source(parquet_dataset.parent, text_column="text")
    with pytest.raises(DataError, match=r"no column 'text' \(its columns: audio, sentence, locale; set audio_column"):
        list(source.examples())


def test_hub_source_reports_a_dataset_it_cannot_open(tmp_path: Path) -> None:
    source = HubDatasetSource({"repo": "parquet", "data_files": "nothing/*.parquet"}, base_dir=tmp_path)
    with pytest.raises(DataError, match="hub dataset 'parquet' split 'train': cannot be loaded"):
        list(source.examples())


def test_hub_source_fixed_language_and_row_cap(parquet_dataset: Path) -> None:
    source = hub_source(parquet_dataset.parent, language_column=None, language="sv", max_rows=2)
    assert [example.language for example in source.examples()] == ["sv", "sv"]
    assert HubDatasetSource({"repo": "someone/corpus"}).dataset_id() == "someone/corpus"


# --- granary ----------------------------------------------------------------------------------------------


@pytest.fixture
def granary_files(tmp_path: Path, speech_clips) -> Path:
    """A Granary-shaped manifest over a local audio root: a long recording cut by offset, a plain clip, a lost file."""
    root = tmp_path / "audio_root" / "sv" / "voxpopuli"
    root.mkdir(parents=True)
    pieces = [load_audio_16k(path).samples for path, _ in speech_clips[:2]]
    sf.write(root / "session.wav", np.concatenate(pieces), TARGET_RATE, subtype="PCM_16")
    shutil.copy(speech_clips[2][0], root / "clip.wav")
    first = len(pieces[0]) / TARGET_RATE
    rows = [
        {"audio_filepath": "/data/sv/voxpopuli/session.wav", "offset": 0.0, "duration": first, "text": "ett",
         "answer": "one", "source_lang": "sv", "target_lang": "en"},
        {"audio_filepath": "sv/voxpopuli/session.wav", "offset": first, "duration": len(pieces[1]) / TARGET_RATE,
         "text": "två", "answer": "two", "source_lang": "sv", "target_lang": "en"},
        {"audio_filepath": "sv/voxpopuli/clip.wav", "duration": sf.info(str(root / "clip.wav")).duration,
         "text": "tre", "answer": "three"},
        {"audio_filepath": "sv/voxpopuli/missing.wav", "duration": 2.0, "text": "fyra", "answer": "four"},
        {"audio_filepath": "sv/voxpopuli/../../../escape.wav", "duration": 2.0, "text": "fem", "answer": "five"},
    ]  # fmt: skip
    manifest = tmp_path / "sv_asr.jsonl"
    manifest.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n", encoding="utf-8")
    return tmp_path


def granary(base: Path, **options: object) -> GranarySource:
    defaults = {"language": "sv", "corpus": "voxpopuli", "manifest": "sv_asr.jsonl", "audio_root": "audio_root"}
    return GranarySource({**defaults, **options}, base_dir=base)


def test_granary_joins_audio_honours_offsets_and_reports_missing_audio(granary_files: Path, speech_clips) -> None:
    source = granary(granary_files)
    found = list(source.examples())
    assert [example.text for example in found] == ["ett", "två", "tre"]
    assert {example.language for example in found} == {"sv"} and not source.streaming
    for example, (path, _) in zip(found, speech_clips[:3], strict=True):
        expected = load_audio_16k(path).samples
        assert np.abs(example.load_audio() - expected).max() < 1e-3
    assert source.missing_audio == 1 and len(source.problems) == 2
    assert "audio file sv/voxpopuli/missing.wav not found in audio_root" in source.problems[0].reason
    assert "row 4" in source.problems[0].row and "not a path inside the audio root" in source.problems[1].reason


def test_granary_ast_uses_the_translation(granary_files: Path) -> None:
    found = list(granary(granary_files, task="ast").examples())
    assert [(e.text, e.language) for e in found] == [("one", "en"), ("two", "en"), ("three", "en")]


def test_granary_duration_limit_needs_no_decoding(granary_files: Path) -> None:
    example = next(iter(granary(granary_files).examples()))
    example.duration_s = 45.0
    with pytest.raises(DataError, match="45.0 s is longer than the 30 s limit"):
        example.load_audio(max_duration_s=30)


def test_granary_companion_dataset_by_file_name(granary_files: Path, speech_clips) -> None:
    companion = granary_files / "companion"
    companion.mkdir()
    clip = granary_files / "audio_root" / "sv" / "voxpopuli" / "clip.wav"
    write_parquet(
        companion / "train.parquet",
        [{"audio": {"bytes": clip.read_bytes(), "path": "clip.wav"}, "sentence": "", "locale": "sv"}],
    )
    source = granary(granary_files, audio_root=None, audio_dataset="companion")
    found = list(source.examples())
    assert [example.text for example in found] == ["tre"] and source.missing_audio == 3 and len(source.problems) == 4
    assert np.abs(found[0].load_audio() - load_audio_16k(speech_clips[2][0]).samples).max() < 1e-3
    missing = [problem for problem in source.problems if problem.code == "missing_audio"]
    assert len(missing) == 3 and "not found in audio_dataset" in missing[0].reason


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"language": "xx"}, "Granary has no language 'xx' (expected one of: bg, cs"),
        (
            {"corpus": "podcasts"},
            "Granary has no corpus 'podcasts' (expected one of: voxpopuli, ytc, yodas, librilight)",
        ),
        ({"task": "tts"}, "Input should be 'asr' or 'ast'"),
        ({"audio_root": None}, "Granary ships transcripts only: set audio_root"),
    ],
)
def test_granary_options_are_checked_before_any_work(options: dict, message: str) -> None:
    base = {"language": "sv", "corpus": "voxpopuli", "audio_root": "x"}
    with pytest.raises(ValidationError, match=re.escape(message)):
        GranarySource.Options.model_validate({**base, **options})


def test_granary_config_name() -> None:
    source = GranarySource({"language": "it", "corpus": "ytc", "audio_root": "a"})
    assert source.config_name == "it_ytc" and source.streaming and source.dataset_id() == "nvidia/Granary"


# --- phrases ----------------------------------------------------------------------------------------------


def test_bundled_phrases_cover_26_languages_with_20_each() -> None:
    assert sorted(GRANARY_AND_VOXFACTORY) == bundled_languages()
    for language in bundled_languages():
        texts = bundled_phrases(language)
        assert len(texts) >= 20 and len(set(texts)) == len(texts), language
        for text in texts:
            assert text == unicodedata.normalize("NFC", text) and text == " ".join(text.split())
            assert text[-1] in ".?!।;" and 8 <= len(text) <= 80, (language, text)


def test_phrases_are_seeded_and_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert phrases("fr", 5, seed=3) == phrases("fr", 5, seed=3) != phrases("fr", 5, seed=4)
    assert len(set(phrases("de", 100, seed=1))) == len(bundled_phrases("de"))
    assert choose_phrases("pt_BR", 2, seed=0).language == "pt"
    with pytest.raises(DataError, match="no sentences for language 'tlh'"):
        phrases("tlh")


def test_phrases_prefer_granary_and_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import voxplug_phrases

    pool = [f"Granary sentence number {index}." for index in range(50)]
    monkeypatch.setattr(voxplug_phrases, "granary_pool", lambda language: pool)
    online = choose_phrases("sv", 10, seed=1, online=True)
    assert online.source == "granary" and set(online.texts) <= set(pool)
    assert choose_phrases("hi", 3, online=True).source == "bundled"  # Hindi is not in Granary

    def offline(language: str) -> list[str]:
        raise ConnectionError("no network")

    monkeypatch.setattr(voxplug_phrases, "granary_pool", offline)
    monkeypatch.setenv("HF_TOKEN", "hf_anything")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert choose_phrases("sv", 3).source == "bundled"
    with pytest.raises(DataError, match="could not read Granary transcripts for 'sv': no network"):
        choose_phrases("sv", 3, online=True)


def test_suitable_sentences_filter() -> None:
    from voxplug_phrases import suitable_sentences

    texts = ["ok", "A good   sentence to read.", "12 34 56 78 90 11", None, "A good sentence to read.", "x" * 200]
    assert suitable_sentences(texts) == ["A good sentence to read."]


# --- registration -----------------------------------------------------------------------------------------


def test_sources_are_registered_like_third_party_plugins() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "voxplug", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    provided = {name for plugin in json.loads(result.stdout)["plugins"] for name in plugin["provides"]}
    assert {"data source:jsonl", "data source:hub", "data source:granary"} <= provided
    by_name = {plugin["name"]: plugin for plugin in json.loads(result.stdout)["plugins"]}
    assert by_name["granary"]["origin"] == by_name["hub_datasets"]["origin"] == "built-in"


def test_phrases_json_is_plain_utf8() -> None:
    import voxplug_phrases

    raw = voxplug_phrases.PHRASES_FILE.read_bytes()
    assert json.load(io.BytesIO(raw))["languages"]["en"][0] == "The weather is nice today."
