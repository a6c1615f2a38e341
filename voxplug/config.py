"""The run configuration: one typed model, read from YAML presets plus ``key.sub=value`` overrides.

Each section picks an extension by name and holds that extension's options under the same name::

    data:
      source: jsonl          # a registered data source
      jsonl:                 # its options, validated by the plugin's Options model
        path: my-voice/data.jsonl
    training:
      method: lora
      lora: {r: 16}

:func:`load_config` reads and merges the files and overrides and validates the core keys;
:func:`resolve_plugin_options` then validates every plugin table against the registered ``Options`` models,
so all errors surface before any process is launched. Secrets are never config values: tokens come from the
environment (``HF_TOKEN``) or the huggingface_hub login.
"""

from __future__ import annotations

import copy
import difflib
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from voxplug.errors import ConfigError

if TYPE_CHECKING:
    from voxplug.plugins import PluginHost

# Presets ship inside the wheel as voxplug/configs; in a source checkout they are the repository's configs/.
_PACKAGE_DIR = Path(__file__).resolve().parent
PRESETS_DIR = _PACKAGE_DIR / "configs" if (_PACKAGE_DIR / "configs").is_dir() else _PACKAGE_DIR.parent / "configs"
SECRET_KEY = re.compile(r"(^|_)(token|password|secret|api_key|apikey)$", re.IGNORECASE)


class Section(BaseModel):
    """A config section with fixed keys; extra keys are only allowed where a plugin's options live."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PluginChoice(Section):
    """A section that selects an extension by name; tables named after extensions hold their options."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def plugin_tables(self) -> dict[str, dict[str, Any]]:
        """The extra keys of this section: ``{extension name: options dict}``."""
        return dict(self.model_extra or {})


class SplitConfig(Section):
    """How the evaluation rows are chosen when no separate eval source is given."""

    eval_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of rows held out for evaluation")
    min_eval_rows: int = Field(1, ge=0, description="at least this many eval rows once there are 5 rows or more")
    max_eval_rows: int | None = Field(200, ge=1, description="cap on the eval rows taken from training data")
    seed: int = 42
    by_language: bool = Field(True, description="hold out rows from every language in proportion")


class EvalSourceConfig(PluginChoice):
    """An explicit evaluation source, configured like ``data`` itself."""

    source: str


class DataConfig(PluginChoice):
    """Where examples come from and how they are checked."""

    source: str = Field("jsonl", description="name of the data source for training rows")
    eval: EvalSourceConfig | None = Field(None, description="a separate source for evaluation rows")
    split: SplitConfig = Field(default_factory=SplitConfig)
    max_duration_s: float = Field(30.0, gt=0, description="clips longer than this are rejected, not truncated")
    max_train_rows: int | None = Field(None, ge=1)
    max_dropped_share: float = Field(
        0.1,
        ge=0.0,
        le=1.0,
        description="stop before training when more than this share of the rows cannot be used (missing or "
        "unreadable audio, malformed lines, clips over max_duration_s); `voxplug train --allow-dropped` sets 1",
    )
    language: str | None = Field(None, description="language for rows that do not name one (None = automatic)")
    streaming: bool | None = Field(
        None,
        description="read training rows as a stream, each rank and data-loader worker its own share, checked as "
        "they pass (docs/data.md); None: when the source streams (hub with streaming, granary) or a jsonl manifest "
        "is larger than its stream_above_mb, unless max_train_rows is set",
    )
    shuffle_buffer: int = Field(10_000, ge=1, description="rows a stream shuffles among, in each data-loader worker")
    scrub: list[str] = Field(
        default_factory=list, description="text scrubbers run over transcripts before training and any push"
    )
    scrub_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options of the text scrubbers, by name, e.g. {email: {replacement: '<e>'}}"
    )


