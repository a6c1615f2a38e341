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
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError
from voxplug_granary import GranarySource
from voxplug_hub_datasets import HubDatasetSource

from voxplug.data.audio import TARGET_RATE, load_audio_16k
from voxplug.data.phrases import bundled_languages, bundled_phrases, choose_phrases, phrases
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
    assert [(e.text, e.language, e.task, e.target_language) for e in found] == [
        ("one", "sv", "translate", "en"),
        ("two", "sv", "translate", "en"),
        ("three", "sv", "translate", "en"),
    ]


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
        ({"corpus": "librilight"}, "Granary has no sv_librilight (corpus 'librilight' is English only); sv has:"),
        ({"language": "sl", "corpus": "yodas"}, "Granary has no sl_yodas (corpus 'yodas' is in 23 languages"),
        ({"language": "en", "task": "ast"}, "Granary en_voxpopuli has no 'ast' split"),
    ],
)
def test_granary_options_are_checked_before_any_work(options: dict, message: str) -> None:
    base = {"language": "sv", "corpus": "voxpopuli", "audio_root": "x"}
    with pytest.raises(ValidationError, match=re.escape(message)):
        GranarySource.Options.model_validate({**base, **options})


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(None, None), ("None", None), ("null", None), ("", None), (float("nan"), None), (3.25, 3.25), ("3.25", 3.25)],
)
def test_granary_durations_as_published(duration: object, expected: float | None) -> None:
    from voxplug_granary import _duration_of

    assert _duration_of({"duration": duration}) == expected


@pytest.mark.parametrize("duration", ["abc", -1.0, 0, float("inf")])
def test_granary_durations_that_are_no_length_spoil_the_row(duration: object) -> None:
    from voxplug_granary import _duration_of

    with pytest.raises(DataError, match="duration .* is not a"):
        _duration_of({"duration": duration})


