"""Training throughput of Voxtral fine-tuning on one GPU: VoxFactory's recipe against voxplug's defaults (Mini-3B).

What runs (all in one process, all through transformers' ``Trainer``, which is what users run):

* ``voxfactory``: the VoxFactory LoRA recipe reimplemented from ``shared/reference/voxfactory.md`` sections 1.4
  and 2: bf16 weights and ``bf16=True``, LoRA r=8 / alpha=32 / dropout 0 on the plain names q/k/v/o_proj
  (which also land on the Whisper encoder's q/k/v, so the backward pass runs through all 32 encoder layers),
  ``task_type="SEQ_2_SEQ_LM"``, audio tower frozen before ``get_peft_model``, micro-batch 2 x grad-accum 4,
  lr 5e-5, AdamW (``adamw_torch``), linear schedule, ``dataloader_num_workers=1``, its collator (prompt from
  ``apply_transcription_request(language="en", format=["WAV"]...)``, transcript tokens truncated at 256, no EOS,
  right padding) and the model's own loss over full-vocabulary logits at every position. Departures, none of
  which slows it: no evaluation and no checkpoints during the timed run (it saved every 50 steps), and audio is
  decoded with soundfile instead of ``datasets.Audio``/torchcodec.
* ``lora-*`` and ``full-*``: voxplug's own run (``voxplug.training.run.TrainingRun``, what ``voxplug train``
  runs) of its ``lora`` or ``full`` method, from a ``RunConfig`` of the repository's defaults and the variant's
  overrides: the clips as a JSONL dataset (every clip trains: none held out, none may be dropped), the model from
  the benchmark's model family ``voxtral-random`` (:func:`bench_family`: Voxtral's family, whose ``load`` builds
  random weights of the benchmark's shape on the run's device instead of reading a checkpoint), no evaluation and
  no checkpoint during the run. ``lora``: adapters on the language model only, the encoder run without autograd,
  logits only at label positions, and since the sixth session the language model's layers replayed as CUDA
  graphs (``training.speed.cuda_graphs``) unless a variant pins it off, as every earlier one does. ``full``: fp32
  master weights (the model is held in fp32, the forward runs under bf16 autocast), language model + projector
  trained, encoder frozen without autograd. The run saves its final model after the timing, as a user's run does
  (the run folder is deleted afterwards).

  The benchmark measures through the run's public seams: Trainer callbacks (step times, the profiler, peak
  memory), its plugin's ``before_train`` hook, which sees the run's Trainer (``TrainingRun.hf_trainer``) and
  speed objects (``encoder_cache``, ``cuda_graphs``) just before training and sets there what it records of each
  micro-batch and the variant switches no config key reaches (:func:`variant_switches`), and the family's
  ``speed().fuse_kernels``, around which the fixed batch's loss is checked.

Variants change one thing at a time (see ``VARIANTS``); ``lora-default`` and ``full-default`` use whatever the
repository's config defaults are when the script runs.

Data: ``--clips`` WAV files of 3 to 30 s (uniform), each a concatenation of the 24 bundled 16 kHz clips in
``examples/speech/en`` with 0.25 s gaps, the transcript the concatenated sentences. Every variant sees the real
data path: file decode, the processor's WAV round trip and mel feature extraction in the collator, in data loader
workers whose batches run on from one epoch into the next (``voxplug.training.sampling.EpochSlices``) unless a
variant pins ``epoch_stream: false``.

Timing: a callback records a CUDA event at the end of every optimizer step, read when training ends, so the host
never waits for the GPU on the benchmark's account (until 2026-12-02 it synchronized at every step's end, which
kept the host from queueing the next step early; ``step_sync`` variants do that still). The first ``--warmup``
steps are dropped and throughput is measured over the remaining steps. The issue's target speaks of a
3-epoch run: this measures the steady state of one epoch, which a 3-epoch run repeats. With ``--clips`` small
enough that ``--steps`` spans several epochs (``--clips 96 --steps 36``: 3 epochs), the JSON also holds
``run_samples_per_s`` (the whole run, compile and first steps included), ``per_step`` (seconds, processed FLOPs,
samples, chunks, chunks served by the encoder cache and useful FLOPs of each timed step), the median step's MFU and
``cache_warm_steps`` (throughput and MFU over the steps whose every chunk came from the encoder cache: epochs 2 and
later, the steady state of a long run).

MFU, the headline (``mfu_standard``), is the standard count of ``benchmarks/model_flops.py`` (its docstring says
exactly what it counts, and how PaLM, nanoGPT and FlashAttention count): *useful* model FLOPs, each row of a batch at
its own real length (``row_tokens``), logits only at the label positions, causal decoder attention (half of full),
the encoder over the 30 s chunks it ran, no weight gradients for frozen weights; over the card's datasheet dense
bf16 peak (``model_flops.DATASHEET_BF16_DENSE_TFLOPS``; a card not in that table gets no standard MFU). In the
three regimes: VoxFactory's LoRA, whose plain q/k/v/o targets also adapt the encoder, so the backward pass runs
through the encoder and projector; voxplug's ``lora`` (encoder and projector without autograd); voxplug's
``full`` (decoder, embeddings, output layer and projector train).

Beside it, ``mfu_processed_over_measured_matmul`` is the count this benchmark reported first (``FlopModel``):
*processed* FLOPs over the bf16 matmul rate measured in the same run (8192^3, random data, median of 20 after
warm-up). Processed FLOPs count every row at the batch's padded length S, attention as the full S^2 (4 x S^2 x
d_attn per layer forward, x3 with backward), the logits at every kept position (all of them for VoxFactory's full
logits, and voxplug's per-row label lists padded to the longest), and no first-layer exceptions. The CUDA graphs' own
padding (a batch replayed in a larger captured shape, ``LayerGraphs``) is counted by neither: it shows as lost
time. Audio-seconds/s counts real (unpadded) audio.

``--recount FILE...`` recomputes the standard MFU of results files on the CPU, without training: it rebuilds the
file's clips (the same seed, checked against the file's clip statistics), collates each clip with the collator its
variant used to find its real tokens, and divides the useful FLOPs of the timed samples by their seconds. Which
clips a partly covered epoch held is not in the file, so the recount also gives bounds (the smallest and largest
clips filling the partial epochs). It writes ``<file>.standard-mfu.json`` beside each file.

Checks recorded in the JSON: for every fast path, the loss of the plain model forward (full logits, the model's
own loss) and of the fast path on the same fixed batch, at full shape on the GPU.

Run (GPU, about 5 minutes with the memory probe)::

    python benchmarks/train_throughput.py --out benchmarks/results

``--tiny`` runs every code path on CPU with the tiny test model (a smoke test, numbers meaningless).

``--shape small`` measures Voxtral-Small-24B-2507 instead (:data:`VOXTRAL_SMALL_TEXT`: the real checkpoint's
dimensions, random weights created in bf16 on the GPU): voxplug's LoRA only (the ``small-*`` variants: micro-batch
and gradient checkpointing varied, the 3B defaults otherwise), and a memory probe with and without checkpointing for
the largest micro-batch. The standard count reads the model's config, so its MFU is the 24 B model's. Results go to
``train_throughput-<card>-small.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from model_flops import ENCODER_LORA, FULL, LORA, Adapters, Regime, VoxtralShape, datasheet_peak_tflops, total

from voxplug import hookimpl

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "examples" / "speech" / "en"
SAMPLING_RATE = 16000
GAP_S = 0.25
EFFECTIVE_BATCH = 8

# One change at a time. Keys: method (voxfactory | lora | full), overrides of the voxplug run config
# ("training.x" / "model.x" / "training.lora.x"), collator options ("collator": model.voxtral-transcription.x), and
# benchmark-only switches (label_logits, profile, kernels, ...: see variant_switches and run_variant).
# Variants that pin a setting pin it explicitly, so that they keep measuring
# the same thing when the repository's defaults change; "*-default" take the defaults as they are.
# the LoRA variants before the sixth session ran every layer eagerly (CUDA graphs came then)
_EAGER = {"training.speed.cuda_graphs": False}
_PINNED = {
    **_EAGER,
    "training.compile": False,
    "training.speed.encoder_cache_gb": 0,
    "training.group_by_length": True,
}
_MB2 = {**_PINNED, "training.batch_size": 2, "training.grad_accum": 4, "training.speed.fused_kernels": False}
_MB8 = {**_PINNED, "training.batch_size": 8, "training.grad_accum": 1, "training.dataloader_workers": 4}
_LIGER = {**_MB8, "training.speed.fused_kernels": True}
_COMPILE = {**_MB8, "training.compile": True}
_MASTERS_NOCKPT = {
    "training.master_weights": "optimizer",
    "training.batch_size": 8,
    "training.grad_accum": 1,
    "training.gradient_checkpointing": False,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "voxfactory": {"method": "voxfactory"},
    "voxfactory-lm-only": {"method": "voxfactory", "lm_only_targets": True},
    "lora-v0": {
        "method": "lora",
        "config": {**_MB2, "training.dataloader_workers": 0, "training.optim": "adamw_torch"},
        "label_logits": False,
    },
    "lora-workers": {
        "method": "lora",
        "config": {**_MB2, "training.dataloader_workers": 4, "training.optim": "adamw_torch"},
        "label_logits": False,
    },
    "lora-labels": {
        "method": "lora",
        "config": {**_MB2, "training.dataloader_workers": 4, "training.optim": "adamw_torch"},
    },
    "lora-mb8": {"method": "lora", "config": {**_MB8, "training.speed.fused_kernels": False}},
    # the defaults of 2026-11-25: Liger kernels, no encoder cache
    "lora-liger": {"method": "lora", "config": _LIGER},
    "lora-liger-cache": {"method": "lora", "config": {**_LIGER, "training.speed.encoder_cache_gb": 8}},
    "lora-compile": {"method": "lora", "config": _COMPILE, "profile": True},
    "lora-compile-cache": {
        "method": "lora",
        "config": {**_COMPILE, "training.speed.encoder_cache_gb": 8},
        "profile": True,
    },
    "lora-default": {"method": "lora", "profile": True},
    "full-v0": {
        "method": "full",
        "config": {**_MB2, "training.dataloader_workers": 0, "training.optim": "adamw_torch"},
        "label_logits": False,
    },
    "full-fused": {"method": "full", "config": {**_MB2, "training.dataloader_workers": 4}},
    "full-mb8": {"method": "full", "config": {**_MB8, "training.speed.fused_kernels": False}},
    "full-liger": {"method": "full", "config": _LIGER},
    "full-liger-cache": {"method": "full", "config": {**_LIGER, "training.speed.encoder_cache_gb": 8}},
    "full-compile": {"method": "full", "config": _COMPILE, "profile": True},
    "full-compile-cache": {
        "method": "full",
        "config": {**_COMPILE, "training.speed.encoder_cache_gb": 8},
        "profile": True,
    },
    "full-default": {"method": "full", "profile": True},
    # fp32 masters in the optimizer: the model trains in bf16 (no weight or gradient casts); 8 x 1 with and without
    # checkpointing, beside the same batch with the masters in the model (and full-ckpt-mb8 below)
    "full-nockpt": {
        "method": "full",
        "config": {"training.batch_size": 8, "training.grad_accum": 1, "training.gradient_checkpointing": False},
    },
    "full-masters": {
        "method": "full",
        "config": {
            "training.master_weights": "optimizer",
            "training.batch_size": 8,
            "training.grad_accum": 1,
            "training.gradient_checkpointing": True,
        },
    },
    "full-masters-nockpt": {
        "method": "full",
        "config": _MASTERS_NOCKPT,
        "profile": True,
    },
    # where a first-epoch step's time goes (the encoder still runs): steps 5-6 profiled
    "full-compile-cache-epoch1": {
        "method": "full",
        "config": {**_COMPILE, "training.speed.encoder_cache_gb": 8},
        "profile": True,
        "profile_at": 4,
    },
    "full-liger-cache-epoch1": {
        "method": "full",
        "config": {**_LIGER, "training.speed.encoder_cache_gb": 8},
        "profile": True,
        "profile_at": 4,
    },
    "lora-mb2-default": {"method": "lora", "config": {**_EAGER, "training.batch_size": 2, "training.grad_accum": 4}},
    # each optimizer step a random mix of lengths (grouping makes the 8 clips of a step alike; Voxtral pads every
    # clip to a 30 s chunk, so grouping only saves transcript padding): does lora-default learn like 2 x 4 then?
    "lora-nogroup": {"method": "lora", "config": {**_EAGER, "training.group_by_length": False}},
    # 2026-12-02 (third session): the step no longer waits for the GPU (label positions and the placeholder check
    # on the CPU, no attention mask, non-blocking copies, the NaN filter on the device), and this benchmark no
    # longer synchronizes at each step's end. A/Bs: the old timing, the mask back, CUDA graphs.
    "lora-compile-cache-stepsync": {
        "method": "lora",
        "config": {**_COMPILE, "training.speed.encoder_cache_gb": 8},
        "step_sync": True,
    },
    "lora-compile-cache-mask": {
        "method": "lora",
        "config": {**_COMPILE, "training.speed.encoder_cache_gb": 8},
        "collator": {"attention_mask": True},
    },
    "lora-default-mask": {"method": "lora", "config": _EAGER, "collator": {"attention_mask": True}},
    # since 2026-12-02 (third session) the defaults do not group by length
    "lora-compile-default": {"method": "lora", "config": {"training.compile": True}, "profile": True},
    "full-compile-default": {"method": "full", "config": {"training.compile": True}, "profile": True},
    # SDPA without cuDNN attention (flash instead): cuDNN builds a plan for each new padded length on the host
    "lora-default-nocudnn": {"method": "lora", "config": _EAGER, "cudnn_sdp": False},
    "lora-compile-nocudnn": {"method": "lora", "config": {"training.compile": True}, "cudnn_sdp": False},
    # 2026-12-02 (fourth session): eager LoRA is host-bound. One autograd node per adapted layer
    # (training.lora.one_node) and PyTorch's fused RMSNorm instead of Liger's Triton one are the new defaults.
    # "kernels" pins the fused kernels (from voxplug_voxtral.kernels.FUSED) and whose RMSNorm
    "lora-peft": {"method": "lora", "config": {**_EAGER, "training.lora.one_node": False}, "profile": True},
    "lora-torchnorm": {
        "method": "lora",
        "config": _EAGER,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"},
    },
    "lora-torchnorm-eagerswiglu": {
        "method": "lora",
        "config": _EAGER,
        "kernels": {"fused": ["rms_norm", "rope"], "rms_norm": "torch"},
        "profile": True,
    },
    "lora-ligernorm": {
        "method": "lora",
        "config": _EAGER,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "liger"},
    },
    "lora-ligernorm-peft": {
        "method": "lora",
        "config": {**_EAGER, "training.lora.one_node": False},
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "liger"},
    },
    # the BLAS library for matmuls: cuBLAS (PyTorch's default) or cuBLASLt; does either cost the host less a call?
    "lora-default-cublas": {"method": "lora", "config": _EAGER, "blas": "cublas"},
    "lora-default-cublaslt": {"method": "lora", "config": _EAGER, "blas": "cublaslt"},
    "full-torchnorm": {"method": "full", "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"}},
    "full-ligernorm": {"method": "full", "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "liger"}},
    # 2026-12-02 (fifth session): one node per group of adapted layers sharing their input (q/k/v, gate/up), and
    # lean PyTorch SwiGLU and RoPE instead of Liger's, are the new defaults. "lora_groups": false takes the groups
    # out; "kernels" without "swiglu"/"rope" keys means Liger's (as before)
    "lora-prev": {  # the fourth session's default: one node a layer, Liger's SwiGLU and RoPE
        "method": "lora",
        "config": _EAGER,
        "lora_groups": False,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"},
    },
    "lora-grouped-liger": {
        "method": "lora",
        "config": _EAGER,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"},
    },
    "lora-ungrouped": {"method": "lora", "config": _EAGER, "lora_groups": False},
    "lora-default-noprofile": {"method": "lora"},  # lora-default without its two profiled steps
    "lora-torchswiglu-ligerrope": {
        "method": "lora",
        "config": _EAGER,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch", "swiglu": "torch"},
    },
    # 2026-12-02 (sixth session): the language model's decoder layers replay as CUDA graphs (training.lora.
    # cuda_graphs), one forward and one backward graph per padded batch shape, captured at its first batch (at its
    # second in runs 21-23). lora-eager is the fifth session's default
    "lora-eager": {"method": "lora", "config": _EAGER},
    # "graph_eager_sightings": batches of a shape run eagerly before its capture (LayerGraphs.eager_sightings)
    "lora-graphs-first": {"method": "lora", "graph_eager_sightings": 0},
    "lora-graphs-second": {"method": "lora", "graph_eager_sightings": 1},
    # fewer padded shapes, so fewer captures; the padding's FLOPs count as processed work (see the docstring)
    "lora-graphs-pad32": {"method": "lora", "collator": {"pad_to_multiple_of": 32}},
    # 2026-12-02 (seventh session): a batch of a new shape pads into a captured shape until its padding has wasted
    # a capture's cost (LayerGraphs.capture_cost; 0 captures every shape, the sixth session's default). The padding
    # inside the graphs is not counted as processed FLOPs
    # "epoch_stream": false gives the Trainer's loader, which starts each epoch afresh (TranscriptionTrainer.
    # epochs_in_one_stream; since the seventh session batches run on from one epoch into the next)
    "lora-graphs-nopad": {"method": "lora", "graph_capture_cost": 0, "epoch_stream": False},  # the 6th's default
    "lora-nostream": {"method": "lora", "epoch_stream": False},
    # profiled over the last step of epoch 1 and the first of epoch 2 (96 clips: 12 steps an epoch)
    "lora-default-boundary": {"method": "lora", "profile": True, "profile_at": 11},
    "full-prev": {"method": "full", "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"}},
    # 2026-12-07 (twenty-first session): inside the graphs the host's cost of a kernel no longer counts, so Liger's
    # fused RoPE and SwiGLU (fewer, larger elementwise kernels) may win back the GPU time PyTorch's spend; a shape
    # runs eagerly once before its capture, so that Triton compiles outside it
    "lora-graphs-liger": {
        "method": "lora",
        "graph_eager_sightings": 1,
        "kernels": {"fused": ["rms_norm", "rope", "swiglu"], "rms_norm": "torch"},
    },
    "lora-graphs-second-noprofile": {"method": "lora", "graph_eager_sightings": 1},  # its baseline
    # the masters' AdamW in one pass (MasterWeights.fused) against three; one pass is the default since then
    "full-masters-onepass": {"method": "full", "config": _MASTERS_NOCKPT, "masters_fused": True},
    "full-masters-threepass": {"method": "full", "config": _MASTERS_NOCKPT, "masters_fused": False},
    "full-masters-noprofile": {  # full-masters-nockpt unprofiled (three passes in its 2026-12-07 results)
        "method": "full",
        "config": _MASTERS_NOCKPT,
    },
    # effective batch 32: the optimizer step (fp32 AdamW over 4.0 B parameters) spread over 4 micro-batches
    "full-liger-cache-ga4": {
        "method": "full",
        "config": {**_LIGER, "training.speed.encoder_cache_gb": 8, "training.grad_accum": 4},
    },
    # what configs/voxtral-mini-full.yaml could be: gradient checkpointing at 2 x 4 (its 2026-11-25 setting), 8 x 1
    "full-ckpt-mb2": {
        "method": "full",
        "config": {
            **_LIGER,
            "training.batch_size": 2,
            "training.grad_accum": 4,
            "training.gradient_checkpointing": True,
            "training.speed.encoder_cache_gb": 8,
        },
    },
    "full-ckpt-mb8": {
        "method": "full",
        "config": {**_LIGER, "training.gradient_checkpointing": True, "training.speed.encoder_cache_gb": 8},
    },
    "full-compile-ckpt": {
        "method": "full",
        "config": {**_COMPILE, "training.gradient_checkpointing": True, "training.speed.encoder_cache_gb": 8},
    },
    "full-mb4": {
        "method": "full",
        "config": {**_LIGER, "training.batch_size": 4, "training.grad_accum": 2, "training.speed.encoder_cache_gb": 8},
    },
}
# Voxtral-Small-24B (``--shape small``): LoRA only, as full fine-tuning's 16 bytes a parameter (~390 GB) fit no one
# card. voxplug's LoRA defaults as the 3B runs them (label logits, one node per adapted group, PyTorch's fused
# kernels, the encoder cache, the epoch stream, CUDA graphs), the micro-batch and checkpointing varied for memory.
# Gradient checkpointing turns the CUDA graphs off (voxplug.training.context.decide); compile stays off
# as in every 3B run this short (it starts on its own only at 2000 steps).
_SMALL = {"training.compile": False}
SMALL_VARIANTS: dict[str, dict[str, Any]] = {
    "small-lora-ckpt-mb8": {
        "method": "lora",
        "config": {**_SMALL, "training.gradient_checkpointing": True},
    },
    "small-lora-mb2": {
        "method": "lora",
        "config": {**_SMALL, "training.batch_size": 2, "training.grad_accum": 4},
    },
    "small-lora-mb4": {
        "method": "lora",
        "config": {**_SMALL, "training.batch_size": 4, "training.grad_accum": 2},
    },
    "small-lora-mb8": {"method": "lora", "config": _SMALL},  # the 3B LoRA default's 8 x 1
    # the CUDA graphs' share at this size (their private memory pools grow with the model's activations)
    "small-lora-mb2-eager": {
        "method": "lora",
        "config": {**_SMALL, "training.batch_size": 2, "training.grad_accum": 4, "training.speed.cuda_graphs": False},
    },
    "small-lora-ckpt-mb4": {
        "method": "lora",
        "config": {
            **_SMALL,
            "training.gradient_checkpointing": True,
            "training.batch_size": 4,
            "training.grad_accum": 2,
        },
    },
}
VARIANTS.update({name: {**spec, "shape": "small"} for name, spec in SMALL_VARIANTS.items()})
# The card-size presets (configs/voxtral-mini-lora-16gb.yaml, configs/voxtral-small-qlora-24gb.yaml): each preset's
# own settings under a per-process memory cap of its card's size, beside the same run without the cap (Mini) or over
# a bf16 base (Small, about 48 GB of weights: an 80 GB card), same steps, seed and clips; every step's loss is logged
# (``losses``). The cap applies to training only (``memory_cap_gib``, set just before the first step, when the model
# is loaded): the benchmark builds its random weights in bf16 on the GPU and quantizes them there, which a real load
# (shard by shard) does not need the memory for.
CARD_PRESET_VARIANTS: dict[str, dict[str, Any]] = {
    "preset-mini-16gb": {"method": "lora", "preset": "voxtral-mini-lora-16gb", "memory_cap_gib": 16},
    "preset-mini-16gb-uncapped": {"method": "lora", "preset": "voxtral-mini-lora-16gb"},
    "preset-small-qlora-24gb": {
        "method": "lora",
        "preset": "voxtral-small-qlora-24gb",
        "memory_cap_gib": 24,
        "shape": "small",
    },
    "preset-small-qlora-24gb-bf16": {
        "method": "lora",
        "preset": "voxtral-small-qlora-24gb",
        "config": {"model.quantization": None},
        "shape": "small",
    },
}
VARIANTS.update(CARD_PRESET_VARIANTS)
#: What of a preset a preset variant takes: how it trains, not its data, length, evaluation or publishing.
PRESET_KEYS = {
    "model": ("dtype", "attn_implementation", "quantization"),
    "training": (
        "batch_size",
        "grad_accum",
        "gradient_checkpointing",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "precision",
        "dataloader_workers",
    ),
}
DEFAULT_ORDER = "lora-default,voxfactory,lora-default#2,full-default"
#: Most likely to fit first: an out-of-memory variant can leave the allocator fragmented for the next one.
SMALL_DEFAULT_ORDER = "small-lora-ckpt-mb8,small-lora-mb2,small-lora-mb4,small-lora-mb8"
#: The memory probe's micro-batches (30 s clips) for each shape: "method[+ckpt]:sizes;..."
DEFAULT_PROBES = {"mini": "lora:16,24,32;full:8,10,12", "small": "lora:1,2,3,4,6,8;lora+ckpt:8,16,32,48,64"}


# -- data ---------------------------------------------------------------------------------------------------


@dataclass
class Clip:
    """One benchmark clip on disk."""

    path: Path
    text: str
    duration_s: float


def bundled_clips() -> list[tuple[np.ndarray, str]]:
    """The 24 bundled clips as (16 kHz float32 samples, transcript)."""
    import soundfile

    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    clips = []
    for row in rows:
        audio, rate = soundfile.read(SPEECH / row["file"], dtype="float32")
        assert rate == SAMPLING_RATE, row["file"]
        clips.append((audio, row["text"]))
    return clips


def make_clips(folder: Path, count: int, *, seed: int, min_s: float = 3.0, max_s: float = 30.0) -> list[Clip]:
    """``count`` WAV files of ``min_s``..``max_s`` seconds built by concatenating bundled clips."""
    import soundfile

    folder.mkdir(parents=True, exist_ok=True)
    sources = bundled_clips()
    rng = np.random.default_rng(seed)
    gap = np.zeros(int(GAP_S * SAMPLING_RATE), dtype=np.float32)
    clips = []
    for index in range(count):
        target = rng.uniform(min_s, max_s)
        parts: list[np.ndarray] = []
        texts: list[str] = []
        length = 0
        while True:
            audio, text = sources[rng.integers(len(sources))]
            extra = len(audio) + (len(gap) if parts else 0)
            if parts and length / SAMPLING_RATE >= min_s and (length + extra) / SAMPLING_RATE > target:
                break
            if (length + extra) / SAMPLING_RATE > max_s:
                break
            if parts:
                parts.append(gap)
            parts.append(audio)
            texts.append(text)
            length += extra
        samples = np.concatenate(parts)
        path = folder / f"clip_{index:04d}.wav"
        soundfile.write(path, samples, SAMPLING_RATE, subtype="PCM_16")
        clips.append(Clip(path, " ".join(texts), len(samples) / SAMPLING_RATE))
    return clips


class VoxFactoryDataset:
    """VoxFactory's rows after ``cast_column("audio", Audio(sampling_rate=16000))``: decoded lazily on access."""

    def __init__(self, clips: list[Clip]) -> None:
        self.clips = clips

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        import soundfile

        clip = self.clips[index]
        audio, rate = soundfile.read(clip.path, dtype="float32")
        return {"audio": {"array": audio, "sampling_rate": rate, "path": str(clip.path)}, "text": clip.text}


