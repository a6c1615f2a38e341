"""Start-up time and peak memory of ``voxplug train`` against the number of manifest rows, streamed and listed; and
how many decoded, collated samples one CPU core prepares per second.

Part 1, one ``voxplug train`` subprocess per case, on the tiny Voxtral (``max_steps: 2``, WER generation off,
``split.max_eval_rows: 20`` so every case evaluates the same few rows): the time from starting the process to its
first optimizer step (a local plugin's ``on_log`` notes the clock when step 1 is logged) and the process's peak
RSS (``os.wait4``). Manifests repeat the 24 bundled clips, one JSON row of about 150 bytes each; they are written
under ``--work`` (``/tmp`` by default, never in the repository). Cases: streamed (``data.streaming: true``) at each
``--rows``, listed (``data.streaming: false``, the path that checks every row first) at each ``--listed-rows``;
each ``--repeats`` times, interleaved, with the median and the minimum kept.

Part 2, in this process on one thread: decoding (soundfile + soxr, :class:`~voxplug.training.dataset.ExampleDataset`)
and collating (the ``voxtral-transcription`` collator with its feature cache off, the real 128-bin Whisper feature
extractor of every Voxtral checkpoint) of distinct clips, as samples per second per core; and reading and checking
streamed rows (JSONL parse, path, transcript and language checks, header duration) as rows per second per core.

Run from the repository root::

    python benchmarks/streaming_startup.py [--rows 1000 1000000] [--listed-rows 1000 20000]
        [--output benchmarks/results/streaming_startup-cpu.json]

On a shared CPU the ratios between cases of one run are the numbers to read; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO / "examples" / "speech" / "en"
H100_LORA_SAMPLES_PER_S = 54.0
"""Voxtral-Mini LoRA at the defaults on one H100 (benchmarks/NOTES.md)."""

MARK_PLUGIN = """
import os, time
from voxplug import hookimpl


@hookimpl
def on_log(logs, step, run_dir):
    path = os.environ.get("VOXPLUG_BENCH_FIRST_STEP")
    if path and step >= 1 and "loss" in logs and not os.path.exists(path):
        with open(path, "w") as handle:
            handle.write(repr(time.time()))
"""


def clips() -> list[tuple[str, str]]:
    lines = (SPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [tuple(line.split("\t", 1)) for line in lines if line.strip()]  # type: ignore[misc]


def write_manifest(work: Path, rows: int) -> Path:
    """``rows`` rows over the bundled clips (audio beside the manifest), written once and kept."""
    path = work / "data" / f"train-{rows}.jsonl"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    bundled = clips()
    for name, _text in bundled:
        if not (path.parent / name).exists():
            shutil.copyfile(SPEECH / name, path.parent / name)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            name, text = bundled[index % len(bundled)]
            handle.write(json.dumps({"id": f"r{index}", "audio_path": name, "text": text, "language": "en"}) + "\n")
    temporary.replace(path)
    return path


def tiny_model(work: Path) -> Path:
    folder = work / "tiny-voxtral"
    if not (folder / "config.json").is_file():
        from voxplug_voxtral.family import VoxtralFamily

        VoxtralFamily().build_tiny(folder)
    return folder


def run_case(work: Path, model: Path, manifest: Path, *, streaming: bool, rows: int) -> dict[str, Any]:
    """One ``voxplug train`` subprocess: seconds to the first optimizer step, wall seconds, peak RSS."""
    import yaml

    name = f"{'stream' if streaming else 'list'}-{rows}"
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    config = {
        "name": name,
        "data": {
            "source": "jsonl",
            "jsonl": {"path": str(manifest)},
            "streaming": streaming,
            "split": {"max_eval_rows": 20},
        },
        "model": {"name_or_path": str(model)},
        "training": {"method": "lora", "max_steps": 2, "output_dir": str(run_dir), "logging_steps": 1},
        "evaluation": {"enabled": False},
        "publish": {"target": None},
    }
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    mark = work / f"{name}.first-step"
    mark.unlink(missing_ok=True)
    env = {
        **os.environ,
        "VOXPLUG_BENCH_FIRST_STEP": str(mark),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    start = time.time()
    child = subprocess.Popen(
        [sys.executable, "-m", "voxplug", "train", "-c", str(config_path), "--no-progress"],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.time() - start
    stderr = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if status != 0 or not mark.is_file():
        raise RuntimeError(f"{name} failed ({status}):\n{stderr[-3000:]}")
    first_step = float(mark.read_text()) - start
    return {
        "case": name,
        "rows": rows,
        "streaming": streaming,
        "manifest_mb": round(manifest.stat().st_size / 1e6, 1),
        "seconds_to_first_step": round(first_step, 2),
        "wall_seconds": round(wall, 2),
        "data_loading_seconds": _stage_seconds(run_dir / "train.log", "data_loading"),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def summarised(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's repeats: median and minimum of each measure, and every run."""
    first = runs[0]
    summary = {key: first[key] for key in ("case", "rows", "streaming", "manifest_mb")}
    for key in ("seconds_to_first_step", "wall_seconds", "data_loading_seconds", "peak_rss_mb"):
        values = [run[key] for run in runs if run[key] is not None]
        summary[f"{key}_median"] = round(statistics.median(values), 2) if values else None
        summary[f"{key}_min"] = min(values) if values else None
    summary["runs"] = runs
    return summary


