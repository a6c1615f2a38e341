"""A frozen base in 4 bits (QLoRA): bitsandbytes' NF4 settings, the install check, and an import guard.

``model.quantization: nf4`` loads the base's linear layers as bitsandbytes ``Linear4bit`` (NormalFloat4 with double
quantization, computing in bf16) through transformers' ``BitsAndBytesConfig``; LoRA adapters train over them and
the adapter merges into a bf16 copy of the base (:func:`merge_into_bf16_base`).

bitsandbytes, when it is imported on a CPU with AVX512-BF16, asks the ``kernels`` package to download and run a
matmul kernel from the Hugging Face Hub. Nothing voxplug runs fetches or runs remote code unless the user asked
(``model.hub_kernels``), and peft imports bitsandbytes whenever it is installed, so importing voxplug installs
:class:`BitsandbytesImportGuard`: while bitsandbytes is first imported, ``kernels.get_kernel`` refuses, and
bitsandbytes computes with the kernels it ships. :func:`allow_bitsandbytes_hub_kernels` lifts the guard for a run
with ``model.hub_kernels: true``.

Only the standard library is imported at module level: voxplug's own import runs this.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from voxplug.errors import ModelError

log = logging.getLogger("voxplug.models")

#: The values of ``model.quantization`` (besides None) and what each loads.
QUANTIZATIONS: dict[str, str] = {"nf4": "4-bit NormalFloat weights, double quantization, bf16 compute (QLoRA)"}
#: What to install for ``model.quantization``.
INSTALL_HINT = "pip install 'voxplug[qlora]' (bitsandbytes)"
#: The logger of bitsandbytes' CPU backend, which reports the refused Hub kernel as a warning.
_BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"

_hub_kernels_allowed = False


def require_bitsandbytes(option: str) -> None:
    """Raise :class:`ModelError` naming ``option`` and the extra to install when bitsandbytes is missing."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(f"{option} needs bitsandbytes, which is not installed: {INSTALL_HINT}")


def bitsandbytes_config(quantization: str, keep: Sequence[str] = ()) -> Any:
    """transformers' ``BitsAndBytesConfig`` for ``quantization`` (``"nf4"``); ``keep`` names the modules (dotted
    prefixes such as ``"model.audio_tower"``) that stay in the load dtype, not quantized."""
    import torch
    from transformers import BitsAndBytesConfig

    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown model.quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    require_bitsandbytes(f"model.quantization={quantization}")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        bnb_4bit_use_double_quant=True,
        llm_int8_skip_modules=list(keep) or None,
    )


def is_quantized(model: Any) -> bool:
    """Whether ``model`` (or the base under a PEFT wrapper) was loaded with 4-bit or 8-bit weights."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False))


def merge_into_bf16_base(peft_model: Any, adapter_dir: Any) -> Any:
    """The base of ``peft_model`` loaded again in bf16 on the CPU, with the adapter saved in ``adapter_dir`` merged
    into it: a merged model never holds weights that went through 4 bits, whatever the base trained in."""
    import torch
    from peft import PeftModel

    base = peft_model.get_base_model()
    source = base.name_or_path
    fresh = type(base).from_pretrained(source, dtype=torch.bfloat16, use_kernels=False)
    return PeftModel.from_pretrained(fresh, str(adapter_dir)).merge_and_unload()


def allow_bitsandbytes_hub_kernels() -> None:
    """Let bitsandbytes fetch its Hub kernel when it is imported (``model.hub_kernels: true``); says so when it was
    already imported without it."""
    global _hub_kernels_allowed
    _hub_kernels_allowed = True
    if "bitsandbytes" in sys.modules:
        log.info("model.hub_kernels: bitsandbytes was imported before the run allowed Hub kernels; it keeps its own")


@contextlib.contextmanager
def no_hub_kernels() -> Iterator[None]:
    """While inside, ``kernels.get_kernel`` (where the ``kernels`` package is installed) refuses to fetch, and
    bitsandbytes' warning about the refused kernel is dropped (it falls back to the kernels it ships)."""
    try:
        import kernels
    except ImportError:
        yield
        return

    def refuse(repo_id: str, *args: Any, **kwargs: Any) -> ModuleType:
        raise RuntimeError(f"voxplug fetches no kernel from the Hub ({repo_id}) unless model.hub_kernels is true")

    quiet = logging.getLogger(_BNB_CPU_LOGGER)
    drop_refusal = _DropMessages("Failed to load CPU gemm_4bit_forward")
    original = kernels.get_kernel
    kernels.get_kernel = refuse
    quiet.addFilter(drop_refusal)
    try:
        yield
    finally:
        kernels.get_kernel = original
        quiet.removeFilter(drop_refusal)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


class _GuardedLoader(importlib.abc.Loader):
    """bitsandbytes' own loader, run inside :func:`no_hub_kernels` unless the run allowed Hub kernels."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        guard = contextlib.nullcontext() if _hub_kernels_allowed else no_hub_kernels()
        with guard:
            self.loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, ... stay the file loader's
        return getattr(self.loader, name)


class BitsandbytesImportGuard(importlib.abc.MetaPathFinder):
    """Finds ``bitsandbytes`` as the other finders would, and imports it under :func:`no_hub_kernels`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "bitsandbytes":
            return None
        others = [finder for finder in sys.meta_path if not isinstance(finder, BitsandbytesImportGuard)]
        for finder in others:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _GuardedLoader(spec.loader)
                return spec
        return None


def guard_bitsandbytes_import() -> None:
    """Put :class:`BitsandbytesImportGuard` first on ``sys.meta_path`` (once), unless bitsandbytes is imported."""
    if "bitsandbytes" in sys.modules or any(isinstance(f, BitsandbytesImportGuard) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, BitsandbytesImportGuard())