class VoxFactoryCollator:
    """``VoxtralDataCollator.__call__`` of VoxFactory's train.py / train_lora.py (voxfactory.md section 2.4)."""

    def __init__(self, processor: Any, model_id: str) -> None:
        self.processor = processor
        self.model_id = model_id
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        texts = [f["text"] for f in features]
        audios = [f["audio"]["array"] for f in features]
        prompt = self.processor.apply_transcription_request(
            language="en", model_id=self.model_id, audio=audios, format=["WAV"] * len(audios), return_tensors="pt"
        )
        passthrough = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
        prompt_ids = prompt["input_ids"]
        prompt_attn = prompt["attention_mask"]
        text_tok = self.processor.tokenizer(
            texts, add_special_tokens=False, padding=False, truncation=True, max_length=256, return_tensors=None
        )
        input_ids, attention_mask, labels = [], [], []
        for i, t_ids in enumerate(text_tok["input_ids"]):
            p_ids = prompt_ids[i].tolist()
            p_att = prompt_attn[i].tolist()
            input_ids.append(p_ids + t_ids)
            attention_mask.append(p_att + [1] * len(t_ids))
            labels.append([-100] * len(p_ids) + t_ids)
        longest = max(len(x) for x in input_ids)

        def pad(seqs: list[list[int]], value: int) -> list[list[int]]:
            return [s + [value] * (longest - len(s)) for s in seqs]

        batch = {
            "input_ids": torch.tensor(pad(input_ids, self.pad_id), dtype=torch.long),
            "attention_mask": torch.tensor(pad(attention_mask, 0), dtype=torch.long),
            "labels": torch.tensor(pad(labels, -100), dtype=torch.long),
        }
        batch.update(passthrough)
        return batch


