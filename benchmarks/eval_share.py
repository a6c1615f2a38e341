"""Evaluation's share of a training run: real voxplug runs at the default preset's evaluation settings.

Each run is what ``voxplug train -c voxtral-mini-lora`` runs (:func:`voxplug.training.run.train`, the preset's
settings: LoRA, 3 epochs, 10% of the rows held out up to 200, WER/CER from greedy transcripts and the eval loss at
every evaluation), on a dataset of ``size`` rows, with Voxtral-Mini-3B-2507's shape and random bf16 weights (saved
once as a checkpoint folder with the real 131072-entry Tekken processor, then loaded by each run as a user's
checkpoint is). Rows are WAV clips of 3 to 30 s made from the bundled speech (``train_throughput.make_clips``:
distinct clips, so the encoder cache serves only epochs 2 and later, as with real data).

Measured per run: the stage times of ``train_results.json`` (the run's own monitor: ``training`` without the
evaluations inside the loop, ``evaluation`` with them and the final one, ``model_loading``, ``saving``, ...), the
wall time of the whole ``train`` call, and every evaluation's ``eval_runtime`` split into the eval-loss pass and
generation: a callback synchronises the GPU after each eval-loss batch (``on_prediction_step``), so the time after
the last one is greedy transcription and scoring. Shares: ``evaluation / wall`` (the run's wall time) and
``evaluation / (training + evaluation)`` (the training loop's).

``--runs SIZE[:BUDGET[:SCHEDULE]],...``:

* BUDGET ``clip`` is the preset's (``evaluation.max_new_tokens: null``, a budget from each clip's length). Random
  weights never emit the end-of-sequence token, so every transcript runs to its budget: an upper bound of a real
  model's generation time. ``reference`` caps every transcript at the run's longest reference transcript in
  tokens plus the end-of-sequence token: what a model that has learned to stop decodes at most.
* SCHEDULE ``every-epoch`` (the default) evaluates once per epoch (``training.max_eval_share: null``), and the entry's
  ``with_preset_spacing`` says what the preset's ``training.max_eval_share`` makes of it: the evaluations the rule
  keeps, at the measured mean time of one, beside the same training time. ``preset`` runs the preset's spacing.

Run (GPU, about 3 minutes)::

    python benchmarks/eval_share.py --runs 200:clip,200:reference,1000:reference --out $OUT

``--tiny --device cpu`` runs the same plumbing with the tiny test model on short clips (a smoke test: its numbers
mean nothing).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from train_throughput import build_processor, card_slug, make_clips, random_voxtral  # noqa: E402

from voxplug.tempfiles import write_json  # noqa: E402

PRESET = "voxtral-mini-lora"
BUDGETS = ("clip", "reference")
SCHEDULES = ("every-epoch", "preset")
#: The share the issue asks evaluation to stay under.
GOAL_SHARE = 0.10


@dataclass(frozen=True)
class RunSpec:
    """One measured run: dataset rows, transcript budget (``clip`` / ``reference``) and evaluation schedule."""

    size: int
    budget: str
    schedule: str

    @property
    def name(self) -> str:
        return f"rows{self.size}-{self.budget}-{self.schedule}"


def parse_runs(text: str) -> list[RunSpec]:
    """``"200:clip,1000:reference:preset"`` -> ``[(200, "clip", "every-epoch"), (1000, "reference", "preset")]``."""
    runs = []
    for item in text.split(","):
        size, budget, schedule, *rest = [*item.strip().split(":"), "", ""]
        budget, schedule = budget or "clip", schedule or "every-epoch"
        if not size.isdigit() or int(size) < 10 or budget not in BUDGETS or schedule not in SCHEDULES or any(rest):
            raise SystemExit(
                f"--runs: {item!r} is not SIZE[:BUDGET[:SCHEDULE]] with SIZE >= 10, BUDGET one of {BUDGETS} "
                f"and SCHEDULE one of {SCHEDULES}"
            )
        runs.append(RunSpec(int(size), budget, schedule))
    return runs


def write_checkpoint(work: Path, tiny: bool, device: str) -> Path:
    """The model folder every run loads: the real Tekken processor and random Voxtral-Mini-3B weights in bf16
    (``tiny``: the tiny test checkpoint as built)."""
    import torch

    folder, tiny_dir = build_processor(work, tiny)
    if tiny:
        return folder
    for path in folder.glob("*.safetensors*"):  # the processor builder's one-layer stand-in model
        path.unlink()
    model = random_voxtral(torch.bfloat16, device, tiny_dir)
    model.save_pretrained(folder)
    del model
    release_memory()
    return folder


def write_manifest(folder: Path, clips: list[Any], name: str) -> Path:
    """``clips`` as a voxplug JSONL manifest ``folder/name`` (audio paths relative to it)."""
    lines = [
        json.dumps({"id": clip.path.stem, "audio_path": clip.path.name, "text": clip.text, "language": "en"})
        for clip in clips
    ]
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def transcript_tokens(model_dir: Path, clips: list[Any]) -> list[int]:
    """Each clip's transcript length in the model's tokens."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    ids = processor.tokenizer([clip.text for clip in clips], add_special_tokens=False)["input_ids"]
    return [len(row) for row in ids]


