"""The Train tab: pick a dataset, a model and LoRA or full fine-tuning, set the main hyperparameters, and run
``voxplug train`` as a background job with live progress, logs and a loss/WER plot.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import gradio as gr

from voxplug.app.hub_steps import READ_TOKEN_ENV, dataset_push_step, deploy_step, full_repo_id, repo_name
from voxplug.app.jobs import ACCELERATOR_LOCK, Job, JobSpec, JobStep
from voxplug.app.tabs import TabHandle, error_text
from voxplug.app.tabs.job_panel import JobPanel, started_notice
from voxplug.app.tokens import Secret
from voxplug.app.train_form import (
    TINY_MODEL,
    VOXTRAL_MINI,
    VOXTRAL_SMALL,
    TrainForm,
    base_presets,
    check_base_model,
    default_form,
    default_model,
    tiny_model_dir,
    write_run_config,
)
from voxplug.app.ui import PRIVATE, AppContext, Session, workspace_of
from voxplug.app.workspace import Workspace
from voxplug.errors import VoxplugError

OPTIONAL_COUNTS = ("max_train_rows", "max_eval_rows", "eval_steps", "save_steps")
"""Form numbers where 0 or blank means "not set"."""


def form_from_values(values: dict[str, Any]) -> TrainForm:
    """A :class:`TrainForm` from the components' values (blank numbers take the defaults)."""
    defaults = TrainForm()
    cleaned: dict[str, Any] = {}
    for spec in fields(TrainForm):
        value = values.get(spec.name)
        if spec.name in OPTIONAL_COUNTS:
            cleaned[spec.name] = int(value) if value else None
        elif value is None or value == "":
            cleaned[spec.name] = getattr(defaults, spec.name)
        else:
            cleaned[spec.name] = value
    return TrainForm(**cleaned)