class AudioSecondsCollator:
    """Wrap a collator and add ``bench_audio_s`` (real audio in the batch), which the measuring trainer pops."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch = self.inner(rows)
        samples = sum(len(r["audio"]["array"] if isinstance(r["audio"], dict) else r["audio"]) for r in rows)
        batch["bench_audio_s"] = torch.tensor(samples / SAMPLING_RATE)
        return batch


# -- model --------------------------------------------------------------------------------------------------


ORIGINAL_ROTARY: Any = None


#: mistralai/Voxtral-Small-24B-2507's ``config.json``: its ``text_config`` and ``audio_config`` as read in the public
#: copy huggingface.co/Abc7347/this/blob/main/config.json (a duplicate of the checkpoint's, written by transformers
#: 4.54.0.dev0; also quoted in shared/reference/voxtral.md section 1.3); the checkpoint's own file was not reachable
#: from here. The copy also has ``audio_token_id`` 24, ``projector_hidden_act`` "gelu", the llama text model type,
#: ``sliding_window`` null and ``rope_scaling`` null, as VoxtralConfig builds them. Cross-checks: Mistral Small 3.1's
#: text model (Voxtral Small's base) has the same widths and depths in NVIDIA TensorRT-LLM's test fixture
#: ``mistral_small_3_1_24b_config``, and the parameter count these values give, 24,261,800,960, is the Voxtral
#: report's 24.3 B (640 M encoder, 52 M adapter, 670 M embeddings, 22.9 B decoder;
#: tests/training/test_train_benchmark_flops.py checks it).
VOXTRAL_SMALL_TEXT: dict[str, Any] = {
    "hidden_size": 5120,
    "intermediate_size": 32768,
    "num_hidden_layers": 40,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "vocab_size": 131072,
    "rope_theta": 100000000.0,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
}
#: The Whisper-large-v3 encoder, Mini's (the copy's ``num_key_value_heads`` 20 and ``head_dim`` 64 are these
#: widths' own: VoxtralEncoderConfig derives them).
VOXTRAL_SMALL_AUDIO: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_source_positions": 1500,
    "num_mel_bins": 128,
    "vocab_size": 51866,
    "scale_embedding": False,
    "activation_function": "gelu",
}
SHAPES = ("mini", "small")


def voxtral_config(shape: str) -> Any:
    """The ``VoxtralConfig`` of a shape: ``mini`` is Voxtral-Mini-3B-2507 (the config's defaults), ``small``
    Voxtral-Small-24B-2507 (:data:`VOXTRAL_SMALL_TEXT`, :data:`VOXTRAL_SMALL_AUDIO`)."""
    from transformers import VoxtralConfig

    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}: expected one of {', '.join(SHAPES)}")
    if shape == "mini":
        config = VoxtralConfig()
    else:
        config = VoxtralConfig(text_config=dict(VOXTRAL_SMALL_TEXT), audio_config=dict(VOXTRAL_SMALL_AUDIO))
    config.audio_token_id = 24  # hard-coded in VoxtralProcessor; the default config leaves it unset
    return config


def random_voxtral(dtype: Any, device: str, tiny_dir: Path | None, shape: str = "mini") -> Any:
    """Voxtral's architecture at ``shape`` (:func:`voxtral_config`) with random weights, built on ``device``.

    Every parameter is created on ``device`` in ``dtype`` (transformers' init runs under that default dtype), so the
    24 B shape never passes through host memory: 2 bytes a parameter on the GPU, never 4 on the host.
    """
    import torch
    from transformers import VoxtralForConditionalGeneration

    torch.manual_seed(0)
    if tiny_dir is not None:
        model = VoxtralForConditionalGeneration.from_pretrained(
            tiny_dir, dtype=dtype, attn_implementation="sdpa", use_kernels=False
        )
        return model.to(device)
    config = voxtral_config(shape)
    with torch.device(device):
        model = VoxtralForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model


# -- FLOPs --------------------------------------------------------------------------------------------------


@dataclass
class FlopModel:
    """Processed FLOPs of Voxtral's parts (padding and full attention included; see the module docstring): the
    figure beside the standard MFU. ``micro_batch`` holds the multipliers of each regime."""

    enc_linear_params: int
    enc_layers: int
    enc_hidden: int
    enc_frames: int
    conv_flops_per_chunk: float
    proj_params: int
    audio_tokens_per_chunk: int
    lm_linear_params: int
    lm_layers: int
    lm_attn_dim: int
    head_params: int
    lora_lm_params: int = 0
    lora_enc_params: int = 0

    @classmethod
    def of(cls, model: Any) -> FlopModel:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        config = base.config
        audio, text = config.audio_config, config.text_config
        frames = audio.max_source_positions  # 1500 encoder frames per 30 s chunk
        mel_frames = 2 * frames
        conv = 2 * (audio.num_mel_bins * audio.hidden_size * 3 * mel_frames + audio.hidden_size**2 * 3 * frames)
        enc_layer = base.model.audio_tower.layers[0]
        enc_linear = audio.num_hidden_layers * sum(
            _weights(module) for name, module in _linears(enc_layer) if "lora" not in name
        )
        lm_layer = base.model.language_model.layers[0]
        lm_linear = sum(_weights(module) for name, module in _linears(lm_layer) if "lora" not in name)
        proj = sum(p.numel() for p in base.model.multi_modal_projector.parameters())
        lora_lm = lora_enc = 0
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                if "audio_tower" in name:
                    lora_enc += parameter.numel()
                else:
                    lora_lm += parameter.numel()
        return cls(
            enc_linear_params=enc_linear,
            enc_layers=audio.num_hidden_layers,
            enc_hidden=audio.hidden_size,
            enc_frames=frames,
            conv_flops_per_chunk=float(conv),
            proj_params=proj,
            audio_tokens_per_chunk=frames // 4,
            lm_linear_params=lm_linear * text.num_hidden_layers,
            lm_layers=text.num_hidden_layers,
            lm_attn_dim=text.num_attention_heads * text.head_dim,
            head_params=base.lm_head.weight.numel(),
            lora_lm_params=lora_lm,
            lora_enc_params=lora_enc,
        )

    def micro_batch(
        self, regime: str, rows: int, seq: int, chunks: int, logit_positions: int, cached_chunks: int = 0
    ) -> float:
        """Processed model FLOPs of one micro-batch (forward + backward) under ``regime``.

        ``cached_chunks`` of the ``chunks`` came from the encoder-output cache: their encoder work was not done.
        """
        tokens = rows * seq
        encoded = chunks - cached_chunks
        frames = chunks * self.enc_frames
        enc_lin = 2.0 * self.enc_linear_params * encoded * self.enc_frames
        enc_attn = 4.0 * encoded * self.enc_frames * self.enc_frames * self.enc_hidden * self.enc_layers
        conv = self.conv_flops_per_chunk * encoded
        proj = 2.0 * self.proj_params * chunks * self.audio_tokens_per_chunk
        lm_lin = 2.0 * self.lm_linear_params * tokens
        lm_attn = 4.0 * rows * seq * seq * self.lm_attn_dim * self.lm_layers
        head = 2.0 * self.head_params * logit_positions
        lora = 2.0 * self.lora_lm_params * tokens + 2.0 * self.lora_enc_params * frames
        if regime == "voxfactory":
            return 2 * enc_lin + 3 * enc_attn + conv + 2 * proj + 2 * lm_lin + 3 * lm_attn + 2 * head + 3 * lora
        if regime == "lora":
            return enc_lin + enc_attn + conv + proj + 2 * lm_lin + 3 * lm_attn + 2 * head + 3 * lora
        if regime == "full":
            return enc_lin + enc_attn + conv + 2 * proj + 3 * lm_lin + 3 * lm_attn + 3 * head
        raise ValueError(regime)


def _linears(module: Any) -> list[tuple[str, Any]]:
    import torch

    return [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


def _weights(linear: Any) -> int:
    """The weights of a linear layer, from its shape: a 4-bit layer's weight tensor packs two in a byte."""
    return linear.in_features * linear.out_features


# -- measuring ----------------------------------------------------------------------------------------------


@dataclass
class Record:
    """What the measuring trainer saw: one entry per micro-batch, and step-end times."""

    # rows, padded length, chunks, logit positions, audio seconds, cached chunks, each row's (tokens, loss positions)
    micro: list[tuple[int, int, int, Any, Any, int, Any]] = field(default_factory=list)
    encoder_cache: Any = None
    cuda_graphs: Any = None  # the LoRA trainer's LayerGraphs, when it set them up
    train_start: float | None = None
    exclude_tail: int = 0
    profile: dict[str, Any] = field(default_factory=dict)
    step_times: list[float] = field(default_factory=list)
    step_micro: list[int] = field(default_factory=list)
    # the host's clock at each callback and micro-batch: (what, global step, seconds since training began)
    host_marks: list[tuple[str, int, float]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    trace_path: Path | None = None
    peak_memory_gib: float | None = None  # the GPU's peaks when training ended
    peak_reserved_gib: float | None = None


def measure_steps(trainer: Any, record: Record, label_logits: bool) -> None:
    """Record each micro-batch's shape (no host sync) before ``trainer`` trains on it: its ``training_step``,
    on this instance, notes the batch first. The batch's ``bench_audio_s`` (:class:`AudioSecondsCollator`) is
    taken out here, before the model sees it."""
    train_on = trainer.training_step

    def training_step(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        host_mark(record, "batch", trainer.state.global_step)
        audio_s = inputs.pop("bench_audio_s")
        rows = row_tokens(inputs)
        labels = inputs["labels"]
        ids = inputs["input_ids"]
        positions = (labels[:, 1:] != -100).sum() if label_logits else None
        hits = record.encoder_cache.hits if record.encoder_cache else 0
        loss = train_on(model, inputs, num_items_in_batch)
        cached = (record.encoder_cache.hits - hits) if record.encoder_cache else 0
        chunks = inputs["input_features"].shape[0]
        record.micro.append((ids.shape[0], ids.shape[1], chunks, positions, audio_s, cached, rows))
        return loss

    trainer.training_step = training_step


def row_tokens(batch: dict[str, Any]) -> Any:
    """Each row's real tokens and loss positions, ``(rows, 2)``, computed where the batch lives (no host sync).

    Rows are right-padded: a row's tokens are its attention mask's ones, or without a mask (voxplug's training
    batches) its positions up to its last label (the EOS). Loss positions are the labels after the shift.
    """
    import torch

    labels = batch["labels"]
    mask = batch.get("attention_mask")
    if mask is not None:
        lengths = mask.sum(1)
    else:
        positions = torch.arange(1, labels.shape[1] + 1, device=labels.device)
        lengths = ((labels != -100) * positions).amax(1)
    return torch.stack([lengths, (labels[:, 1:] != -100).sum(1)], 1)


@dataclass(frozen=True)
class StandardCount:
    """The standard (useful) FLOP count of one variant's model: ``benchmarks/model_flops.py``."""

    shape: VoxtralShape
    regime: Regime
    adapters: Adapters

    @classmethod
    def of(cls, model: Any) -> StandardCount:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        adapters = Adapters.of(model)
        trains_decoder = base.lm_head.weight.requires_grad
        regime = FULL if trains_decoder else ENCODER_LORA if adapters.encoder else LORA
        return cls(VoxtralShape.of(base.config), regime, adapters)

    def micro_batch(self, rows: list[tuple[int, int]], chunks: int, cached: int) -> float:
        """Useful FLOPs of a micro-batch: each row at its own length, the encoder over the chunks it ran."""
        flops = sum(total(self.shape.row_flops(self.regime, self.adapters, n, p)) for n, p in rows)
        encoder = total(self.shape.encoder_chunk_flops(self.regime, self.adapters))
        return flops + self.shape.projector_chunk_flops(self.regime) * chunks + encoder * (chunks - cached)


def host_mark(record: Record, what: str, step: int) -> None:
    """Note the host's clock: where the host, not the GPU, spends a slow step (a wait, a slow batch)."""
    if record.train_start:
        record.host_marks.append((what, step, round(time.perf_counter() - record.train_start, 5)))


def step_timer(record: Record, sync: bool = False) -> Any:
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    class StepTimer(TrainerCallback):
        """Note when each optimizer step ends, and the micro-batches so far.

        On a GPU the end of a step is a CUDA event recorded on the stream, read once training is over: the host
        never waits for the GPU, so it queues the next step while the GPU finishes this one, as in a real run.
        ``sync`` instead synchronizes at every step's end (how this benchmark timed steps until 2026-12-02)."""

        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            record.train_start = time.perf_counter()
            if cuda and not sync:
                torch.cuda.synchronize()
                self.start = torch.cuda.Event(enable_timing=True)
                self.start.record()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            host_mark(record, "step_begin", state.global_step)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            host_mark(record, "epoch_begin", state.global_step)

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            host_mark(record, "epoch_end", state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            host_mark(record, "step_end", state.global_step)
            if cuda and not sync:
                event = torch.cuda.Event(enable_timing=True)
                event.record()
                self.events.append(event)
            else:
                if cuda:
                    torch.cuda.synchronize()
                record.step_times.append(time.perf_counter())
            record.step_micro.append(len(record.micro))

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                record.peak_memory_gib = torch.cuda.max_memory_allocated() / 2**30
                record.peak_reserved_gib = torch.cuda.max_memory_reserved() / 2**30
            if not self.events:
                return
            torch.cuda.synchronize()
            # seconds since on_train_begin, on the GPU's clock
            record.step_times = [record.train_start + self.start.elapsed_time(e) / 1e3 for e in self.events]

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs:
                record.logs.append({"step": state.global_step, **logs})

    return StepTimer()


PROFILED_STEPS = 2
#: Profiler events in which the host waits for the GPU (or copies a device value back).
HOST_WAITS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaMemcpyAsync",
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::is_nonzero",
)


def step_profiler(record: Record, steps: int, at: int | None = None) -> Any:
    """Profile :data:`PROFILED_STEPS` steps: GPU-busy share of the wall time and the top kernels.

    The last steps (left out of the timing), or those from step ``at`` on (timed, profiler overhead included:
    to see where an early step's time goes, such as one that still runs the encoder). With ``--trace-dir``, the
    profiled steps' timeline is written there as a Chrome trace."""
    import torch
    from transformers import TrainerCallback

    if at is None:
        record.exclude_tail = PROFILED_STEPS
    first = steps - PROFILED_STEPS if at is None else at

    class StepProfiler(TrainerCallback):
        def __init__(self) -> None:
            self.profiler: Any = None
            self.start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == first and self.profiler is None:
                activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
                self.profiler = torch.profiler.profile(activities=activities)
                self.profiler.__enter__()
                self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.profiler is None or state.global_step != first + PROFILED_STEPS:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.start
            self.profiler.__exit__(None, None, None)
            try:
                if record.trace_path is not None:  # a timeline to read the host's gaps from (Perfetto)
                    self.profiler.export_chrome_trace(str(record.trace_path))
                self.summarize(wall)
            except Exception as exc:
                record.profile = {"error": f"{type(exc).__name__}: {exc}"}

        def summarize(self, wall: float) -> None:
            events = self.profiler.key_averages()
            # the host's ranges drawn again on the GPU's timeline (``Optimizer.step#AdamW.step``...) span kernels
            # rather than being one
            ranges = {e.key for e in events if e.device_type.name == "CPU"}
            on_gpu = [e for e in events if e.device_type.name == "CUDA" and e.key not in ranges]
            kernels = [e for e in on_gpu if not getattr(e, "is_user_annotation", False)]
            kernel_us = sum(e.self_device_time_total for e in kernels)
            record.profile = {
                "steps": PROFILED_STEPS,
                "wall_s": wall,
                "gpu_kernel_s": kernel_us / 1e6,
                "gpu_busy_share": kernel_us / 1e6 / wall,
                "kernel_launches": sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel")),
            }
            # host time: what waits for the GPU (synchronizing calls, reads of device values) and what is slow
            waits = {
                e.key: {"calls": e.count, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2)}
                for e in events
                if e.key in HOST_WAITS
            }
            record.profile["host_waits"] = waits
            record.profile["kernels_by_kind_ms"] = kernels_by_kind(kernels, PROFILED_STEPS)
            record.profile["top_kernels_ms"] = {
                e.key[:200]: round(e.self_device_time_total / 1e3 / PROFILED_STEPS, 3)
                for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:30]
            }
            record.profile["host_cpu_top_ms"] = {
                e.key: round(e.self_cpu_time_total / 1e3, 2)
                for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:25]
            }
            print(events.table(sort_by="self_device_time_total", row_limit=25), flush=True)
            print(events.table(sort_by="self_cpu_time_total", row_limit=30), flush=True)
            print(events.table(sort_by="cpu_time_total", row_limit=30), flush=True)
            print("profile", record.profile, flush=True)

    return StepProfiler()


#: Substrings of kernel names, by what a training step spends them on (first match wins).
TRAINING_KERNEL_KINDS = (
    ("optimizer", ("adam",)),
    ("foreach", ("multi_tensor", "foreach")),  # gradient clipping's norms and scaling, the masters' copies
    ("attention", ("fmha", "flash", "attention", "attn", "sdpa")),
    ("matmul", ("gemm", "gemv", "cutlass", "xmma", "nvjet", "matmul", "bmm", "sm90_")),
    ("reduce", ("reduce", "norm", "sum_", "mean")),
    ("copy", ("copy", "index", "cat", "memcpy", "memset", "gather", "scatter")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
)


def kernels_by_kind(kernels: Any, steps: int) -> dict[str, float]:
    """Milliseconds of GPU ``kernels`` (the profiler's CUDA events) a step by kind (:data:`TRAINING_KERNEL_KINDS`;
    the rest is ``other``)."""
    kinds: dict[str, float] = {}
    for event in kernels:
        if not event.self_device_time_total:
            continue
        name = event.key.lower()
        kind = next((k for k, marks in TRAINING_KERNEL_KINDS if any(mark in name for mark in marks)), "other")
        kinds[kind] = kinds.get(kind, 0.0) + event.self_device_time_total / 1e3 / steps
    return {kind: round(ms, 2) for kind, ms in sorted(kinds.items(), key=lambda item: -item[1])}


def matmul_tflops(device: str, size: int = 8192, repeats: int = 20) -> float:
    """Median bf16 matmul rate (TFLOP/s) on random data, timed with CUDA events."""
    import torch

    if device != "cuda":
        size, repeats = 512, 3
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    times = []
    for i in range(5 + repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            torch.cuda.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            a @ b
            elapsed = time.perf_counter() - t0
        if i >= 5:
            times.append(elapsed)
    return 2 * size**3 / statistics.median(times) / 1e12


# -- runs ---------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """Shared state of one benchmark run."""

    args: argparse.Namespace
    device: str
    workdir: Path
    processor_dir: Path
    processor: Any
    clips: list[Clip]
    check_rows: list[dict[str, Any]]
    tiny_dir: Path | None
    matmul_tflops: float  # measured at the start of the run
    results: dict[str, Any]
    t0: float
    manifest: Path | None = None  # the clips as a JSONL dataset, which voxplug's runs read

    def remaining(self) -> float:
        return self.args.deadline_s - (time.monotonic() - self.t0)


#: The benchmark's model family (:func:`bench_family`): Voxtral's, with random weights of the benchmark's shape.
BENCH_FAMILY = "voxtral-random"
#: The collator whose options a variant's ``collator`` entry sets.
COLLATOR = "voxtral-transcription"


def write_manifest(clips: list[Clip], path: Path) -> Path:
    """The clips as a voxplug JSONL dataset (audio paths relative to its folder, English, durations)."""
    with path.open("w", encoding="utf-8") as handle:
        for clip in clips:
            row = {
                "audio_path": str(clip.path.relative_to(path.parent)),
                "text": clip.text,
                "language": "en",
                "duration_s": clip.duration_s,
            }
            handle.write(json.dumps(row) + "\n")
    return path


def voxplug_config(
    bench: Bench, method: str, overrides: dict[str, Any], *, manifest: Path | None = None, run_dir: Path | None = None
) -> Any:
    """The voxplug ``RunConfig`` of a variant: repository defaults, the benchmark's data (every clip trains: none
    is held out or may be dropped), model and run length, then ``overrides`` (dotted config keys)."""
    from voxplug.config import validate_config

    data: dict[str, Any] = {
        "name": "bench",
        "model": {"name_or_path": str(bench.processor_dir), "family": BENCH_FAMILY},
        "data": {
            "source": "jsonl",
            "jsonl": {"path": str(manifest or bench.manifest)},
            "language": "en",
            "split": {"eval_fraction": 0.0, "min_eval_rows": 0},
            "max_dropped_share": 0.0,
        },
        "evaluation": {"enabled": False},
        "training": {
            "method": method,
            "max_steps": bench.args.steps,
            "save_steps": 10**6,
            "logging_steps": 10,
            "output_dir": str(run_dir or bench.workdir / "run"),
        },
        "publish": {"target": None},
    }
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return validate_config(data, base_dir=bench.workdir)


def variant_overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """A variant's config overrides: its preset's settings (:func:`preset_overrides`), its ``config`` and its
    ``collator`` options (``model.<collator>.<option>``)."""
    collator = {f"model.{COLLATOR}.{key}": value for key, value in spec.get("collator", {}).items()}
    preset = preset_overrides(spec["preset"]) if "preset" in spec else {}
    return {**preset, **spec.get("config", {}), **collator}


def preset_overrides(preset: str) -> dict[str, Any]:
    """The :data:`PRESET_KEYS` of a preset in ``configs/``, its LoRA options and fast paths, as dotted overrides;
    and a loss logged at every step."""
    from voxplug.config import load_config

    config = load_config([preset])
    overrides: dict[str, Any] = {
        f"{section}.{key}": getattr(getattr(config, section), key)
        for section, keys in PRESET_KEYS.items()
        for key in keys
    }
    overrides["training.lora"] = config.training.plugin_tables()["lora"]
    overrides["training.speed"] = config.training.speed.model_dump()
    overrides["training.logging_steps"] = 1
    return overrides


def label_logits_batch(batch: dict[str, Any], device: Any) -> tuple[dict[str, Any], Any]:
    """The inputs voxplug's training forward gets for a collated batch (label positions found on the CPU, no
    attention mask: see the Voxtral collator) and the targets of its loss."""
    from voxplug.training.speed.label_logits import label_positions

    positions, targets = label_positions(batch["labels"].cpu())
    inputs = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "attention_mask")}
    return {**inputs, "logits_to_keep": positions.to(device)}, targets.to(device)


def check_losses(model: Any, batch: dict[str, Any], autocast: bool) -> dict[str, float]:
    """Loss of the plain forward (full logits, attention mask, the model's own loss) and of voxplug's training
    path (logits at the label positions, no attention mask)."""
    import torch

    from voxplug.training.speed.label_logits import label_logits_loss

    device = next(model.parameters()).device
    inputs, targets = label_logits_batch(batch, device)
    batch = {k: v.to(device) for k, v in batch.items()}
    was_training = model.training
    model.eval()
    context = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.no_grad(), context:
        plain = model(**batch).loss.float().item()
        fast = label_logits_loss(model(**inputs), targets)
    model.train(was_training)
    return {"plain": plain, "label_logits": fast.float().item()}


def check_batch(bench: Bench) -> dict[str, Any]:
    from voxplug_voxtral.collator import VoxtralBatchBuilder

    return VoxtralBatchBuilder(bench.processor, model_id=str(bench.processor_dir))(bench.check_rows)


def compile_check(model: Any, batch: dict[str, Any], autocast: bool) -> dict[str, Any]:
    """Training-mode loss (label positions, grad enabled: the graph training uses) eager and regionally compiled.

    The compiled copy is made as the Trainer makes it (accelerate's ``compile_regions``, dynamic shapes), so the
    graphs compiled here are the ones training reuses; the seconds this takes are the compile time.
    """
    import torch
    from accelerate.utils import compile_regions

    from voxplug.training.speed.label_logits import label_logits_loss

    inputs, targets = label_logits_batch(batch, next(model.parameters()).device)
    context = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()

    def loss(module: Any) -> float:
        with context:
            return label_logits_loss(module(**inputs, use_cache=False), targets).float().item()

    model.train()
    eager = loss(model)
    start = time.perf_counter()
    compiled = compile_regions(model, dynamic=True)
    first = loss(compiled)
    compile_s = time.perf_counter() - start
    return {"eager": eager, "compiled": first, "rel_diff": abs(first - eager) / abs(eager), "compile_s": compile_s}


@contextlib.contextmanager
def sdpa_backends(spec: dict[str, Any]) -> Any:
    """While a variant runs: cuDNN attention on or off as its ``cudnn_sdp`` says (PyTorch's choice otherwise), and
    the BLAS library its ``blas`` names (``cublas`` or ``cublaslt``; PyTorch's default otherwise)."""
    import torch

    previous = torch.backends.cuda.cudnn_sdp_enabled()
    previous_blas = torch.backends.cuda.preferred_blas_library()
    if "cudnn_sdp" in spec:
        torch.backends.cuda.enable_cudnn_sdp(spec["cudnn_sdp"])
    if "blas" in spec:
        torch.backends.cuda.preferred_blas_library(spec["blas"])
    try:
        yield
    finally:
        torch.backends.cuda.enable_cudnn_sdp(previous)
        torch.backends.cuda.preferred_blas_library(previous_blas)


def fuse_variant_kernels(model: Any, kernels: dict[str, Any]) -> list[str]:
    """A variant's own kernels (``{"fused": [...], "rms_norm": "torch" | "liger", ...}``): voxplug's where a kernel
    says ``torch``, Liger's where it says ``liger`` (SwiGLU's and RoPE's default, as the specs were written).
    Returns what was fused, in ``voxplug_voxtral.kernels.FUSED``'s order."""
    from voxplug_voxtral.kernels import FUSED, fuse_language_model_kernels

    chosen = {key: value for key, value in kernels.items() if key != "fused"}
    sources = {"rms_norm": "torch", "swiglu": "liger", "rope": "liger", **chosen}
    unknown = set(sources).difference(FUSED) or {v for v in sources.values() if v not in ("torch", "liger")}
    if unknown:
        raise ValueError(f"unknown kernels or sources: {sorted(unknown)}")
    wanted = kernels["fused"]
    fused = fuse_language_model_kernels(model, tuple(k for k in wanted if sources[k] == "torch"))
    fused += fuse_liger(model.model.language_model, {k for k in wanted if sources[k] == "liger"})
    return [name for name in FUSED if name in fused]


def fuse_liger(language_model: Any, kernels: set[str]) -> list[str]:
    """Liger's Triton kernels (``liger-kernel``, CUDA only) on a Llama language model: its norms and MLPs patched in
    place, its rotary embedding for the whole process (Liger's own way: :func:`run_variant` puts transformers' back
    before each variant). Without liger-kernel nothing is fused, and a line says so."""
    if not kernels:
        return []
    try:
        from liger_kernel.transformers import apply_liger_kernel_to_llama
    except ImportError:
        print(f"liger-kernel is not installed: {', '.join(sorted(kernels))} run unfused", flush=True)
        return []
    from transformers.models.llama import modeling_llama

    classes = {name: getattr(modeling_llama, name) for name in ("LlamaRMSNorm", "LlamaMLP")}
    apply_liger_kernel_to_llama(
        rope="rope" in kernels,
        rms_norm="rms_norm" in kernels,
        swiglu="swiglu" in kernels,
        cross_entropy=False,  # the loss is voxplug's (logits at label positions only)
        fused_linear_cross_entropy=False,
        model=language_model,
    )
    for name, original in classes.items():  # models built later in this process stay unpatched
        setattr(modeling_llama, name, original)
    return sorted(kernels)


@dataclass
class VariantRun:
    """One variant's voxplug run while it executes: what the benchmark's family, plugin and callbacks share."""

    bench: Bench
    spec: dict[str, Any]
    record: Record
    started: float
    checks: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    run: Any = None  # the voxplug TrainingRun
    measure: Any = None  # called with the Trainer before training (see voxplug_run)


def bench_family(state: VariantRun) -> type:
    """Voxtral's model family, loading the benchmark's model instead of a checkpoint: random weights of the
    benchmark's shape (or the tiny model) built on the run's device, with the processor the benchmark built. Its
    fused kernels are the family's own, or a variant's ``kernels``; the loss of a fixed batch is checked before and
    after fusing."""
    from voxplug_voxtral.family import VoxtralFamily
    from voxplug_voxtral.loading import prepare_loaded_voxtral

    class RandomVoxtralFamily(VoxtralFamily):
        name = BENCH_FAMILY
        description = "Voxtral with random weights of the training benchmark's shape"
        model_types = ()

        def load(
            self,
            name_or_path: str,
            *,
            dtype: str = "auto",
            attn_implementation: str | None = None,
            device: str = "auto",
            hub_kernels: bool = False,
            quantization: str | None = None,
        ) -> tuple[Any, Any]:
            import torch

            bench = state.bench
            torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
            model = random_voxtral(torch_dtype, device, bench.tiny_dir, bench.args.shape)
            if quantization is not None:
                quantize_random_voxtral(model, quantization)
            return prepare_loaded_voxtral(model), bench.processor

        def speed(self) -> Any:
            from voxplug.api import FamilySpeed

            return FamilySpeed(fuse_kernels=self._fuse_and_check, cuda_graphs=super().speed().cuda_graphs)

        def _fuse_and_check(self, model: Any) -> list[str]:
            import torch

            autocast = state.bench.device == "cuda" and next(model.parameters()).dtype != torch.bfloat16
            batch = check_batch(state.bench)
            state.checks["before_fused_kernels"] = check_losses(model, batch, autocast)
            kernels = state.spec.get("kernels")
            fused = super().speed().fuse_kernels(model) if kernels is None else fuse_variant_kernels(model, kernels)
            state.checks["fused_kernels"] = fused
            state.checks["after_fused_kernels"] = check_losses(model, batch, autocast)
            return fused

    return RandomVoxtralFamily


def quantize_random_voxtral(model: Any, quantization: str) -> Any:
    """Turn ``model``'s linear layers into bitsandbytes 4-bit layers in place, as transformers' loader does for
    ``model.quantization`` (Voxtral's loader, :func:`voxplug_voxtral.loading.load_voxtral`): the same
    ``BitsAndBytesConfig`` and unquantized parts, transformers' own quantizer to swap the modules and mark the model,
    and each weight quantized on its device by ``bnb.nn.Params4bit`` from the random bf16 values built there (where
    a real load quantizes each weight as its shard is read)."""
    import bitsandbytes as bnb
    import torch
    from transformers.quantizers import AutoHfQuantizer
    from voxplug_voxtral.loading import UNQUANTIZED_PARTS

    from voxplug.api import bitsandbytes_config

    config = bitsandbytes_config(quantization, keep=UNQUANTIZED_PARTS)
    linears = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    quantizer = AutoHfQuantizer.from_config(config, pre_quantized=False)
    quantizer.preprocess_model(model, dtype=torch.bfloat16, device_map=None)
    for name, module in list(model.named_modules()):
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        old = linears.pop(name)
        placeholder = module.weight
        module.weight = bnb.nn.Params4bit(old.weight.data, requires_grad=False, **placeholder.__dict__).to(
            old.weight.device
        )
        if old.bias is not None:
            module.bias = old.bias
        module._is_hf_initialized = True
    linears.clear()
    quantizer.postprocess_model(model)
    model.hf_quantizer = quantizer
    model.config.quantization_config = config
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return model


class BenchPlugin:
    """The benchmark's voxplug plugin for one variant: its model family, and a look at the run just before
    training starts (``before_train``), where the variant's measuring and its switches that no config key
    reaches go onto the Trainer the run built."""

    def __init__(self, state: VariantRun) -> None:
        self.state = state
        self.family = bench_family(state)

    @hookimpl
    def register_model_families(self, register: Any) -> None:
        register(self.family)

    @hookimpl
    def before_train(self, config: Any, run_dir: Path) -> None:
        self.state.measure(self.state.run.hf_trainer)


def variant_switches(state: VariantRun, trainer: Any) -> bool:
    """Put a variant's switches that no config key reaches on the run's Trainer and training objects; return
    whether the loss is computed from the logits at the label positions only.

    ``graph_eager_sightings`` / ``graph_capture_cost``: the LoRA method's CUDA graphs (``LayerGraphs``);
    ``lora_groups: false``: one autograd node per adapted layer, none per group; ``label_logits: false``: the
    model's own loss over full logits; ``epoch_stream: false``: the Trainer's loader, each epoch afresh;
    ``masters_fused``: the fp32 masters' AdamW in one pass or in three (``MasterWeights.fused``)."""
    spec, run = state.spec, state.run
    graphs = run.cuda_graphs
    if graphs is not None and "graph_eager_sightings" in spec:
        graphs.eager_sightings = spec["graph_eager_sightings"]
    if graphs is not None and "graph_capture_cost" in spec:
        graphs.capture_cost = spec["graph_capture_cost"]
    if spec.get("lora_groups") is False:
        from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora

        restore_peft_forward(trainer.model)
        use_one_node_lora(trainer.model)
    if spec.get("label_logits") is False and trainer.label_logits_only:
        from voxplug.training.speed.label_logits import LabelPositionsCollator

        trainer.label_logits_only = False
        trainer.compute_loss_func = None
        if isinstance(trainer.data_collator, LabelPositionsCollator):
            trainer.data_collator = trainer.data_collator.collator
    trainer.epochs_in_one_stream = spec.get("epoch_stream", True)
    masters = getattr(trainer, "optimizer_cls_and_kwargs", None)
    if "masters_fused" in spec and masters is not None:
        masters[1]["fused"] = spec["masters_fused"]
    return trainer.label_logits_only


def voxplug_run(
    state: VariantRun, method: str, run_dir: Path, *, manifest: Path | None = None, callbacks: list[Any] | None = None
) -> None:
    """Train ``method`` (lora | full) with the variant's config overrides through voxplug's own run
    (``voxplug.training.run.TrainingRun``: the data as a JSONL dataset, the model from the benchmark's family), with
    ``callbacks`` (default: the step timer, and the profiler where the variant asks), and the benchmark's measuring
    set on the Trainer just before training (``state.run`` is the run).

    The run saves its final model after the timing, as a user's run does; the Trainer writes no checkpoint at the
    last step (its save strategy is off, as in every run of this benchmark)."""
    import torch
    from transformers.trainer_utils import SaveStrategy

    from voxplug.plugins import PluginHost, use_plugin_host
    from voxplug.training.run import TrainingRun

    bench, spec, record = state.bench, state.spec, state.record
    cuda = bench.device == "cuda"
    config = voxplug_config(bench, method, variant_overrides(spec), manifest=manifest, run_dir=run_dir)

    def measure(trainer: Any) -> None:
        state.result["setup_s"] = time.perf_counter() - state.started
        state.result.update(describe_run(trainer))
        label_logits = variant_switches(state, trainer)
        model = trainer.model
        if method == "lora":
            from voxplug_trainers.lora_linear import shared_input_groups

            state.checks["lora_shared_input_groups"] = shared_input_groups(model)
        record.encoder_cache = state.run.encoder_cache
        record.cuda_graphs = state.run.cuda_graphs
        batch = check_batch(bench)
        if trainer.args.torch_compile:
            state.checks["compile"] = compile_check(model, batch, autocast=cuda)
        if not state.checks:
            autocast = cuda and next(model.parameters()).dtype != torch.bfloat16
            state.checks["before_training"] = check_losses(model, batch, autocast)
        trainer.args.save_strategy = SaveStrategy.NO
        trainer.data_collator = AudioSecondsCollator(trainer.data_collator)
        measure_steps(trainer, record, label_logits)
        state.checks.update({"label_logits_active": label_logits, "epoch_stream": trainer.epochs_in_one_stream})
        state.result["label_logits"] = label_logits
        if cuda and "preset" in spec:  # the peak of training, the model loaded; under the card's cap where set
            torch.cuda.reset_peak_memory_stats()
            if spec.get("memory_cap_gib"):
                cap_memory(spec["memory_cap_gib"])

    state.measure = measure
    if callbacks is None:
        callbacks = [step_timer(record, sync=bool(spec.get("step_sync")))]
        if spec.get("profile"):
            callbacks.append(step_profiler(record, bench.args.steps, spec.get("profile_at")))
    host = PluginHost().load()
    host.register(BenchPlugin(state), name="train_throughput")
    with use_plugin_host(host):
        state.run = TrainingRun(config, host, resume=False, progress="off", callbacks=callbacks)
        state.run.execute()


def cap_memory(gib: float | None) -> None:
    """Let this process allocate at most ``gib`` GiB of GPU memory (None: all of it)."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total) if gib else 1.0)


def describe_run(trainer: Any) -> dict[str, Any]:
    """What a variant trains and how: the model's FLOP counts and parameters, and the Trainer's batch settings."""
    model, args = trainer.model, trainer.args
    return {
        "flops": FlopModel.of(model),
        "standard": StandardCount.of(model),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "micro_batch": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "dataloader_workers": args.dataloader_num_workers,
        "optim": str(args.optim),
        # the Trainer's own switch (activation_checkpointing in newer transformers)
        "gradient_checkpointing": bool(
            getattr(args, "activation_checkpointing", False) or getattr(args, "gradient_checkpointing", False)
        ),
        # a 4-bit weight (bitsandbytes' Params4bit) holds two weights in each of its bytes
        "model_params": sum(p.numel() * (2 if type(p).__name__ == "Params4bit" else 1) for p in model.parameters()),
        "quantization": getattr(model.get_base_model().config, "quantization_config", None) is not None
        if hasattr(model, "get_base_model")
        else False,
    }


def oom_message(exc: BaseException) -> str | None:
    """``OutOfMemoryError: <first line>`` when ``exc`` is, or was caused by, CUDA running out of memory."""
    import torch

    while exc is not None:
        if isinstance(exc, torch.OutOfMemoryError):
            return f"OutOfMemoryError: {str(exc).splitlines()[0]}"
        exc = exc.__cause__
    return None


def restore_transformers_rope() -> None:
    """Undo an earlier variant's process-wide RoPE swap (Liger's), so that the next model computes transformers'
    own (its "before_fused_kernels" loss included)."""
    from transformers.models.llama import modeling_llama

    if ORIGINAL_ROTARY is not None:
        modeling_llama.apply_rotary_pos_emb = ORIGINAL_ROTARY


def run_variant(bench: Bench, name: str) -> dict[str, Any]:
    """Build, train and measure one variant; return its result entry."""
    import torch

    spec = VARIANTS[name.split("#")[0]]  # "name#2" repeats a variant (interleaved A/B runs)
    method = spec["method"]
    record = Record()
    if bench.args.trace_dir is not None:
        record.trace_path = bench.args.trace_dir / f"trace-{name.replace('#', '-')}.json"
    result: dict[str, Any] = {"variant": name, "spec": spec}
    cuda = bench.device == "cuda"
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        # counted in the peaks below: nonzero when an earlier variant's tensors outlived it
        result["left_by_earlier_variants_gib"] = torch.cuda.memory_allocated() / 2**30
    restore_transformers_rope()
    if method == "voxfactory":
        trainer, described = voxfactory_trainer(bench, spec, record)
        result.update({k: v for k, v in described.items() if k not in ("flops", "standard")})
        model, regime, label_logits, checks = trainer.model, "voxfactory", False, {}
        try:
            trainer.train()
        except torch.OutOfMemoryError as exc:
            return out_of_memory(result, oom_message(exc), trainer)
    else:
        state = VariantRun(bench, spec, record, started=time.perf_counter())
        run_dir = bench.workdir / f"run-{name.replace('#', '-')}"
        try:
            voxplug_run(state, method, run_dir)
        except Exception as exc:
            message = oom_message(exc)
            if message is None:
                raise
            result.update({k: v for k, v in state.result.items() if k not in ("flops", "standard", "label_logits")})
            return out_of_memory(result, message, state.run.hf_trainer if state.run else None)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            if cuda and spec.get("memory_cap_gib"):
                cap_memory(bench.args.memory_cap_gib)
        trainer, checks, described = state.run.hf_trainer, state.checks, state.result
        model, regime, label_logits = trainer.model, method, described.pop("label_logits")
        result.update({k: v for k, v in described.items() if k not in ("flops", "standard")})
    result.update(summarize(bench, record, described["flops"], described["standard"], regime, label_logits))
    if cuda:
        result["peak_memory_gib"] = record.peak_memory_gib
        result["peak_reserved_gib"] = record.peak_reserved_gib
    if "preset" in spec:
        result["memory_cap_gib"] = spec.get("memory_cap_gib")
        result["quantization"] = described.get("quantization")
        result["losses"] = [entry["loss"] for entry in record.logs if "loss" in entry]
    checks["after_training"] = check_losses(model, check_batch(bench), autocast=cuda and method == "full")
    result["eval_loss_fixed_batch"] = checks["after_training"]["plain"]
    result["loss_checks"] = checks
    free_trainer(trainer)
    return result


def out_of_memory(result: dict[str, Any], message: str | None, trainer: Any) -> dict[str, Any]:
    """A variant's entry when it ran out of GPU memory (its peak, as far as it got)."""
    import torch

    result["error"] = message
    result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    if trainer is not None:
        free_trainer(trainer)
    return result


