"""Fast training paths compute the same loss as the plain model forward on the same batch (tiny Voxtral, CPU).

The GPU benchmark (benchmarks/train_throughput.py) repeats these checks at the full Voxtral-Mini-3B shape.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import lora_voxtral, uneven_audio_rows

torch = pytest.importorskip("torch")

SPEECH = Path(__file__).resolve().parents[2] / "examples" / "speech" / "en"


@pytest.fixture(scope="module")
def model_and_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    """A tiny Voxtral (fp32, eval mode) and a 4-row batch of bundled clips with transcripts of different lengths."""
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.loading import load_voxtral
    from voxplug_voxtral.tiny import build_tiny_voxtral

    model, processor = load_voxtral(build_tiny_voxtral(tmp_path_factory.mktemp("tiny")), dtype="fp32", device="cpu")
    model.eval()
    return model, VoxtralBatchBuilder(processor)(uneven_audio_rows())


def test_label_positions_list_each_rows_labelled_positions_and_pad_the_rest() -> None:
    from voxplug.training.speed.label_logits import label_positions

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 2]])
    positions, targets = label_positions(labels)
    # row 0: positions 1 and 2 predict 5 and 6; its two padding slots point at the last position, target -100
    assert positions.tolist() == [[1, 2, 4, 4], [0, 1, 2, 3]]
    assert targets.tolist() == [[5, 6, -100, -100], [7, 8, 9, 2]]


@pytest.mark.slow
def test_label_logits_loss_equals_plain_forward(model_and_batch: tuple[object, dict]) -> None:
    from voxplug.training.speed.label_logits import label_logits_loss, label_positions, supports_label_logits

    model, batch = model_and_batch
    assert supports_label_logits(model)
    with torch.no_grad():
        plain = model(**batch).loss
        labels = batch["labels"]
        positions, targets = label_positions(labels)
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        outputs = model(**inputs, logits_to_keep=positions)
        fast = label_logits_loss(outputs, targets)
        items = (labels[:, 1:] != -100).sum()
        summed = label_logits_loss(outputs, targets, num_items_in_batch=items)
    # logits at the longest row's label count, not at every position
    assert outputs.logits.shape[:2] == (labels.shape[0], int((labels[:, 1:] != -100).sum(dim=1).max()))
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)
    assert torch.allclose(summed, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_trainer_uses_label_logits_and_gets_the_same_loss(model_and_batch: tuple[object, dict], tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from voxplug.training.speed.label_logits import TARGETS_KEY
    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, batch = model_and_batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    fast_trainer = TranscriptionTrainer(model=model, args=args, data_collator=lambda rows: dict(batch))
    plain_trainer = TranscriptionTrainer(model=model, args=args, label_logits_only=False)
    assert fast_trainer.label_logits_only and not plain_trainer.label_logits_only
    collated = fast_trainer.data_collator([])  # the data loader's batches carry the positions, found on the CPU
    assert TARGETS_KEY in collated and collated["logits_to_keep"].dtype == torch.long
    items = (batch["labels"][:, 1:] != -100).sum()
    with torch.no_grad():
        from_loader = fast_trainer.compute_loss(model, collated, num_items_in_batch=items)
        from_elsewhere = fast_trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        plain = plain_trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
    assert torch.allclose(from_loader, plain, rtol=1e-5, atol=1e-6)
    assert torch.allclose(from_elsewhere, plain, rtol=1e-5, atol=1e-6)


def test_training_forward_fills_no_kv_cache(model_and_batch: tuple[object, dict], tmp_path: Path) -> None:
    """The loss forward asks for no KV cache (models default to one; compiled blocks would recompile per layer)."""
    from transformers import TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, batch = model_and_batch
    seen: dict[str, object] = {}

    def record(module: object, args: tuple, kwargs: dict) -> None:
        seen.update(kwargs)

    handle = model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    trainer = TranscriptionTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    try:
        with torch.no_grad():
            trainer.compute_loss(model, dict(batch))
    finally:
        handle.remove()
    assert seen["use_cache"] is False


def test_the_eval_loss_pass_attends_without_cudnn_and_gets_the_plain_loss(
    model_and_batch: tuple[object, dict], tmp_path: Path
) -> None:
    """Inside ``prediction_step`` only the flash, memory-efficient and math SDPA kernels may run (cuDNN plans
    every new length first); outside it the process's own choice is back, and the loss is the plain forward's."""
    from transformers import TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, batch = model_and_batch
    allowed: list[tuple[bool, bool]] = []

    def record(module: object, args: tuple) -> None:
        allowed.append((torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled()))

    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    trainer = TranscriptionTrainer(model=model, args=args, label_logits_only=False)
    handle = model.model.language_model.register_forward_pre_hook(record)
    try:
        loss, _, _ = trainer.prediction_step(model, dict(batch), prediction_loss_only=True)
    finally:
        handle.remove()
    assert allowed == [(False, True)]
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored
    with torch.no_grad():
        plain = model(**batch).loss
    assert torch.allclose(loss, plain, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_label_logits_gradients_match(model_and_batch: tuple[object, dict]) -> None:
    from voxplug.training.speed.label_logits import label_logits_loss, label_positions

    model, batch = model_and_batch
    weight = model.lm_head.weight

    def grad_of(loss_fn: object) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss_fn().backward()  # type: ignore[operator]
        return weight.grad.detach().clone()

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    plain = grad_of(lambda: model(**batch).loss)
    positions, targets = label_positions(batch["labels"])
    fast = grad_of(lambda: label_logits_loss(model(**inputs, logits_to_keep=positions), targets))
    model.zero_grad(set_to_none=True)
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-7)


def test_encoder_decoder_models_keep_the_plain_loss() -> None:
    from voxplug.training.speed.label_logits import supports_label_logits

    class Config:
        is_encoder_decoder = True

    class Seq2Seq(torch.nn.Module):
        config = Config()

        def forward(self, input_ids: object = None, logits_to_keep: int = 0) -> None:
            return None

    assert not supports_label_logits(Seq2Seq())


def _autograd_nodes(tensor: torch.Tensor) -> set[str]:
    """The names of every node in ``tensor``'s backward graph."""
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.mark.slow
def test_fused_kernels_give_the_same_loss_and_gradients_and_touch_no_other_model(
    model_and_batch: tuple[object, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    import copy

    from transformers.models.llama import modeling_llama
    from voxplug_voxtral import kernels
    from voxplug_voxtral.family import VoxtralFamily

    model, batch = model_and_batch
    fused = copy.deepcopy(model)

    def loss_and_grads(module: object) -> tuple[torch.Tensor, list[torch.Tensor], set[str]]:
        module.zero_grad(set_to_none=True)
        loss = module(**batch).loss
        nodes = _autograd_nodes(loss)
        loss.backward()
        grads = [p.grad for p in module.model.language_model.parameters()]
        module.zero_grad(set_to_none=True)
        return loss.detach(), grads, nodes

    loss, grads, nodes = loss_and_grads(model)
    assert "RotaryEmbeddingBackward" not in nodes
    assert VoxtralFamily().speed().fuse_kernels(fused) == ["rms_norm", "swiglu", "rope"]
    # per instance: transformers' module function and classes stay, the other model computes as before
    assert modeling_llama.apply_rotary_pos_emb is kernels._llama_rotary_pos_emb
    patched = [type(m).__name__ for m in fused.model.language_model.modules() if "forward" in vars(m)]
    layers = fused.config.text_config.num_hidden_layers
    expected = ["LlamaRMSNorm"] * (2 * layers + 1) + ["LlamaMLP"] * layers + ["LlamaAttention"] * layers
    assert sorted(patched) == sorted(expected)
    assert not [m for m in model.modules() if "forward" in vars(m) and "Llama" in type(m).__name__]
    again, again_grads, again_nodes = loss_and_grads(model)
    assert torch.equal(again, loss) and all(torch.equal(a, b) for a, b in zip(again_grads, grads, strict=True))
    assert "RotaryEmbeddingBackward" not in again_nodes and "SiluMulBackward" not in again_nodes
    fused_loss, fused_grads, fused_nodes = loss_and_grads(fused)
    assert {"RotaryEmbeddingBackward", "SiluMulBackward"} <= fused_nodes
    assert torch.allclose(fused_loss, loss, rtol=1e-5, atol=1e-6)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(fused_grads, grads, strict=True))
    # the same numbers as the process-wide rotary embedding the fused kernels used to install
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", kernels.rotary_pos_emb)
    process_wide = copy.deepcopy(model)
    kernels.fuse_language_model_kernels(process_wide, ("rms_norm", "swiglu"))
    wide_loss, wide_grads, _ = loss_and_grads(process_wide)
    assert torch.equal(wide_loss, fused_loss)
    assert all(torch.equal(a, b) for a, b in zip(wide_grads, fused_grads, strict=True))
    with pytest.raises(ValueError, match="unknown"):
        kernels.fuse_language_model_kernels(copy.deepcopy(model), ("triton",))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_kernels_on_the_gpu_give_the_process_wide_numbers_eager_and_compiled(
    model_and_batch: tuple[object, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under bf16 autocast on CUDA (full fine-tuning's regime): the per-layer fused RoPE computes the loss the
    process-wide one did, bit for bit, and regionally compiled layers (as the Trainer compiles them: unfused, since
    a compiling run leaves the fused kernels out and the compiler fuses instead) match the fused eager loss."""
    import copy

    from accelerate.utils import compile_regions
    from transformers.models.llama import modeling_llama
    from voxplug_voxtral import kernels

    model, cpu_batch = model_and_batch
    batch = {key: value.to("cuda") for key, value in cpu_batch.items()}
    plain = copy.deepcopy(model).to("cuda").train()

    def loss_and_grads(module: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        module.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = module(**batch).loss
        loss.backward()
        grads = [p.grad.clone() for p in module.model.language_model.parameters()]
        return loss.detach(), grads

    fused = copy.deepcopy(plain)
    assert kernels.fuse_language_model_kernels(fused) == ["rms_norm", "swiglu", "rope"]
    fused_loss, fused_grads = loss_and_grads(fused)
    compiled_loss, _ = loss_and_grads(compile_regions(copy.deepcopy(plain), dynamic=True))
    assert compiled_loss.item() == pytest.approx(fused_loss.item(), rel=1e-2)
    assert fused_loss.item() == pytest.approx(loss_and_grads(plain)[0].item(), rel=1e-2)
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", kernels.rotary_pos_emb)
    process_wide = copy.deepcopy(plain)
    kernels.fuse_language_model_kernels(process_wide, ("rms_norm", "swiglu"))
    wide_loss, wide_grads = loss_and_grads(process_wide)
    assert torch.equal(wide_loss, fused_loss)  # the backward's atomic adds may sum in another order: close enough
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-6) for a, b in zip(wide_grads, fused_grads, strict=True))


def test_the_decoding_steps_fused_norm_and_mlp_compute_the_modules_own_results() -> None:
    """Decoding steps (voxplug_voxtral.generation) compute Llama's RMSNorm and SwiGLU MLP with the fused kernels
    whatever the model's own forwards are, and run any other module's forward as it is."""
    from transformers.models.llama import modeling_llama
    from voxplug_voxtral import kernels

    torch.manual_seed(0)
    config = modeling_llama.LlamaConfig(hidden_size=16, intermediate_size=40, num_attention_heads=2)
    norm, mlp = modeling_llama.LlamaRMSNorm(16, eps=1e-5), modeling_llama.LlamaMLP(config)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 1, 16)
    assert torch.allclose(kernels.fused_rms_norm(norm, x), norm(x), rtol=1e-5, atol=1e-6)
    assert torch.allclose(kernels.fused_mlp(mlp, x), mlp(x), rtol=1e-5, atol=1e-6)
    other = torch.nn.LayerNorm(16)
    assert torch.equal(kernels.fused_rms_norm(other, x), other(x))
    config.hidden_act = "gelu"
    gelu = modeling_llama.LlamaMLP(config)
    assert torch.equal(kernels.fused_mlp(gelu, x), gelu(x))


def test_the_lean_swiglu_and_rotary_embedding_have_exact_gradients() -> None:
    """float64 gradcheck of :class:`SiluMul` and :class:`RotaryEmbedding`, and the same values as transformers'
    formulas (which they replace)."""
    from transformers.models.llama import modeling_llama
    from voxplug_voxtral.kernels import RotaryEmbedding, SiluMul, _llama_rotary_pos_emb

    torch.manual_seed(0)
    gate, up = (torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(SiluMul.apply, (gate, up))
    assert torch.allclose(SiluMul.apply(gate, up), torch.nn.functional.silu(gate) * up)

    # q and k as the attention makes them: (batch, heads, positions, head_dim) views of (batch, positions, ...)
    q = torch.randn(2, 5, 4, 6, dtype=torch.float64).transpose(1, 2).requires_grad_()
    k = torch.randn(2, 5, 2, 6, dtype=torch.float64).transpose(1, 2).requires_grad_()
    config = modeling_llama.LlamaConfig(hidden_size=24, num_attention_heads=4, head_dim=6)
    rotary = modeling_llama.LlamaRotaryEmbedding(config)
    cos, sin = rotary(q, torch.arange(5).expand(2, 5))
    cos, sin = cos.double(), sin.double()
    assert torch.autograd.gradcheck(lambda q, k: RotaryEmbedding.apply(q, k, cos, sin), (q, k))
    for ours, theirs in zip(RotaryEmbedding.apply(q, k, cos, sin), _llama_rotary_pos_emb(q, k, cos, sin), strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    # only q used: k gets no gradient
    RotaryEmbedding.apply(q, k, cos, sin)[0].sum().backward()
    assert q.grad is not None and k.grad is None


def test_the_rotary_embedding_promotes_as_transformers_does() -> None:
    """Under autocast over an fp32 model, q and k come out of their projections in bf16 while cos and sin are fp32:
    the rotated q and k are fp32, as transformers' formula makes them, and their gradients bf16."""
    from voxplug_voxtral.kernels import _llama_rotary_pos_emb, rotary_pos_emb

    torch.manual_seed(0)
    q = torch.randn(1, 4, 3, 8).to(torch.bfloat16).requires_grad_()
    k = torch.randn(1, 2, 3, 8).to(torch.bfloat16).requires_grad_()
    cos, sin = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    ours, theirs = rotary_pos_emb(q, k, cos, sin), _llama_rotary_pos_emb(q, k, cos, sin)
    assert [t.dtype for t in ours] == [t.dtype for t in theirs] == [torch.float32] * 2
    assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(ours, theirs, strict=True))
    (ours[0].sum() + ours[1].square().sum()).backward()
    assert q.grad.dtype == k.grad.dtype == torch.bfloat16


@pytest.mark.slow
def test_training_batches_without_an_attention_mask_give_the_same_loss_and_gradients(
    model_and_batch: tuple[object, dict],
) -> None:
    """Right padding and a causal LM: no real token attends to the padding, so the mask changes nothing."""
    model, batch = model_and_batch
    assert batch["attention_mask"].sum(dim=1).unique().numel() > 1  # rows of different lengths: there is padding
    weight = model.model.language_model.layers[0].self_attn.q_proj.weight

    def loss_and_grad(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        loss = model(**inputs).loss
        loss.backward()
        return loss.detach(), weight.grad.detach().clone()

    masked_loss, masked_grad = loss_and_grad(batch)
    unmasked_loss, unmasked_grad = loss_and_grad({k: v for k, v in batch.items() if k != "attention_mask"})
    model.zero_grad(set_to_none=True)
    assert torch.allclose(unmasked_loss, masked_loss, rtol=1e-5, atol=1e-6)
    assert torch.allclose(unmasked_grad, masked_grad, rtol=1e-4, atol=1e-7)


def test_the_voxtral_collator_plugin_leaves_the_mask_out_unless_asked(model_and_batch: tuple[object, dict]) -> None:
    import soundfile
    from voxplug_voxtral.family import VoxtralTranscriptionCollator
    from voxplug_voxtral.loading import load_voxtral_processor

    from voxplug.training.speed.label_logits import label_positions

    model, _batch = model_and_batch
    audio, _ = soundfile.read(next(SPEECH.glob("*.wav")), dtype="float32")
    rows = [{"audio": audio, "text": "hello there", "language": "en"}, {"audio": audio, "text": "hi", "language": "en"}]
    tiny_processor = load_voxtral_processor(model.name_or_path)
    default = VoxtralTranscriptionCollator(processor=tiny_processor)(rows)
    asked = VoxtralTranscriptionCollator({"attention_mask": True}, processor=tiny_processor)(rows)
    assert "attention_mask" not in default
    assert asked["attention_mask"].tolist()[1].count(0) > 0
    assert torch.equal(default["labels"], asked["labels"]) and torch.equal(default["input_ids"], asked["input_ids"])
    assert label_positions(default["labels"])[1].ne(-100).sum() == default["labels"].ne(-100).sum()


@pytest.mark.slow
def test_audio_placeholders_are_checked_without_reading_the_device(model_and_batch: tuple[object, dict]) -> None:
    """load_voxtral swaps in a placeholder check that does not wait for the GPU: same loss, same error when wrong."""
    model, batch = model_and_batch
    inner = model.model
    assert "get_placeholder_mask" in vars(inner)  # the instance's own, from load_voxtral
    with torch.no_grad():
        patched = model(**batch).loss
        del inner.get_placeholder_mask
        try:
            stock = model(**batch).loss
        finally:
            from voxplug_voxtral.loading import check_audio_placeholders_on_device

            check_audio_placeholders_on_device(model)
        short = {**batch, "input_features": batch["input_features"][1:]}  # one chunk fewer than [AUDIO] blocks
        with pytest.raises(ValueError, match="do not match"):
            model(**short)
    assert torch.equal(patched, stock)


@pytest.fixture(scope="module")
def bf16_lora(tmp_path_factory: pytest.TempPathFactory, model_and_batch: tuple[object, dict]) -> tuple[object, dict]:
    """The tiny Voxtral in bf16 with fp32 LoRA adapters on its language model, as the ``lora`` trainer builds it with
    PEFT's forward (``one_node=False``; tests/training/test_lora_one_node.py covers the one-node forward)."""
    model = lora_voxtral(tmp_path_factory.mktemp("tiny-bf16"), "bf16", one_node=False)
    return model, model_and_batch[1]


class CopyCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts ``aten._to_copy`` calls (dtype casts) on tensors of at least ``min_numel`` elements."""

    def __init__(self, min_numel: int) -> None:
        super().__init__()
        self.min_numel, self.casts = min_numel, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.ops.aten._to_copy.default and args[0].numel() >= self.min_numel:
            self.casts += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_lora_skips_peft_input_casts_under_autocast_with_the_same_loss_and_gradients(
    bf16_lora: tuple[object, dict],
) -> None:
    """PEFT casts each adapter's bf16 input to fp32 and autocast casts it back: the hooks skip both, same numbers."""
    model, batch = bf16_lora
    lora_layers = [m for m in model.modules() if hasattr(m, "cast_input_dtype_enabled") and hasattr(m, "lora_A")]
    activation = batch["input_ids"].numel() * model.config.text_config.hidden_size

    def loss_grads_casts(keep_casts: bool) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        hooks = {m: dict(m._forward_pre_hooks) for m in lora_layers}
        if keep_casts:  # PEFT as it comes: no hooks, casts on
            for module in lora_layers:
                module._forward_pre_hooks.clear()
                module.cast_input_dtype_enabled = True
        model.zero_grad(set_to_none=True)
        counter = CopyCounter(activation)
        try:
            with counter, torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**batch).loss
            loss.backward()
        finally:
            for module, saved in hooks.items():
                module._forward_pre_hooks.update(saved)
        grads = [p.grad.clone() for n, p in model.named_parameters() if "lora_" in n]
        return loss.detach(), grads, counter.casts

    kept_loss, kept_grads, kept_casts = loss_grads_casts(keep_casts=True)
    skipped_loss, skipped_grads, skipped_casts = loss_grads_casts(keep_casts=False)
    assert len(lora_layers) == 7 * model.config.text_config.num_hidden_layers
    assert kept_casts >= 2 * len(lora_layers) and skipped_casts <= kept_casts - 2 * len(lora_layers)
    assert torch.equal(skipped_loss, kept_loss)
    assert all(torch.equal(a, b) for a, b in zip(skipped_grads, kept_grads, strict=True))


@pytest.mark.slow
def test_lora_keeps_peft_input_casts_without_autocast(bf16_lora: tuple[object, dict]) -> None:
    """Outside autocast (generation) the fp32 adapters still get fp32 inputs: the forward runs and casts are on."""
    model, batch = bf16_lora
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(**batch)
        loss = model(**batch).loss  # a bf16 input into an fp32 adapter would raise here
    assert torch.isfinite(loss)
    assert all(m.cast_input_dtype_enabled for m in model.modules() if hasattr(m, "cast_input_dtype_enabled"))


def test_a_non_finite_loss_is_filtered_on_the_device_as_the_trainer_would(
    model_and_batch: tuple[object, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Trainer's `logging_nan_inf_filter` reads every loss back to the host; the same filter, without that."""
    from transformers import Trainer, TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, _batch = model_and_batch
    losses = iter(
        [torch.tensor(float("nan")), torch.tensor(float("inf")), torch.tensor(1.5), torch.tensor(float("nan"))]
    )
    monkeypatch.setattr(Trainer, "training_step", lambda self, *args, **kwargs: next(losses))
    trainer = TranscriptionTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    assert trainer.filter_non_finite_loss and not trainer.args.logging_nan_inf_filter
    trainer._tr_loss, trainer.state.global_step, trainer._globalstep_last_logged = torch.tensor(6.0), 2, 0
    # a non-finite step adds the mean of the steps since the last log (6 / 3), a finite one itself
    assert [trainer.training_step(model, {}).item() for _ in range(3)] == [2.0, 2.0, 1.5]
    assert TranscriptionTrainer(model=model, args=trainer.args).filter_non_finite_loss  # shared arguments
    unfiltered = TranscriptionTrainer(
        model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none", logging_nan_inf_filter=False)
    )
    assert torch.isnan(unfiltered.training_step(model, {}))


@pytest.mark.slow
def test_the_step_counts_flops_and_clips_as_the_trainer_does_without_walking_every_module(
    model_and_batch: tuple[object, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer, TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, batch = model_and_batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, max_grad_norm=1e9)
    trainer = TranscriptionTrainer(model=model, args=args)
    flops = Trainer.floating_point_ops(trainer, batch)
    assert trainer.floating_point_ops(batch) == flops > 0
    monkeypatch.setattr(model, "num_parameters", lambda **kwargs: pytest.fail("counted the parameters again"))
    assert trainer.floating_point_ops(batch) == flops
    model.zero_grad(set_to_none=True)
    model.model.audio_tower.requires_grad_(False)
    try:
        model(**batch).loss.backward()
        ours = trainer._clip_grad_norm(model)
        theirs = Trainer._clip_grad_norm(trainer, model)
    finally:
        model.model.audio_tower.requires_grad_(True)
        model.zero_grad(set_to_none=True)
    assert len(trainer._trainable[1]) < len(list(model.parameters()))
    assert torch.allclose(ours, theirs, rtol=1e-6) and ours > 0


def test_one_process_seeing_several_gpus_trains_on_one_instead_of_data_parallel(
    model_and_batch: tuple[object, dict], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """transformers wraps nn.DataParallel when one process sees several GPUs; its replicas would share the
    instance-level forwards voxplug installs (and so the first GPU's weights). The trainer keeps to one GPU."""
    from transformers import TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, _batch = model_and_batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    assert args.n_gpu <= 1  # this machine's own count, computed now
    args._n_gpu = 2  # as on a machine with two visible GPUs and no accelerate launch
    with caplog.at_level("WARNING", logger="voxplug.training"):
        trainer = TranscriptionTrainer(model=model, args=args)
    assert trainer.args.n_gpu == 1 and trainer.args.train_batch_size == args.per_device_train_batch_size
    assert "2 GPUs are visible to one process" in caplog.text and "accelerate launch" in caplog.text
