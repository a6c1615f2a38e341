"""The public surface a plugin imports: hooks, extension interfaces, options, errors and shared helpers.

Everything a plugin needs from voxplug is here, built-in plugins included: ``from voxplug.api import DataSource``.
The rest of :mod:`voxplug` is internal and may change without notice; a test keeps ``plugins/`` to this module
(and ``from voxplug import hookimpl``). Two modules are public as a whole: ``hub`` here is
:mod:`voxplug.publishing.hub` (Hub connection options, retries, commits), and :mod:`voxplug.testing` is the test
harness plugin authors use in their own tests (fixtures, a tiny offline model, a local Hub server), not in plugins.

Names whose modules import numpy, soundfile or torch load on first use, so importing this module stays cheap on
every ``accelerate launch`` rank.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from voxplug.cli import CommandGroups
from voxplug.cli.ports import choose_port, port_taken_meanwhile
from voxplug.config import RunConfig, format_validation_error
from voxplug.data.alignment import Aligner, WordTiming, describe, parse_word_timings, transcript_words
from voxplug.data.folder_guard import FolderGuard
from voxplug.data.interface import DataSource, Example, Replacement, RowProblem, StreamPieces, TextScrubber
from voxplug.data.languages import TRANSCRIBE, TRANSLATE, WITHDRAWN_CODES, LanguageSupport, language_code_for_name
from voxplug.data.manifest import iter_jsonl, iter_jsonl_lines, resolve_inside
from voxplug.data.manifest_blocks import iter_block, plan_blocks
from voxplug.data.phrases import suitable_sentences
from voxplug.data.scrub import PatternScrubber
from voxplug.data.streaming import STREAM_ABOVE_BYTES
from voxplug.data.text import clean_transcript, decode_transcript_bytes
from voxplug.errors import (
    AudioError,
    ConfigError,
    DataError,
    ModelError,
    PluginError,
    PublishError,
    TrainingError,
    VoxplugError,
)
from voxplug.evaluation.batching import transcribe_clips
from voxplug.evaluation.decoding import DecodeStats, base_model, unplanned_attention
from voxplug.evaluation.folded_lora import FoldedLora, compute_dtype, fold_lora
from voxplug.extension import Extension, PluginOptions
from voxplug.hookspecs import Register, hookimpl
from voxplug.lock import locked_version
from voxplug.models.detect import detect_family
from voxplug.models.encoders import contiguous_residual_stream, contiguous_residual_stream_while
from voxplug.models.interface import FamilySpeed, ModelFamily
from voxplug.models.quantization import bitsandbytes_config, is_quantized, merge_into_bf16_base
from voxplug.plugins import get_plugin_host
from voxplug.publishing import hub
from voxplug.publishing.card import hub_repo_ids
from voxplug.publishing.interface import Deployer, DeployResult, ModelCard, Publisher, PublishResult
from voxplug.publishing.local_paths import is_local_path
from voxplug.publishing.publishable import MODEL_INFO_FILE, PublishableModel
from voxplug.publishing.staging import RepositoryOptions
from voxplug.tempfiles import temporary_folder
from voxplug.training.context import SpeedPaths, TrainingContext
from voxplug.training.freezing import count_parameters, freeze_parameters, freeze_without_grad
from voxplug.training.interface import Collator, TrainingMethod
from voxplug.training.memory import LayerStack, ModelShape, TrainedWeights, build_on_meta, lora_added_parameters
from voxplug.training.outputs import write_json

if TYPE_CHECKING:
    from voxplug.data.audio import ClipTooLongError, resample_to_16k, to_mono
    from voxplug.data.lazy_example import DatasetAudio, LazyExample
    from voxplug.data.store import local_dataset_facts, pushed_hub_id
    from voxplug.training.speed.apply import SpeedReport
    from voxplug.training.speed.cuda_graphs import LayerGraphs

_LOADED_ON_FIRST_USE = {
    "ClipTooLongError": "voxplug.data.audio",
    "resample_to_16k": "voxplug.data.audio",
    "to_mono": "voxplug.data.audio",
    "DatasetAudio": "voxplug.data.lazy_example",
    "LazyExample": "voxplug.data.lazy_example",
    "local_dataset_facts": "voxplug.data.store",
    "pushed_hub_id": "voxplug.data.store",
    "LayerGraphs": "voxplug.training.speed.cuda_graphs",
    "SpeedReport": "voxplug.training.speed.apply",
}

__all__ = [
    "MODEL_INFO_FILE",
    "STREAM_ABOVE_BYTES",
    "TRANSCRIBE",
    "TRANSLATE",
    "WITHDRAWN_CODES",
    "Aligner",
    "AudioError",
    "ClipTooLongError",
    "Collator",
    "CommandGroups",
    "ConfigError",
    "DataError",
    "DataSource",
    "DatasetAudio",
    "DecodeStats",
    "DeployResult",
    "Deployer",
    "Example",
    "Extension",
    "FamilySpeed",
    "FoldedLora",
    "FolderGuard",
    "LanguageSupport",
    "LayerGraphs",
    "LayerStack",
    "LazyExample",
    "ModelCard",
    "ModelError",
    "ModelFamily",
    "ModelShape",
    "PatternScrubber",
    "PluginError",
    "PluginOptions",
    "PublishError",
    "PublishResult",
    "PublishableModel",
    "Publisher",
    "Register",
    "Replacement",
    "RepositoryOptions",
    "RowProblem",
    "RunConfig",
    "SpeedPaths",
    "SpeedReport",
    "StreamPieces",
    "TextScrubber",
    "TrainedWeights",
    "TrainingContext",
    "TrainingError",
    "TrainingMethod",
    "VoxplugError",
    "WordTiming",
    "base_model",
    "bitsandbytes_config",
    "build_on_meta",
    "choose_port",
    "clean_transcript",
    "compute_dtype",
    "contiguous_residual_stream",
    "contiguous_residual_stream_while",
    "count_parameters",
    "decode_transcript_bytes",
    "describe",
    "detect_family",
    "fold_lora",
    "format_validation_error",
    "freeze_parameters",
    "freeze_without_grad",
    "get_plugin_host",
    "hookimpl",
    "hub",
    "hub_repo_ids",
    "is_local_path",
    "is_quantized",
    "iter_block",
    "iter_jsonl",
    "iter_jsonl_lines",
    "language_code_for_name",
    "local_dataset_facts",
    "locked_version",
    "lora_added_parameters",
    "merge_into_bf16_base",
    "parse_word_timings",
    "plan_blocks",
    "port_taken_meanwhile",
    "pushed_hub_id",
    "resample_to_16k",
    "resolve_inside",
    "suitable_sentences",
    "temporary_folder",
    "to_mono",
    "transcribe_clips",
    "transcript_words",
    "unplanned_attention",
    "write_json",
]


#: Names that left the API: each still works, with a DeprecationWarning saying what replaces it.
_RETIRED = {
    "compile_enabled": "TrainingContext.compile",
    "cuda_graphs_possible": "TrainingContext.speed.cuda_graphs",
    "deepspeed_wanted": "TrainingContext.deepspeed",
}


def __getattr__(name: str) -> Any:
    """Import the names whose modules pull in numpy, soundfile or torch when a plugin first asks for them."""
    if name in _RETIRED:
        import warnings

        warnings.warn(
            f"voxplug.api.{name} is retired: read {_RETIRED[name]} from the context prepare_model receives",
            DeprecationWarning,
            stacklevel=2,
        )
        from voxplug.training.context import retired_decision

        return retired_decision(name)
    module = _LOADED_ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module 'voxplug.api' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
