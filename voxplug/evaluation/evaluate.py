"""``voxplug evaluate``: transcribe a dataset with any model (base, LoRA adapter folder or full fine-tune) and
score it, optionally against its base model.

A model folder written by ``voxplug train`` says in ``voxplug.json`` which base it came from, so an adapter or
a full fine-tune is compared with its base automatically; ``base`` names one explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.errors import DataError, ModelError
from voxplug.evaluation.generation import GenerationSettings, transcribe_examples
from voxplug.evaluation.scoring import Scores, Utterance, score_utterances, write_predictions
from voxplug.training.outputs import read_model_info, write_json

if TYPE_CHECKING:
    from voxplug.data.interface import Example
    from voxplug.models.interface import ModelFamily
    from voxplug.plugins import PluginHost

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoadedModel:
    """A model ready to transcribe, and what it is."""

    ref: str
    kind: str  # "adapter", "full" (a voxplug fine-tune) or "base"
    family: ModelFamily
    model: Any
    processor: Any
    base_ref: str | None = None


@dataclass
class EvaluationOutcome:
    """What ``voxplug evaluate`` wrote and measured."""

    out_dir: Path
    scores: Scores
    base_scores: Scores | None = None
    comparison: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)


def base_model_of(ref: str) -> str | None:
    """The base checkpoint of a voxplug model folder or a PEFT adapter folder; None for anything else."""
    folder = Path(ref)
    info = read_model_info(folder) if folder.is_dir() else None
    if info and info.get("base_model"):
        return str(info["base_model"])
    adapter_config = folder / ADAPTER_CONFIG
    if adapter_config.is_file():
        import json

        return json.loads(adapter_config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    return None


def load_model_for_evaluation(ref: str, host: PluginHost) -> LoadedModel:
    """Load ``ref`` for inference: bf16 on a CUDA GPU, fp32 on CPU; an adapter goes on top of its base."""
    from voxplug.models.detect import detect_family
    from voxplug.training.devices import cuda_available

    device, dtype = ("cuda", "bf16") if cuda_available() else ("cpu", "fp32")
    is_adapter = (Path(ref) / ADAPTER_CONFIG).is_file()
    base_ref = base_model_of(ref)
    if is_adapter and not base_ref:
        raise ModelError(f"adapter folder {ref}: its adapter_config.json names no base model")
    family = detect_family(ref, host)()
    if not is_adapter:
        model, processor = family.load(ref, dtype=dtype, device=device)
        return LoadedModel(ref, "full" if base_ref else "base", family, model, processor, base_ref)
    from peft import PeftModel

    base_model, processor = family.load(base_ref, dtype=dtype, device=device)
    # The processor the adapter was saved with where the family can load it from the adapter folder (it may carry
    # what training changed, e.g. a streaming delay); else the base's (an adapter folder has no config.json).
    try:
        processor = family.load_processor(ref)
    except (ModelError, NotImplementedError):
        pass
    model = PeftModel.from_pretrained(base_model, ref)
    return LoadedModel(ref, "adapter", family, model, processor, base_ref)


def read_examples(data: Path, host: PluginHost) -> list[Example]:
    """Every usable row of a JSONL manifest (or a dataset folder holding ``data.jsonl``)."""
    manifest = data / "data.jsonl" if data.is_dir() else data
    source = host.extension("data source", "jsonl")({"path": manifest.resolve()}, base_dir=Path.cwd())
    examples = list(source.examples("eval"))
    if not examples:
        problems = "; ".join(str(problem) for problem in source.problems[:3]) or "the manifest has no rows"
        raise DataError(f"{manifest}: no usable rows to evaluate on ({problems})")
    return examples


def score_model(loaded: LoadedModel, examples: list[Example], settings: GenerationSettings) -> Scores:
    """Transcribe ``examples`` with ``loaded`` and score the transcripts."""
    hypotheses = transcribe_examples(loaded.family, loaded.model, loaded.processor, examples, settings)
    return score_utterances(
        [
            Utterance(example.id, example.language or settings.default_language, example.text, hypothesis)
            for example, hypothesis in zip(examples, hypotheses, strict=True)
        ]
    )


def base_scores_for(
    loaded: LoadedModel, base_ref: str, examples: list[Example], settings: GenerationSettings, host: PluginHost
) -> Scores:
    """Score the base model: the adapter switched off when ``loaded`` is an adapter on that base, else a fresh load."""
    if loaded.kind == "adapter" and base_ref == loaded.base_ref:
        with loaded.model.disable_adapter():
            return score_model(loaded, examples, settings)
    return score_model(load_model_for_evaluation(base_ref, host), examples, settings)


def compare(model_ref: str, scores: Scores, base_ref: str, base: Scores) -> dict[str, Any]:
    """The base-vs-fine-tuned comparison: both metrics, the deltas and per-utterance better/worse counts."""
    pairs = list(zip(scores.rows, base.rows, strict=True))
    return {
        "model": model_ref,
        "base": base_ref,
        "samples": scores.samples,
        "model_metrics": scores.metrics(),
        "base_metrics": base.metrics(),
        "wer_delta": scores.wer - base.wer,
        "cer_delta": scores.cer - base.cer,
        "utterances": {
            "improved": sum(tuned["wer"] < old["wer"] for tuned, old in pairs),
            "worse": sum(tuned["wer"] > old["wer"] for tuned, old in pairs),
            "same": sum(tuned["wer"] == old["wer"] for tuned, old in pairs),
        },
    }


def evaluate(
    model_ref: str,
    data: Path,
    *,
    out_dir: Path,
    host: PluginHost,
    settings: GenerationSettings,
    base: str | None = None,
    compare_with_base: bool = True,
) -> EvaluationOutcome:
    """Evaluate ``model_ref`` on ``data``, write per-utterance JSONL files and, with a base, a comparison."""
    examples = read_examples(data, host)
    loaded = load_model_for_evaluation(model_ref, host)
    scores = score_model(loaded, examples, settings)
    outcome = EvaluationOutcome(out_dir, scores)
    outcome.files["predictions"] = write_predictions(out_dir / "predictions.jsonl", scores.rows)
    outcome.files["metrics"] = write_json(out_dir / "metrics.json", {"model": model_ref, **scores.metrics()})
    host.after_evaluate(metrics=scores.metrics(), predictions_path=outcome.files["predictions"], step=None)
    base_ref = base or (loaded.base_ref if compare_with_base else None)
    if base_ref:
        outcome.base_scores = base_scores_for(loaded, base_ref, examples, settings, host)
        outcome.files["base_predictions"] = write_predictions(
            out_dir / "base_predictions.jsonl", outcome.base_scores.rows
        )
        outcome.comparison = compare(model_ref, scores, base_ref, outcome.base_scores)
        outcome.files["comparison"] = write_json(out_dir / "comparison.json", outcome.comparison)
    return outcome


def default_out_dir(model_ref: str) -> Path:
    """``evaluations/<model name>``: a folder name derived from the model's path or Hub id."""
    name = Path(model_ref).resolve().name if Path(model_ref).exists() else model_ref
    if Path(model_ref).exists() and name in ("model", "merged"):
        name = f"{Path(model_ref).resolve().parent.name}-{name}"
    return Path("evaluations") / re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
