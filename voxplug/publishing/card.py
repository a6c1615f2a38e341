"""Model cards: Hub-valid YAML metadata plus a Markdown body rendered from templates shipped in the package.

The templates live in ``voxplug/publishing/templates`` (read with :mod:`importlib.resources`, never relative to
the working folder): ``model_card.md`` is the frame, ``usage_<style>_<kind>.md`` the usage snippet for each kind
of model (``voxtral`` style: ``apply_transcription_request``; ``pipeline`` style: transformers' ASR pipeline, for
every other family). Placeholders are :class:`string.Template` ``$names``.

The flow is :func:`build_model_card` (metadata and facts) → the ``model_card_sections`` hook (plugins append
sections, and may edit ``card.metadata``) → :func:`render_model_card`. :func:`model_card_text` does all three.
No token ever reaches a card: nothing here reads one, and config keys that look like secrets are dropped.
"""

from __future__ import annotations

from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Any

from voxplug.config import SECRET_KEY
from voxplug.publishing.interface import ModelCard

if TYPE_CHECKING:
    from voxplug.plugins import PluginHost
    from voxplug.publishing.publishable import PublishableModel

ASR_TASK = "automatic-speech-recognition"
MODEL_CLASSES = {"voxtral": "VoxtralForConditionalGeneration"}
"""Families whose processor has ``apply_transcription_request``, and the class their usage snippet loads. Other
families get a snippet built on transformers' speech-recognition pipeline."""
STREAMING_FAMILIES = {"voxtral-realtime"}
"""Families whose usage snippet is the streaming one (``usage_realtime_<kind>.md``)."""

TRAINING_KEYS: tuple[tuple[str, str], ...] = (
    ("method", "method"),
    ("epochs", "epochs"),
    ("max_steps", "max steps"),
    ("batch_size", "micro-batch per device"),
    ("grad_accum", "gradient accumulation"),
    ("learning_rate", "learning rate"),
    ("lr_scheduler", "scheduler"),
    ("warmup_ratio", "warmup ratio"),
    ("weight_decay", "weight decay"),
    ("max_grad_norm", "max grad norm"),
    ("optim", "optimizer"),
    ("precision", "precision"),
    ("gradient_checkpointing", "gradient checkpointing"),
    ("seed", "seed"),
)
RESULT_KEYS: tuple[tuple[str, str], ...] = (
    ("global_step", "optimizer steps"),
    ("epoch", "epochs completed"),
    ("final_loss", "final training loss"),
    ("train_loss", "mean training loss"),
    ("train_samples_per_second", "samples per second"),
    ("train_audio_s_per_s", "audio seconds per second (training only)"),
    ("gpu_mem_peak_gb", "peak GPU memory (GB)"),
    ("gpu_util_mean_pct", "mean GPU utilisation (%)"),
    ("num_processes", "processes"),
)


def load_template(name: str) -> Template:
    """A template shipped in ``voxplug/publishing/templates``."""
    text = resources.files("voxplug.publishing").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text)


def build_model_card(model: PublishableModel, *, model_id: str, license: str, tags: list[str]) -> ModelCard:
    """The card of ``model`` published as ``model_id``: Hub metadata plus the facts the body is rendered from."""
    facts = _card_facts(model, model_id)
    return ModelCard(metadata=card_metadata(model, model_id=model_id, license=license, tags=tags), facts=facts)


def card_metadata(model: PublishableModel, *, model_id: str, license: str, tags: list[str]) -> dict[str, Any]:
    """The card's YAML metadata in the form the Hub validates (``model-index`` built by huggingface_hub)."""
    from huggingface_hub import ModelCardData

    hub_datasets = hub_repo_ids(model.datasets)
    data = ModelCardData(
        base_model=model.base_model if hub_repo_ids([model.base_model]) else None,  # a local folder is not an id
        library_name="peft" if model.kind == "adapter" else "transformers",
        pipeline_tag=ASR_TASK,
        language=model.languages or None,
        datasets=hub_datasets or None,
        license=license,
        tags=_unique(["voxplug", str(model.info.get("family") or ""), ASR_TASK, *_method_tags(model), *tags]),
        model_name=display_name(model_id, model),
        eval_results=_eval_results(model, hub_datasets) or None,
    )
    return data.to_dict()