def _stage_seconds(log: Path, stage: str) -> float | None:
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        if f"stage {stage} took" in line:
            return float(line.rsplit("took ", 1)[1].split(" s")[0])
    return None


def per_core_throughput(work: Path, model: Path, manifest: Path, samples: int) -> dict[str, Any]:
    """Decoding + collating samples/s and reading + checking streamed rows/s, on one thread of this process."""
    import torch

    torch.set_num_threads(1)
    from voxplug.config import validate_config
    from voxplug.data.interface import Example
    from voxplug.data.loading import load_training_data
    from voxplug.data.streaming import StreamShard
    from voxplug.plugins import get_plugin_host
    from voxplug.training.dataset import ExampleDataset

    host = get_plugin_host()
    family = host.extension("model family", "voxtral")()
    processor = family.load_processor(str(model))
    collator_class = host.extension("collator", family.default_collator)
    collator = collator_class(collator_class.Options(feature_cache_mb=0), processor=processor, model_id=str(model))
    bundled = clips()
    examples = [
        Example(
            id=str(i),
            text=bundled[i % len(bundled)][1],
            language="en",
            audio_path=SPEECH / bundled[i % len(bundled)][0],
        )
        for i in range(samples)
    ]
    dataset = ExampleDataset(examples)
    batch_size = 8
    collator([dataset[i] for i in range(batch_size)])  # warm-up
    start = time.perf_counter()
    decode_seconds = 0.0
    for first in range(0, samples, batch_size):
        decode_start = time.perf_counter()
        items = [dataset[i] for i in range(first, min(first + batch_size, samples))]
        decode_seconds += time.perf_counter() - decode_start
        collator(items)
    total = time.perf_counter() - start
    raw = {
        "data": {"source": "jsonl", "jsonl": {"path": str(manifest)}, "streaming": True, "split": {"max_eval_rows": 20}}
    }
    data = load_training_data(validate_config(raw, base_dir=work), host, allow_stream=True)
    assert data.stream is not None
    rows, read_start = 0, time.perf_counter()
    for batch in data.stream.batches(0, StreamShard(0, 1), batch_size=8, by_duration=False, on_problem=print):
        rows += len(batch)
        if rows >= 20_000:
            break
    read_seconds = time.perf_counter() - read_start
    collate_rate = samples / total
    return {
        "samples": samples,
        "decode_and_collate_samples_per_s_per_core": round(collate_rate, 1),
        "decode_only_samples_per_s_per_core": round(samples / decode_seconds, 1),
        "stream_rows_read_and_checked_per_s_per_core": round(rows / read_seconds, 1),
        "h100_lora_samples_per_s": H100_LORA_SAMPLES_PER_S,
        "workers_needed_for_h100_lora": math.ceil(H100_LORA_SAMPLES_PER_S / collate_rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 1_000_000])
    parser.add_argument("--listed-rows", type=int, nargs="*", default=[1_000, 20_000])
    parser.add_argument("--samples", type=int, default=96, help="clips decoded and collated in part 2")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case, interleaved")
    parser.add_argument("--work", type=Path, default=Path("/tmp/voxplug-streaming-startup"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "streaming_startup-cpu.json")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "voxplug_plugins.py").write_text(MARK_PLUGIN, encoding="utf-8")
    model = tiny_model(args.work)
    manifests = {rows: write_manifest(args.work, rows) for rows in sorted({*args.rows, *args.listed_rows})}
    load_before = os.getloadavg()
    plan = [(True, rows) for rows in args.rows] + [(False, rows) for rows in args.listed_rows]
    runs: dict[tuple[bool, int], list[dict[str, Any]]] = {case: [] for case in plan}
    for _repeat in range(args.repeats):  # interleaved, so that a burst of load on the shared CPU hits every case
        for streaming, rows in plan:
            run = run_case(args.work, model, manifests[rows], streaming=streaming, rows=rows)
            runs[(streaming, rows)].append(run)
            print(json.dumps(run))
    cases = [summarised(runs[case]) for case in plan]
    streamed = [case for case in cases if case["streaming"]]
    smallest, largest = min(streamed, key=lambda c: c["rows"]), max(streamed, key=lambda c: c["rows"])
    throughput = per_core_throughput(args.work, model, manifests[max(args.rows)], args.samples)
    print(json.dumps(throughput))
    result = {
        "benchmark": "streaming_startup",
        "device": "cpu",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "cases": cases,
        "streamed_largest_over_smallest": {
            "rows": [smallest["rows"], largest["rows"]],
            "seconds_to_first_step_median_ratio": round(
                largest["seconds_to_first_step_median"] / smallest["seconds_to_first_step_median"], 3
            ),
            "seconds_to_first_step_min_ratio": round(
                largest["seconds_to_first_step_min"] / smallest["seconds_to_first_step_min"], 3
            ),
            "peak_rss_median_difference_mb": round(largest["peak_rss_mb_median"] - smallest["peak_rss_mb_median"], 1),
        },
        "per_core": throughput,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
