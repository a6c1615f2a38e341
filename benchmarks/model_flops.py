"""The standard FLOP count of Voxtral training, and the datasheet peaks that model FLOPs utilization divides it by.

MFU here is what the field reports: *useful* model FLOPs per second over the card's datasheet dense bf16 peak.
Useful FLOPs are those of the samples actually trained, counted from the model's shape and each sample's own
length, whatever the implementation executed besides:

* the language model over each row's real tokens (prompt, 375 audio tokens per 30 s chunk, transcript, EOS), never
  over the right padding of a batch; the logits only at the positions that feed the loss (the labels);
* attention as the model defines it: causal in the decoder (position i attends to i + 1 keys, so S (S + 1) / 2
  query-key pairs, half of full), bidirectional over all 1500 frames of each 30 s chunk in the Whisper encoder;
* the audio encoder over the chunks it ran (a chunk whose output came from the encoder cache costs nothing),
  each chunk whole: the encoder takes exactly 3000 mel frames, so a short clip's padding to 30 s is its input;
* matmuls only, 2 FLOPs a multiply-accumulate (elementwise work, norms and softmax are not counted);
* the backward pass as the parameters and inputs that need gradients ask: a linear layer costs 2N per token
  forward, 2N more for its input's gradient when anything before it trains, 2N more for its weight's gradient
  when its weight trains. Training a layer is 6N, a frozen layer under LoRA 4N plus 6 r (in + out) for its adapters,
  a part run without autograd 2N. Attention backward is twice its forward. The first decoder layer's q/k/v take
  the embeddings as input: when nothing before the decoder trains, their input gradient is not needed.

This is PaLM's count (Chowdhery et al. 2022, appendix B: 6N per token plus 6 x 2 x L x H x Q x T per token for
attention, which Karpathy's nanoGPT implements as ``estimate_mfu``: ``flops_per_token = 6*N + 12*L*H*Q*T``), with
three refinements the field also uses: attention causal as executed (FlashAttention's benchmarks divide causal
attention FLOPs by 2: Dao-AILab/flash-attention ``benchmarks/benchmark_flash_attention.py``), no FLOPs for frozen
weights' gradients (PaLM's 6N assumes every weight trains), and no padding (PaLM packs its sequences). PyTorch's
``torch.utils.flop_counter.FlopCounterMode`` counts the matmuls a run executes; on an unpadded batch, with its full
attention matrix replaced by the causal half, it gives this count (``tests/training/test_train_benchmark_flops.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Dense (no 2:4 sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, keyed by the name
# ``torch.cuda.get_device_name()`` reports. A card missing here gets no standard MFU: add its datasheet figure.
DATASHEET_BF16_DENSE_TFLOPS: dict[str, float] = {
    "NVIDIA H100 80GB HBM3": 989.4,  # H100 SXM5: 1,979 with sparsity
    "NVIDIA H200": 989.4,  # H200 SXM: the H100 SXM's tensor cores
    "NVIDIA H100 PCIe": 756.0,  # 1,513 with sparsity
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA L40S": 362.05,
}


def datasheet_peak_tflops(card: str) -> float | None:
    """The datasheet dense bf16 peak of ``card`` (a CUDA device name), or None for a card not in the table."""
    return DATASHEET_BF16_DENSE_TFLOPS.get(card.strip())


def causal_pairs(length: int, window: int | None = None) -> int:
    """Query-key pairs of causal attention over ``length`` positions: position i attends to ``min(i + 1, window)``."""
    full = length if window is None else min(length, window)
    return full * (full + 1) // 2 + (length - full) * (window or 0)


@dataclass(frozen=True)
class Regime:
    """Which parts of Voxtral need gradients in a training method.

    ``encoder_backward``: gradients flow into the audio encoder (adapters inside it); ``projector_trains``: the
    projector's weights train; ``decoder_trains``: the decoder's weights, embeddings and output layer train.
    """

    encoder_backward: bool = False
    projector_trains: bool = False
    decoder_trains: bool = False

    @property
    def decoder_input_needs_grad(self) -> bool:
        """Whether the decoder's first layer needs the gradient of its input (something before it trains)."""
        return self.encoder_backward or self.projector_trains or self.decoder_trains


LORA = Regime()  # adapters on the decoder; encoder and projector frozen and run without autograd
FULL = Regime(projector_trains=True, decoder_trains=True)  # voxplug's full fine-tuning: the encoder frozen
ENCODER_LORA = Regime(encoder_backward=True)  # adapters in the encoder too (VoxFactory's plain q/k/v/o targets)