def display_name(model_id: str, model: PublishableModel) -> str:
    """The repo id for a Hub destination; the run's name for a local folder."""
    from pathlib import Path

    is_repo_id = model_id.count("/") == 1 and not model_id.startswith((".", "/", "~")) and not Path(model_id).exists()
    return model_id if is_repo_id else model.name


def _method_tags(model: PublishableModel) -> list[str]:
    tags = ["lora", "peft"] if model.kind == "adapter" else ["full-fine-tune"]
    return [*tags, "qlora", "4-bit"] if _quantization(model.training_config) else tags


def _eval_results(model: PublishableModel, hub_datasets: list[str]) -> list[Any]:
    """WER and CER (in percent) on the evaluation split, as huggingface_hub ``EvalResult`` objects."""
    from huggingface_hub import EvalResult

    dataset_type = hub_datasets[0] if hub_datasets else "custom"
    results = []
    for metric in ("wer", "cer"):
        value = model.eval_results.get(f"eval_{metric}")
        if isinstance(value, (int, float)):
            results.append(
                EvalResult(
                    task_type=ASR_TASK,
                    task_name="Speech recognition",
                    dataset_type=dataset_type,
                    dataset_name=f"{', '.join(hub_datasets) or model.name} (held-out evaluation split)",
                    dataset_split="eval",
                    metric_type=metric,
                    metric_value=round(100 * float(value), 2),
                    metric_name=f"{metric.upper()} (%)",
                )
            )
    return results


def hub_repo_ids(names: list[str]) -> list[str]:
    """The entries of ``names`` that are Hub repo ids (``owner/name``); local paths are left to the card's body."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    ids = []
    for name in names:
        if name.count("/") != 1 or name.startswith((".", "/", "~")) or name.endswith((".json", ".jsonl", ".tsv")):
            continue
        try:
            validate_repo_id(name)
        except HFValidationError:
            continue
        ids.append(name)
    return ids


def _card_facts(model: PublishableModel, model_id: str) -> dict[str, Any]:
    """Everything the body shows, as plain data (plugins read it from ``card.facts``)."""
    training = model.training_config.get("training", {}) if isinstance(model.training_config, dict) else {}
    training = {**training, **_decided_batch(model.training_config)}
    return {
        "model_id": model_id,
        "name": model.name,
        "display_name": display_name(model_id, model),
        "kind": model.kind,
        "method": model.info.get("method") or training.get("method"),
        "family": model.info.get("family"),
        "base_model": model.base_model,
        "languages": model.languages,
        "datasets": model.datasets,
        "dataset_licenses": model.info.get("dataset_licenses") or {},
        "eval": {key: value for key, value in model.eval_results.items() if not SECRET_KEY.search(key)},
        "hyperparameters": _hyperparameters(training),
        "train": {key: value for key, value in model.train_results.items() if not SECRET_KEY.search(key)},
        "plugin_options": _plugin_options(model.training_config),
        "quantization": _quantization(model.training_config),
        "has_merged": model.merged_dir is not None,
        "has_curves": any(path.name == "curves.png" for path in model.result_files()),
        "voxplug_version": str(model.info.get("voxplug_version") or ""),
    }


def _quantization(training_config: Any) -> str | None:
    """The 4-bit format the base was loaded in for training (``model.quantization``), if any."""
    model = training_config.get("model", {}) if isinstance(training_config, dict) else {}
    value = model.get("quantization") if isinstance(model, dict) else None
    return str(value) if value else None


def _decided_batch(training_config: Any) -> dict[str, Any]:
    """The micro-batch, accumulation and checkpointing the run trained with (``auto`` settled), where recorded."""
    decided = training_config.get("decided", {}) if isinstance(training_config, dict) else {}
    batch = decided.get("batch", {}) if isinstance(decided, dict) else {}
    keys = ("batch_size", "grad_accum", "gradient_checkpointing")
    return {key: batch[key] for key in keys if isinstance(batch, dict) and key in batch}


def _plugin_options(training_config: Any) -> dict[str, dict[str, Any]]:
    """The run's validated plugin options by key path (``model.<collator>``, ...), scalars only, no secret keys."""
    resolved = training_config.get("resolved_options", {}) if isinstance(training_config, dict) else {}
    return {
        path: {key: value for key, value in options.items() if not SECRET_KEY.search(key) and _is_scalar_or_list(value)}
        for path, options in resolved.items()
        if isinstance(options, dict)
    }


