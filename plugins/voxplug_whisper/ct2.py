"""Convert a CTranslate2 Whisper checkpoint (faster-whisper's format) into a transformers checkpoint.

A CTranslate2 model folder holds ``model.bin``, ``config.json`` (suppressed ids, alignment heads) and the
tokenizer (``tokenizer.json``; ``vocabulary.txt`` lists every id). ``model.bin`` is CTranslate2's documented
binary layout (``ctranslate2/specs/model_spec.py``, ``ModelSpec._serialize``), all little-endian::

    uint32 binary version (4 to 6 are read here)
    string spec name ("WhisperSpec"), uint32 spec revision
    uint32 variable count, then per variable:
        string name, uint8 rank, uint32 x rank dims, uint8 dtype id, uint32 byte count, raw bytes
    uint32 alias count, then per alias: string alias, string variable name

where a string is a uint16 length (counting a final NUL) followed by its UTF-8 bytes and the NUL, and dtype
ids are float32, int8, int16, int32, float16, bfloat16 in that order. Quantized weights (int8/int16) come with
a ``<name>_scale`` variable and are de-quantized (``weight / scale``).

Names map onto transformers' ``WhisperForConditionalGeneration`` one to one, except that CTranslate2 fuses the
attention projections: self-attention ``linear_0`` is q, k and v stacked, cross-attention ``linear_1`` is k
and v stacked. transformers' ``k_proj`` has no bias; the (zero) k part of the fused bias is dropped, which is
exact even when it is not zero, since a key bias adds the same score to every key and softmax ignores it.
"""

from __future__ import annotations

import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.api import ModelError
from voxplug_whisper.processor import (
    build_whisper_processor,
    load_whisper_tokenizer,
    read_json,
    whisper_generation_config,
    whisper_tokens,
)

if TYPE_CHECKING:
    import numpy as np

SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
WHISPER_SPEC = "WhisperSpec"
CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")

_NORM = {"weight": "gamma", "bias": "beta"}
_LINEAR = {"weight": "weight", "bias": "bias"}

#: transformers parameter -> CTranslate2 variable, outside the layers.
TOP_LEVEL = {
    "model.encoder.conv1.weight": "encoder/conv1/weight",
    "model.encoder.conv1.bias": "encoder/conv1/bias",
    "model.encoder.conv2.weight": "encoder/conv2/weight",
    "model.encoder.conv2.bias": "encoder/conv2/bias",
    "model.encoder.embed_positions.weight": "encoder/position_encodings/encodings",
    "model.encoder.layer_norm.weight": "encoder/layer_norm/gamma",
    "model.encoder.layer_norm.bias": "encoder/layer_norm/beta",
    "model.decoder.embed_tokens.weight": "decoder/embeddings/weight",
    "model.decoder.embed_positions.weight": "decoder/position_encodings/encodings",
    "model.decoder.layer_norm.weight": "decoder/layer_norm/gamma",
    "model.decoder.layer_norm.bias": "decoder/layer_norm/beta",
    "proj_out.weight": "decoder/projection/weight",
}

#: module inside an encoder layer -> (CTranslate2 scope inside the layer, parameter name map).
ENCODER_LAYER = {
    "self_attn_layer_norm": ("self_attention/layer_norm", _NORM),
    "self_attn.out_proj": ("self_attention/linear_1", _LINEAR),
    "final_layer_norm": ("ffn/layer_norm", _NORM),
    "fc1": ("ffn/linear_0", _LINEAR),
    "fc2": ("ffn/linear_1", _LINEAR),
}
DECODER_LAYER = {
    **ENCODER_LAYER,
    "encoder_attn_layer_norm": ("attention/layer_norm", _NORM),
    "encoder_attn.q_proj": ("attention/linear_0", _LINEAR),
    "encoder_attn.out_proj": ("attention/linear_2", _LINEAR),
}
#: fused CTranslate2 linear inside a layer -> the transformers projections stacked in it, in order.
ENCODER_FUSED = {"self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")}
DECODER_FUSED = {**ENCODER_FUSED, "attention/linear_1": ("encoder_attn.k_proj", "encoder_attn.v_proj")}