def free_trainer(trainer: Any) -> None:
    import torch

    with contextlib.suppress(Exception):
        trainer.accelerator.free_memory()
    trainer.model = None
    trainer.model_wrapped = None
    trainer.optimizer = None
    trainer.lr_scheduler = None
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def voxfactory_trainer(bench: Bench, spec: dict[str, Any], record: Record) -> tuple[Any, dict[str, Any]]:
    """VoxFactory's train_lora.py: model, LoRA config, TrainingArguments and Trainer (see the docstring); and what
    :func:`describe_run` says of it, with the seconds it took to build."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    started = time.perf_counter()
    cuda = bench.device == "cuda"
    model = random_voxtral(torch.bfloat16 if cuda else torch.float32, bench.device, bench.tiny_dir, bench.args.shape)
    for parameter in model.model.audio_tower.parameters():  # --freeze-audio-tower (the UI turns it on)
        parameter.requires_grad = False
    targets: Any = ["q_proj", "k_proj", "v_proj", "o_proj"]
    if spec.get("lm_only_targets"):
        targets = r".*language_model\.layers\.\d+\.self_attn\.(q|k|v|o)_proj"
    lora_config = LoraConfig(
        r=8, lora_alpha=32, lora_dropout=0.0, bias="none", target_modules=targets, task_type="SEQ_2_SEQ_LM"
    )
    model = get_peft_model(model, lora_config)
    args = TrainingArguments(
        output_dir=str(bench.workdir / "voxfactory"),
        per_device_train_batch_size=2,
        per_device_eval_batch_size=4,
        gradient_accumulation_steps=4,
        learning_rate=5e-5,
        num_train_epochs=3,
        max_steps=bench.args.steps,
        bf16=cuda,
        logging_steps=10,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=1,
        disable_tqdm=True,
        use_cpu=not cuda,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=VoxFactoryDataset(bench.clips),
        data_collator=AudioSecondsCollator(VoxFactoryCollator(bench.processor, str(bench.processor_dir))),
        callbacks=[step_timer(record)],
    )
    measure_steps(trainer, record, label_logits=False)
    return trainer, {"setup_s": time.perf_counter() - started, **describe_run(trainer)}


def summarize(
    bench: Bench, record: Record, flops: FlopModel, standard: StandardCount, regime: str, label_logits: bool
) -> dict[str, Any]:
    """Steady-state throughput over the steps after warm-up: the standard MFU (useful FLOPs over the datasheet
    peak) and the processed FLOPs over the measured matmul rate."""
    warmup = bench.args.warmup
    times, marks = record.step_times, record.step_micro
    if len(times) <= warmup + 1:
        return {"error": f"only {len(times)} steps ran"}
    # window: from the end of step `warmup` to the last step's end (profiled steps at the end are left out)
    first, last = warmup - 1, len(times) - 1 - record.exclude_tail
    if last <= first:
        return {"error": f"no steps left to time ({len(times)} ran, {warmup} warm-up, {record.exclude_tail} profiled)"}
    micro = record.micro[marks[first] : marks[last]]
    elapsed = times[last] - times[first]
    samples = sum(m[0] for m in micro)
    audio_s = sum(float(m[4]) for m in micro)
    tokens = sum(rows * seq for rows, seq, *_ in micro)

    def flops_of(rows: int, seq: int, chunks: int, positions: Any, _audio_s: Any, cached: int, _tokens: Any) -> float:
        kept = int(positions) if label_logits and positions is not None else rows * seq
        return flops.micro_batch(regime, rows, seq, chunks, kept, cached)

    def useful_of(_rows: int, _seq: int, chunks: int, _kept: Any, _audio_s: Any, cached: int, tokens: Any) -> float:
        return standard.micro_batch([(int(n), int(p)) for n, p in tokens.tolist()], chunks, cached)

    total_flops = sum(flops_of(*m) for m in micro)
    useful_flops = sum(useful_of(*m) for m in micro)
    step_durations = [b - a for a, b in zip(times[first:last], times[first + 1 : last + 1], strict=True)]
    tflops = total_flops / elapsed / 1e12
    useful_tflops = useful_flops / elapsed / 1e12
    matmul = bench.matmul_tflops
    datasheet = bench.results["datasheet_tflops"]  # None for a card not in model_flops' table: no standard MFU
    # each timed step: seconds, processed FLOPs, samples, chunks, chunks served by the encoder cache, useful FLOPs
    steps = []
    for index, duration in zip(range(first + 1, last + 1), step_durations, strict=True):
        step_micro = record.micro[marks[index - 1] : marks[index]]
        steps.append(
            (
                duration,
                sum(flops_of(*m) for m in step_micro),
                sum(m[0] for m in step_micro),
                sum(m[2] for m in step_micro),
                sum(m[5] for m in step_micro),
                sum(useful_of(*m) for m in step_micro),
            )
        )
    # steady state with the encoder cache warm: steps whose every chunk came from it (epochs 2 and later)
    warm = [step for step in steps if step[3] and step[4] == step[3]]
    warm_seconds = sum(step[0] for step in warm)
    losses = [entry for entry in record.logs if "loss" in entry]

    def standard_mfu(useful_flop_rate: float) -> float | None:
        return useful_flop_rate / 1e12 / datasheet if datasheet else None

    return {
        "profile": record.profile or None,
        "timed_steps": last - first,
        "timed_samples": samples,
        "elapsed_s": elapsed,
        "samples_per_s": samples / elapsed,
        "audio_s_per_s": audio_s / elapsed,
        "processed_lm_tokens_per_s": tokens / elapsed,
        "useful_lm_tokens_per_s": sum(int(t[:, 0].sum()) for *_, t in micro) / elapsed,
        "mfu_standard": standard_mfu(useful_flops / elapsed),
        "useful_tflops": useful_tflops,
        "useful_flops_per_sample": useful_flops / samples,
        "mfu_processed_over_measured_matmul": tflops / matmul,
        "processed_tflops": tflops,
        "processed_flops_per_sample": total_flops / samples,
        "step_s_median": statistics.median(step_durations),
        "step_s_first_half": statistics.mean(step_durations[: len(step_durations) // 2] or step_durations),
        "step_s_second_half": statistics.mean(step_durations[len(step_durations) // 2 :]),
        "train_loss_log": losses,
        "final_train_loss": losses[-1]["loss"] if losses else None,
        "samples_trained": len(times) * EFFECTIVE_BATCH,
        # the whole run, warm-up included: what a user waits for (an N-epoch run when --steps covers N epochs)
        "run_samples_per_s": sum(m[0] for m in record.micro) / (times[-1] - record.train_start)
        if record.train_start
        else None,
        "encoder_cache": record.encoder_cache.stats() if record.encoder_cache else None,
        "cuda_graphs": record.cuda_graphs.stats() if record.cuda_graphs else None,
        "cached_chunks_timed": sum(m[5] for m in micro),
        "mfu_standard_median_step": standard_mfu(statistics.median(step[5] / step[0] for step in steps)),
        "mfu_processed_over_measured_matmul_median_step": statistics.median(
            step[1] / step[0] / 1e12 / matmul for step in steps
        ),
        "cache_warm_steps": {
            "steps": len(warm),
            "samples_per_s": sum(step[2] for step in warm) / warm_seconds,
            "mfu_standard": standard_mfu(sum(step[5] for step in warm) / warm_seconds),
            "mfu_processed_over_measured_matmul": sum(step[1] for step in warm) / warm_seconds / 1e12 / matmul,
        }
        if warm
        else None,
        "per_step": [[round(step[0], 5), step[1], step[2], step[3], step[4], step[5]] for step in steps],
        "host_marks": record.host_marks,
    }


# -- memory -------------------------------------------------------------------------------------------------


def memory_probe(bench: Bench, method: str, sizes: list[int]) -> list[dict[str, Any]]:
    """Peak memory of one optimizer step (forward, backward, AdamW) at each micro-batch of 30 s clips, until OOM.

    Each size is a voxplug run of two steps of one micro-batch (the longest clips, the encoder cache off) whose
    second step is measured. ``method`` is a trainer name, with ``+ckpt`` for gradient checkpointing (as
    ``training.gradient_checkpointing`` turns it on)."""
    import torch

    cuda = bench.device == "cuda"
    method, _, suffix = method.partition("+")
    longest = sorted(bench.clips, key=lambda c: -c.duration_s)
    restore_transformers_rope()
    out = []
    for size in sizes:
        if bench.remaining() < 30:
            out.append({"micro_batch": size, "skipped": "time"})
            break
        gc.collect()
        if cuda:  # what earlier variants left allocated is not this probe's: its peaks are reported without it
            torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated() if cuda else 0
        manifest = write_manifest(longest[:size], bench.workdir / f"probe-{size}.jsonl")
        overrides = {
            "training.gradient_checkpointing": suffix == "ckpt",
            "training.batch_size": size,
            "training.grad_accum": 1,
            "training.max_steps": 2,
            "training.speed.encoder_cache_gb": 0,
        }
        record = Record()
        state = VariantRun(bench, {"method": method, "config": overrides}, record, started=time.perf_counter())
        probe = probe_callback(record)
        entry: dict[str, Any] = {"micro_batch": size}
        run_dir = bench.workdir / f"probe-{method}{suffix}-{size}"
        try:
            voxplug_run(state, method, run_dir, manifest=manifest, callbacks=[probe])
        except Exception as exc:
            if oom_message(exc) is None:
                raise
            entry["oom"] = True
            out.append(entry)
            break
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
            if state.run is not None and state.run.hf_trainer is not None:
                free_trainer(state.run.hf_trainer)
            del state
        entry["seq"] = record.micro[-1][1]
        entry["step_s"] = probe.seconds
        entry["samples_per_s"] = size / probe.seconds
        if cuda:
            entry["peak_gib"] = (probe.peak - baseline) / 2**30
            entry["left_by_earlier_variants_gib"] = baseline / 2**30
        out.append(entry)
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def probe_callback(record: Record) -> Any:
    """A callback that measures the last optimizer step: its seconds and its peak of allocated GPU memory."""
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()

    class StepPeak(TrainerCallback):
        def __init__(self) -> None:
            self.seconds = 0.0
            self.peak = 0
            self.start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
                self.peak = torch.cuda.max_memory_allocated()
            self.seconds = time.perf_counter() - self.start

    return StepPeak()


# -- recount ------------------------------------------------------------------------------------------------

LM_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")  # voxplug's LoRA scope: the language model's projections


@dataclass(frozen=True)
class ClipCounts:
    """Per clip of a results file's data: useful FLOPs outside the encoder, under one regime and collator."""

    flops: list[float]
    tokens: list[int]