def _hyperparameters(training: dict[str, Any]) -> dict[str, Any]:
    """The training settings worth showing, plus the chosen trainer's own option table (e.g. LoRA r and alpha)."""
    shown = {label: training[key] for key, label in TRAINING_KEYS if training.get(key) not in (None, "")}
    method_options = training.get(str(training.get("method")), {})
    if isinstance(method_options, dict):
        for key, value in method_options.items():
            if not SECRET_KEY.search(key) and _is_scalar_or_list(value):
                shown[f"{training['method']} {key}"] = value
    return shown


def model_card_text(
    model: PublishableModel, *, model_id: str, license: str, tags: list[str], host: PluginHost | None = None
) -> str:
    """Build the card, let plugins add sections (``model_card_sections``), and render it to Markdown."""
    from voxplug.plugins import get_plugin_host

    card = build_model_card(model, model_id=model_id, license=license, tags=tags)
    card.sections.extend((host or get_plugin_host()).model_card_sections(card=card))
    return render_model_card(card)


def render_model_card(card: ModelCard) -> str:
    """Render ``card`` (metadata, facts, plugin sections) through the ``model_card.md`` template."""
    import yaml

    facts = card.facts
    languages = ", ".join(facts["languages"]) or "not recorded"
    body = {
        "metadata": yaml.safe_dump(card.metadata, sort_keys=False, allow_unicode=True).strip(),
        "title": facts["display_name"].rsplit("/", 1)[-1],
        "summary": _summary(facts),
        "results": _results(facts),
        "usage": _usage(facts),
        "training": _training(facts),
        "training_data": _training_data(facts),
        "languages": languages,
        "extra_sections": "".join(f"\n{section.strip()}\n" for section in card.sections if section and section.strip()),
        "voxplug_version": facts["voxplug_version"],
    }
    return load_template("model_card.md").substitute(body)


UNKNOWN_BASE = "<base model id>"
"""What the usage snippet of an adapter whose base model has no known Hub id names as its base."""


def _summary(facts: dict[str, Any]) -> str:
    base = facts["base_model"]
    if hub_repo_ids([base]):
        base_link = f"[{base}](https://huggingface.co/{base})"
    else:
        base_link = f"`{base}`" if base else "a base model loaded from a local folder (its Hub id was not recorded)"
    what = "A LoRA adapter for" if facts["kind"] == "adapter" else "A fine-tuned version of"
    langs = ", ".join(facts["languages"]) or "the languages of its training data"
    method = facts["method"] or "unknown"
    if facts["quantization"]:
        method += f" over the base quantized to 4-bit {facts['quantization'].upper()}: QLoRA"
    return f"{what} {base_link} that transcribes speech ({langs}), trained with voxplug ({method})."


def _results(facts: dict[str, Any]) -> str:
    evaluation = facts["eval"]
    rows = [
        ("WER", _percent(evaluation.get("eval_wer"))),
        ("CER", _percent(evaluation.get("eval_cer"))),
        ("evaluation loss", evaluation.get("eval_loss")),
        ("evaluation clips", evaluation.get("eval_samples")),
    ]
    table = markdown_table(rows, header=("metric (held-out split)", "value"))
    return table or "No evaluation results were recorded for this run."


def _percent(value: Any) -> str | None:
    return f"{100 * float(value):.2f} %" if isinstance(value, (int, float)) else None