def eval_timer(records: list[dict[str, Any]]) -> Any:
    """A callback that splits each evaluation's ``eval_runtime`` into the eval-loss pass and generation."""
    from transformers import TrainerCallback

    def now() -> float:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class EvalTimer(TrainerCallback):
        def __init__(self) -> None:
            self.last_prediction: float | None = None

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.last_prediction = now()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if not logs or "eval_runtime" not in logs:
                return
            runtime = float(logs["eval_runtime"])
            start = time.perf_counter() - runtime
            loss_pass = max(0.0, self.last_prediction - start) if self.last_prediction is not None else 0.0
            records.append(
                {
                    "step": state.global_step,
                    "runtime_s": round(runtime, 3),
                    "loss_pass_s": round(min(loss_pass, runtime), 3),
                    "generation_s": round(max(0.0, runtime - loss_pass), 3),
                    "rows": logs.get("eval_samples"),
                    "wer": logs.get("eval_wer"),
                }
            )
            self.last_prediction = None

    return EvalTimer()


def run_config(
    spec: RunSpec, model_dir: Path, manifest: Path, work: Path, budget: int, args: argparse.Namespace
) -> Any:
    """The preset's config with the benchmark's model, data and output folder; ``reference`` runs get ``budget``
    and ``every-epoch`` runs no ``training.max_eval_share``."""
    from voxplug.config import deep_merge, read_config_sources, validate_config

    data, _base, _origin = read_config_sources([PRESET])
    training: dict[str, Any] = {"output_dir": str(work / spec.name)}
    evaluation: dict[str, Any] = {}
    if spec.budget == "reference":
        evaluation["max_new_tokens"] = budget
    if spec.schedule == "every-epoch":
        training["max_eval_share"] = None
    if args.epochs is not None:
        training["epochs"] = args.epochs
    if args.tiny:  # the CPU smoke test: no worker processes, a small eval batch
        training["dataloader_workers"] = 0
        evaluation["batch_size"] = 8
    update = {
        "name": spec.name,
        "model": {"name_or_path": str(model_dir), "family": "voxtral"},
        "data": {"jsonl": {"path": str(manifest)}},
        "training": training,
        "evaluation": evaluation,
        "publish": {"target": None},
    }
    return validate_config(deep_merge(data, update), base_dir=work)


def with_preset_spacing(entry: dict[str, Any], config: Any, world_size: int) -> dict[str, Any]:
    """What the preset's ``training.max_eval_share`` would make of a run evaluated every epoch: its evaluations
    (the same steps the rule picks) at the measured mean time of one, beside the same training time."""
    from voxplug.training.eval_schedule import spaced_eval_steps

    evaluations = entry["evaluations"]
    if not evaluations or not entry["eval_rows"]:
        return {}
    share = read_preset_share()
    total, per_epoch = entry["global_step"], entry["steps_per_epoch"]
    training = config.training
    spacing = spaced_eval_steps(
        steps_per_epoch=per_epoch,
        total_steps=total,
        rows_per_step=training.samples_per_step * world_size,
        eval_rows=entry["eval_rows"],
        max_share=share,
    )
    count = total // spacing.steps + (1 if total % spacing.steps else 0)
    per_evaluation = sum(e["runtime_s"] for e in evaluations) / len(evaluations)
    train_s = entry["stage_seconds"].get("training", 0.0)
    return {
        "max_eval_share": share,
        "eval_steps": spacing.steps,
        "evaluations": count,
        "evaluation_s": round(count * per_evaluation, 3),
        "evaluation_share_of_loop": round(count * per_evaluation / (train_s + count * per_evaluation), 4),
    }


def read_preset_share() -> float | None:
    from voxplug.config import load_config

    return load_config([PRESET]).training.max_eval_share


