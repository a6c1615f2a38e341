"""Datasets shaped like the public ones, reached the way users reach them, through voxplug's public entry points.

The layouts come from :mod:`voxplug.testing.public_layouts` (built from the dataset cards, real espeak-ng speech) and
are served by the loopback Hub server (:mod:`voxplug.testing.hub_server`), which ``datasets`` talks to for real.
Every subprocess runs without torchcodec (a ``sitecustomize`` makes importing it fail), as on a machine without it.
Each case ends in a trained run (``voxplug train``) or one error line naming the dataset or the row; the data-stage
matrices run ``voxplug.data.loading.load_training_data`` in one subprocess per matrix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from voxplug.testing.hub_server import HubServer
from voxplug.testing.public_layouts import (
    AUDIOFOLDER,
    COMMON_VOICE,
    FLEURS,
    GRANARY,
    HUB_ORGS,
    LIBRISPEECH,
    VOXPOPULI,
    WEBDATASET,
    YODAS_GRANARY,
    PublicLayouts,
    build_public_layouts,
    publish_layouts,
)
from voxplug.testing.speech import espeak_available

WRITER = "hf_public_layouts_writer"
NO_TORCHCODEC = 'import sys\nsys.modules["torchcodec"] = None  # importing it raises ImportError, as when absent\n'

DATA_STAGE = """
import json, sys
from pathlib import Path
from voxplug.config import validate_config
from voxplug.data.loading import load_training_data
from voxplug.errors import VoxplugError

results = {}
for name, raw in json.loads(sys.argv[1]).items():
    try:
        data = load_training_data(validate_config(raw, base_dir=Path(sys.argv[2])))
    except VoxplugError as exc:
        results[name] = {"error": str(exc)}
        continue
    rows = lambda examples: [[e.id, e.text, e.language, e.duration_s, e.task, e.target_language] for e in examples]
    results[name] = {"summary": data.summary, "train": rows(data.train), "eval": rows(data.eval)}
print(json.dumps(results))
"""


@dataclass
class World:
    """The built layouts, the Hub serving them, and the environment a user's process has."""

    root: Path
    layouts: PublicLayouts
    hub: HubServer
    env: dict[str, str]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("public")
    layouts = build_public_layouts(root / "layouts")
    blocker = root / "no-torchcodec"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TORCHCODEC, encoding="utf-8")
    with HubServer(root / "hub") as hub:
        hub.add_token(WRITER, "fixtures", orgs=HUB_ORGS)
        publish_layouts(layouts, hub.url, WRITER)
        python_path = os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
        env = {**hub.client_env(), "HF_HOME": str(root / "hf-home"), "PYTHONPATH": python_path}
        env.pop("HF_HUB_OFFLINE", None)
        yield World(root, layouts, hub, env)


def run_config(world: World, name: str, source: str, options: dict[str, Any], **data: Any) -> dict[str, Any]:
    """A small CPU run config reading ``source`` with ``options``; ``data`` adds keys of ``data``."""
    return {
        "name": name,
        "data": {"source": source, source: options, "split": {"eval_fraction": 0.25}, **data},
        "model": {"name_or_path": str(world.root / "tiny")},
        "training": {
            "method": "lora",
            "output_dir": str(world.root / "runs" / name),
            "max_steps": 2,
            "batch_size": 2,
            "learning_rate": 5e-3,
            "logging_steps": 1,
        },
        "evaluation": {"max_new_tokens": 4, "batch_size": 4},
        "publish": {"target": None},
    }