@dataclass
class CT2Checkpoint:
    """The variables of a CTranslate2 ``model.bin``, by name, and its aliases (alias -> variable)."""

    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        """The variable a name (or alias) refers to."""
        return self.aliases.get(name, name)

    def weight(self, name: str) -> np.ndarray:
        """Variable ``name`` as float32, following aliases and de-quantizing int8/int16 weights."""
        import numpy as np

        name = self.resolve(name)
        if name not in self.variables:
            raise ModelError(f"the CTranslate2 model has no variable {name!r}")
        value = self.variables[name]
        scale_name = f"{name}_scale"
        if scale_name in self.variables:
            scale = self.variables[scale_name].astype(np.float32)
            per_row = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))  # one scale per output row
            return value.astype(np.float32) / per_row
        return value.astype(np.float32)

    def scalar(self, name: str) -> int:
        """An integer hyper-parameter stored as a 0-d variable (e.g. ``encoder/num_heads``)."""
        return int(self.variables[self.resolve(name)])

    def layer_count(self, stack: str) -> int:
        """How many ``<stack>/layer_N`` layers the checkpoint has."""
        pattern = re.compile(rf"^{stack}/layer_(\d+)/")
        found = {int(match.group(1)) for name in self.variables if (match := pattern.match(name))}
        return max(found) + 1 if found else 0


class _BinaryReader:
    """Little-endian reads from the bytes of a ``model.bin``."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.offset = 0

    def number(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.offset + size > len(self.data):
            raise ModelError(f"{self.path}: truncated at byte {self.offset} (expected more of the model)")
        (value,) = struct.unpack_from(f"<{fmt}", self.data, self.offset)
        self.offset += size
        return value

    def string(self) -> str:
        length = self.number("H")
        raw = self.data[self.offset : self.offset + length - 1]
        self.offset += length
        return raw.decode("utf-8")

    def array(self) -> tuple[str, np.ndarray]:
        import numpy as np

        name = self.string()
        shape = tuple(self.number("I") for _ in range(self.number("B")))
        dtype_id, byte_count = self.number("B"), self.number("I")
        if dtype_id >= len(CT2_DTYPES):
            raise ModelError(f"{self.path}: variable {name!r} has unknown dtype id {dtype_id}")
        raw = np.frombuffer(self.data, dtype=np.uint8, count=byte_count, offset=self.offset)
        self.offset += byte_count
        return name, _decode_array(raw, CT2_DTYPES[dtype_id]).reshape(shape)


def _decode_array(raw: np.ndarray, dtype: str) -> np.ndarray:
    import numpy as np

    if dtype == "bfloat16":  # numpy has no bfloat16: widen the upper half of a float32
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    return raw.view(np.dtype(dtype).newbyteorder("<"))


def read_ct2_model(path: Path) -> CT2Checkpoint:
    """Read every variable and alias of a CTranslate2 ``model.bin``."""
    path = Path(path)
    try:
        reader = _BinaryReader(path.read_bytes(), path)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read the CTranslate2 model: {exc.strerror or exc}") from exc
    version = reader.number("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise ModelError(
            f"{path}: CTranslate2 binary version {version} is not supported (expected one of "
            f"{', '.join(map(str, SUPPORTED_BINARY_VERSIONS))}); re-convert it with a recent ctranslate2"
        )
    spec, revision = reader.string(), reader.number("I")
    variables = dict(reader.array() for _ in range(reader.number("I")))
    aliases = {reader.string(): reader.string() for _ in range(reader.number("I"))}
    return CT2Checkpoint(spec=spec, revision=revision, variables=variables, aliases=aliases)


# --- names ------------------------------------------------------------------------------------------------


def _layer_parameters(
    checkpoint: CT2Checkpoint, hf_prefix: str, ct2_prefix: str, modules: dict[str, Any], fused: dict[str, Any]
) -> dict[str, np.ndarray]:
    import numpy as np

    state: dict[str, np.ndarray] = {}
    for module, (scope, params) in modules.items():
        for hf_param, ct2_param in params.items():
            state[f"{hf_prefix}.{module}.{hf_param}"] = checkpoint.weight(f"{ct2_prefix}/{scope}/{ct2_param}")
    for scope, projections in fused.items():
        for param in ("weight", "bias"):
            parts = np.split(checkpoint.weight(f"{ct2_prefix}/{scope}/{param}"), len(projections), axis=0)
            for projection, part in zip(projections, parts, strict=True):
                if not (param == "bias" and projection.endswith("k_proj")):
                    state[f"{hf_prefix}.{projection}.{param}"] = part
    return state


def whisper_state_dict(checkpoint: CT2Checkpoint) -> dict[str, np.ndarray]:
    """The transformers ``WhisperForConditionalGeneration`` state dict of a CTranslate2 Whisper checkpoint."""
    state = {hf: checkpoint.weight(ct2) for hf, ct2 in TOP_LEVEL.items()}
    for stack, modules, fused in (("encoder", ENCODER_LAYER, ENCODER_FUSED), ("decoder", DECODER_LAYER, DECODER_FUSED)):
        for index in range(checkpoint.layer_count(stack)):
            state.update(
                _layer_parameters(checkpoint, f"model.{stack}.layers.{index}", f"{stack}/layer_{index}", modules, fused)
            )
    return state


def whisper_config(checkpoint: CT2Checkpoint, ct2_config: dict[str, Any], tokens: Any) -> Any:
    """The ``WhisperConfig`` whose shapes match the checkpoint's variables."""
    from transformers import WhisperConfig

    conv1 = checkpoint.variables["encoder/conv1/weight"]
    return WhisperConfig(
        vocab_size=checkpoint.variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=checkpoint.layer_count("encoder"),
        decoder_layers=checkpoint.layer_count("decoder"),
        encoder_attention_heads=checkpoint.scalar("encoder/num_heads"),
        decoder_attention_heads=checkpoint.scalar("decoder/num_heads"),
        encoder_ffn_dim=checkpoint.variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=checkpoint.variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=checkpoint.variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=checkpoint.variables["decoder/position_encodings/encodings"].shape[0],
        tie_word_embeddings=checkpoint.resolve("decoder/projection/weight") == "decoder/embeddings/weight",
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
    )