class ModelConfig(PluginChoice):
    """Which checkpoint to fine-tune and how to load it."""

    name_or_path: str = "mistralai/Voxtral-Mini-3B-2507"
    family: str | None = Field(None, description="model family; None detects it from the checkpoint")
    collator: str | None = Field(None, description="collator; None uses the family's default")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = "sdpa"
    hub_kernels: bool = Field(
        False,
        description="let transformers download and run kernels from the Hugging Face Hub when it loads the model "
        "(its use_kernels); off, loading a model never fetches or runs code",
    )
    quantization: Literal["nf4"] | None = Field(
        None,
        description="load the frozen base in 4 bits for LoRA (QLoRA): nf4 = bitsandbytes' NormalFloat4 with double "
        "quantization, computing in bf16; the adapter trains as usual and merges into a bf16 copy of the base. "
        "training.method lora only; needs pip install 'voxplug[qlora]'",
    )


class SpeedConfig(Section):
    """The training fast paths (:mod:`voxplug.training.speed`): each is exact, and applies only where it can."""

    fused_kernels: bool = Field(
        True,
        description="GPU kernels from the model family that cost the host less (Voxtral: PyTorch's RMSNorm and "
        "voxplug's SwiGLU and RoPE autograd functions); not when compiling",
    )
    cuda_graphs: bool = Field(
        True,
        description="replay the language model's decoder layers as CUDA graphs in LoRA training, forward and "
        "backward (a batch pads into a captured shape that holds it, or is captured): the GPU no longer waits for "
        "the host. One CUDA GPU in one process, without compile, DeepSpeed or gradient checkpointing; false: eager "
        "layers",
    )
    encoder_cache_gb: float = Field(
        8.0,
        ge=0,
        description="memory (on the encoder's device) for reusing a frozen audio encoder's outputs in later epochs; "
        "never more than leaves the run's peak 6 GB under the card's memory; 0 turns it off",
    )
    label_logits: bool = Field(
        True,
        description="decoder-only models compute vocabulary logits only where a label is (the same loss, without the "
        "logits of every audio position); false: the model's own loss over all positions",
    )
    epoch_stream: bool = Field(
        True,
        description="with data-loader workers in one process, batches run on from one epoch into the next, so the GPU "
        "does not wait at each epoch's start; false: a fresh loader every epoch",
    )
    masters_one_pass: bool = Field(
        True,
        description="with training.master_weights=optimizer, PyTorch's fused AdamW on a CUDA GPU steps the fp32 "
        "masters in one pass over memory (a Triton kernel reads the bf16 gradient and writes the bf16 weight); false: "
        "the gradients copied to fp32, the optimizer's own step, the masters copied back",
    )


#: Old config keys of the fast paths and where they live now (each still works, with a FutureWarning).
MOVED_SPEED_KEYS: dict[tuple[str, ...], str] = {
    ("fused_kernels",): "fused_kernels",
    ("encoder_cache_gb",): "encoder_cache_gb",
    ("lora", "cuda_graphs"): "cuda_graphs",
}


def _moved_speed_keys(training: Any) -> Any:
    """Move the fast paths' old keys (``training.fused_kernels``, ``training.encoder_cache_gb``,
    ``training.lora.cuda_graphs``) to ``training.speed``, warning with the new name (a FutureWarning: Python shows
    those to the person running a command); an old key beside its new one is an error."""
    if not isinstance(training, dict) or not any(_has_path(training, old) for old in MOVED_SPEED_KEYS):
        return training
    training = copy.deepcopy(training)
    speed = training.get("speed")
    speed = dict(speed) if isinstance(speed, dict) else ({} if speed is None else speed)
    for old, new in MOVED_SPEED_KEYS.items():
        if not _has_path(training, old):
            continue
        old_name = "training." + ".".join(old)
        if isinstance(speed, dict) and new in speed:
            raise ValueError(f"{old_name} is the old name of training.speed.{new}: set only training.speed.{new}")
        warnings.warn(f"{old_name} is renamed training.speed.{new}", FutureWarning, stacklevel=2)
        parent = training
        for part in old[:-1]:
            parent = parent[part]
        value = parent.pop(old[-1])
        if isinstance(speed, dict):
            speed[new] = value
    training["speed"] = speed
    return training


