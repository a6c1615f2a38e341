"""The fast decoder gives transformers' greedy ``generate`` tokens, token for token, for both families on the CPU.

Both the CPU's shapes (exact spans, rows leaving at once) and the GPU's (``graph_shapes``: prompt passes of 16,
audio prepared in a thread, rows in powers of two, spans in buckets with masks) run here; only the CUDA graph
capture itself needs a GPU (test_gpu.py). The reference is ``generate`` on one clip at a time, with the same
token budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voxplug.data.audio import load_audio_16k
from voxplug.evaluation.batching import token_budget
from voxplug.evaluation.decoding import DecodeStats

SHAPES = [pytest.param(False, id="cpu-shapes"), pytest.param(True, id="gpu-shapes")]


@pytest.fixture(scope="module")
def clips(speech_clips: list[tuple[Path, str]]) -> list[np.ndarray]:
    """Real speech: four sentences of about 2 s, two of three sentences joined, half a second of silence, and
    31 s (two 30 s chunks for Voxtral)."""
    single = [load_audio_16k(path).samples for path, _ in speech_clips[:4]]
    joined = [np.concatenate(single[i : i + 3]) for i in range(2)]
    long = np.concatenate([single[0]] * 16)[: 16000 * 31]
    return [*single, *joined, np.zeros(8000, np.float32), long]


@pytest.fixture(scope="module")
def voxtral(tiny_voxtral: Path) -> tuple[Any, Any]:
    from transformers import AutoProcessor, VoxtralForConditionalGeneration

    return VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval(), AutoProcessor.from_pretrained(
        tiny_voxtral
    )


def voxtral_generate(
    model: Any, processor: Any, audio: np.ndarray, language: str | None, budget: int, eos: int
) -> list:
    """Plain ``generate`` on one clip; its new tokens before ``eos``."""
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.generation import generate_batch

    batch = VoxtralBatchBuilder(processor).inference_batch([audio], [language])
    row = generate_batch(model, batch, max_new_tokens=budget, pad_token_id=11, eos_token_id=eos)[0].tolist()
    return row[: row.index(eos)] if eos in row else row


LANGUAGES = ["en", None, "fr", "en", "en", None, "en"]


@pytest.mark.slow
@pytest.mark.parametrize("graph_shapes", SHAPES)
def test_voxtral_matches_generate_with_budgets_from_clip_length(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], graph_shapes: bool
) -> None:
    from voxplug_voxtral.generation import transcribe_ids

    model, processor = voxtral
    audios = clips[:7]
    stats = DecodeStats()
    ours = transcribe_ids(model, processor, audios, LANGUAGES, batch_size=3, graph_shapes=graph_shapes, stats=stats)
    limit = model.config.text_config.max_position_embeddings
    budgets = [token_budget(len(audio) / 16000, None, limit) for audio in audios]
    for audio, language, tokens, budget in zip(audios, LANGUAGES, ours, budgets, strict=True):
        assert tokens == voxtral_generate(model, processor, audio, language, budget, eos=2)
    assert [len(tokens) for tokens in ours] == budgets  # the random model never stops: every budget is used
    assert len(set(budgets)) > 3 and stats.batches >= 3  # clips of many lengths; languages split the clips


@pytest.mark.parametrize("graph_shapes", SHAPES)
@pytest.mark.parametrize("layout", ["packed", "varlen"])
def test_voxtral_rows_stopping_at_eos_leave_the_batch(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], graph_shapes: bool, layout: str
) -> None:
    """With an end-of-sequence id the random model often emits, rows stop at different steps (and are moved in
    the cache, whichever its layout)."""
    from voxplug_voxtral.generation import StepAttention, VoxtralDecoding

    from voxplug.evaluation.batching import transcribe_clips

    model, processor = voxtral
    audios, languages = clips, ["en"] * len(clips)  # the last one has two 30 s chunks
    first = voxtral_generate(model, processor, audios[0], "en", 12, eos=2)
    eos = max(set(first), key=first.count)  # a token this model repeats
    engine = VoxtralDecoding(model, processor, attention=StepAttention(layout))
    engine.eos_ids = (eos,)
    import torch

    with torch.inference_mode():
        ours = transcribe_clips(engine, audios, languages, max_new_tokens=40, batch_size=8, graph_shapes=graph_shapes)
    theirs = [voxtral_generate(model, processor, audio, "en", 40, eos=eos) for audio in audios]
    assert ours == theirs
    assert len({len(tokens) for tokens in theirs}) > 1 and min(len(tokens) for tokens in theirs) < 39


@pytest.mark.parametrize("graph_shapes", SHAPES)
def test_voxtral_fast_inputs_give_the_processor_inputs_tokens(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], graph_shapes: bool
) -> None:
    """Prompts and features from :class:`TranscriptionInputs` against the processor's own, clip by clip; loud audio
    (clipped by the processor's 16-bit WAV) included."""
    import torch
    from voxplug_voxtral.generation import VoxtralDecoding

    from voxplug.evaluation.batching import transcribe_clips

    model, processor = voxtral
    audios = [*clips, clips[4] * np.float32(3.0)]
    languages = [*LANGUAGES, "fr", "en"]
    tokens = {}
    for processor_inputs in (False, True):
        engine = VoxtralDecoding(model, processor, processor_inputs=processor_inputs)
        with torch.inference_mode():
            tokens[processor_inputs] = transcribe_clips(
                engine, audios, languages, max_new_tokens=12, batch_size=4, graph_shapes=graph_shapes
            )
        if not processor_inputs:  # the fast path built one prompt per (chunks, language) and took every clip
            assert engine.inputs is not None
            assert set(engine.inputs.prompts) == {(1, "en"), (1, None), (1, "fr"), (2, "fr")}
    assert tokens[False] == tokens[True]
    assert all(len(row) == 12 for row in tokens[False]) and len({tuple(row) for row in tokens[False]}) > 3


def test_lora_layers_take_part_and_can_be_switched_off(voxtral: tuple[Any, Any], clips: list[np.ndarray]) -> None:
    import copy

    import torch
    from peft import LoraConfig, get_peft_model
    from voxplug_voxtral.generation import transcribe_ids
    from voxplug_voxtral.targets import lora_target_regex

    model, processor = voxtral
    torch.manual_seed(1)
    config = LoraConfig(r=4, target_modules=lora_target_regex(), init_lora_weights=False)  # random, not a no-op
    tuned = get_peft_model(copy.deepcopy(model), config).eval()
    audios, languages = clips[:4], ["en"] * 4
    ours = transcribe_ids(tuned, processor, audios, languages, max_new_tokens=10)
    assert ours == [voxtral_generate(tuned, processor, audio, "en", 10, eos=2) for audio in audios]
    base = transcribe_ids(model, processor, audios, languages, max_new_tokens=10)
    assert ours != base
    with tuned.disable_adapter():
        assert transcribe_ids(tuned, processor, audios, languages, max_new_tokens=10) == base


def test_decoding_steps_fold_lora_layers_and_see_adapters_change_between_transcriptions(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each layer's q/k/v, output, gate/up and down projections are folded (four groups a layer), once per
    transcription: a change to the adapters between two transcriptions (a training step) shows in the second."""
    import copy

    import torch
    import voxplug_voxtral.generation as generation
    from peft import LoraConfig, get_peft_model
    from voxplug_voxtral.generation import transcribe_ids
    from voxplug_voxtral.targets import lora_target_regex

    model, processor = voxtral
    torch.manual_seed(2)
    config = LoraConfig(r=4, target_modules=lora_target_regex(), init_lora_weights=False)
    tuned = get_peft_model(copy.deepcopy(model), config).eval()
    folds: list[Any] = []
    fold = generation.fold_lora
    monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: folds.append(fold(layers, dtype)) or folds[-1])
    audios, languages = clips[:3], ["en"] * 3
    first = transcribe_ids(tuned, processor, audios, languages, max_new_tokens=8)
    layers = model.config.text_config.num_hidden_layers
    assert len(folds) == 4 * layers and all(folded is not None for folded in folds)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if "lora_A" in name or "lora_B" in name:
                parameter.mul_(-1.5)
    folds.clear()
    second = transcribe_ids(tuned, processor, audios, languages, max_new_tokens=8)
    assert len(folds) == 4 * layers  # folded again, from the changed adapters
    assert second != first
    assert second == [voxtral_generate(tuned, processor, audio, "en", 8, eos=2) for audio in audios]
    folds.clear()
    with tuned.disable_adapter():
        transcribe_ids(tuned, processor, audios, languages, max_new_tokens=8)
    assert len(folds) == 4 * layers and not any(folds)  # switched off: PEFT's forward, which skips them


def test_an_adapter_loaded_for_inference_folds_in_fp32_and_gives_peft_tokens(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``voxplug evaluate`` and the demo load an adapter with ``PeftModel.from_pretrained`` over a bf16 base: fp32
    adapters and no autocast. Every group folds with its adapters in fp32 and the tokens are those of PEFT's own
    forward in the same decoder, stacked or not."""
    import copy

    import torch
    import voxplug_voxtral.generation as generation
    from peft import LoraConfig, PeftModel, get_peft_model
    from voxplug_voxtral.generation import transcribe_ids
    from voxplug_voxtral.targets import lora_target_regex

    model, processor = voxtral
    torch.manual_seed(5)
    config = LoraConfig(r=4, target_modules=lora_target_regex(), init_lora_weights=False)
    get_peft_model(copy.deepcopy(model), config).save_pretrained(tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(copy.deepcopy(model).to(torch.bfloat16), tmp_path / "adapter").eval()
    assert {p.dtype for name, p in loaded.named_parameters() if "lora_" in name} == {torch.float32}
    folds: list[Any] = []
    fold = generation.fold_lora
    monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: folds.append(fold(layers, dtype)) or folds[-1])
    audios, languages = clips[:4], ["en"] * 4
    with torch.inference_mode():
        ours = transcribe_ids(loaded, processor, audios, languages, max_new_tokens=10)
        stacked = transcribe_ids(loaded, processor, audios, languages, max_new_tokens=10, stack_projections=True)
        assert len(folds) == 8 * model.config.text_config.num_hidden_layers
        assert all(folded is not None and folded.adapter_dtype == torch.float32 for folded in folds)
        monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: None)  # PEFT's forward runs each layer
        theirs = transcribe_ids(loaded, processor, audios, languages, max_new_tokens=10)
        with loaded.disable_adapter():
            base = transcribe_ids(loaded, processor, audios, languages, max_new_tokens=10)
    assert ours == stacked == theirs
    assert ours != base


def test_stacked_projections_give_the_generate_tokens_with_and_without_lora(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block's q/k/v and gate/up as one matmul over stacked copies of their weights: the base model's tokens
    and, with LoRA adapters folded into the stacked columns, PEFT's; a layer that cannot stack runs as it was."""
    import copy

    import torch
    import voxplug_voxtral.generation as generation
    from peft import LoraConfig, get_peft_model
    from voxplug_voxtral.generation import transcribe_ids
    from voxplug_voxtral.targets import lora_target_regex

    model, processor = voxtral
    stacks: list[Any] = []
    stack = generation.stack_linears
    monkeypatch.setattr(generation, "stack_linears", lambda *a: stacks.append(stack(*a)) or stacks[-1])
    audios, languages = clips[:3], ["en"] * 3
    expected = [voxtral_generate(model, processor, audio, "en", 8, eos=2) for audio in audios]
    options = {"max_new_tokens": 8, "stack_projections": True}
    assert transcribe_ids(model, processor, audios, languages, **options) == expected
    layers = model.config.text_config.num_hidden_layers
    assert len(stacks) == 2 * layers and all(stacked is not None and stacked.lora is None for stacked in stacks)
    assert [stacked.widths for stacked in stacks[:2]] == [
        (model.config.text_config.num_attention_heads * 12, *[model.config.text_config.num_key_value_heads * 12] * 2),
        (model.config.text_config.intermediate_size,) * 2,
    ]
    torch.manual_seed(4)
    config = LoraConfig(r=4, target_modules=lora_target_regex(), init_lora_weights=False)
    tuned = get_peft_model(copy.deepcopy(model), config).eval()
    stacks.clear()
    ours = transcribe_ids(tuned, processor, audios, languages, **options)
    assert len(stacks) == 2 * layers and all(stacked is not None and stacked.lora is not None for stacked in stacks)
    assert ours == [voxtral_generate(tuned, processor, audio, "en", 8, eos=2) for audio in audios]
    assert ours != expected
    attention = tuned.base_model.model.model.language_model.layers[0].self_attn
    # LoRA layers that did not fold (PEFT's forward must run them) do not stack
    assert stack(list(map(attention.get_submodule, ("q_proj", "k_proj", "v_proj"))), torch.float32) is None


def test_a_model_whose_forward_autocasts_is_decoded_in_one_dtype(
    voxtral: tuple[Any, Any], clips: list[np.ndarray]
) -> None:
    """The Trainer's model under bf16: accelerate autocasts its forward (the prompt pass), not the decoder's own
    steps, so the cache is filled in bf16 (keys promoted to fp32 by the rotary embedding) while the steps compute
    in fp32. The decoder attends in one dtype and gives the prompt pass's first token."""
    import copy

    import torch
    from accelerate.utils import convert_outputs_to_fp32
    from voxplug_voxtral.generation import transcribe_ids

    model, processor = voxtral
    wrapped = copy.deepcopy(model)
    forward = wrapped.forward  # what Accelerator.prepare_model does for mixed precision, on the CPU
    wrapped.forward = convert_outputs_to_fp32(torch.autocast("cpu", dtype=torch.bfloat16)(forward))
    audios, languages = clips[:3], ["en"] * 3
    ours = transcribe_ids(wrapped, processor, audios, languages, max_new_tokens=6)
    firsts = [voxtral_generate(wrapped, processor, audio, "en", 1, eos=2) for audio in audios]
    assert [row[:1] for row in ours] == firsts and all(len(row) == 6 for row in ours)


@pytest.fixture(scope="module")
def tiny_en(tiny_en_folder: Path) -> tuple[Any, Any]:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    return WhisperForConditionalGeneration.from_pretrained(tiny_en_folder).eval(), WhisperProcessor.from_pretrained(
        tiny_en_folder
    )


@pytest.mark.slow
@pytest.mark.parametrize("graph_shapes", SHAPES)
def test_whisper_matches_generate_and_stops_at_end_of_text(
    tiny_en: tuple[Any, Any], clips: list[np.ndarray], speech_clips: list[tuple[Path, str]], graph_shapes: bool
) -> None:
    import torch
    from voxplug_whisper.generation import log_mel_features, transcribe_ids

    from voxplug.data.text import wer_cer

    model, processor = tiny_en
    audios = clips[:6]  # up to 30 s: Whisper's window
    ours = transcribe_ids(model, processor, audios, [None] * 6, batch_size=3, graph_shapes=graph_shapes)
    eot = processor.tokenizer.eos_token_id
    for audio, tokens in zip(audios, ours, strict=True):
        budget = token_budget(len(audio) / 16000, None, 446)
        with torch.inference_mode():
            row = model.generate(log_mel_features(processor, [audio]), max_new_tokens=budget)[0].tolist()
        assert tokens == (row[: row.index(eot)] if eot in row else row)
    texts = processor.tokenizer.batch_decode(ours[:4], skip_special_tokens=True)
    assert wer_cer([text for _, text in speech_clips[:4]], texts)["wer"] < 0.5, texts  # a real model, really heard


def test_whisper_decoding_folds_lora_layers_and_gives_peft_tokens(
    tiny_en: tuple[Any, Any], clips: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Whisper LoRA model (the decoder's scope, random adapters): each decoder layer's self-attention q/k/v, its
    output, the cross-attention's query and output, fc1 and fc2 are folded (six groups a layer), and the tokens
    are those of PEFT's model through ``generate``; with the adapters off nothing folds."""
    import copy

    import torch
    import voxplug_whisper.generation as generation
    from peft import LoraConfig, get_peft_model
    from voxplug_whisper.family import lora_target_regex
    from voxplug_whisper.generation import log_mel_features, transcribe_ids

    model, processor = tiny_en
    torch.manual_seed(5)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=lora_target_regex(["decoder"]), init_lora_weights=False)
    tuned = get_peft_model(copy.deepcopy(model), config).eval()
    with torch.no_grad():  # adapters large enough to change what is heard
        for name, parameter in tuned.named_parameters():
            if "lora_B" in name:
                parameter.mul_(4)
    folds: list[Any] = []
    fold = generation.fold_lora
    monkeypatch.setattr(generation, "fold_lora", lambda layers, dtype: folds.append(fold(layers, dtype)) or folds[-1])
    audios = clips[:3]
    ours = transcribe_ids(tuned, processor, audios, [None] * 3, max_new_tokens=12)
    layers = model.config.decoder_layers
    assert len(folds) == 6 * layers and all(folded is not None for folded in folds)
    assert [len(folded.weights) for folded in folds[:6]] == [3, 1, 1, 1, 1, 1]
    eot = processor.tokenizer.eos_token_id
    for audio, tokens in zip(audios, ours, strict=True):
        with torch.inference_mode():
            row = tuned.generate(input_features=log_mel_features(processor, [audio]), max_new_tokens=12)[0].tolist()
        assert tokens == (row[: row.index(eot)] if eot in row else row)
    base = transcribe_ids(model, processor, audios, [None] * 3, max_new_tokens=12)
    assert ours != base
    folds.clear()
    with tuned.disable_adapter():
        assert transcribe_ids(tuned, processor, audios, [None] * 3, max_new_tokens=12) == base
    assert len(folds) == 6 * layers and not any(folds)


class SmallMemoryDecoding:
    """A Voxtral decoder whose device holds at most ``rows`` decoder rows: more raise PyTorch's out-of-memory
    error at the prompt pass, as a GPU would."""

    def __init__(self, model: Any, processor: Any, rows: int) -> None:
        from voxplug_voxtral.generation import VoxtralDecoding

        self.inner, self.rows, self.refused = VoxtralDecoding(model, processor), rows, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prefill(self, batch: Any, state: Any, offset: int) -> Any:
        import torch

        if state.rows > self.rows:
            self.refused += 1
            raise torch.OutOfMemoryError(f"CUDA out of memory: {state.rows} rows")
        return self.inner.prefill(batch, state, offset)


def test_a_batch_out_of_memory_is_retried_with_half_the_rows(voxtral: tuple[Any, Any], clips: list[np.ndarray]) -> None:
    import torch

    from voxplug.evaluation.batching import transcribe_clips

    model, processor = voxtral
    audios, languages = clips[:6], ["en"] * 6
    engine = SmallMemoryDecoding(model, processor, rows=2)
    stats = DecodeStats()
    with torch.inference_mode():
        ours = transcribe_clips(engine, audios, languages, max_new_tokens=8, batch_size=6, stats=stats)
    assert engine.refused == 2 and stats.rows == 1  # 6 rows, then 3, then 1
    assert stats.notes == [f"out of GPU memory: {rows} clips at once from then on" for rows in (3, 1)]
    assert ours == [voxtral_generate(model, processor, audio, "en", 8, eos=2) for audio in audios]


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["packed", "gqa", "varlen", "triton"])
def test_every_attention_layout_gives_the_generate_tokens(
    voxtral: tuple[Any, Any], clips: list[np.ndarray], layout: str
) -> None:
    """The GPU's shapes (spans in buckets, so attention runs with a mask; ``varlen``: one shape, a length mask on
    the CPU) in each grouped-query layout."""
    from voxplug_voxtral.generation import StepAttention, transcribe_ids

    model, processor = voxtral
    audios, languages = clips[:5], LANGUAGES[:5]
    attention = StepAttention(layout=layout)
    ours = transcribe_ids(
        model, processor, audios, languages, batch_size=4, max_new_tokens=20, graph_shapes=True, attention=attention
    )
    theirs = [voxtral_generate(model, processor, a, lang, 20, eos=2) for a, lang in zip(audios, languages, strict=True)]
    assert ours == theirs and all(len(tokens) == 20 for tokens in ours)


def test_step_attention_refuses_unknown_names_and_backends_varlen_ignores() -> None:
    from voxplug_voxtral.generation import StepAttention

    with pytest.raises(ValueError, match="expected one of packed, gqa, varlen"):
        StepAttention(layout="repeat")
    with pytest.raises(ValueError, match=r"SDPA backends \['fast'\]"):
        StepAttention(backends=("math", "fast"))
    with pytest.raises(ValueError, match="SDPA backends do not apply"):
        StepAttention(layout="varlen", backends=("flash",))
    with pytest.raises(ValueError, match="SDPA backends do not apply"):
        StepAttention(layout="triton", backends=("flash",))
    with pytest.raises(ValueError, match="the varlen layout takes none"):
        StepAttention(layout="varlen", tile=(64, 4, 2))
    with pytest.raises(ValueError, match="tile 64x3x2: expected"):
        StepAttention(layout="triton", tile=(64, 3, 2))


def test_triton_serves_half_precision_power_of_two_heads_to_128_on_an_ampere_or_newer_gpu_with_triton(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Triton decoding kernels' reach; the GPU's answers are what this CPU's torch is told it has, and Triton
    is present or not as told."""
    import torch
    from voxplug_voxtral import decode_kernels
    from voxplug_voxtral.decode_kernels import triton_serves

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(decode_kernels, "_kernels", lambda: object())
    for head_dim in (16, 64, 128):
        assert triton_serves(cuda, torch.bfloat16, head_dim), head_dim
    assert triton_serves(cuda, torch.float16, 128)
    for head_dim in (8, 12, 96, 256):
        assert not triton_serves(cuda, torch.bfloat16, head_dim), head_dim
    assert not triton_serves(cuda, torch.float32, 128)
    assert not triton_serves(torch.device("cpu"), torch.bfloat16, 128)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not triton_serves(cuda, torch.bfloat16, 128)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(decode_kernels, "_kernels", lambda: None)  # Triton not installed
    assert not triton_serves(cuda, torch.bfloat16, 128)


def test_attention_splits_fill_the_card_in_powers_of_two_never_below_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from voxplug_voxtral.decode_kernels import attention_splits

    class Properties:
        multi_processor_count = 132

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: Properties())
    cuda = torch.device("cuda")
    assert attention_splits(256, 8, 1000, cuda) == 1  # 2,048 blocks already
    assert attention_splits(16, 8, 1000, cuda) == 4  # 128 blocks: 512 >= 264
    assert attention_splits(1, 8, 4096, cuda) == 16  # at most 16
    assert attention_splits(1, 8, 100, cuda) == 1  # two parts of 50 positions: under a block of 64
    assert attention_splits(1, 8, 256, cuda) == 4  # four parts of 64


def test_the_default_step_attention_is_triton_where_it_serves_then_varlen_where_flash_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``triton`` where voxplug's Triton kernels serve the cache; else ``varlen`` on a CUDA GPU of compute
    capability 8.0 or newer, in half precision, with heads FlashAttention takes (multiples of 8 up to 256) in a
    torch built with it; ``packed`` everywhere else. The GPU's answers are what this CPU's torch is told it has."""
    import torch
    from voxplug_voxtral import decode_kernels
    from voxplug_voxtral.generation import default_step_attention

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(decode_kernels, "_kernels", lambda: object())  # Triton installed
    assert default_step_attention(cuda, torch.bfloat16, 128).layout == "triton"
    assert default_step_attention(cuda, torch.float16, 64).layout == "triton"
    assert default_step_attention(cuda, torch.bfloat16, 96).layout == "packed"  # neither serves 96 wide heads
    monkeypatch.setattr(decode_kernels, "_kernels", lambda: None)  # no Triton: FlashAttention's, as below
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: True)
    for head_dim in (16, 128, 256):
        assert default_step_attention(cuda, torch.bfloat16, head_dim).layout == "varlen", head_dim
    assert default_step_attention(cuda, torch.float16, 128).layout == "varlen"
    for head_dim in (12, 100, 264):
        assert default_step_attention(cuda, torch.bfloat16, head_dim).layout == "packed", head_dim
    assert default_step_attention(cuda, torch.float32, 128).layout == "packed"
    assert default_step_attention(torch.device("cpu"), torch.bfloat16, 128).layout == "packed"
    monkeypatch.setattr(torch.version, "hip", "6.2")
    assert default_step_attention(cuda, torch.bfloat16, 128).layout == "packed"
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert default_step_attention(cuda, torch.bfloat16, 128).layout == "packed"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.backends.cuda, "is_flash_attention_available", lambda: False)
    assert default_step_attention(cuda, torch.bfloat16, 128).layout == "packed"


def test_the_prompt_pass_attends_without_cudnn_and_overlapping_blocks_restore_it_once(tiny_voxtral: Path) -> None:
    """The prompt pass runs with cuDNN's attention off; two threads' blocks that overlap leave it as it was."""
    import threading

    import torch
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import transcribe_ids

    from voxplug.api import unplanned_attention

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval()
    processor = AutoProcessor.from_pretrained(tiny_voxtral)
    seen: list[bool] = []
    handle = model.model.language_model.register_forward_pre_hook(
        lambda module, args: seen.append(torch.backends.cuda.cudnn_sdp_enabled())
    )
    try:
        transcribe_ids(model, processor, [np.zeros(16000, dtype=np.float32)], [None], max_new_tokens=2)
    finally:
        handle.remove()
    assert seen == [False]  # the prompt pass; the steps are the cache's own
    assert torch.backends.cuda.cudnn_sdp_enabled()

    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with unplanned_attention():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with unplanned_attention():
        second_in.set()
        first_out.wait(5)
        assert not torch.backends.cuda.cudnn_sdp_enabled()  # the first block left; this one still holds it off
    thread.join()
    assert torch.backends.cuda.cudnn_sdp_enabled()


def test_the_prompt_pass_runs_the_encoder_contiguous_and_leaves_a_stock_model_as_it_was(tiny_voxtral: Path) -> None:
    """A model voxplug did not load (the demo's, a benchmark's baseline) gets the contiguous stream for the prompt
    pass only; its encoder's last layer hands the final norm a contiguous tensor there, and a strided one after."""
    import torch
    from transformers import AutoProcessor, VoxtralForConditionalGeneration
    from voxplug_voxtral.generation import transcribe_ids

    from voxplug.models.encoders import has_contiguous_residual_stream

    model = VoxtralForConditionalGeneration.from_pretrained(tiny_voxtral).eval()
    processor = AutoProcessor.from_pretrained(tiny_voxtral)
    encoder = model.model.audio_tower
    seen: list[bool] = []
    encoder.layer_norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    transcribe_ids(model, processor, [np.zeros(16000, dtype=np.float32)], [None], max_new_tokens=2)
    with torch.no_grad():
        encoder(torch.zeros(1, 128, 3000))
    assert seen == [True, False]
    assert not has_contiguous_residual_stream(encoder)


def test_overlapping_calls_share_the_hook_and_the_loaders_stays() -> None:
    import torch

    from voxplug.models.encoders import (
        contiguous_residual_stream,
        contiguous_residual_stream_while,
        has_contiguous_residual_stream,
    )

    encoder = torch.nn.Module()
    encoder.layers = torch.nn.ModuleList([torch.nn.Identity()])
    with contiguous_residual_stream_while(encoder):
        with contiguous_residual_stream_while(encoder):
            assert len(encoder.layers[0]._forward_pre_hooks) == 1
        assert has_contiguous_residual_stream(encoder)  # the outer call still runs
        assert encoder.layers[0](torch.zeros(3, 4).t()).is_contiguous()
    assert not has_contiguous_residual_stream(encoder)
    contiguous_residual_stream(encoder)
    with contiguous_residual_stream_while(encoder):
        pass
    assert has_contiguous_residual_stream(encoder) and len(encoder.layers[0]._forward_pre_hooks) == 1