@dataclass(frozen=True)
class Adapters:
    """LoRA adapter sizes, each ``r x (in + out)`` summed over adapted layers; ``*_first_qkv_in``: the ``r x in``
    of the first layer's adapted q/k/v (their input gradient is the one a frozen first layer does not need)."""

    decoder: int = 0
    decoder_first_qkv_in: int = 0
    encoder: int = 0
    encoder_first_qkv_in: int = 0

    @classmethod
    def of(cls, model: Any) -> Adapters:
        """Read the adapters of a PEFT-wrapped Voxtral from its ``lora_A``/``lora_B`` weights."""
        sizes = {"decoder": 0, "decoder_first_qkv_in": 0, "encoder": 0, "encoder_first_qkv_in": 0}
        for name, parameter in model.named_parameters():
            if "lora_A" not in name and "lora_B" not in name:
                continue
            part = "encoder" if "audio_tower" in name else "decoder"
            sizes[part] += parameter.numel()
            first_qkv = any(f"layers.0.self_attn.{p}_proj.lora_A" in name for p in "qkv")
            if first_qkv:
                sizes[f"{part}_first_qkv_in"] += parameter.numel()
        return cls(**sizes)

    @classmethod
    def voxtral(cls, shape: VoxtralShape, r: int, decoder: tuple[str, ...], encoder: tuple[str, ...] = ()) -> Adapters:
        """Adapters of rank ``r`` on the named projections of every decoder/encoder layer (``q``, ``k``, ``v``,
        ``o``, ``gate``, ``up``, ``down``; encoder: ``q``, ``k``, ``v``, ``out``, ``fc1``, ``fc2``)."""
        h, q, kv, f = shape.lm_hidden, shape.lm_q_dim, shape.lm_kv_dim, shape.lm_ffn
        lm_dims = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "gate": (h, f), "up": (h, f), "down": (f, h)}
        e, ef = shape.enc_hidden, shape.enc_ffn
        enc_dims = {"q": (e, e), "k": (e, e), "v": (e, e), "out": (e, e), "fc1": (e, ef), "fc2": (ef, e)}
        return cls(
            decoder=shape.lm_layers * r * sum(sum(lm_dims[name]) for name in decoder),
            decoder_first_qkv_in=r * sum(lm_dims[name][0] for name in decoder if name in ("q", "k", "v")),
            encoder=shape.enc_layers * r * sum(sum(enc_dims[name]) for name in encoder),
            encoder_first_qkv_in=r * sum(enc_dims[name][0] for name in encoder if name in ("q", "k", "v")),
        )