def _has_path(data: dict[str, Any], path: tuple[str, ...]) -> bool:
    for part in path[:-1]:
        data = data.get(part)
        if not isinstance(data, dict):
            return False
    return path[-1] in data


#: The samples per optimizer step on each process that ``batch_size: auto`` keeps when ``effective_batch`` is unset.
DEFAULT_EFFECTIVE_BATCH = 8


class TrainingConfig(PluginChoice):
    """The training loop's settings (transformers' Trainer underneath)."""

    method: str = Field("lora", description="training method: lora or full (or a plugin's)")
    output_dir: Path | None = Field(None, description="run folder; default runs/<run name>")
    epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: run all epochs)")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="micro-batch per device; the effective batch is batch_size x grad_accum x processes, and one "
        "large micro-batch trains faster than the same batch accumulated from small ones. auto: the largest that "
        "fits the GPU's free memory by the run's memory estimate, accumulating the rest of effective_batch "
        "(a small fixed size without a GPU)",
    )
    eval_batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="rows per forward pass of the evaluation loss. auto: the run's training micro-batch (the pass "
        "keeps no gradients or activations, so a micro-batch that trains fits, and larger passes cost fewer "
        "launches a row)",
    )
    grad_accum: int = Field(1, ge=1, description="micro-batches accumulated into one optimizer step")
    effective_batch: int | None = Field(
        None,
        ge=1,
        description="with batch_size auto: the samples of one optimizer step on each process, kept whatever "
        "micro-batch is chosen (None: 8)",
    )
    learning_rate: float = Field(5e-5, gt=0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0)
    optim: Literal["adamw_torch", "adamw_torch_fused", "adamw_8bit", "adafactor", "sgd"] = "adamw_torch_fused"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="auto: bf16 on GPUs, fp32 on CPU")
    gradient_checkpointing: bool | Literal["auto"] = Field(
        "auto",
        description="recompute each layer's activations in the backward pass instead of keeping them: less memory, "
        "slower steps. auto: only when no micro-batch fits without it",
    )
    master_weights: Literal["model", "optimizer"] = Field(
        "model",
        description="where full fine-tuning in bf16 keeps its fp32 weights. model: in the model, cast to bf16 for "
        "every forward pass (the Trainer's mixed precision); optimizer: the model holds and computes in bf16, and "
        "the optimizer steps fp32 copies and rounds them into it (no casts of the weights or gradients each step, "
        "about 2 bytes a parameter less). Adapters, fp16, fp32 and DeepSpeed runs keep their own",
    )
    fit_check: bool = Field(
        True,
        description="before loading the model, estimate the peak GPU memory of a training step and stop with what "
        "to change when it exceeds the free memory; false: start anyway (the estimate can be wrong)",
    )
    device_memory_gb: float | None = Field(
        None,
        gt=0,
        description="memory each process may use on its device, for batch_size auto and the fit check (None: what "
        "is free on the GPU when the run starts; on a CPU nothing is checked unless this is set)",
    )
    compile: bool | None = Field(
        None,
        description="torch.compile each repeated block of the model (regional compilation; not under DeepSpeed): "
        "fuses norms, activations and casts for a minute or two of compiling at the start; replaces "
        "speed.fused_kernels. "
        "None (auto): on with a CUDA GPU in a single process when the run has at least 2,000 optimizer steps, "
        "where the compile time is paid back",
    )
    speed: SpeedConfig = Field(default_factory=SpeedConfig, description="the fast paths (docs/training.md)")
    group_by_length: bool = Field(
        False,
        description="batch clips of similar duration together; off by default: Voxtral and Whisper pad every clip "
        "to a 30 s window, so it saves only transcript padding; ungrouped batches learned better and ran faster "
        "(docs/training.md)",
    )
    seed: int = 42
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N steps (None: once per epoch)")
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (None: once per epoch)")
    max_eval_share: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="with eval_steps and save_steps unset, evaluate (and save) every few epochs instead of every "
        "epoch where one evaluation would cost more than this share of the training time, estimated from the row "
        "counts; the last step is always evaluated (None: once per epoch)",
    )
    save_total_limit: int | None = Field(2, ge=1)
    dataloader_workers: int | None = Field(
        None, ge=0, description="processes decoding audio and extracting features (None: 4 with a CUDA GPU, 0 on CPU)"
    )
    deepspeed: str | None = Field(None, description="DeepSpeed config JSON (or use accelerate launch's config)")

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        return _moved_speed_keys(data)

    @field_validator("batch_size", "eval_batch_size", mode="before")
    @classmethod
    def _batch_size_or_auto(cls, value: Any) -> Any:
        """One message for a value that is neither a micro-batch nor ``auto`` (not one per member of the union)."""
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ValueError("Input should be greater than or equal to 1, or auto")
        if isinstance(value, str) and value != "auto":
            raise ValueError("Input should be a whole number of at least 1, or auto")
        return value

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _switch_or_auto(cls, value: Any) -> Any:
        """One message for a value that is neither true, false nor ``auto``."""
        if isinstance(value, str) and value != "auto" and value.lower() not in ("true", "false"):
            raise ValueError("Input should be true, false or auto")
        return value

    @property
    def samples_per_step(self) -> int:
        """The samples of one optimizer step on each process: ``effective_batch`` (or its default) under
        ``batch_size: auto``, else ``batch_size`` x ``grad_accum``."""
        if self.batch_size == "auto":
            return self.effective_batch or DEFAULT_EFFECTIVE_BATCH
        return self.batch_size * self.grad_accum

    @model_validator(mode="after")
    def _one_effective_batch(self) -> TrainingConfig:
        """With ``batch_size: auto`` the accumulation is decided, so the effective batch is set on its own key."""
        if self.batch_size == "auto" and self.grad_accum != 1:
            if "batch_size" not in self.model_fields_set:  # auto by default: the user set only the accumulation
                raise ValueError(
                    f"training.grad_accum={self.grad_accum} needs a fixed micro-batch, and training.batch_size is auto "
                    "by default: set training.batch_size too (the effective batch is batch_size x grad_accum), or set "
                    "training.effective_batch (the samples of one optimizer step on each process) instead of "
                    "grad_accum"
                )
            raise ValueError(
                "training.batch_size=auto decides grad_accum: set training.effective_batch (the samples of one "
                "optimizer step on each process) instead of training.grad_accum"
            )
        if self.batch_size != "auto" and self.effective_batch is not None:
            raise ValueError(
                "training.effective_batch applies to training.batch_size=auto; with a fixed batch_size the effective "
                "batch is batch_size x grad_accum"
            )
        return self