class TrainTab:
    """Builds the Train tab and starts training jobs."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.inputs: dict[str, Any] = {}
        default = ctx.settings.model or default_model()
        self.offered_models = frozenset({default, VOXTRAL_MINI, VOXTRAL_SMALL, TINY_MODEL})
        """The base models the page offers (besides workspace folders and Hub ids, see :func:`check_base_model`)."""

    def build(self) -> TabHandle:
        """Lay the tab out and wire its events."""
        defaults = default_form(self.ctx.settings.model)
        with gr.Tab("2 · Train", id="train", elem_id="tab-train") as tab:
            self._choices(defaults)
            self._hyperparameters(defaults)
            self._after_training(defaults)
            self.start_button = gr.Button("Start training", variant="primary", elem_id="train-start")
            self.panel = JobPanel(self.ctx, ("train",), "train", plot=True)
        names = [spec.name for spec in fields(TrainForm)]
        self.start_button.click(
            self.start,
            [self.ctx.session, self.read_token, *[self.inputs[name] for name in names]],
            [self.panel.notice, self.read_token],
            api_visibility=PRIVATE,
        )
        return TabHandle(self.refresh, self.refresh_outputs).wire(tab, self.ctx.session)

    def _choices(self, defaults: TrainForm) -> None:
        models = [(name, name) for name in dict.fromkeys([defaults.model, VOXTRAL_MINI, VOXTRAL_SMALL])]
        models.append(("tiny offline Voxtral with random weights (to try the app on a CPU)", TINY_MODEL))
        with gr.Row():
            self.inputs["dataset"] = gr.Dropdown([], label="Dataset", elem_id="train-dataset")
            self.inputs["model"] = gr.Dropdown(
                models, value=defaults.model, allow_custom_value=True, label="Base model", elem_id="train-model"
            )
            self.inputs["method"] = gr.Radio(
                [("LoRA adapter", "lora"), ("Full fine-tune", "full")],
                value=defaults.method,
                label="Method",
                elem_id="train-method",
            )
        with gr.Row():
            self.inputs["run_name"] = gr.Textbox(
                label="Run name", placeholder="automatic: <dataset>-<method>-<date-time>", elem_id="train-run-name"
            )
            self.inputs["epochs"] = gr.Number(defaults.epochs, label="Epochs", minimum=0.01, elem_id="train-epochs")
            self.inputs["max_steps"] = gr.Number(
                defaults.max_steps, label="Max steps (-1: all epochs)", precision=0, elem_id="train-max-steps"
            )

    def _hyperparameters(self, defaults: TrainForm) -> None:
        number = self._number
        with gr.Accordion("Hyperparameters (defaults from configs/)", open=True):
            with gr.Row():
                self.inputs["batch_size"] = gr.Textbox(
                    defaults.batch_size,
                    label="Batch size (per device)",
                    info="auto: the largest that fits the GPU's free memory",
                    elem_id="train-batch_size",
                )
                number("effective_batch", defaults, "Clips per optimizer step", precision=0, minimum=1)
                number("learning_rate", defaults, "Learning rate", minimum=0)
            with gr.Row():
                number("lora_r", defaults, "LoRA r", precision=0, minimum=1)
                number("lora_alpha", defaults, "LoRA alpha", precision=0, minimum=1)
                number("lora_dropout", defaults, "LoRA dropout", minimum=0, maximum=0.99)
                self.inputs["freeze_audio_tower"] = gr.Checkbox(
                    defaults.freeze_audio_tower, label="Freeze the audio encoder", elem_id="train-freeze-audio"
                )
                self.inputs["scrub"] = gr.Checkbox(
                    defaults.scrub,
                    label="Scrub personal data from transcripts (e-mails, URLs, phone numbers, digits)",
                    info="Replaced before training; the run keeps a report of what was replaced (never published).",
                    elem_id="train-scrub",
                )
            with gr.Row():
                number("max_train_rows", defaults, "Train clips (0: all)", precision=0, minimum=0)
                number("max_eval_rows", defaults, "Eval clips at most (0: no cap)", precision=0, minimum=0)
                number("logging_steps", defaults, "Log every N steps", precision=0, minimum=1)
                number("eval_steps", defaults, "Evaluate every N steps (0: each epoch)", precision=0, minimum=0)
                number("save_steps", defaults, "Checkpoint every N steps (0: each epoch)", precision=0, minimum=0)

    def _number(self, name: str, defaults: TrainForm, label: str, **kwargs: Any) -> None:
        value = getattr(defaults, name)
        self.inputs[name] = gr.Number(0 if value is None else value, label=label, elem_id=f"train-{name}", **kwargs)

    def _after_training(self, defaults: TrainForm) -> None:
        with gr.Accordion("Hub: push the dataset first, publish the model, deploy a demo", open=False):
            gr.Markdown("Needs a Hugging Face token (Publish tab). Leave a repo empty to skip that step.")
            with gr.Row():
                self.inputs["dataset_repo"] = gr.Textbox(
                    label="Push the dataset to (before training)",
                    placeholder="your-name/my-voice",
                    elem_id="train-dataset-repo",
                )
                self.inputs["publish_repo"] = gr.Textbox(
                    label="Publish the model to (after training)",
                    placeholder="your-name/my-voxtral",
                    elem_id="train-publish-repo",
                )
                self.inputs["private"] = gr.Checkbox(defaults.private, label="Private repos", elem_id="train-private")
            with gr.Row():
                self.inputs["deploy"] = gr.Checkbox(
                    defaults.deploy, label="Deploy a demo Space after publishing", elem_id="train-deploy"
                )
                self.read_token = gr.Textbox(
                    type="password",
                    label="Read-only token for a private model's Space (optional)",
                    elem_id="train-read-token",
                )

    @property
    def refresh_outputs(self) -> list[Any]:
        """What :meth:`refresh` updates."""
        return [self.inputs["dataset"]]

    def refresh(self, session: Session) -> list[Any]:
        """Offer the workspace's datasets."""
        names = workspace_of(session).dataset_names()
        return [gr.update(choices=names, value=names[0] if names else None)]

    def start(self, session: Session, read_token: str, *values: Any) -> list[str]:
        """Validate the form, write the run config and start the job: [push the dataset,] train[, deploy].

        A refused start changes nothing: the lock is checked before the config is written, and the config is
        removed again when anything after it fails.
        """
        names = [spec.name for spec in fields(TrainForm)]
        try:
            workspace = workspace_of(session)
            form = form_from_values(dict(zip(names, values, strict=True)))
            if form.uses_hub and self.ctx.token_for(session).source == "none":
                raise VoxplugError("pushing and publishing need a Hugging Face token: add one in the Publish tab")
            form = replace(form, model=check_base_model(form.model, workspace, self.offered_models))
            self.ctx.runner.check_free(ACCELERATOR_LOCK, workspace)
            form, prelude = self._tiny_model(form)
            run_name, config_path, _config = write_run_config(form, workspace)
            try:
                job = self._start_job(session, workspace, form, run_name, config_path, prelude, read_token)
            except BaseException:
                config_path.unlink(missing_ok=True)
                raise
        except VoxplugError as exc:
            return [error_text(exc), ""]
        return [started_notice(job.record.title), ""]

    def _start_job(
        self,
        session: Session,
        workspace: Workspace,
        form: TrainForm,
        run_name: str,
        config_path: Path,
        prelude: list[JobStep],
        read_token: str,
    ) -> Job:
        steps = prelude + self._steps(session, form, config_path, read_token=bool(read_token))
        spec = JobSpec("train", f"Training {run_name}", steps, run_dir=workspace.run_path(run_name))
        extra = {READ_TOKEN_ENV: read_token.strip()} if read_token else {}
        env, secrets = self.ctx.job_environment(session, extra)
        secrets += (Secret(read_token.strip()),) if read_token else ()
        return self.ctx.runner.start(spec, workspace, env=env, secrets=secrets)

    def _tiny_model(self, form: TrainForm) -> tuple[TrainForm, list[JobStep]]:
        """Swap the tiny-model choice for its folder, with a step that builds it when it does not exist yet."""
        if form.model != TINY_MODEL:
            return form, []
        folder = tiny_model_dir(self.ctx.settings.root)
        form = replace(form, model=str(folder))
        built = (folder / "config.json").is_file()
        return form, [] if built else [JobStep("build the tiny model", ["model", "tiny", str(folder)])]

    def _steps(self, session: Session, form: TrainForm, config_path: Path, *, read_token: bool) -> list[JobStep]:
        presets = [arg for preset in base_presets(form.method) for arg in ("-c", preset)]
        steps = [JobStep("train", ["train", *presets, "-c", str(config_path)], tracks_training=True)]
        if form.dataset_repo.strip():
            dataset_dir = workspace_of(session).dataset_path(form.dataset)
            steps.insert(0, dataset_push_step(dataset_dir, form.dataset_repo.strip(), private=form.private))
        if form.deploy:
            model_repo = full_repo_id(
                repo_name(form.publish_repo, "model repo to deploy"), self.ctx.account_for(session)
            )
            steps.append(deploy_step(model_repo, private=form.private, read_token=read_token))
        return steps


def build(ctx: AppContext) -> TabHandle:
    """Lay out the Train tab."""
    return TrainTab(ctx).build()
