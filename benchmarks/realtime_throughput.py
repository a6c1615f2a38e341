"""LoRA training throughput of Voxtral Realtime at its real shape (Voxtral-Mini-4B-Realtime-2602), random weights.

What runs: transformers' default ``VoxtralRealtimeConfig`` (the 4B shape: a 32-layer causal encoder of width 1280,
the 4x projector, a 26-layer decoder of width 3072 with a 131,072-word tied head), random weights in bf16 on one
GPU, and the full Tekken vocabulary from the mistral-common wheel with the realtime special tokens. Training goes
through voxplug's own pieces, as ``voxplug train`` does: ``RunConfig`` -> ``decide`` -> ``build_training_arguments``,
the ``lora`` trainer (r 8 on the decoder, encoder run without autograd), ``ExampleDataset``, the
``voxtral-realtime-streaming`` collator with the ``words`` aligner at the 480 ms delay, and ``TranscriptionTrainer``
(logits at label positions).

Data: ``--clips`` WAV files of 3 to 30 s (uniform), each a concatenation of the bundled 16 kHz clips in
``examples/speech/en`` with 0.25 s gaps; word timings from their ``words.jsonl``, shifted.

Timing: a CUDA event at the end of every optimizer step, read when training ends; the first ``--warmup`` steps
are dropped. Samples/s and audio-seconds/s are over the remaining steps.

FLOPs are *useful* model FLOPs: each sample counted at its own length (no batch padding), in the LoRA regime:
the conv stem, encoder linears and projector forward only (2N per frame or token; the encoder runs without
autograd), decoder linears forward and input gradient (4N per token) plus the adapters trained (6 x r x (in + out)
per adapted layer and token), the tied head at the label positions (4N), and attention scores (4 x d_attn x the
causal context, within the sliding windows: 750 encoder frames, 8192 decoder positions), x3 in the decoder for its
backward: the standard count of ``benchmarks/model_flops.py`` (there for Voxtral-Mini-3B), with sliding windows.
MFU is the mean useful FLOPs per sample x samples/s over the card's datasheet bf16 dense peak (989.4 TFLOP/s for
H100 SXM and H200, from ``model_flops``; none for a card not in its table; ``--peak-tflops`` overrides). Peak memory is
``torch.cuda.max_memory_allocated``.

Run (GPU, a few minutes)::

    python benchmarks/realtime_throughput.py --out benchmarks/results

``--tiny`` runs the same code on CPU with the tiny test model (a smoke test; the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_flops import causal_pairs, datasheet_peak_tflops

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "examples" / "speech" / "en"
FULL_VOCAB_RANKS = 130_072  # + 1000 special tokens = the realtime model's 131,072
DELAY_MS = 480
GAP_S = 0.25


@dataclass(frozen=True)
class Shape:
    """What the FLOP count needs of the model: linear parameters per part and attention geometry."""

    encoder_linear: int
    conv_macs_per_frame: int  # multiply-accumulates per mel frame of the two convolutions, as one frame's share
    projector_linear: int
    decoder_linear: int
    head: int
    adapters_per_token: int  # r x (in + out) summed over the adapted layers
    encoder_layers: int
    encoder_attention_width: int
    encoder_window: int
    decoder_layers: int
    decoder_attention_width: int
    decoder_window: int


def linear_parameters(module: Any, skip: str = "ada_rms_norm") -> int:
    """Weights of the ``torch.nn.Linear`` layers under ``module`` (not PEFT's adapters, not the delay conditioning)."""
    import torch

    return sum(
        sub.weight.numel()
        for name, sub in module.named_modules()
        if isinstance(sub, torch.nn.Linear) and skip not in name and "lora_" not in name
    )


def model_shape(model: Any, lora_r: int) -> Shape:
    """The FLOP-relevant shape of a (PEFT-wrapped) ``VoxtralRealtimeForConditionalGeneration``."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config
    audio, text = config.audio_config, config.text_config
    embedder = inner.model.audio_tower.embedder
    conv_macs = sum(conv.weight.numel() // max(1, conv.stride[0]) for conv in (embedder.conv1, embedder.conv2))
    adapters = sum(
        lora_r * (sub.in_features + sub.out_features)
        for sub in model.modules()
        if hasattr(sub, "lora_A") and isinstance(getattr(sub, "base_layer", None), torch.nn.Linear)
    )
    return Shape(
        encoder_linear=linear_parameters(inner.model.audio_tower),
        conv_macs_per_frame=conv_macs,
        projector_linear=linear_parameters(inner.model.multi_modal_projector),
        decoder_linear=linear_parameters(inner.model.language_model),
        head=inner.lm_head.weight.numel(),
        adapters_per_token=adapters,
        encoder_layers=audio.num_hidden_layers,
        encoder_attention_width=audio.num_attention_heads * audio.head_dim,
        encoder_window=audio.sliding_window,
        decoder_layers=text.num_hidden_layers,
        decoder_attention_width=text.num_attention_heads * text.head_dim,
        decoder_window=text.sliding_window or 10**9,
    )


def useful_flops(shape: Shape, positions: int, label_positions: int) -> dict[str, float]:
    """One sample's useful training FLOPs (LoRA regime, see the module docstring), by part."""
    frames = 4 * positions  # encoder frames: 8 mel frames per position, halved by the stride-2 convolution
    mel_frames = 8 * positions
    attention = 4 * shape.encoder_attention_width * causal_pairs(frames, shape.encoder_window)
    decoder_attention = 4 * shape.decoder_attention_width * causal_pairs(positions, shape.decoder_window)
    return {
        "conv_stem": 2 * shape.conv_macs_per_frame * mel_frames,
        "encoder_linear": 2 * shape.encoder_linear * frames,
        "encoder_attention": shape.encoder_layers * attention,
        "projector": 2 * shape.projector_linear * positions,
        "decoder_linear": 4 * shape.decoder_linear * positions,
        "adapters": 6 * shape.adapters_per_token * positions,
        "decoder_attention": 3 * shape.decoder_layers * decoder_attention,
        "head": 4 * shape.head * label_positions,
    }


def make_clips(folder: Path, count: int, min_s: float, max_s: float, seed: int) -> list[Any]:
    """``count`` examples of the bundled clips concatenated to 3-30 s, with shifted word timings."""
    import numpy as np

    from voxplug.data.audio import load_audio_16k, write_wav_16k
    from voxplug.data.interface import Example

    rows = [json.loads(line) for line in (SPEECH / "words.jsonl").read_text(encoding="utf-8").splitlines()]
    sources = [(load_audio_16k(SPEECH / row["file"]).samples, row["words"]) for row in rows]
    generator = random.Random(seed)
    gap = np.zeros(round(GAP_S * 16000), dtype=np.float32)
    examples = []
    for index in range(count):
        target = generator.uniform(min_s, max_s)
        pieces, words, cursor = [], [], 0.0
        while True:
            audio, timings = sources[generator.randrange(len(sources))]
            if pieces and cursor + audio.shape[0] / 16000 > target:
                break
            words += [{**word, "start": word["start"] + cursor, "end": word["end"] + cursor} for word in timings]
            pieces += [audio, gap]
            cursor += audio.shape[0] / 16000 + GAP_S
        path = write_wav_16k(folder / f"clip_{index:04d}.wav", np.concatenate(pieces))
        text = " ".join(word["word"] for word in words)
        examples.append(
            Example(id=path.stem, text=text, language="en", audio_path=path, duration_s=cursor, meta={"words": words})
        )
    return examples


def build_model(tiny: bool, device: str) -> Any:
    """The 4B realtime shape with random bf16 weights on ``device`` (the tiny test shape in fp32 with ``tiny``)."""
    import torch
    from transformers import VoxtralRealtimeConfig, VoxtralRealtimeForConditionalGeneration
    from voxplug_voxtral_realtime.tiny import tiny_realtime_config

    config = tiny_realtime_config(3000) if tiny else VoxtralRealtimeConfig()
    dtype = torch.float32 if tiny else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = VoxtralRealtimeForConditionalGeneration._from_config(config, dtype=dtype)
    return model.train()


def step_timer(times: list[float]) -> Any:
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    class StepTimer(TrainerCallback):
        """The end of every optimizer step: a CUDA event read after training (the host never waits for it)."""

        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start_host = time.perf_counter()
            if cuda:
                torch.cuda.synchronize()
                self.start = torch.cuda.Event(enable_timing=True)
                self.start.record()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                self.events.append(event)
            else:
                times.append(time.perf_counter() - self.start_host)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
                times.extend(self.start.elapsed_time(event) / 1e3 for event in self.events)

    return StepTimer()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers.trainer_utils import SaveStrategy
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral_realtime.family import VoxtralRealtimeCollator, VoxtralRealtimeFamily
    from voxplug_voxtral_realtime.loading import load_realtime_processor
    from voxplug_voxtral_realtime.tiny import save_realtime_processor

    from voxplug.config import validate_config
    from voxplug.training.arguments import build_training_arguments
    from voxplug.training.context import decide
    from voxplug.training.dataset import ExampleDataset
    from voxplug.training.transcription_trainer import TranscriptionTrainer

    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    work = Path(tempfile.mkdtemp(prefix="realtime-bench-"))
    save_realtime_processor(work, 2000 if args.tiny else FULL_VOCAB_RANKS)
    processor = load_realtime_processor(work)
    examples = make_clips(work, args.clips, args.min_s, args.max_s, args.seed)
    config = validate_config(
        {
            "name": "realtime-bench",
            "model": {"name_or_path": str(work)},
            "data": {"language": "en"},
            "training": {
                "method": "lora",
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "logging_steps": 10,
                "save_steps": 10**6,
                "precision": "fp32" if not cuda else "bf16",
                "dataloader_workers": args.workers,
                "lora": {"r": args.lora_r},
            },
            "publish": {"target": None},
        },
        base_dir=work,
    )
    family = VoxtralRealtimeFamily()
    started = time.perf_counter()
    model = build_model(args.tiny, device)
    build_s = time.perf_counter() - started
    context = decide(config, {}, train_rows=len(examples), world_size=1)
    model = LoraMethod(LoraOptions(r=args.lora_r)).prepare_model(model, family, context)
    training_args = build_training_arguments(config, context, has_eval=False, output_dir=work / "checkpoints")
    training_args.save_strategy = SaveStrategy.NO
    collator = VoxtralRealtimeCollator({"aligner": "words", "delay_ms": DELAY_MS}, processor=processor)
    dataset = ExampleDataset(examples, default_language="en")
    times: list[float] = []
    trainer = TranscriptionTrainer(
        model=model, args=training_args, train_dataset=dataset, data_collator=collator, callbacks=[step_timer(times)]
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    return summarize(args, model, collator, dataset, examples, times, build_s)


def summarize(
    args: argparse.Namespace, model: Any, collator: Any, dataset: Any, examples: list[Any], times: list[float], build_s
) -> dict[str, Any]:
    """Steady-state throughput, useful FLOPs and MFU, peak memory."""
    import torch

    shape = model_shape(model, args.lora_r)
    per_sample: list[dict[str, float]] = []
    delay = collator.collate.delay_choices[0]
    for index in range(len(examples)):
        (sequence,), _ = collator.collate.sequences([dataset[index]], delay)
        prompt = collator.collate.layout(delay).prompt_length
        per_sample.append(useful_flops(shape, len(sequence.input_ids), len(sequence.input_ids) - prompt))
    mean_flops = {part: sum(s[part] for s in per_sample) / len(per_sample) for part in per_sample[0]}
    flops_per_sample = sum(mean_flops.values())
    warm = times[args.warmup - 1 :] if args.warmup > 0 else [0.0, *times]
    steps = len(warm) - 1
    seconds = warm[-1] - warm[0]
    samples_per_s = steps * args.batch_size / seconds
    audio_s = sum(example.duration_s for example in examples) / len(examples)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "cpu"
    peak = args.peak_tflops or datasheet_peak_tflops(device_name)
    result = {
        "device": device_name,
        "shape": "tiny" if args.tiny else "Voxtral-Mini-4B-Realtime-2602 (random weights)",
        "lora_r": args.lora_r,
        "batch_size": args.batch_size,
        "delay_ms": DELAY_MS,
        "clips": args.clips,
        "mean_clip_s": round(audio_s, 2),
        "timed_steps": steps,
        "seconds_per_step": round(seconds / steps, 4),
        "samples_per_s": round(samples_per_s, 3),
        "audio_s_per_s": round(samples_per_s * audio_s, 2),
        "useful_tflops_per_sample": round(flops_per_sample / 1e12, 4),
        "useful_tflops_per_sample_by_part": {k: round(v / 1e12, 5) for k, v in mean_flops.items()},
        "achieved_tflops": round(samples_per_s * flops_per_sample / 1e12, 3),
        "peak_bf16_tflops": peak,
        "mfu": round(samples_per_s * flops_per_sample / (peak * 1e12), 4) if peak else None,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2)
        if torch.cuda.is_available() and not args.tiny
        else None,
        "model_build_s": round(build_s, 1),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny model")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (30; 4 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (5; 1 with --tiny)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=None, help="distinct clips (256; 8 with --tiny)")
    parser.add_argument("--min-s", type=float, default=3.0)
    parser.add_argument("--max-s", type=float, default=30.0)
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="data-loader workers (4; 0 with --tiny)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak for MFU (default: the datasheet's)")
    args = parser.parse_args(argv)
    tiny_defaults = {"steps": 4, "warmup": 1, "clips": 8, "workers": 0}
    full_defaults = {"steps": 30, "warmup": 5, "clips": 256, "workers": 4}
    for key, value in (tiny_defaults if args.tiny else full_defaults).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.tiny:
        args.max_s = min(args.max_s, 6.0)
        args.batch_size = min(args.batch_size, 2)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "realtime_lora_tiny.json" if args.tiny else f"realtime_lora_{result['device'].replace(' ', '_')}.json"
    (args.out / name).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "useful_tflops_per_sample_by_part"}))
    return result


if __name__ == "__main__":
    sys.path[:0] = [str(REPO), str(REPO / "plugins")]
    main()