class EvaluationConfig(Section):
    """Generation-based WER/CER during and after training."""

    enabled: bool = True
    max_new_tokens: int | None = Field(
        None, ge=1, description="most tokens of a transcript (default: from each clip's length, 15 a second + 16)"
    )
    batch_size: int | None = Field(
        None, ge=1, description="most clips decoded together (default: as many as free GPU memory holds; 8 on CPU)"
    )
    cuda_graphs: bool = Field(True, description="replay each decoding step as a CUDA graph on GPUs")
    max_samples: int | None = Field(None, ge=1)
    best_model_metric: Literal["wer", "cer", "loss"] = "wer"


class PublishConfig(PluginChoice):
    """Where the finished model goes; the ``local`` publisher writes a Hub-shaped folder."""

    target: str | None = Field("local", description="publisher name, or None to skip publishing")
    repo_id: str | None = Field(None, description="destination (repo id or folder); default from the run name")


class DeployConfig(PluginChoice):
    """Whether and where a demo is deployed after publishing."""

    target: str | None = Field(None, description="deployer name (e.g. space), or None to skip")


class RunConfig(Section):
    """Everything one fine-tuning run needs. ``voxplug config schema`` prints its JSON schema."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="run name, used for folders")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    plugins: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="options of plugins that hook in without being selected by a section"
    )
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True, description="folder relative paths resolve to")

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        for key_path in _keys(data):
            if SECRET_KEY.search(key_path.rsplit(".", 1)[-1]):
                raise ValueError(
                    f"{key_path}: secrets are never config values; set HF_TOKEN in the environment "
                    "or run `hf auth login`"
                )
        return data

    @model_validator(mode="after")
    def _quantized_base_under_adapters(self) -> RunConfig:
        """A 4-bit base cannot train: ``model.quantization`` needs the ``lora`` method, which freezes it."""
        if self.model.quantization is not None and self.training.method != "lora":
            raise ValueError(
                f"model.quantization={self.model.quantization} loads a frozen 4-bit base for LoRA, but "
                f"training.method is {self.training.method!r}: set training.method=lora or remove model.quantization"
            )
        return self

    @model_validator(mode="after")
    def _model_folder_beside_config(self) -> RunConfig:
        """A relative ``model.name_or_path`` that names a folder beside the config becomes that folder's absolute path.

        Like the data paths, it is read relative to the config's folder, not the working folder; a name that is
        no folder there stays a Hub id. The absolute path is also what ``voxplug.json`` records, so the model
        folder keeps pointing at its base wherever it is run from.
        """
        name = self.model.name_or_path
        path = Path(name).expanduser()
        if name and not path.is_absolute() and (self.base_dir / path).is_dir():
            self.model.name_or_path = str((self.base_dir / path).resolve())
        elif name.startswith("~"):
            self.model.name_or_path = str(path)
        return self

    @property
    def run_dir(self) -> Path:
        """The run folder: ``training.output_dir`` or ``runs/<name>``, relative to the config's folder."""
        out = self.training.output_dir or Path("runs") / self.name
        return out if out.is_absolute() else self.base_dir / out

    def public_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (what ``training_config.json`` and the card record)."""
        return self.model_dump(mode="json")


#: Per section: the keys that choose an extension, and the extension type each chooses. A section's option
#: tables are named after an extension of one of its types (``model.voxtral-transcription.max_text_tokens``).
SELECTORS: dict[str, tuple[tuple[str, str], ...]] = {
    "data": (("source", "data source"),),
    "data.eval": (("source", "data source"),),
    "model": (("family", "model family"), ("collator", "collator")),
    "training": (("method", "training method"),),
    "publish": (("target", "publisher"),),
    "deploy": (("target", "deployer"),),
}


def _keys(data: Any, prefix: str = "") -> list[str]:
    if not isinstance(data, dict):
        return []
    found = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        found.append(path)
        found.extend(_keys(value, f"{path}."))
    return found


def find_preset(name: str) -> Path:
    """Resolve a config argument: a YAML path, or the name of a preset in ``configs/``."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (PRESETS_DIR / name, PRESETS_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))) if PRESETS_DIR.is_dir() else "none"
    raise ConfigError(f"config {name!r}: no such file, and no preset of that name (presets: {presets})")


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping, with errors that name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; nested mappings merge, everything else replaces."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``training.lora.r=16`` into ``{"training": {"lora": {"r": 16}}}`` (the value is read as YAML)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.sub=value, e.g. training.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({exc})") from exc
    result: dict[str, Any] = value
    for part in reversed(key.split(".")):
        result = {part: result}
    return result