@dataclass(frozen=True)
class VoxtralShape:
    """What the count needs of a ``VoxtralConfig``: widths, depths and the per-chunk geometry."""

    enc_layers: int
    enc_hidden: int
    enc_ffn: int
    enc_frames: int  # encoder frames per 30 s chunk (1500)
    mel_bins: int
    audio_tokens_per_chunk: int  # 4 encoder frames per decoder token (375)
    proj_in: int
    lm_layers: int
    lm_hidden: int
    lm_q_dim: int
    lm_kv_dim: int
    lm_ffn: int
    vocab: int

    @classmethod
    def of(cls, config: Any) -> VoxtralShape:
        """The shape of a ``VoxtralConfig`` (``VoxtralConfig()`` is Voxtral-Mini-3B-2507)."""
        audio, text = config.audio_config, config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return cls(
            enc_layers=audio.num_hidden_layers,
            enc_hidden=audio.hidden_size,
            enc_ffn=audio.intermediate_size,
            enc_frames=audio.max_source_positions,
            mel_bins=audio.num_mel_bins,
            audio_tokens_per_chunk=audio.max_source_positions // 4,
            proj_in=4 * audio.hidden_size,
            lm_layers=text.num_hidden_layers,
            lm_hidden=text.hidden_size,
            lm_q_dim=text.num_attention_heads * head_dim,
            lm_kv_dim=text.num_key_value_heads * head_dim,
            lm_ffn=text.intermediate_size,
            vocab=text.vocab_size,
        )

    @property
    def enc_linear(self) -> int:
        """Weights of the encoder's linear layers (q/k/v/out, fc1/fc2), all layers."""
        return self.enc_layers * (4 * self.enc_hidden**2 + 2 * self.enc_hidden * self.enc_ffn)

    @property
    def enc_first_qkv(self) -> int:
        return 3 * self.enc_hidden**2

    @property
    def conv_macs_per_chunk(self) -> int:
        """The stem: conv1 (mel bins -> width, kernel 3) over 2 x 1500 frames, conv2 (stride 2) over 1500."""
        width = self.enc_hidden
        return 3 * self.mel_bins * width * 2 * self.enc_frames + 3 * width * width * self.enc_frames

    @property
    def lm_linear(self) -> int:
        """Weights of the decoder's linear layers (q/k/v/o, gate/up/down), all layers."""
        h = self.lm_hidden
        per_layer = h * (2 * self.lm_q_dim + 2 * self.lm_kv_dim) + 3 * h * self.lm_ffn
        return self.lm_layers * per_layer

    @property
    def lm_first_qkv(self) -> int:
        return self.lm_hidden * (self.lm_q_dim + 2 * self.lm_kv_dim)

    @property
    def head(self) -> int:
        return self.vocab * self.lm_hidden

    def encoder_chunk_flops(self, regime: Regime, adapters: Adapters) -> dict[str, float]:
        """Useful training FLOPs of the encoder over one 30 s chunk it ran, by part."""
        frames = self.enc_frames
        linear = 2.0 * self.enc_linear * frames
        adapter = 2.0 * adapters.encoder * frames
        attention = 4.0 * self.enc_hidden * frames * frames * self.enc_layers
        if regime.encoder_backward:  # input gradients everywhere but the first layer's q/k/v (input: the stem)
            linear += 2.0 * (self.enc_linear - self.enc_first_qkv) * frames
            adapter += (2.0 * adapters.encoder + 2.0 * (adapters.encoder - adapters.encoder_first_qkv_in)) * frames
            attention *= 3
        return {
            "conv_stem": 2.0 * self.conv_macs_per_chunk,
            "encoder_linear": linear,
            "encoder_adapters": adapter,
            "encoder_attention": attention,
        }

    def projector_chunk_flops(self, regime: Regime) -> float:
        """Useful training FLOPs of the projector over one chunk's 375 audio tokens."""
        first, second = self.proj_in * self.lm_hidden, self.lm_hidden**2
        weights = 2 * regime.projector_trains
        # the first layer's input (the encoder's output) needs a gradient only with adapters in the encoder, the
        # second's (the first's output) also when the first trains
        second_input = 2 * (regime.projector_trains or regime.encoder_backward)
        flops = (2 + weights + 2 * regime.encoder_backward) * first + (2 + weights + second_input) * second
        return float(flops) * self.audio_tokens_per_chunk

    def row_flops(self, regime: Regime, adapters: Adapters, tokens: int, loss_positions: int) -> dict[str, float]:
        """Useful training FLOPs of the decoder over one row of ``tokens`` real tokens, with logits at
        ``loss_positions`` of them, by part."""
        input_grad = self.lm_linear if regime.decoder_input_needs_grad else self.lm_linear - self.lm_first_qkv
        linear = (2.0 + 2.0 * regime.decoder_trains) * self.lm_linear * tokens + 2.0 * input_grad * tokens
        first_adapter_in = 0 if regime.decoder_input_needs_grad else adapters.decoder_first_qkv_in
        adapter = (4.0 * adapters.decoder + 2.0 * (adapters.decoder - first_adapter_in)) * tokens
        attention = 3 * 4.0 * self.lm_q_dim * self.lm_layers * causal_pairs(tokens)
        head = (4.0 + 2.0 * regime.decoder_trains) * self.head * loss_positions
        return {"decoder_linear": linear, "decoder_adapters": adapter, "decoder_attention": attention, "head": head}

    def sample_flops(
        self,
        regime: Regime,
        adapters: Adapters,
        *,
        tokens: int,
        loss_positions: int,
        chunks: int,
        encoded_chunks: int | None = None,
    ) -> dict[str, float]:
        """Useful training FLOPs of one sample by part: its ``chunks`` (``encoded_chunks`` of them run by the
        encoder; all unless given) and its decoder row."""
        encoded = chunks if encoded_chunks is None else encoded_chunks
        parts = {k: v * encoded for k, v in self.encoder_chunk_flops(regime, adapters).items()}
        parts["projector"] = self.projector_chunk_flops(regime) * chunks
        parts.update(self.row_flops(regime, adapters, tokens, loss_positions))
        return parts


def total(parts: dict[str, float]) -> float:
    """The sum of a by-part count."""
    return float(sum(parts.values()))


