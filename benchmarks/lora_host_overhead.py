"""Host time of one LoRA training step: PEFT's forward, one node a layer, one node a group (``lora.one_node``).

Eager LoRA training of Voxtral on a GPU is bound by the host (benchmarks/NOTES.md): the GPU waits while Python
and PyTorch's dispatcher queue ~2,000 small kernels a step. That cost hardly depends on the tensors' sizes, so
part of it shows on a CPU with a model of Voxtral-Mini's depth (30 Llama layers, 7 adapted linear layers each)
and tiny widths. Each step is a forward and backward of the LoRA model on one bundled clip (``--rows``; the
audio encoder frozen, its output from the encoder cache after the first step, as in a run's later epochs); the
forwards alternate: PEFT's, one node per adapted layer, and the default, one node per group of layers that share
their input (q/k/v, gate/up). The JSON holds the median step time of each and their ratio (measured in the same run;
CPU timings are only compared with each other, never reported as speeds), and the aten ops a step runs (each
is a kernel launch on a GPU), in fp32 and for a bf16 model with fp32 adapters under bf16 autocast (as on a GPU,
where the adapters' casts add launches). The CPU's arithmetic still takes part of each step here, so the ratio
understates the host saving; ``benchmarks/kernel_host_cost.py`` measures it per layer on a GPU.

    python benchmarks/lora_host_overhead.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "examples" / "speech" / "en"


def build(workdir: Path, layers: int, rows: int, bf16: bool = False) -> tuple[object, dict]:
    """The tiny Voxtral at ``layers`` language-model layers with the ``lora`` trainer's adapters, and a batch;
    with ``bf16``, a bf16 model with fp32 adapters, as trained on a GPU."""
    import soundfile
    import torch
    from voxplug_trainers.lora import LoraMethod, LoraOptions
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.family import VoxtralFamily
    from voxplug_voxtral.loading import load_voxtral
    from voxplug_voxtral.tiny import build_tiny_voxtral

    from voxplug.config import validate_config
    from voxplug.training.context import decide
    from voxplug.training.speed.encoder_cache import cache_frozen_encoder

    model, processor = load_voxtral(build_tiny_voxtral(workdir, text_layers=layers), dtype="fp32", device="cpu")
    if bf16:
        model.to(torch.bfloat16)
    config = validate_config({"model": {"name_or_path": "tiny"}}, base_dir=Path.cwd())
    context = decide(config, {}, train_rows=rows, world_size=1)
    model = LoraMethod(LoraOptions()).prepare_model(model, VoxtralFamily(), context)
    model.train()
    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as handle:
        clips = list(csv.DictReader(handle, delimiter="\t"))[:rows]
    rows = [
        {"audio": soundfile.read(SPEECH / c["file"], dtype="float32")[0], "text": c["text"], "language": "en"}
        for c in clips
    ]
    # after the first step the frozen encoder's output comes from the cache, as in epochs 2 and later
    cache_frozen_encoder(VoxtralFamily(), model, 1)
    return model, VoxtralBatchBuilder(processor, attention_mask=False)(rows)


def step_seconds(model: object, batch: dict) -> float:
    start = time.perf_counter()
    model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def count_ops(model: object, batch: dict, autocast: bool = False) -> int:
    """The aten ops one forward and backward runs (under bf16 autocast, as on a GPU, with ``autocast``)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            Counter.ops += 1
            return func(*args, **(kwargs or {}))

    with Counter(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return Counter.ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--layers", type=int, default=30, help="language-model layers (Voxtral-Mini: 30)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each forward")
    parser.add_argument("--rows", type=int, default=1, help="clips a step (few: the CPU's arithmetic stays small)")
    args = parser.parse_args(argv)

    import torch
    from voxplug_trainers.lora_linear import restore_peft_forward, use_one_node_lora
    from voxplug_voxtral.family import VoxtralFamily

    torch.manual_seed(0)
    torch.set_num_threads(1)  # host work is one thread; keep the arithmetic from spreading over cores
    workdir = Path(tempfile.mkdtemp(prefix="voxplug-lora-host-"))
    model, batch = build(workdir, args.layers, args.rows)
    layers = restore_peft_forward(model)

    def forwards(model: object) -> dict:
        def one_node(shared_inputs: tuple) -> None:
            restore_peft_forward(model)
            use_one_node_lora(model, shared_inputs)

        return {
            "peft": lambda: restore_peft_forward(model),
            "one_node": lambda: one_node(()),
            "grouped": lambda: one_node(VoxtralFamily.lora_shared_inputs),
        }

    # the ops (kernel launches on a GPU) of a bf16 model with fp32 adapters under autocast, as trained on a GPU
    bf16_model, bf16_batch = build(workdir / "bf16", args.layers, args.rows, bf16=True)
    bf16_ops = {}
    for name, use in forwards(bf16_model).items():
        use()
        bf16_ops[name] = count_ops(bf16_model, bf16_batch, autocast=True)
    del bf16_model
    times: dict[str, list[float]] = {name: [] for name in forwards(model)}
    ops = {}
    for name, use in forwards(model).items():
        use()
        ops[name] = count_ops(model, batch)
        for _ in range(3):  # warm-up
            step_seconds(model, batch)
    for _ in range(args.steps):  # alternate, so drift in the machine's speed hits all alike
        for name, use in forwards(model).items():
            use()
            times[name].append(step_seconds(model, batch))
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "benchmark": "lora_host_overhead",
        "machine": f"cpu-{platform.machine()}",
        "torch": torch.__version__,
        "language_model_layers": args.layers,
        "adapted_layers": layers,
        "batch_rows": int(batch["input_ids"].shape[0]),
        "batch_tokens": int(batch["input_ids"].numel()),
        "steps": args.steps,
        "aten_ops_per_step": ops,
        "aten_ops_per_step_bf16_autocast": bf16_ops,
        "median_step_s": median,
        "one_node_over_peft_step_time": median["one_node"] / median["peft"],
        "grouped_over_peft_step_time": median["grouped"] / median["peft"],
        "ops_saved_per_adapted_layer": (ops["peft"] - ops["one_node"]) / layers,
        "grouped_ops_saved_per_block": (ops["one_node"] - ops["grouped"]) / args.layers,
        "grouped_ops_saved_per_block_bf16_autocast": (bf16_ops["one_node"] - bf16_ops["grouped"]) / args.layers,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "lora_host_overhead-cpu.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