def clip_tokens(clips: list[Clip], processor: Any, model_id: str) -> dict[str, list[tuple[int, int]]]:
    """Each clip's (real tokens, loss positions) as voxplug's collator and as VoxFactory's collate it."""
    import soundfile
    from voxplug_voxtral.collator import VoxtralBatchBuilder

    collators = {
        "voxplug": VoxtralBatchBuilder(processor, model_id=model_id),
        "voxfactory": VoxFactoryCollator(processor, model_id),
    }
    counts: dict[str, list[tuple[int, int]]] = {name: [] for name in collators}
    for clip in clips:
        if clip.duration_s > 30.0:
            raise ValueError(
                f"{clip.path}: {clip.duration_s:.2f} s is more than one 30 s chunk; the recount assumes one"
            )
        audio, _ = soundfile.read(clip.path, dtype="float32")
        rows = {
            "voxplug": {"audio": audio, "text": clip.text, "language": "en"},
            "voxfactory": {"audio": {"array": audio, "sampling_rate": SAMPLING_RATE}, "text": clip.text},
        }
        for name, collate in collators.items():
            tokens, positions = row_tokens(collate([rows[name]]))[0].tolist()
            counts[name].append((int(tokens), int(positions)))
    return counts


def variant_count(shape: VoxtralShape, entry: dict[str, Any], where: str) -> tuple[Regime, Adapters, str]:
    """The regime, adapters and collator of a results entry, from its spec and its trainable parameter count."""
    spec = entry.get("spec", {})
    method = spec.get("method")
    trainable = entry.get("trainable_params")
    if method == "voxfactory":
        encoder = () if spec.get("lm_only_targets") else ("q", "k", "v")  # plain names hit the encoder's q/k/v
        adapters = Adapters.voxtral(shape, 8, ("q", "k", "v", "o"), encoder)
        regime, collator = (ENCODER_LORA if encoder else LORA), "voxfactory"
    elif method == "lora":
        per_rank = Adapters.voxtral(shape, 1, LM_TARGETS).decoder
        if not trainable or trainable % per_rank:
            raise ValueError(f"{where}: {trainable} trainable parameters are no LoRA rank on {LM_TARGETS}")
        adapters, regime, collator = Adapters.voxtral(shape, trainable // per_rank, LM_TARGETS), LORA, "voxplug"
    elif method == "full":
        adapters, regime, collator = Adapters(), FULL, "voxplug"
    else:
        raise ValueError(f"{where}: unknown method {method!r}")
    if method != "full" and trainable not in (None, adapters.decoder + adapters.encoder):
        raise ValueError(f"{where}: {trainable} trainable parameters, the adapters count {adapters}")
    return regime, adapters, collator


def window_sum(values: list[float], start: int, size: int) -> tuple[float, float, float]:
    """Estimate, lower and upper bound of the sum of ``values`` over samples ``start`` to ``start + size`` of a
    stream of epochs, each epoch a permutation of ``values`` (which clips a partial epoch held is unknown)."""
    n, ordered = len(values), sorted(values)
    whole = sum(values)
    estimate = low = high = 0.0
    epoch = start // n
    while epoch * n < start + size:
        taken = min(start + size, (epoch + 1) * n) - max(start, epoch * n)
        estimate += whole * taken / n
        low += sum(ordered[:taken])
        high += sum(ordered[n - taken :])
        epoch += 1
    return estimate, low, high


def recount_entry(
    entry: dict[str, Any], counts: ClipCounts, encoder_flops: float, results: dict[str, Any], peak: float | None
) -> dict[str, Any]:
    """The standard MFU of one variant of a results file from its samples/s and the FLOPs of its data."""
    batch = results.get("effective_batch", EFFECTIVE_BATCH)
    samples = entry["timed_samples"]
    seconds = entry.get("elapsed_s") or samples / entry["samples_per_s"]
    start = results["warmup_steps"] * batch
    encoded = samples - (entry.get("cached_chunks_timed") or 0)  # one chunk a clip
    estimate, low, high = (v + encoded * encoder_flops for v in window_sum(counts.flops, start, samples))
    tokens = window_sum([float(t) for t in counts.tokens], start, samples)[0]

    def mfu(flops: float) -> float | None:
        return flops / seconds / 1e12 / peak if peak else None

    out: dict[str, Any] = {
        "samples_per_s": entry["samples_per_s"],
        "mfu_standard": mfu(estimate),
        "mfu_standard_bounds": [mfu(low), mfu(high)],
        "useful_tflops": estimate / seconds / 1e12,
        "useful_flops_per_sample": estimate / samples,
        "mfu_processed_over_measured_matmul": entry.get("mfu"),
        "processed_flops_per_sample": entry.get("flops_per_sample"),
        "useful_share_of_processed_lm_tokens": tokens / seconds / entry["processed_lm_tokens_per_s"],
    }
    warm = entry.get("cache_warm_steps")
    if warm and warm.get("steps"):  # epochs 2 and later: every chunk from the cache, no encoder
        warm_samples = warm["steps"] * batch
        warm_seconds = warm_samples / warm["samples_per_s"]
        sums = window_sum(counts.flops, len(counts.flops), warm_samples)
        out["cache_warm_steps"] = {
            "samples_per_s": warm["samples_per_s"],
            "mfu_standard": mfu(sums[0] * seconds / warm_seconds),
            "mfu_standard_bounds": [mfu(sums[1] * seconds / warm_seconds), mfu(sums[2] * seconds / warm_seconds)],
            "mfu_processed_over_measured_matmul": warm.get("mfu"),
        }
    return out


def recount(paths: list[Path]) -> list[Path]:
    """Write ``<results>.standard-mfu.json`` beside each results file: its variants' standard MFU, recounted on the
    CPU from their samples/s and the useful FLOPs of the same data (rebuilt, checked against the file's clip
    statistics) at the model shape the file names (Voxtral-Mini-3B where it names none)."""
    from voxplug_voxtral.loading import load_voxtral_processor

    workdir = Path(tempfile.mkdtemp(prefix="voxplug-recount-"))
    processor_dir: Path | None = None
    data: dict[int, tuple[list[Clip], dict[str, list[tuple[int, int]]] | None]] = {}
    written = []
    for path in paths:
        if path.name.endswith(".standard-mfu.json"):
            continue  # a recount already
        results = json.loads(path.read_text(encoding="utf-8"))
        if "variants" not in results or "clips" not in results:
            print(f"{path}: no variants with clip statistics (a summary file); skipped")
            continue
        stats = results["clips"]
        count = stats["count"]
        if count not in data:
            data[count] = (make_clips(workdir / f"clips-{count}", count, seed=0), None)
        clips, tokens = data[count]
        durations = [c.duration_s for c in clips]
        rebuilt = {"mean_s": statistics.mean(durations), "min_s": min(durations), "max_s": max(durations)}
        for key, value in rebuilt.items():
            if abs(value - stats[key]) > 1e-6:
                raise ValueError(
                    f"{path}: the clips' {key} is {stats[key]} in the file but {value} rebuilt here (seed 0, "
                    f"{count} clips): not the data it was measured on"
                )
        if tokens is None:
            if processor_dir is None:
                processor_dir, _ = build_processor(workdir, tiny=False)
            tokens = clip_tokens(clips, load_voxtral_processor(processor_dir), str(processor_dir))
            data[count] = (clips, tokens)
        peak = datasheet_peak_tflops(results["card"])
        shape = VoxtralShape.of(voxtral_config(results.get("shape", "mini")))
        out: dict[str, Any] = {
            "source": path.name,
            "shape": results.get("shape", "mini"),
            "card": results["card"],
            "datasheet_tflops": peak,
            "matmul_tflops": results.get("matmul_tflops"),
            "count": "benchmarks/model_flops.py (standard: useful FLOPs / datasheet peak)",
            "clips": {**stats, "rebuilt": "same"},
            "variants": {},
        }
        for name, entry in results["variants"].items():
            if "samples_per_s" not in entry:
                continue
            try:
                regime, adapters, collator = variant_count(shape, entry, f"{path}: {name}")
            except ValueError as exc:
                out["variants"][name] = {"samples_per_s": entry["samples_per_s"], "error": str(exc)}
                continue
            flops = [
                total(shape.row_flops(regime, adapters, n, p)) + shape.projector_chunk_flops(regime)
                for n, p in tokens[collator]
            ]
            counts = ClipCounts(flops, [n for n, _ in tokens[collator]])
            encoder = total(shape.encoder_chunk_flops(regime, adapters))
            out["variants"][name] = recount_entry(entry, counts, encoder, results, peak)
        target = path.with_name(path.stem + ".standard-mfu.json")
        target.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        print_recount(out)
        written.append(target)
    return written


def print_recount(out: dict[str, Any]) -> None:
    """One results file's recount as a table."""
    peaks = f"datasheet bf16: {out['datasheet_tflops']} TFLOP/s  measured matmul: {out['matmul_tflops']:.0f} TFLOP/s"
    print(f"\n{out['source']}  card: {out['card']}  {peaks}")
    print(f"{'variant':28s} {'samp/s':>7s} {'MFU':>6s} {'bounds':>13s} {'MFU/mm':>7s} {'warm MFU':>8s}")
    for name, r in out["variants"].items():
        if "error" in r:
            print(f"{name:28s} {r['samples_per_s']:7.2f} {r['error']}")
            continue
        low, high = r["mfu_standard_bounds"]
        warm = (r.get("cache_warm_steps") or {}).get("mfu_standard")
        print(
            f"{name:28s} {r['samples_per_s']:7.2f} {r['mfu_standard'] or 0:6.1%} {low or 0:6.1%}-{high or 0:5.1%} "
            f"{r['mfu_processed_over_measured_matmul'] or 0:7.1%} " + (f"{warm:8.1%}" if warm else f"{'-':>8s}")
        )


# -- main ---------------------------------------------------------------------------------------------------


def card_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def build_processor(workdir: Path, tiny: bool) -> tuple[Path, Path | None]:
    """A processor folder with Voxtral's full 131072-entry Tekken vocabulary (or the tiny model's folder)."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    if tiny:  # 64 wide: bitsandbytes' CPU inference packs 4-bit weights in blocks of 32 output rows
        folder = build_tiny_voxtral(workdir / "tiny", text_hidden=64)
        return folder, folder
    # The tiny builder writes the real Tekken BPE (130072 ranks + 1000 specials = 131072 ids, as Voxtral-Mini);
    # its small model is not used.
    folder = build_tiny_voxtral(workdir / "processor", n_inner_ranks=130072, text_layers=1, text_hidden=4)
    return folder, None


def write_results(bench: Bench, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = "" if bench.results["shape"] == "mini" else f"-{bench.results['shape']}"
    path = out_dir / f"train_throughput-{bench.results['card_slug']}{shape}.json"
    path.write_text(json.dumps(bench.results, indent=1, default=str), encoding="utf-8")
    return path


def print_table(results: dict[str, Any]) -> None:
    """The variants' throughput; MFU is the standard one, "MFU/mm" processed FLOPs over the measured matmul rate."""
    datasheet = results.get("datasheet_tflops")
    peak = f"datasheet bf16 {datasheet:.1f} TFLOP/s" if datasheet else "no datasheet peak: standard MFU not given"
    print(f"\ncard: {results['card']}  {peak}  measured matmul bf16: {results['matmul_tflops']:.0f} TFLOP/s")
    if not datasheet:
        print(f"  ({results['card']!r} is not in benchmarks/model_flops.py DATASHEET_BF16_DENSE_TFLOPS)")
    header = f"{'variant':22s} {'mb x ga':>7s} {'samp/s':>7s} {'audio-s/s':>9s} {'useful TF/s':>11s} {'MFU':>6s}"
    print(header + f" {'warm MFU':>8s} {'MFU/mm':>7s} {'peak GiB':>8s} {'loss@N':>7s} {'evalloss':>8s}", flush=True)

    def percent(value: float | None, width: int) -> str:
        return f"{value:{width}.1%}" if value is not None else f"{'n/a':>{width}s}"

    for name, r in results["variants"].items():
        if "samples_per_s" not in r:
            print(f"{name:22s} {r.get('error') or r.get('skipped')}")
            continue
        warm = (r.get("cache_warm_steps") or {}).get("mfu_standard")
        print(
            f"{name:22s} {r['micro_batch']:>3d} x {r['grad_accum']:<2d} {r['samples_per_s']:7.2f} "
            f"{r['audio_s_per_s']:9.1f} {r['useful_tflops']:11.1f} {percent(r['mfu_standard'], 6)} "
            f"{percent(warm, 8)} {r['mfu_processed_over_measured_matmul']:7.1%} {r.get('peak_memory_gib') or 0:8.1f} "
            f"{r['final_train_loss'] or float('nan'):7.3f} {r['eval_loss_fixed_batch']:8.3f}"
        )
    for method, probe in results.get("memory_probe", {}).items():
        print(f"memory probe {method}: {probe}")


def shape_problem(args: argparse.Namespace) -> str | None:
    """What in the variants and probes ``args`` names does not fit ``--shape``, or None: the 24 B shape trains LoRA
    only, and the ``small-*`` variants are its own."""
    names = [v.strip().split("#")[0] for v in args.variants.split(",") if v.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        return f"unknown variants {', '.join(unknown)}: see VARIANTS in {Path(__file__).name}"
    if args.shape == "small" and args.tiny:
        return "--tiny runs the tiny test model, which has no Small form: leave out --shape small"
    for name in names:
        spec = VARIANTS[name]
        if args.shape == "small" and spec["method"] == "full":
            return f"variant {name} is full fine-tuning, which fits no one card at --shape small: use LoRA variants"
        if spec.get("shape", "mini") != args.shape:
            return f"variant {name} is for --shape {spec.get('shape', 'mini')}, not --shape {args.shape}"
    for item in [p for p in args.probe.split(";") if p]:
        method, _, sizes = item.partition(":")
        if method.partition("+")[0] not in ("lora", "full") or method.partition("+")[2] not in ("", "ckpt"):
            return f"--probe {item!r}: expected lora or full, with +ckpt for gradient checkpointing, then ':sizes'"
        if not sizes or not all(size.strip().isdigit() for size in sizes.split(",")):
            return f"--probe {item!r}: expected comma-separated micro-batch sizes after ':'"
        if args.shape == "small" and method.startswith("full"):
            return f"--probe {item!r}: full fine-tuning does not fit one card at --shape small"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="mini",
        help="the model's shape: Voxtral-Mini-3B-2507 or Voxtral-Small-24B-2507 (random weights; LoRA variants only)",
    )
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated names from VARIANTS (default: {DEFAULT_ORDER}; --shape small: {SMALL_DEFAULT_ORDER})",
    )
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per variant (x8 samples)")
    parser.add_argument("--warmup", type=int, default=4, help="steps dropped before timing")
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--deadline-s", type=float, default=540.0, help="skip what would not finish by then")
    parser.add_argument(
        "--probe",
        default=None,
        help="memory probe: 'method[+ckpt]:micro-batches;...' (default: "
        + "; ".join(f"{shape}: {probe}" for shape, probe in DEFAULT_PROBES.items())
        + "); '' for none",
    )
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test with the tiny model")
    parser.add_argument(
        "--trace-dir", type=Path, default=None, help="write a Chrome trace of each profiled variant's profiled steps"
    )
    parser.add_argument(
        "--memory-cap-gib",
        type=float,
        default=None,
        help="let the process use at most this much GPU memory (79.6: an H100 80GB's, on a larger card)",
    )
    parser.add_argument(
        "--recount",
        type=Path,
        nargs="+",
        default=None,
        help="results files to recount on the CPU: writes each one's standard MFU beside it (no training)",
    )
    args = parser.parse_args(argv)
    args.variants = (
        args.variants
        if args.variants is not None
        else (SMALL_DEFAULT_ORDER if args.shape == "small" else DEFAULT_ORDER)
    )
    args.probe = args.probe if args.probe is not None else DEFAULT_PROBES[args.shape]
    problem = shape_problem(args)
    if problem:
        parser.error(problem)
    if args.recount:
        recount(args.recount)
        return 0
    if args.trace_dir is not None:
        args.trace_dir.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers
    from transformers.models.llama import modeling_llama

    global ORIGINAL_ROTARY
    ORIGINAL_ROTARY = modeling_llama.apply_rotary_pos_emb
    t0 = time.monotonic()
    device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.shape == "small" and device != "cuda":
        parser.error("--shape small needs a CUDA GPU: its 24 B parameters are built on the GPU in bf16")
    card = torch.cuda.get_device_name() if device == "cuda" else f"cpu-{platform.machine()}"
    if args.memory_cap_gib and device == "cuda":
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_cap_gib * 2**30 / total))
    datasheet = datasheet_peak_tflops(card)
    workdir = Path(tempfile.mkdtemp(prefix="voxplug-bench-"))
    processor_dir, tiny_dir = build_processor(workdir, args.tiny)
    from voxplug_voxtral.loading import load_voxtral_processor

    processor = load_voxtral_processor(processor_dir)
    clips = make_clips(workdir / "clips", args.clips, seed=0)
    check_clips = make_clips(workdir / "check", 8, seed=1)
    import soundfile

    check_rows = [
        {"audio": soundfile.read(c.path, dtype="float32")[0], "text": c.text, "language": "en"} for c in check_clips
    ]
    peak = matmul_tflops(device)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__}
    for package in ("peft", "accelerate", "liger_kernel", "triton"):
        with contextlib.suppress(Exception):
            versions[package] = __import__(package).__version__
    results: dict[str, Any] = {
        "shape": args.shape,
        "card": card,
        "card_slug": card_slug(card),
        "device_count": torch.cuda.device_count() if device == "cuda" else 0,
        "versions": versions,
        "matmul_tflops": peak,
        "memory_cap_gib": args.memory_cap_gib,
        "datasheet_tflops": datasheet,
        "effective_batch": EFFECTIVE_BATCH,
        "steps_per_variant": args.steps,
        "warmup_steps": args.warmup,
        "clips": {
            "count": len(clips),
            "mean_s": statistics.mean(c.duration_s for c in clips),
            "min_s": min(c.duration_s for c in clips),
            "max_s": max(c.duration_s for c in clips),
        },
        "variants": {},
        "memory_probe": {},
        "setup_s": time.monotonic() - t0,
    }
    bench = Bench(args, device, workdir, processor_dir, processor, clips, check_rows, tiny_dir, peak, results, t0)
    bench.manifest = write_manifest(clips, workdir / "clips" / "data.jsonl")
    estimates = {"voxfactory": 60, "voxfactory-lm-only": 50, "full-v0": 45}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        base_name = name.split("#")[0]
        small = base_name.startswith(("small-", "preset-small"))
        default = 150 if "compile" in base_name else 90 if small else 40
        if bench.remaining() < estimates.get(base_name, default):
            results["variants"][name] = {"skipped": "time"}
            continue
        print(f"== {name} ({time.monotonic() - t0:.0f} s)", flush=True)
        try:
            with sdpa_backends(VARIANTS[name.split("#")[0]]):
                results["variants"][name] = run_variant(bench, name)
        except Exception as exc:
            traceback.print_exc()
            results["variants"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        print(json.dumps(results["variants"][name], default=str)[:1500], flush=True)
        write_results(bench, args.out)
    for item in [p for p in args.probe.split(";") if p]:
        method, sizes = item.split(":")
        if bench.remaining() < 40:
            results["memory_probe"][method] = [{"skipped": "time"}]
            continue
        print(f"== memory probe {method} ({time.monotonic() - t0:.0f} s)", flush=True)
        try:
            results["memory_probe"][method] = memory_probe(bench, method, [int(s) for s in sizes.split(",")])
        except Exception as exc:
            traceback.print_exc()
            results["memory_probe"][method] = [{"error": f"{type(exc).__name__}: {exc}"[:1000]}]
        write_results(bench, args.out)
    results["matmul_tflops_end"] = matmul_tflops(device)
    results["total_s"] = time.monotonic() - t0
    path = write_results(bench, args.out)
    print_table(results)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