# -- Whisper ----------------------------------------------------------------------------------------------------
#
# The same standard count for Whisper's encoder-decoder (``WhisperForConditionalGeneration``), per training row:
#
# * the conv stem over the 3000 mel frames of the 30 s window and the encoder over its 1500 frames, bidirectional
#   (every row is padded to the window, so the window is the encoder's input);
# * the decoder over the row's real tokens (prompt, transcript, end-of-text; never the batch's right padding),
#   self-attention causal, cross-attention from each token to all 1500 encoder frames, and in every decoder layer
#   the cross-attention keys and values projected from the 1500 encoder frames;
# * the logits (the output layer, tied to the token embedding) only at the label positions;
# * backward as autograd needs it: a weight's gradient where the weight trains, an input's gradient where anything
#   before it needs one; attention backward per matmul operand that needs a gradient. An adapter of rank r on a
#   linear layer costs 2 r (in + out) forward, 2 r (in + 2 out) backward, plus 2 r in for its input's gradient.


@dataclass(frozen=True)
class WhisperShape:
    """What the count needs of a ``WhisperConfig``."""

    d_model: int
    enc_layers: int
    dec_layers: int
    enc_ffn: int
    dec_ffn: int
    mel_bins: int
    enc_frames: int  # 1500 encoder frames per 30 s window (3000 mel frames, halved by the stride-2 convolution)
    vocab: int

    @classmethod
    def of(cls, config: Any) -> WhisperShape:
        return cls(
            d_model=config.d_model,
            enc_layers=config.encoder_layers,
            dec_layers=config.decoder_layers,
            enc_ffn=config.encoder_ffn_dim,
            dec_ffn=config.decoder_ffn_dim,
            mel_bins=config.num_mel_bins,
            enc_frames=config.max_source_positions,
            vocab=config.vocab_size,
        )


WHISPER_ENCODER_TARGETS = ("q", "k", "v", "out", "fc1", "fc2")
WHISPER_DECODER_TARGETS = ("self.q", "self.k", "self.v", "self.out", "cross.q", "cross.k", "cross.v", "cross.out")
WHISPER_DECODER_TARGETS += ("fc1", "fc2")


@dataclass(frozen=True)
class WhisperRegime:
    """What trains in a Whisper fine-tune: whole parts (``encoder_trains``: conv stem and encoder layers;
    ``decoder_trains``: decoder layers, embeddings and the tied output layer) and LoRA adapters of rank ``lora_r``
    on the named projections of every encoder layer (``q``, ``k``, ``v``, ``out``, ``fc1``, ``fc2``) and decoder
    layer (``self.q`` … ``self.out``, ``cross.q`` … ``cross.out``, ``fc1``, ``fc2``)."""

    encoder_trains: bool = False
    decoder_trains: bool = False
    lora_r: int = 0
    encoder_targets: frozenset[str] = frozenset()
    decoder_targets: frozenset[str] = frozenset()

    @classmethod
    def of(cls, model: Any) -> WhisperRegime:
        """Read the regime of a (PEFT-wrapped) Whisper from which parameters need gradients."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        ranks, encoder, decoder = set(), set(), set()
        for name, module in model.named_modules():
            lora_a = getattr(module, "lora_A", None)
            if not lora_a or not hasattr(module, "base_layer"):
                continue
            ranks.update(layer.out_features for layer in lora_a.values())
            leaf = name.rsplit(".", 1)[-1].removesuffix("_proj")
            if ".encoder.layers." in f".{name}":
                encoder.add(leaf)
            else:
                block = "cross" if "encoder_attn" in name else "self"
                decoder.add(leaf if leaf.startswith("fc") else f"{block}.{leaf}")
        if len(ranks) > 1:
            raise ValueError(f"adapters of several ranks {sorted(ranks)}: the count takes one rank")
        return cls(
            encoder_trains=base.model.encoder.layers[0].fc1.weight.requires_grad,
            decoder_trains=base.model.decoder.embed_tokens.weight.requires_grad,
            lora_r=ranks.pop() if ranks else 0,
            encoder_targets=frozenset(encoder),
            decoder_targets=frozenset(decoder),
        )

    @property
    def encoder_backward(self) -> bool:
        """Whether gradients flow into the encoder (it trains, or holds adapters)."""
        return self.encoder_trains or bool(self.encoder_targets)


def _linear(tokens: int, n_in: int, n_out: int, input_grad: bool, trains: bool, r: int) -> tuple[float, bool]:
    """FLOPs of one linear layer over ``tokens`` positions, forward and backward, and whether its output needs a
    gradient. ``r`` is its adapter's rank (0: none)."""
    weights = n_in * n_out
    flops = 2 * weights * tokens * (1 + int(input_grad) + int(trains))
    if r:
        flops += 2 * r * tokens * ((n_in + n_out) + (n_in + 2 * n_out) + n_in * int(input_grad))
    return float(flops), input_grad or trains or bool(r)