# --- conversion -------------------------------------------------------------------------------------------


def check_ct2_folder(src: Path) -> None:
    """Raise ``ModelError`` unless ``src`` is a CTranslate2 Whisper folder with everything the conversion needs."""
    if not src.is_dir():
        raise ModelError(f"{src}: not a folder (expected a CTranslate2 model folder with {', '.join(REQUIRED_FILES)})")
    missing = [name for name in REQUIRED_FILES if not (src / name).is_file()]
    if missing:
        raise ModelError(
            f"{src}: missing {', '.join(missing)} (a CTranslate2 Whisper folder holds {', '.join(REQUIRED_FILES)}; "
            "convert it with `ct2-transformers-converter --copy_files tokenizer.json ...`)"
        )


def _prepare_output(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ModelError(f"{out}: the folder exists and is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def build_model(checkpoint: CT2Checkpoint, config: Any, dtype: str) -> Any:
    """A ``WhisperForConditionalGeneration`` holding the checkpoint's weights (every parameter checked)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(config)
    state = {name: torch.from_numpy(value.copy()) for name, value in whisper_state_dict(checkpoint).items()}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelError(
            f"CTranslate2 -> transformers name mapping is incomplete: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    model.load_state_dict(state, strict=True)
    return model.to(getattr(torch, dtype))


def convert_ct2_whisper(src: Path, out: Path, *, dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write a transformers Whisper checkpoint (weights, config, generation config, processor) to ``out``.

    ``dtype`` is the dtype of the saved weights: ``float32`` (default; what CPU fine-tuning wants),
    ``float16`` or ``bfloat16``. Returns ``out``.
    """
    src, out = Path(src), Path(out)
    check_ct2_folder(src)
    checkpoint = read_ct2_model(src / "model.bin")
    if checkpoint.spec != WHISPER_SPEC:
        raise ModelError(f"{src / 'model.bin'}: a CTranslate2 {checkpoint.spec}, not a Whisper model ({WHISPER_SPEC})")
    ct2_config = read_json(src / "config.json")
    vocab_size = checkpoint.variables["decoder/embeddings/weight"].shape[0]
    tokenizer = load_whisper_tokenizer(src / "tokenizer.json", vocab_size)
    tokens = whisper_tokens(tokenizer)
    model = build_model(checkpoint, whisper_config(checkpoint, ct2_config, tokens), dtype)
    model.generation_config = whisper_generation_config(
        tokens,
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", []),
        alignment_heads=ct2_config.get("alignment_heads"),
        max_length=model.config.max_target_positions,
    )
    _prepare_output(out, overwrite)
    model.save_pretrained(out)
    build_whisper_processor(tokenizer, model.config.num_mel_bins).save_pretrained(out)
    return out