def measure(spec: RunSpec, model_dir: Path, clips: list[Any], budget: int, args: argparse.Namespace) -> dict[str, Any]:
    """One training run on the first ``spec.size`` clips; its stage times, evaluations and shares."""
    from voxplug.training.run import train

    work = args.work / spec.name
    work.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(clips[0].path.parent, clips[: spec.size], f"data-{spec.size}.jsonl")
    config = run_config(spec, model_dir, manifest, work, budget, args)
    evaluations: list[dict[str, Any]] = []
    started = time.perf_counter()
    result = train(config, progress=False, callbacks=[eval_timer(evaluations)])
    wall = time.perf_counter() - started
    results = json.loads((result.run_dir / "train_results.json").read_text(encoding="utf-8"))
    stages = results.get("stage_seconds", {})
    training, evaluation = stages.get("training", 0.0), stages.get("evaluation", 0.0)
    entry = {
        "rows": spec.size,
        "eval_rows": evaluations[0]["rows"] if evaluations else None,
        "budget": spec.budget,
        "max_new_tokens": config.evaluation.max_new_tokens,
        "schedule": spec.schedule,
        "max_eval_share": config.training.max_eval_share,
        "epochs": config.training.epochs,
        "global_step": results.get("global_step"),
        "steps_per_epoch": results.get("steps_per_epoch"),
        "train_samples_per_s": results.get("train_samples_per_s"),
        "wall_s": round(wall, 2),
        "stage_seconds": stages,
        "evaluations": evaluations,
        "eval_loss_pass_s": round(sum(e["loss_pass_s"] for e in evaluations), 3),
        "eval_generation_s": round(sum(e["generation_s"] for e in evaluations), 3),
        "evaluation_share_of_wall": round(evaluation / wall, 4) if wall else None,
        "evaluation_share_of_loop": round(evaluation / (training + evaluation), 4) if training + evaluation else None,
        "encoder_cache": results.get("encoder_cache"),
    }
    if spec.schedule == "every-epoch":
        entry["with_preset_spacing"] = with_preset_spacing(entry, config, int(results.get("world_size") or 1))
    shutil.rmtree(work / spec.name / "checkpoints", ignore_errors=True)  # not needed afterwards
    del result
    release_memory()
    entry["gpu_memory_left_gib"] = allocated_gib()  # what the run left allocated (the next run starts from it)
    return entry


def allocated_gib() -> float | None:
    import torch

    return round(torch.cuda.memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    runs = parse_runs(args.runs)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = write_checkpoint(args.work, args.tiny, args.device)
    checkpoint_s = time.perf_counter() - started
    max_s = 6.0 if args.tiny else 30.0
    clips = make_clips(args.work / "clips", max(spec.size for spec in runs), seed=args.seed, min_s=3.0, max_s=max_s)
    tokens = transcript_tokens(model_dir, clips)
    device = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    out: dict[str, Any] = {
        "device": device,
        "torch": torch.__version__,
        "preset": PRESET,
        "tiny": args.tiny,
        "checkpoint_build_s": round(checkpoint_s, 1),
        "transcript_tokens": {"mean": round(sum(tokens) / len(tokens), 1), "max": max(tokens)},
        "goal_share": GOAL_SHARE,
        "runs": [],
    }
    for spec in runs:
        budget = max(tokens[: spec.size]) + 1  # the longest transcript of the run's rows and its end token
        entry = measure(spec, model_dir, clips, budget, args)
        out["runs"].append(entry)
        print(json.dumps(entry), flush=True)
        if args.out_file is not None:
            write_json(args.out_file, out)
    return out


def print_table(out: dict[str, Any]) -> None:
    print(f"\n{out['device']}  ({out['preset']}; transcripts of {out['transcript_tokens']} tokens)")
    print("rows  budget     schedule     evals  train s  eval s (loss/gen)  wall s  of wall  of loop  preset spacing")
    for entry in out["runs"]:
        stages = entry["stage_seconds"]
        spaced = entry.get("with_preset_spacing") or {}
        derived = f"{spaced['evaluations']} evals, {spaced['evaluation_share_of_loop']:.1%}" if spaced else "-"
        print(
            f"{entry['rows']:>5} {entry['budget']:<10} {entry['schedule']:<12} {len(entry['evaluations']):>5} "
            f"{stages.get('training', 0):>8.1f} {stages.get('evaluation', 0):>7.1f} "
            f"({entry['eval_loss_pass_s']:.1f}/{entry['eval_generation_s']:.1f}) {entry['wall_s']:>9.1f} "
            f"{entry['evaluation_share_of_wall']:>8.1%} {entry['evaluation_share_of_loop']:>8.1%}  {derived}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", default="200:clip,200:reference,1000:reference", help="SIZE[:clip|reference[:every-epoch|preset]],..."
    )
    parser.add_argument("--epochs", type=float, default=None, help="override the preset's epochs")
    parser.add_argument("--tiny", action="store_true", help="the tiny test model (CPU smoke test)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder or .json file")
    args = parser.parse_args(argv)
    if args.device == "cpu" and not args.tiny:
        raise SystemExit("the Voxtral-Mini shape needs a GPU: add --tiny for the CPU smoke test")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    scratch = None
    if args.work is None:
        scratch = tempfile.TemporaryDirectory(prefix="eval-share-")
        args.work = Path(scratch.name)
    slug = "tiny-cpu" if args.tiny else card_slug(torch.cuda.get_device_name())
    args.out_file = args.out if args.out.suffix == ".json" else args.out / f"eval_share-{slug}.json"
    try:
        out = run(args)
    finally:
        if scratch is not None:
            scratch.cleanup()
    write_json(args.out_file, out)
    print_table(out)
    print(f"wrote {args.out_file}")
    return out


if __name__ == "__main__":
    main()