def _attention(pairs: int, width: int, q_grad: bool, k_grad: bool, v_grad: bool) -> float:
    """Scores ``Q K^T`` and outputs ``P V`` over ``pairs`` query-key pairs of ``width``, forward and backward."""
    matmul = 2 * pairs * width
    p_grad = q_grad or k_grad
    return float(matmul * (2 + int(q_grad) + int(k_grad) + int(p_grad) + int(v_grad)))


def whisper_row_flops(shape: WhisperShape, regime: WhisperRegime, tokens: int, label_tokens: int) -> dict[str, float]:
    """Useful training FLOPs of one row: ``tokens`` decoder positions (prompt, transcript, end-of-text) of which
    ``label_tokens`` carry a label, by part. ``encoder`` is the conv stem and encoder (the part a cache of a frozen
    encoder's outputs saves)."""
    d, frames = shape.d_model, shape.enc_frames
    trains = regime.encoder_trains
    encoder = 2.0 * 3 * shape.mel_bins * d * 2 * frames * (1 + int(trains))  # conv1 over the 3000 mel frames
    encoder += 2.0 * 3 * d * d * frames * (1 + 2 * int(trains))  # conv2 (stride 2); input gradient if conv1 trains
    grad = trains  # whether the encoder's hidden states need a gradient, layer by layer
    for _ in range(shape.enc_layers):
        flops, grad = _encoder_layer(shape, regime, frames, grad, trains)
        encoder += flops
    encoder_out_grad = regime.encoder_backward
    decoder = cross_kv = 0.0
    grad = regime.decoder_trains
    for _ in range(shape.dec_layers):
        flops, kv, grad = _decoder_layer(shape, regime, tokens, grad, encoder_out_grad)
        decoder += flops
        cross_kv += kv
    head, _ = _linear(label_tokens, d, shape.vocab, grad, regime.decoder_trains, 0)
    return {"encoder": encoder, "decoder": decoder, "cross_kv": cross_kv, "head": head}


def _encoder_layer(
    shape: WhisperShape, regime: WhisperRegime, frames: int, grad: bool, trains: bool
) -> tuple[float, bool]:
    """One encoder layer's FLOPs and whether its output needs a gradient."""
    d, r, targets = shape.d_model, regime.lora_r, regime.encoder_targets
    flops, needs = 0.0, {}
    for name in ("q", "k", "v"):
        part, needs[name] = _linear(frames, d, d, grad, trains, r * (name in targets))
        flops += part
    flops += _attention(frames * frames, d, needs["q"], needs["k"], needs["v"])
    part, out = _linear(frames, d, d, any(needs.values()), trains, r * ("out" in targets))
    flops += part
    grad = grad or out
    part, hidden = _linear(frames, d, shape.enc_ffn, grad, trains, r * ("fc1" in targets))
    flops += part
    part, out = _linear(frames, shape.enc_ffn, d, hidden, trains, r * ("fc2" in targets))
    return flops + part, grad or out


def _decoder_layer(
    shape: WhisperShape, regime: WhisperRegime, tokens: int, grad: bool, encoder_out_grad: bool
) -> tuple[float, float, bool]:
    """One decoder layer's FLOPs (its cross-attention keys and values apart) and whether its output needs a
    gradient."""
    d, r, targets, trains = shape.d_model, regime.lora_r, regime.decoder_targets, regime.decoder_trains
    frames = shape.enc_frames
    flops, needs = 0.0, {}
    for name in ("q", "k", "v"):
        part, needs[name] = _linear(tokens, d, d, grad, trains, r * (f"self.{name}" in targets))
        flops += part
    flops += _attention(causal_pairs(tokens), d, needs["q"], needs["k"], needs["v"])
    part, out = _linear(tokens, d, d, any(needs.values()), trains, r * ("self.out" in targets))
    flops += part
    grad = grad or out
    part, q_grad = _linear(tokens, d, d, grad, trains, r * ("cross.q" in targets))
    flops += part
    cross_kv = 0.0
    kv_grads = []
    for name in ("k", "v"):
        part, kv_grad = _linear(frames, d, d, encoder_out_grad, trains, r * (f"cross.{name}" in targets))
        cross_kv += part
        kv_grads.append(kv_grad)
    flops += _attention(tokens * frames, d, q_grad, *kv_grads)
    part, out = _linear(tokens, d, d, q_grad or any(kv_grads), trains, r * ("cross.out" in targets))
    flops += part
    grad = grad or out
    part, hidden = _linear(tokens, d, shape.dec_ffn, grad, trains, r * ("fc1" in targets))
    flops += part
    part, out = _linear(tokens, shape.dec_ffn, d, hidden, trains, r * ("fc2" in targets))
    return flops + part, cross_kv, grad or out
