"""``voxplug model import-ct2 SRC OUT``: turn a CTranslate2 (faster-whisper) Whisper folder into a checkpoint
voxplug can fine-tune.

The command lives in this plugin, which adds it to the ``voxplug model`` group through the ``register_commands``
hook.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from voxplug.api import ConfigError

DTYPE_OPTION: Any = typer.Option("float32", "--dtype", help="Dtype of the written weights: float32, float16, bfloat16.")


def import_ct2(
    src: Path = typer.Argument(..., help="CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json)."),
    out: Path = typer.Argument(..., help="Folder to write the transformers checkpoint to."),
    dtype: str = DTYPE_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists and is not empty."),
) -> None:
    """Convert a CTranslate2 Whisper checkpoint (e.g. a faster-whisper model) into a transformers one."""
    from voxplug_whisper.ct2 import convert_ct2_whisper

    if dtype not in ("float32", "float16", "bfloat16"):
        raise ConfigError(f"--dtype {dtype!r}: choose float32, float16 or bfloat16")
    written = convert_ct2_whisper(src, out, dtype=dtype, overwrite=overwrite)
    typer.echo(f"wrote a transformers Whisper checkpoint to {written}")
    typer.echo(f"fine-tune it with: voxplug train -c whisper-tiny-en-lora model.name_or_path={written}")


def register_model_commands(group: typer.Typer) -> None:
    """Add ``import-ct2`` to ``group`` (``voxplug model``, which the ``register_commands`` hook hands over)."""
    group.command("import-ct2")(import_ct2)
