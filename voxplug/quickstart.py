"""``voxplug quickstart``: the whole product in one command, on CPU, in a few minutes.

1. a dataset store built from the English clips bundled with voxplug (``examples/speech/en``), split into
   training clips and a few held-out clips (with each clip's word timings from ``words.jsonl``, which the
   streaming Voxtral Realtime needs);
2. a tiny random model of the chosen family (Voxtral, or the streaming Voxtral Realtime) with the real processor;
3. LoRA training with the family's preset (``quickstart``, ``quickstart-realtime``), evaluated on the held-out
   clips while it trains;
4. WER on the training clips, base versus fine-tuned (a random tiny model can memorise clips, not learn
   English, so the held-out WER stays near 1.0 and is reported as such);
5. publishing to a local folder laid out as a Hub repository.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from voxplug.errors import VoxplugError

if TYPE_CHECKING:
    from voxplug.evaluation.evaluate import EvaluationOutcome
    from voxplug.plugins import PluginHost
    from voxplug.training.run import RunResult

PRESETS = {"voxtral": "quickstart", "voxtral-realtime": "quickstart-realtime"}
"""The model families the quickstart runs, and the preset each trains with."""
MARKER = ".voxplug-quickstart"
HELD_OUT_EVERY = 6  # every 6th clip is held out: 4 of the 24 bundled clips

_PACKAGE_DIR = Path(__file__).resolve().parent
_SPEECH_CANDIDATES = (_PACKAGE_DIR / "examples" / "speech" / "en", _PACKAGE_DIR.parent / "examples" / "speech" / "en")


@dataclass
class QuickstartResult:
    """Where the quickstart put everything, and what it measured."""

    out_dir: Path
    dataset_dir: Path
    base_model_dir: Path
    run: RunResult
    training_clips: EvaluationOutcome


def bundled_speech_dir() -> Path:
    """The bundled English clips (``transcripts.tsv`` + WAV files), in a wheel or a source checkout."""
    for candidate in _SPEECH_CANDIDATES:
        if (candidate / "transcripts.tsv").is_file():
            return candidate
    raise VoxplugError(f"the bundled example clips are missing (looked in {', '.join(map(str, _SPEECH_CANDIDATES))})")


def prepare_out_dir(out_dir: Path, *, force: bool) -> None:
    """Create ``out_dir``; an earlier quickstart folder is replaced only with ``force``, anything else never."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise VoxplugError(f"{out_dir} exists and is not a quickstart folder; choose another --out")
        if not force:
            raise VoxplugError(
                f"{out_dir} holds an earlier quickstart; add --force to replace it, or choose another --out"
            )
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("made by `voxplug quickstart`; safe to delete\n", encoding="utf-8")


def build_dataset(dataset_dir: Path) -> tuple[Path, Path]:
    """Import the bundled clips into a dataset store; write ``train.jsonl`` and ``heldout.jsonl`` beside it."""
    from voxplug.data.store import DatasetStore

    speech = bundled_speech_dir()
    store = DatasetStore.create(dataset_dir, language="en", name="voxplug-quickstart")
    store.import_folder(speech, speech / "transcripts.tsv", language="en")
    words = _bundled_word_timings(speech)
    rows = [{**row, "words": words[row["source"]]} if row.get("source") in words else row for row in store.rows()]
    held_out = rows[::HELD_OUT_EVERY]
    training = [row for row in rows if row not in held_out]
    return _write_rows(dataset_dir / "train.jsonl", training), _write_rows(dataset_dir / "heldout.jsonl", held_out)


def _bundled_word_timings(speech: Path) -> dict[str, list[dict]]:
    """``{file name: words}`` from the bundled ``words.jsonl`` (timings computed with the ``whisper`` aligner)."""
    path = speech / "words.jsonl"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    return {entry["file"]: entry["words"] for entry in map(json.loads, lines) if entry}


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def run_quickstart(
    out_dir: Path, *, host: PluginHost, force: bool = False, progress: bool = True, model: str = "voxtral"
) -> QuickstartResult:
    """Run every quickstart step in ``out_dir`` with a tiny model of family ``model`` (see :data:`PRESETS`)."""
    from voxplug.config import load_config
    from voxplug.evaluation.evaluate import evaluate
    from voxplug.evaluation.generation import GenerationSettings
    from voxplug.training.run import train

    if model not in PRESETS:
        raise VoxplugError(f"the quickstart runs {' or '.join(PRESETS)}, not {model!r}")
    out_dir = out_dir.resolve()
    prepare_out_dir(out_dir, force=force)
    train_manifest, heldout_manifest = build_dataset(out_dir / "dataset")
    base_dir = host.extension("model family", model)().build_tiny(out_dir / f"tiny-{model}")
    config = load_config(
        [PRESETS[model]],
        [
            f"data.jsonl.path={train_manifest}",
            f"data.eval.jsonl.path={heldout_manifest}",
            f"model.name_or_path={base_dir}",
            f"training.output_dir={out_dir / 'run'}",
        ],
    )
    run = train(config, host=host, progress=progress)
    settings = GenerationSettings(config.evaluation.max_new_tokens, config.evaluation.batch_size, None, "en")
    training_clips = evaluate(
        str(run.model_dir), train_manifest, out_dir=out_dir / "evaluation-training-clips", host=host, settings=settings
    )
    return QuickstartResult(out_dir, out_dir / "dataset", base_dir, run, training_clips)