def data_stage(world: World, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``load_training_data`` of each config, in one fresh process that has the user's environment."""
    done = subprocess.run(
        [sys.executable, "-c", DATA_STAGE, json.dumps(configs), str(world.root)],
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


def voxplug(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m voxplug ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "voxplug", *args],
        cwd=world.root,
        env={**os.environ, **world.env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def train(world: World, config: dict[str, Any]) -> dict[str, Any]:
    """Run ``voxplug train`` on ``config``; return the run's data summary once it has trained."""
    import yaml

    path = world.root / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # the fixtures are small, so their one long or broken row is more than the default share a run may drop
    done = voxplug(world, "train", "-c", str(path), "--no-progress", "--allow-dropped")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-4000:]}"
    run_dir = Path(config["training"]["output_dir"])
    assert (run_dir / "model" / "adapter_model.safetensors").is_file()
    assert f"run folder: {run_dir}" in done.stdout
    return json.loads((run_dir / "data_summary.json").read_text(encoding="utf-8"))


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line of a failed command."""
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def tiny(world: World, tiny_voxtral: Path) -> Path:
    """The tiny offline Voxtral, where the run configs look for it."""
    target = world.root / "tiny"
    if not target.exists():
        target.symlink_to(tiny_voxtral, target_is_directory=True)
    return target


def granary(world: World, **options: Any) -> dict[str, Any]:
    return {"audio_root": str(world.layouts.voxpopuli_audio), **options}


# --- the layouts themselves ------------------------------------------------------------------------------------


def test_layouts_have_the_shapes_of_the_cards(world: World) -> None:
    import datasets
    import soundfile as sf
    import yaml

    repos = world.layouts.repos
    card = yaml.safe_load((repos[GRANARY] / "README.md").read_text(encoding="utf-8").split("---")[1])
    configs = {config["config_name"]: config["data_files"] for config in card["configs"]}
    assert {"it_voxpopuli", "pt_voxpopuli", "pt_yodas", "en_yodas"} <= configs.keys()
    assert [entry["split"] for entry in configs["en_yodas"]] == ["asr"]  # English has no ast-en split
    assert sorted(path.name for path in (repos[GRANARY] / "pt" / "yodas").iterdir())[:2] == [
        "pt_asr_pt000.jsonl",
        "pt_asr_pt100.jsonl",
    ]
    italian = [json.loads(line) for line in (repos[GRANARY] / "it/voxpopuli/it_asr.jsonl").read_text().splitlines()]
    portuguese = [json.loads(line) for line in (repos[GRANARY] / "pt/voxpopuli/pt_asr.jsonl").read_text().splitlines()]
    assert {row["duration"] for row in italian} == {None} and {row["duration"] for row in portuguese} == {"None"}
    assert italian[0]["emotion"] == "<|emo:undefined|>" and italian[0]["audio_filepath"].startswith("voxpopuli/it/")
    longest = max(sf.info(str(world.layouts.voxpopuli_audio / row["audio_filepath"])).duration for row in italian)
    assert 30 < longest <= 40

    fleurs = datasets.load_dataset("parquet", data_files=str(repos[FLEURS] / "sv_se/train/*.parquet"), split="train")
    assert isinstance(fleurs.features["lang_id"], datasets.ClassLabel)
    assert fleurs.features["lang_id"].int2str(fleurs.data.column("lang_id")[0].as_py()) == "sv_se"
    voxpopuli = datasets.load_dataset("parquet", data_files=str(repos[VOXPOPULI] / "it/train/*.parquet"), split="train")
    assert voxpopuli.features["language"].names[5] == "it" and "normalized_text" in voxpopuli.column_names
    common_voice = datasets.load_dataset(
        "parquet", data_files=str(repos[COMMON_VOICE] / "sv-SE/train-*.parquet"), split="train"
    ).cast_column("audio", datasets.Audio(decode=False))
    first = common_voice[0]
    assert first["locale"] == "sv-SE" and sf.info(__import__("io").BytesIO(first["audio"]["bytes"])).samplerate == 48000
    companion = datasets.load_dataset(
        "parquet", data_files=str(repos[YODAS_GRANARY] / "Portuguese/asr_only/*.parquet"), split="train"
    )
    assert set(companion.column_names) == {
        "audio", "text", "utt_id", "duration", "original_audio_id", "original_audio_offset", "lang", "task",
    }  # fmt: skip


# --- Granary ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_granary_voxpopuli_long_clip_is_skipped_and_counted_not_fatal(world: World, tiny: Path) -> None:
    options = granary(world, language="it", corpus="voxpopuli")
    summary = train(world, run_config(world, "granary-it", "granary", options))
    long_row = f"granary it_voxpopuli/asr row {world.layouts.expected['granary_it_rows']}"
    assert summary["rejected"] == [
        {"row": long_row, "reason": "35.0 s is longer than the 30 s limit", "code": "too_long"}
    ]
    assert summary["rejected_counts"] == {"too_long": 1}
    assert summary["train_rows"] + summary["eval_rows"] == world.layouts.expected["granary_it_rows"] - 1
    assert summary["unknown_durations"] == 0 and summary["train_seconds"] > 0  # null durations read from the audio


@pytest.mark.slow
def test_granary_durations_none_and_yodas_companion_streamed(world: World) -> None:
    configs = {
        "pt": run_config(world, "pt", "granary", granary(world, language="pt", corpus="voxpopuli")),
        "yodas": run_config(
            world, "yodas", "granary", {"language": "pt", "corpus": "yodas", "audio_dataset": YODAS_GRANARY}
        ),
        "yodas-ast": run_config(
            world,
            "yodas-ast",
            "granary",
            {"language": "pt", "corpus": "yodas", "task": "ast", "audio_dataset": YODAS_GRANARY},
        ),
    }
    results = data_stage(world, configs)
    pt = results["pt"]["summary"]
    assert pt["train_rows"] + pt["eval_rows"] == 5 and pt["rejected"] == [] and pt["unknown_durations"] == 0
    yodas = results["yodas"]
    missing = world.layouts.expected["yodas_missing_utt_id"]
    assert yodas["summary"]["rejected"] == [
        {
            "row": "granary pt_yodas/asr row 2",
            "reason": f"audio of utt_id {missing} not found in audio_dataset '{YODAS_GRANARY}' config 'Portuguese' "
            "split 'asr_only'",
            "code": "missing_audio",
        }
    ]
    texts = sorted(row[1] for row in yodas["train"] + yodas["eval"])
    assert len(texts) == world.layouts.expected["yodas_rows"] - 1 and "Hoje o tempo está bom." in texts
    assert all(row[3] is not None for row in yodas["train"])  # the companion's own durations
    ast = results["yodas-ast"]
    assert "error" not in ast, ast
    assert {(row[2], row[4], row[5]) for row in ast["train"]} == {("pt", "translate", "en")}
    assert "The weather is nice today." in [row[1] for row in ast["train"]]
    cache = Path(world.env["HF_HOME"]) / "datasets"
    assert not list(cache.glob("espnet___yodas-granary*")), "the companion was downloaded instead of streamed"


@pytest.mark.slow
def test_granary_yodas_trains_on_streamed_companion_audio(world: World, tiny: Path) -> None:
    options = {"language": "pt", "corpus": "yodas", "audio_dataset": YODAS_GRANARY}
    summary = train(world, run_config(world, "granary-yodas", "granary", options))
    assert summary["rejected_counts"] == {"missing_audio": 1}
    assert summary["train_rows"] + summary["eval_rows"] == world.layouts.expected["yodas_rows"] - 1


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        (
            {"language": "sv", "corpus": "librilight"},
            "corpus",
            "Granary has no sv_librilight (corpus 'librilight' is English only); "
            "sv has: sv_voxpopuli, sv_ytc, sv_yodas",
        ),
        ({"language": "en", "corpus": "yodas", "task": "ast"}, "task", "Granary en_yodas has no 'ast' split"),
        ({"language": "mt", "corpus": "yodas"}, "corpus", "Granary has no mt_yodas"),
    ],
)
def test_granary_combinations_it_lacks_are_refused_before_any_request(
    world: World, options: dict[str, Any], field: str, message: str
) -> None:
    import yaml

    config = run_config(world, "refused", "granary", granary(world, **options))
    path = world.root / "refused.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    before = len(world.hub.requests)
    done = voxplug(world, "config", "show", "-c", str(path))
    assert done.returncode == 1 and f"error: invalid config ({path}):" in done.stderr
    assert f"data.granary.{field}: {message}" in done.stderr and "HF_TOKEN" not in done.stderr
    assert len(world.hub.requests) == before


@pytest.mark.slow
def test_granary_companion_that_cannot_be_opened_stops_once(world: World, tiny: Path) -> None:
    options = {"language": "pt", "corpus": "yodas", "audio_dataset": YODAS_GRANARY, "audio_dataset_config": "Klingon"}
    config = run_config(world, "companion-fails", "granary", options)
    import yaml

    path = world.root / "companion-fails.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    before = len(world.hub.requests)
    line = one_error_line(voxplug(world, "train", "-c", str(path), "--no-progress"))
    assert f"granary audio_dataset '{YODAS_GRANARY}' config 'Klingon' split 'asr_only'" in line
    assert "Portuguese" in line  # datasets lists the configs there are
    readme = f"/datasets/{YODAS_GRANARY}/resolve/main/README.md"
    asked = [entry for entry in world.hub.requests[before:] if entry.path == readme and entry.method == "HEAD"]
    assert len(asked) == 1, asked  # one attempt to open it, not one per manifest row


# --- Hub ASR datasets ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_common_voice_streamed_long_clip_without_duration_is_skipped(world: World, tiny: Path) -> None:
    options = {"repo": COMMON_VOICE, "config": "sv-SE", "streaming": True, "language": "sv"}
    summary = train(world, run_config(world, "common-voice", "hub", options))
    row = f"{COMMON_VOICE} [train] row {world.layouts.expected['common_voice_long_row']}"
    assert summary["rejected"] == [{"row": row, "reason": "35.0 s is longer than the 30 s limit", "code": "too_long"}]
    assert summary["notices"] == [
        f"hub dataset {COMMON_VOICE!r}: transcripts from column 'sentence' (set text_column to choose)"
    ]


@pytest.mark.slow
def test_hub_parquet_datasets_columns_and_class_labels(world: World) -> None:
    configs = {
        "librispeech": run_config(
            world,
            "ls",
            "hub",
            {"repo": LIBRISPEECH, "config": "clean", "train_split": "train.100", "eval_split": "validation"},
        ),
        "fleurs": run_config(world, "fl", "hub", {"repo": FLEURS, "config": "sv_se", "language_column": "lang_id"}),
        "voxpopuli": run_config(
            world, "vp", "hub", {"repo": VOXPOPULI, "config": "it", "language_column": "language", "streaming": True}
        ),
    }
    results = data_stage(world, configs)
    librispeech = results["librispeech"]
    assert len(librispeech["train"]) == 4 and len(librispeech["eval"]) == 2
    assert librispeech["train"][0][1] == "THE WEATHER IS NICE TODAY"
    assert "column 'text'" in librispeech["summary"]["notices"][0]
    fleurs = results["fleurs"]
    assert {row[2] for row in fleurs["train"] + fleurs["eval"]} == {"sv-SE"}  # the ClassLabel's label sv_se, canonical
    assert "column 'transcription'" in fleurs["summary"]["notices"][0]
    voxpopuli = results["voxpopuli"]
    assert {row[2] for row in voxpopuli["train"] + voxpopuli["eval"]} == {"it"}
    assert "column 'normalized_text'" in voxpopuli["summary"]["notices"][0]


@pytest.mark.slow
def test_voxpopuli_class_label_language_trains(world: World, tiny: Path) -> None:
    options = {"repo": VOXPOPULI, "config": "it", "language_column": "language"}
    summary = train(world, run_config(world, "voxpopuli", "hub", options))
    assert summary["languages"] == {"it": 4} and summary["rejected"] == []


@pytest.mark.slow
def test_loading_script_dataset_is_one_line_naming_the_fix(world: World, tiny: Path) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=world.hub.url, token=WRITER)
    api.create_repo("fixtures/scripted", repo_type="dataset", exist_ok=True)
    script = b"import datasets\n\nclass Scripted(datasets.GeneratorBasedBuilder):\n    pass\n"
    api.upload_file(
        path_or_fileobj=script, path_in_repo="scripted.py", repo_id="fixtures/scripted", repo_type="dataset"
    )
    import yaml

    path = world.root / "scripted.yaml"
    path.write_text(yaml.safe_dump(run_config(world, "scripted", "hub", {"repo": "fixtures/scripted"})), "utf-8")
    line = one_error_line(voxplug(world, "train", "-c", str(path), "--no-progress"))
    assert "'fixtures/scripted' split 'train': cannot be loaded" in line
    assert "revision: refs/convert/parquet" in line


# --- audiofolder and WebDataset without torchcodec --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("layout", "repo"), [("audiofolder", AUDIOFOLDER), ("webdataset", WEBDATASET)])
def test_folder_layouts_load_without_torchcodec_streaming_and_not(world: World, layout: str, repo: str) -> None:
    local = {"repo": str(world.layouts.repos[repo])}
    configs = {
        f"{where}-{'streaming' if streaming else 'prepared'}": run_config(
            world, "x", "hub", {**place, "streaming": streaming, "eval_split": "validation", "language": "en"}
        )
        for where, place in (("hub", {"repo": repo}), ("local", local))
        for streaming in (False, True)
    }
    results = data_stage(world, configs)
    for name, result in results.items():
        assert "error" not in result, (name, result)
        texts = [row[1] for row in result["train"]]
        assert texts[:2] == ["The weather is nice today.", "I would like a cup of coffee, please."], name
        assert len(result["train"]) == 4 and len(result["eval"]) == 2, name
        assert all(row[3] and row[3] > 0.5 for row in result["train"]), name
        expected_column = "transcription" if layout == "audiofolder" else "txt"
        assert f"column {expected_column!r}" in result["summary"]["notices"][0], name


@pytest.mark.slow
@pytest.mark.parametrize(("repo", "streaming"), [(AUDIOFOLDER, True), (WEBDATASET, False)])
def test_folder_layouts_train_from_the_hub(world: World, tiny: Path, repo: str, streaming: bool) -> None:
    options = {"repo": repo, "streaming": streaming, "eval_split": "validation", "language": "en"}
    name = repo.split("/")[1]
    summary = train(world, run_config(world, name, "hub", options))
    assert summary["train_rows"] == 4 and summary["eval_rows"] == 2 and summary["rejected"] == []