def companion_parquet(folder: Path, clips: list[tuple[Path, str]]) -> Path:
    """A local companion dataset: one Parquet file whose audio paths are the clips' file names."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"audio": {"bytes": path.read_bytes(), "path": path.name}, "sentence": "", "locale": "sv"} for path, _ in clips
    ]
    write_parquet(folder / "train.parquet", rows)
    return folder


def test_companion_is_streamed_and_matched_within_a_window(tmp_path: Path, speech_clips) -> None:
    from voxplug_granary.locate import CompanionAudio

    clips = speech_clips[:6]
    folder = companion_parquet(tmp_path / "companion", [clips[1], clips[0], clips[2], clips[4], clips[5]])
    companion = CompanionAudio(str(folder), config=None, split="train", window=2)
    items = [(number, companion.manifest_keys({"audio_filepath": f"sv/{path.name}"})) for number, (path, _) in
             enumerate(clips)]  # fmt: skip
    joined = list(companion.join(iter(items)))
    found = {number: clip for number, clip in joined}
    assert sorted(found) == list(range(6)) and found[3] is None  # clip 3 is not in the companion
    assert found[0].audio_bytes == clips[0][0].read_bytes() and not found[0].is_segment
    assert [number for number, _ in joined][:2] == [1, 0]  # yielded as the companion streams past them


def test_companion_that_matches_nothing_stops_once(tmp_path: Path, speech_clips) -> None:
    from voxplug_granary.locate import CompanionAudio, CompanionUnavailable

    folder = companion_parquet(tmp_path / "companion", speech_clips[:4])
    companion = CompanionAudio(str(folder), config=None, split="train", max_unmatched=3)
    items = iter([(number, [f"other_{number}.wav"]) for number in range(5)])
    with pytest.raises(CompanionUnavailable, match="3 rows streamed without matching any waiting manifest row"):
        list(companion.join(items))
    missing = CompanionAudio(str(folder), config="nope", split="train")
    with pytest.raises(CompanionUnavailable, match="config 'nope' split 'train': cannot be streamed"):
        list(missing.join(iter([(0, ["a.wav"])])))


def test_lazy_check_reads_missing_durations_and_skips_long_clips(tmp_path: Path, speech_clips, zoo) -> None:
    from voxplug.config import validate_config
    from voxplug.data.loading import load_training_data

    rows = [{"audio_path": str(path), "text": text} for path, text in speech_clips[:5]]
    rows.insert(2, {"audio_path": str(zoo["too_long"]), "text": "a long tone"})
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    raw = {"data": {"source": "jsonl", "jsonl": {"path": str(manifest), "allow_outside": True}}}
    data = load_training_data(validate_config(raw, base_dir=tmp_path), check_audio="lazy")
    assert len(data.train) + len(data.eval) == 5
    assert all(example.duration_s and example.duration_s > 0.5 for example in data.train)
    assert data.summary["rejected_counts"] == {"too_long": 1} and data.summary["unknown_durations"] == 0
    assert data.summary["rejected"][0]["reason"] == "45.0 s is longer than the 30 s limit"


def test_hub_source_local_audiofolder_and_webdataset_builders(tmp_path: Path, speech_clips) -> None:
    import tarfile

    folder = tmp_path / "af" / "train"
    folder.mkdir(parents=True)
    lines = ["file_name,sentence"]
    for path, text in speech_clips[:3]:
        shutil.copy(path, folder / path.name)
        lines.append(f'{path.name},"{text}"')
    lines.append('../../escape.wav,"outside"')
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with tarfile.open(tmp_path / "train-00000.tar", "w") as archive:
        for path, text in speech_clips[:3]:
            archive.add(path, arcname=f"{path.stem}.wav")
            payload = text.encode()
            member = tarfile.TarInfo(f"{path.stem}.txt")
            member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload))
    expected = [text for _, text in speech_clips[:3]]
    for streaming in (False, True):
        source = HubDatasetSource({"repo": "audiofolder", "data_dir": "af", "streaming": streaming}, base_dir=tmp_path)
        found = list(source.examples())
        assert [example.text for example in found] == expected
        assert [str(problem) for problem in source.problems] == [
            "audiofolder [train] row 3: file_name '../../escape.wav' is not a path inside the dataset folder"
        ]
        assert source.notices == [
            "hub dataset 'audiofolder': transcripts from column 'sentence' (set text_column to choose)"
        ]
        webdataset = HubDatasetSource(
            {"repo": "webdataset", "data_files": {"train": "train-*.tar"}, "streaming": streaming}, base_dir=tmp_path
        )
        shards = list(webdataset.examples())
        assert [example.text for example in shards] == expected and webdataset.problems == []
        assert np.array_equal(shards[0].load_audio(), load_audio_16k(speech_clips[0][0]).samples)


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


def test_phrases_prefer_granary_and_fall_back(monkeypatch: pytest.MonkeyPatch, plugin_host: Any) -> None:
    """The built-in Granary plugin answers ``reading_phrases`` for its 25 languages; any failure falls back."""
    import voxplug_granary.phrases

    pool = [f"Granary sentence number {index}." for index in range(50)]
    monkeypatch.setattr(voxplug_granary.phrases, "granary_pool", lambda language: pool)
    online = choose_phrases("sv", 10, seed=1, online=True)
    assert online.source == "granary" and set(online.texts) <= set(pool)
    assert choose_phrases("hi", 3, online=True).source == "bundled"  # Hindi is not in Granary

    def offline(language: str) -> list[str]:
        raise ConnectionError("no network")

    monkeypatch.setattr(voxplug_granary.phrases, "granary_pool", offline)
    monkeypatch.setenv("HF_TOKEN", "hf_anything")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert choose_phrases("sv", 3).source == "bundled"
    with pytest.raises(DataError, match="could not read online sentences for 'sv': no network"):
        choose_phrases("sv", 3, online=True)


def test_hook_reading_phrases_lets_a_plugin_offer_a_corpus(
    monkeypatch: pytest.MonkeyPatch, register_plugin: Any
) -> None:
    """A third-party corpus answers before Granary (last registered runs first); unreadable lengths are dropped."""
    from voxplug import hookimpl

    class CorpusPlugin:
        @hookimpl
        def reading_phrases(self, language: str) -> tuple[str, list[str]] | None:
            if language != "fr":
                return None
            return "my-corpus", ["Une phrase assez longue pour être lue.", "Non", "Encore une phrase à lire ici."]

    register_plugin(CorpusPlugin(), name="corpus")
    monkeypatch.setenv("HF_TOKEN", "hf_anything")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    chosen = choose_phrases("fr", 5, seed=0)
    assert chosen.source == "my-corpus"
    assert sorted(chosen.texts) == ["Encore une phrase à lire ici.", "Une phrase assez longue pour être lue."]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert choose_phrases("fr", 5, seed=0).source == "bundled"  # offline: the hook is not asked


def test_suitable_sentences_filter() -> None:
    from voxplug.data.phrases import suitable_sentences

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
    from voxplug.data import phrases as phrases_module

    raw = phrases_module.PHRASES_FILE.read_bytes()
    assert json.load(io.BytesIO(raw))["languages"]["en"][0] == "The weather is nice today."