def read_config_sources(
    sources: list[str] | None = None, overrides: list[str] | None = None
) -> tuple[dict[str, Any], Path, str]:
    """Read config files/presets in order and apply overrides: the merged mapping, the folder relative paths
    resolve against (the last config file's, or the working folder) and where it came from (for messages)."""
    data: dict[str, Any] = {}
    base_dir = Path.cwd()
    for source in sources or []:
        path = find_preset(source)
        data = deep_merge(data, keep_effective_batch(data, read_yaml(path)))
        base_dir = path.resolve().parent if path.parent.resolve() != PRESETS_DIR else base_dir
    for override in overrides or []:
        data = deep_merge(data, keep_effective_batch(data, parse_override(override)))
    return data, base_dir, ", ".join(sources or []) or "defaults"


def keep_effective_batch(below: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``layer``, completed so that switching ``training.batch_size`` between ``auto`` and a fixed micro-batch keeps
    the effective batch that the layers ``below`` set.

    ``training.batch_size=auto`` over a preset's ``2 x 4`` chooses the micro-batch for 8 samples a step (where the
    preset's ``grad_accum`` would otherwise be an error beside ``auto``), and a fixed size over an explicit ``auto``
    accumulates up to its ``effective_batch`` where the size divides it. A layer that sets ``grad_accum`` or
    ``effective_batch`` itself, or a batch size that does not switch, is left as written.
    """
    training, lower = layer.get("training"), below.get("training")
    if not isinstance(training, dict) or not isinstance(lower, dict) or "batch_size" not in lower:
        return layer
    if "batch_size" not in training or {"grad_accum", "effective_batch"} & training.keys():
        return layer
    new, old = training["batch_size"], lower["batch_size"]
    if new == "auto" and _whole(old) and _whole(lower.get("grad_accum", 1)):
        kept = {"grad_accum": 1, "effective_batch": old * lower.get("grad_accum", 1)}
    elif old == "auto" and _whole(new):
        effective = lower.get("effective_batch") or DEFAULT_EFFECTIVE_BATCH
        accum = effective // new if _whole(effective) and effective % new == 0 else 1
        kept = {"grad_accum": accum, "effective_batch": None}
    else:
        return layer
    return {**layer, "training": {**training, **kept}}


def _whole(value: Any) -> bool:
    """Whether ``value`` is a whole number of at least 1 (not a bool): a batch size or accumulation to count with."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def load_config(sources: list[str] | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read config files/presets in order, apply overrides, and validate the core keys.

    Relative paths in the config resolve against the folder of the last config file (or the working folder).
    """
    data, base_dir, origin = read_config_sources(sources, overrides)
    return validate_config(data, base_dir=base_dir, origin=origin)


def validate_config(data: dict[str, Any], *, base_dir: Path, origin: str = "config") -> RunConfig:
    """Validate a merged config mapping, turning pydantic's errors into one message naming each key."""
    try:
        return RunConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(f"invalid config ({origin}):\n" + format_validation_error(exc, model=RunConfig)) from None


def check_config(
    data: dict[str, Any], *, base_dir: Path, origin: str, host: PluginHost
) -> tuple[RunConfig, dict[str, Any]]:
    """Validate the core keys and every plugin's options of a merged mapping, reporting every problem at once.

    Returns the config and its resolved plugin options (as :func:`resolve_plugin_options`); raises one
    :class:`ConfigError` that lists the core keys' problems and the plugin tables' problems together.
    """
    try:
        config = RunConfig.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        problems = [format_validation_error(exc, model=RunConfig)]
        problems += _plugin_problems(_raw_sections(data), host, {})
        raise ConfigError(f"invalid config ({origin}):\n" + "\n".join(problems)) from None
    try:
        return config, resolve_plugin_options(config, host)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("invalid config:", f"invalid config ({origin}):", 1)) from None


