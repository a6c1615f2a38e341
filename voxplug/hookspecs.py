"""Every hook voxplug calls, grouped by phase.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`::

    from voxplug import hookimpl

    @hookimpl
    def register_data_sources(register):
        register(MyCorpusSource)

Ranks: under ``accelerate launch`` every process loads the plugins, so the *registration* hooks fire on every
rank. Every other hook fires **on the main process only** (rank 0), once, unless its docstring says otherwise;
side effects (writing files, pushing to the Hub, deploying, notifying) therefore never run twice.

Implementations may accept any subset of a hook's arguments (pluggy passes only those they name), so new
arguments can be added to a spec without breaking existing plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from voxplug.config import RunConfig
    from voxplug.publishing.interface import DeployResult, ModelCard, PublishResult

hookspec = pluggy.HookspecMarker("voxplug")
hookimpl = pluggy.HookimplMarker("voxplug")

Register = Callable[[type], None]

# --------------------------------------------------------------------------------------------------------------
# Registration: hand extension classes to voxplug. Fires once per process (every rank) when plugins load.
# Each ``register`` callback takes a class whose ``name`` users write in YAML; a duplicate name is an error that
# names both plugins.
# --------------------------------------------------------------------------------------------------------------


@hookspec
def register_data_sources(register: Register) -> None:
    """Register :class:`voxplug.data.interface.DataSource` subclasses.

    Fires once per process, on every rank, when plugins load. Call ``register(cls)`` for each source; users pick
    one with ``data.source: <cls.name>`` and configure it under ``data.<cls.name>``. Returns nothing.
    """


@hookspec
def register_collators(register: Register) -> None:
    """Register :class:`voxplug.training.interface.Collator` subclasses.

    Fires once per process, on every rank. A collator turns a list of examples into model inputs; a model
    family names its default, users may pick another with ``model.collator``. Returns nothing.
    """


@hookspec
def register_model_families(register: Register) -> None:
    """Register :class:`voxplug.models.interface.ModelFamily` subclasses (Voxtral, Whisper, ...).

    Fires once per process, on every rank. A family loads checkpoints and processors of one architecture, knows
    its LoRA targets and how to generate transcripts. Users pick one with ``model.family`` or let voxplug detect
    it from the checkpoint's ``config.json``. Returns nothing.
    """


@hookspec
def register_training_methods(register: Register) -> None:
    """Register :class:`voxplug.training.interface.TrainingMethod` subclasses (``lora``, ``full``, ...).

    Fires once per process, on every rank. A training method decides which weights train and how the result is
    saved; the loop itself is transformers' ``Trainer``. Users pick one with ``training.method``. Returns nothing.
    """


@hookspec(
    warn_on_impl=DeprecationWarning(
        "the register_trainers hook is renamed register_training_methods; voxplug still calls it, for now"
    )
)
def register_trainers(register: Register) -> None:
    """The old name of :func:`register_training_methods`; its classes are registered the same way.

    Fires once per process, on every rank. Implementing it warns with a DeprecationWarning that names the new
    hook. Returns nothing.
    """


@hookspec
def register_publishers(register: Register) -> None:
    """Register :class:`voxplug.publishing.interface.Publisher` subclasses (``local``, ``hub``, ...).

    Fires once per process, on every rank. Users pick one with ``publish.target``. Returns nothing.
    """


@hookspec
def register_deployers(register: Register) -> None:
    """Register :class:`voxplug.publishing.interface.Deployer` subclasses (``space``, ...).

    Fires once per process, on every rank. Users pick one with ``deploy.target``. Returns nothing.
    """


@hookspec
def register_text_scrubbers(register: Register) -> None:
    """Register :class:`voxplug.data.interface.TextScrubber` subclasses (e-mail, phone, URL, ...).

    Fires once per process, on every rank. Users enable scrubbers by name with ``data.scrub``; they run over
    transcripts before training and before any push, and report what they replaced. Returns nothing.
    """


@hookspec
def register_aligners(register: Register) -> None:
    """Register :class:`voxplug.data.alignment.Aligner` subclasses (word timings from the data, from a model, ...).

    Fires once per process, on every rank. An aligner gives each word of a transcript its start and end time in
    the clip; streaming collators (Voxtral Realtime's) place the words' tokens by them. Users pick one in the
    collator's options (``model.<collator>.aligner``). Returns nothing.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``voxplug`` command line.

    Fires once per CLI process, when the command line starts (so on every rank of an ``accelerate launch`` of
    ``voxplug train``, and before ``--help``). ``cli`` is a :class:`voxplug.cli.CommandGroups`: ``cli.app`` is the
    root typer app (``@cli.app.command()`` adds ``voxplug NAME``) and ``cli.group("model")`` is a command group,
    existing (``data``, ``model``, ...) or new. Import heavy libraries inside the command functions, not at the
    top of the plugin: ``voxplug --help`` stays fast only if registering is cheap. Returns nothing.
    """


# --------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------


@hookspec
def after_data_load(config: RunConfig, summary: dict[str, Any]) -> None:
    """The training and evaluation rows are chosen, before the model loads.

    Fires on the main process only. ``summary`` holds ``train_rows``, ``eval_rows``, ``train_seconds``,
    ``eval_seconds``, ``languages`` (rows per language) and ``rejected`` (a list of ``{"row", "reason"}``); with
    ``data.scrub`` set also ``scrub`` (replacement counts per scrubber, never the replaced text). When the training
    rows stream (``streaming`` is true), ``train_rows`` and ``train_seconds`` are None, ``train_rows_before_checks``
    is the source's size when it knows it, and the rows dropped while streaming reach ``data_summary.json`` when
    training ends. Returns nothing.
    """


@hookspec(firstresult=True)
def reading_phrases(language: str) -> tuple[str, list[str]] | None:
    """Sentences from an online corpus for a user to read aloud in ``language`` while recording a dataset.

    Fires on the main process only (the web app's, or a script's), when phrases are asked for and going online is
    allowed (a Hub token, ``HF_HUB_OFFLINE`` unset). ``language`` is an ISO 639-1 code. Return
    ``(corpus, sentences)``, the corpus's name (shown as where the sentences came from) and its sentences, or None
    when the plugin has none in that language; the first answer wins, and voxplug keeps the sentences of reading
    length. Raise when the corpus cannot be read: voxplug falls back to its bundled list.
    """


# --------------------------------------------------------------------------------------------------------------
# Training lifecycle
# --------------------------------------------------------------------------------------------------------------


@hookspec
def before_train(config: RunConfig, run_dir: Path) -> None:
    """Training is about to start: data, model and trainer are ready.

    Fires on the main process only, once per run (also when resuming). ``run_dir`` is the run folder.
    Returns nothing.
    """


@hookspec
def on_log(logs: dict[str, float], step: int, run_dir: Path) -> None:
    """Metrics were logged: ``loss``, ``learning_rate``, ``grad_norm``, ``eval_wer``, throughput, memory, ...

    Fires on the main process only, every ``training.logging_steps`` optimizer steps and after each evaluation,
    and once as each stage after the training loop ends. Resource readings (:mod:`voxplug.training.monitoring`):
    ``samples_per_s``, ``audio_s_per_s``, ``ram_gb``, ``gpu_mem_gb``, ``gpu_mem_peak_gb``, ``gpu_util_pct`` (where
    available) and ``time_<stage>_s`` when a stage has finished. Use it to send metrics elsewhere. Returns nothing.
    """


@hookspec
def on_checkpoint(checkpoint_dir: Path, step: int) -> None:
    """A checkpoint was written to ``checkpoint_dir`` at optimizer step ``step``.

    Fires on the main process only, after every rank finished writing. Returns nothing.
    """


@hookspec
def after_train(config: RunConfig, run_dir: Path, results: dict[str, Any]) -> None:
    """Training finished and the final model is saved in ``run_dir``.

    Fires on the main process only. ``results`` is what ``train_results.json`` holds (steps, runtime, losses,
    throughput, final metrics). Returns nothing.
    """


@hookspec
def on_train_error(config: RunConfig, run_dir: Path, error: BaseException) -> None:
    """Training failed or was interrupted; the last checkpoint (if any) stays in ``run_dir``.

    Fires on the main process only, before the error propagates. Returns nothing; an exception raised here is
    logged and does not hide the original error.
    """


# --------------------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------------------


@hookspec
def after_evaluate(metrics: dict[str, float], predictions_path: Path | None, step: int | None) -> None:
    """A generation-based evaluation finished.

    Fires on the main process only, during training (``step`` is the optimizer step) and for
    ``voxplug evaluate`` (``step`` is None). ``metrics`` has ``wer``, ``cer`` and ``samples``;
    ``predictions_path`` is the per-utterance JSONL. Returns nothing.
    """


# --------------------------------------------------------------------------------------------------------------
# Publishing and deployment
# --------------------------------------------------------------------------------------------------------------


@hookspec
def model_card_sections(card: ModelCard) -> str | list[str] | None:
    """Add Markdown sections to a model card before it is written.

    Fires on the main process only, once per rendered card. ``card`` exposes the metadata and metrics being
    rendered. Return a Markdown string (or a list of them) to append, or None. Every plugin's answer is used,
    in hook-call order.
    """


@hookspec
def before_publish(target: str, model_dir: Path, destination: str) -> None:
    """A model folder is about to be published by the publisher named ``target`` to ``destination``.

    Fires on the main process only. Raise to veto the publish. Returns nothing.
    """


@hookspec
def after_publish(result: PublishResult) -> None:
    """A model or dataset was published; ``result`` has the target, location, URL and files.

    Fires on the main process only. Use it to notify someone or mirror elsewhere. Returns nothing.
    """


@hookspec
def on_publish_error(target: str, destination: str, error: BaseException) -> None:
    """Publishing to ``destination`` with ``target`` failed; nothing partial is left on the target's side.

    Fires on the main process only, before the error propagates. Returns nothing.
    """


@hookspec
def before_deploy(target: str, model_ref: str) -> None:
    """A demo for ``model_ref`` (a Hub repo id or a local path) is about to be deployed with ``target``.

    Fires on the main process only. Raise to veto. Returns nothing.
    """


@hookspec
def after_deploy(result: DeployResult) -> None:
    """A demo was deployed; ``result`` has the target, location and URL.

    Fires on the main process only. Returns nothing.
    """


@hookspec
def on_deploy_error(target: str, model_ref: str, error: BaseException) -> None:
    """Deploying the demo failed.

    Fires on the main process only, before the error propagates. Returns nothing.
    """