def _usage(facts: dict[str, Any]) -> str:
    languages = facts["languages"]
    model_class = MODEL_CLASSES.get(str(facts["family"]))
    values = {
        "model_id": facts["model_id"],
        "base_model": facts["base_model"] or UNKNOWN_BASE,
        "model_class": model_class or "AutoModelForSpeechSeq2Seq",
        "language": repr(languages[0]) if len(languages) == 1 else "None",
        "languages": ", ".join(languages) or "any the base model knows",
    }
    style = "realtime" if facts["family"] in STREAMING_FAMILIES else "voxtral" if model_class else "pipeline"
    text = load_template(f"usage_{style}_{facts['kind']}.md").substitute(values).strip()
    if facts["quantization"] and facts["kind"] == "adapter":
        text += (
            f"\n\nThe adapter was trained over the base quantized to 4-bit {facts['quantization'].upper()}. It loads "
            "on the bf16 base as above; to run it in the memory it trained in, load the base with "
            "`quantization_config=BitsAndBytesConfig(load_in_4bit=True, "
            f'bnb_4bit_quant_type="{facts["quantization"]}", bnb_4bit_compute_dtype=torch.bfloat16)`.'
        )
    if facts["has_merged"]:
        text += (
            f"\n\nThe `merged/` folder holds the adapter merged into the base model, a standalone model:\n"
            f'`{values["model_class"]}.from_pretrained("{facts["model_id"]}", subfolder="merged")` '
            f'with `AutoProcessor.from_pretrained("{facts["model_id"]}", subfolder="merged")`.'
        )
    return text


def _training(facts: dict[str, Any]) -> str:
    train = facts["train"]
    base = facts["base_model"] or "a local folder (not published)"
    rows: list[tuple[str, Any]] = [("base model", base), ("result", facts["kind"])]
    if facts["quantization"]:
        rows.append(
            ("base weights in training", f"4-bit {facts['quantization'].upper()} (bitsandbytes), computing in bf16")
        )
    rows += list(facts["hyperparameters"].items())
    rows += [("duration", format_duration(train.get("train_runtime"))), ("hardware", _hardware(train.get("hardware")))]
    rows += [(label, train.get(key)) for key, label in RESULT_KEYS]
    rows.append(("time per stage", _stage_times(train.get("stage_seconds"))))
    text = markdown_table(rows, header=("setting", "value"))
    if facts["has_curves"]:
        text += "\n\n![Training curves](curves.png)"
    return text


def _training_data(facts: dict[str, Any]) -> str:
    datasets = facts["datasets"]
    licenses = facts.get("dataset_licenses") or {}
    lines = [
        f"- {_dataset_link(name)}" + (f", licence {licenses[name]}" if licenses.get(name) else "") for name in datasets
    ] or ["- not recorded"]
    lines.append(f"- languages: {', '.join(facts['languages']) or 'not recorded'}")
    samples = facts["eval"].get("eval_samples")
    if samples is not None:
        lines.append(f"- {samples} clips were held out for evaluation and never trained on")
    return "\n".join(lines)


def _dataset_link(name: str) -> str:
    ids = hub_repo_ids([name])
    return f"[{name}](https://huggingface.co/datasets/{name})" if ids else f"`{name}` (local)"


def _stage_times(stages: Any) -> str | None:
    """``data loading 2.1 s, training 3 min 05 s, ...`` from ``stage_seconds`` (see voxplug.training.monitoring)."""
    if not isinstance(stages, dict):
        return None
    parts = [f"{name.replace('_', ' ')} {format_duration(seconds)}" for name, seconds in stages.items()]
    return ", ".join(part for part in parts if not part.endswith("None")) or None


def _hardware(value: Any) -> Any:
    if isinstance(value, dict):
        return ", ".join(f"{key}: {item}" for key, item in value.items())
    return value


def format_duration(seconds: Any) -> str | None:
    """``3725`` → ``1 h 02 min 05 s``; None for anything but a number."""
    if not isinstance(seconds, (int, float)):
        return None
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def markdown_table(rows: list[tuple[str, Any]], *, header: tuple[str, str]) -> str:
    """A two-column Markdown table of the rows whose value is not None (empty string when none are)."""
    kept = [(label, _format_value(value)) for label, value in rows if value not in (None, "", [], {})]
    if not kept:
        return ""
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in kept]
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(item) for item in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_scalar_or_list(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or (
        isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value)
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))