def format_validation_error(exc: ValidationError, prefix: str = "", model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``key.path: what was expected (got value)``.

    An unknown key gets a "did you mean" from the fields of ``model`` where it sits (or from the required keys
    reported missing beside it); a required key that a misspelling of it stands in for is not reported missing.
    """
    errors = exc.errors()
    unknown = {tuple(e["loc"]) for e in errors if e["type"] == "extra_forbidden"}
    missing = {tuple(e["loc"]) for e in errors if e["type"] == "missing"}
    suggestions = {loc: _close_key(loc, missing, model) for loc in unknown}
    stand_ins = {(*loc[:-1], name) for loc, name in suggestions.items() if name is not None}
    lines = []
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and loc in stand_ins:
            continue
        key = prefix + ".".join(str(part) for part in loc) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key" + (f"; did you mean {suggestions[loc]!r}?" if suggestions.get(loc) else "")
        elif error["type"].startswith("value_error"):
            message = message.removeprefix("Value error, ")
        got = error.get("input")
        shown = "" if error["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


def _close_key(loc: tuple[Any, ...], missing: set[tuple[Any, ...]], model: type[BaseModel] | None) -> str | None:
    """The key an unknown ``loc`` most likely meant: a missing sibling first, else a field of ``model`` there."""
    name, parent = str(loc[-1]), loc[:-1]
    siblings = [str(other[-1]) for other in missing if other[:-1] == parent]
    fields = _fields_at(model, parent) if model is not None else []
    for candidates in (siblings, fields):
        close = difflib.get_close_matches(name, candidates, n=1)
        if close:
            return close[0]
    return None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) pydantic model found at ``loc`` below ``model``; [] where none is."""
    current: Any = model
    for part in loc:
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return []
        options = [field.annotation, *get_args(field.annotation)]
        current = next((t for t in options if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def resolve_plugin_options(config: RunConfig, host: PluginHost) -> dict[str, Any]:
    """Validate every plugin table in ``config`` against its extension's ``Options``; return them by key path.

    The result maps e.g. ``"data.jsonl"`` to a validated options object. Unknown extension names, tables
    for extensions of the wrong type, and invalid options all raise one :class:`ConfigError` listing each
    problem.
    """
    resolved: dict[str, Any] = {}
    sections = {}
    for section_path in SELECTORS:
        section = _section(config, section_path)
        if section is not None:
            chosen = {selector: getattr(section, selector) for selector, _kind in SELECTORS[section_path]}
            sections[section_path] = (type(section), chosen, section.plugin_tables())
    problems = _plugin_problems(sections, host, resolved)
    scrubbers = host.extensions("text scrubber")
    for index, name in enumerate(config.data.scrub):
        if name not in scrubbers:
            known = ", ".join(sorted(scrubbers)) or "none"
            problems.append(f"  data.scrub.{index}: unknown text scrubber {name!r} (known: {known})")
    problems += _resolve_scrubber_options(config.data.scrub_options, scrubbers, resolved)
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(problems))
    return resolved


SectionView = tuple[type[BaseModel], dict[str, Any], dict[str, Any]]
"""A section as the plugin check sees it: its model class, the extension chosen by each selector, its option
tables (``{extension name: options}``)."""


def _raw_sections(data: dict[str, Any]) -> dict[str, SectionView]:
    """The sections of an unvalidated config mapping, with the section models' defaults for missing selectors."""
    classes = {path: _section_class(path) for path in SELECTORS}
    with warnings.catch_warnings():  # the core keys' validation warns about moved keys already
        warnings.simplefilter("ignore", FutureWarning)
        try:
            data = {**data, "training": _moved_speed_keys(data.get("training"))}
        except ValueError:
            pass  # reported by the core keys' validation
    sections: dict[str, SectionView] = {}
    for path, cls in classes.items():
        node: Any = data
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and path != "data.eval":
            node = {}
        if not isinstance(node, dict):
            continue
        chosen = {
            selector: node.get(selector, cls.model_fields[selector].get_default(call_default_factory=True))
            for selector, _kind in SELECTORS[path]
        }
        tables = {key: value for key, value in node.items() if key not in cls.model_fields}
        sections[path] = (cls, chosen, tables)
    return sections


def _section_class(path: str) -> type[BaseModel]:
    """The model class of the section at ``path`` (``data.eval`` -> :class:`EvalSourceConfig`)."""
    current: Any = RunConfig
    for part in path.split("."):
        annotation = current.model_fields[part].annotation
        current = next(t for t in [annotation, *get_args(annotation)] if isinstance(t, type))
    return current


def _plugin_problems(sections: dict[str, SectionView], host: PluginHost, resolved: dict[str, Any]) -> list[str]:
    """Check each section's chosen extensions and option tables; fill ``resolved``, return the problems."""
    problems: list[str] = []
    for section_path, (cls, chosen, tables) in sections.items():
        choices = SELECTORS[section_path]
        registries = {kind: host.extensions(kind) for _selector, kind in choices}
        for selector, kind in choices:
            name = chosen.get(selector)
            if name is not None and name not in registries[kind]:
                known = ", ".join(sorted(registries[kind])) or "none"
                problems.append(f"  {section_path}.{selector}: unknown {kind} {name!r} (known: {known})")
        for table, options in tables.items():
            owner = next((registry for registry in registries.values() if table in registry), None)
            if owner is None:
                names = sorted(set().union(*registries.values()))
                close = difflib.get_close_matches(table, [*cls.model_fields, *names], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                kinds = " or ".join(kind for _selector, kind in choices)
                problems.append(
                    f"  {section_path}.{table}: unknown key{hint} (besides its own keys, this section takes "
                    f"option tables named after a {kinds}: {', '.join(names) or 'none'})"
                )
                continue
            if not isinstance(options, dict):
                problems.append(f"  {section_path}.{table}: expected a mapping of options, got {options!r}")
                continue
            options_model = owner[table].Options
            try:
                resolved[f"{section_path}.{table}"] = options_model.model_validate(options)
            except ValidationError as exc:
                problems.append(format_validation_error(exc, prefix=f"{section_path}.{table}.", model=options_model))
        for selector, kind in choices:
            name = chosen.get(selector)
            if name is not None and name in registries[kind] and name not in tables:
                try:
                    resolved[f"{section_path}.{name}"] = registries[kind][name].Options()
                except ValidationError as exc:
                    problems.append(format_validation_error(exc, prefix=f"{section_path}.{name}."))
    return problems


def _resolve_scrubber_options(
    tables: dict[str, dict[str, Any]], scrubbers: dict[str, type], resolved: dict[str, Any]
) -> list[str]:
    """Validate ``data.scrub_options`` tables into ``resolved["data.scrub.<name>"]``; return the problems."""
    problems = []
    for name, options in tables.items():
        if name not in scrubbers:
            known = ", ".join(sorted(scrubbers)) or "none"
            problems.append(f"  data.scrub_options.{name}: unknown text scrubber {name!r} (known: {known})")
            continue
        try:
            resolved[f"data.scrub.{name}"] = scrubbers[name].Options.model_validate(options)
        except ValidationError as exc:
            problems.append(format_validation_error(exc, prefix=f"data.scrub_options.{name}."))
    return problems


def _section(config: RunConfig, path: str) -> PluginChoice | None:
    node: Any = config
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def config_schema(host: PluginHost | None = None) -> dict[str, Any]:
    """The JSON schema of a run config, with every registered plugin's options under its section."""
    schema = RunConfig.model_json_schema()
    if host is None:
        return schema
    defs = schema.setdefault("$defs", {})
    section_defs = {
        "data": "DataConfig",
        "data.eval": "EvalSourceConfig",
        "model": "ModelConfig",
        "training": "TrainingConfig",
        "publish": "PublishConfig",
        "deploy": "DeployConfig",
    }
    for section_path, choices in SELECTORS.items():
        target = defs.get(section_defs[section_path])
        if target is None:
            continue
        for _selector, kind in choices:
            for name, cls in sorted(host.extensions(kind).items()):
                sub = cls.Options.model_json_schema(ref_template="#/$defs/{model}")
                defs.update(sub.pop("$defs", {}))
                about = f": {cls.description}" if cls.description else ""
                sub["description"] = f"options of the {kind} {name!r}{about}"
                target.setdefault("properties", {})[name] = sub
    return schema
