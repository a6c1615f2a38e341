"""The Evaluate tab: WER and CER of the base model and the fine-tuned one on a run's eval split, side by side, and
what changed utterance by utterance (``voxplug evaluate`` as a background job); for a streaming model, live
transcription from the microphone (:mod:`voxplug.app.tabs.live_section`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from voxplug.app.comparison import (
    METRIC_HEADERS,
    UTTERANCE_HEADERS,
    comparison_of_run,
    read_predictions,
    write_eval_manifest,
)
from voxplug.app.jobs import JobConflictError, JobRecord, JobSpec, JobStep
from voxplug.app.tabs import TabHandle, error_text, status_box, table
from voxplug.app.tabs.job_panel import JobPanel, started_notice
from voxplug.app.tabs.live_section import LiveSection
from voxplug.app.ui import PRIVATE, AppContext, Session, workspace_of
from voxplug.app.workspace import Workspace
from voxplug.errors import VoxplugError


def finished_runs(workspace: Workspace) -> list[str]:
    """Runs with a trained model, newest first."""
    return [name for name in workspace.run_names() if (workspace.run_path(name) / "model").is_dir()]


def results_for(run_dir: Path | None) -> list[Any]:
    """Summary, metrics table and utterance table of a run: the comparison once evaluated, else the training's own
    final evaluation of the fine-tuned model."""
    if run_dir is None:
        return ["Pick a finished run.", table([], METRIC_HEADERS), table([], UTTERANCE_HEADERS)]
    comparison = comparison_of_run(run_dir)
    if comparison is not None:
        return [
            comparison.summary(),
            table(comparison.metrics, METRIC_HEADERS),
            table(comparison.utterances, UTTERANCE_HEADERS),
        ]
    tuned = read_predictions(run_dir / "predictions.jsonl")
    rows = [
        [row["id"], row.get("reference", ""), "", row.get("hypothesis", ""), None, row.get("wer"), None]
        for row in tuned
    ]
    note = (
        "Only the fine-tuned model's final evaluation so far: press **Compare with the base model**."
        if tuned
        else "This run has no evaluation yet: press **Compare with the base model**."
    )
    return [note, table([], METRIC_HEADERS), table(rows, UTTERANCE_HEADERS)]


class EvaluateTab:
    """Builds the Evaluate tab and starts evaluation jobs."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def build(self) -> TabHandle:
        """Lay the tab out and wire its events."""
        with gr.Tab("3 · Evaluate", id="evaluate", elem_id="tab-evaluate") as tab:
            gr.Markdown(
                "Transcribe the eval split of a finished run with the **base** model and the **fine-tuned** one, "
                "and compare their word and character error rates, clip by clip."
            )
            with gr.Row():
                self.run = gr.Dropdown([], label="Run", elem_id="evaluate-run", scale=3)
                self.start_button = gr.Button(
                    "Compare with the base model", variant="primary", elem_id="evaluate-start", scale=1
                )
            self.summary = status_box("evaluate-summary")
            self.metrics = gr.Dataframe(table([], METRIC_HEADERS), interactive=False, elem_id="evaluate-metrics")
            self.utterances = gr.Dataframe(
                table([], UTTERANCE_HEADERS),
                interactive=False,
                wrap=True,
                max_chars=80,
                column_widths=["12%", "22%", "22%", "22%", "7%", "8%", "7%"],
                max_height=420,
                label="Clip by clip (regressions first; change = fine-tuned WER - base WER)",
                elem_id="evaluate-utterances",
            )
            results = [self.summary, self.metrics, self.utterances]
            self.panel = JobPanel(self.ctx, ("evaluate",), "evaluate", results=(results, self._finished))
            LiveSection(self.ctx).build(self.run)
        session = self.ctx.session
        self.start_button.click(self.start, [session, self.run], [self.panel.notice], api_visibility=PRIVATE)
        self.run.change(self.show, [session, self.run], results, api_visibility=PRIVATE)
        return TabHandle(self.refresh, self.refresh_outputs).wire(tab, session)

    @property
    def refresh_outputs(self) -> list[Any]:
        """What :meth:`refresh` updates."""
        return [self.run, self.summary, self.metrics, self.utterances]

    def refresh(self, session: Session) -> list[Any]:
        """Offer the workspace's finished runs and show the newest one's results."""
        workspace = workspace_of(session)
        runs = finished_runs(workspace)
        chosen = runs[0] if runs else None
        return [gr.update(choices=runs, value=chosen), *self.show(session, chosen)]

    def show(self, session: Session, run: str | None) -> list[Any]:
        """The results of ``run``."""
        try:
            return results_for(workspace_of(session).run_path(run) if run else None)
        except VoxplugError as exc:
            return [error_text(exc), gr.skip(), gr.skip()]

    @staticmethod
    def _finished(record: JobRecord) -> list[Any]:
        return results_for(Path(record.run_dir) if record.run_dir else None)

    def start(self, session: Session, run: str | None) -> str:
        """Write the eval-split manifest and start ``voxplug evaluate`` on the run's model."""
        try:
            workspace = workspace_of(session)
            if not run:
                raise VoxplugError("choose a finished run to evaluate (train one in the Train tab)")
            run_dir = workspace.run_path(run)
            plan = write_eval_manifest(run_dir)
            args = [
                "evaluate",
                "--model",
                str(run_dir / "model"),
                "--data",
                str(plan.manifest),
                "--out",
                str(plan.out_dir),
            ]
            spec = JobSpec("evaluate", f"Evaluating {run}", [JobStep("evaluate", args)], run_dir=run_dir)
            env, secrets = self.ctx.job_environment(session)
            job = self.ctx.runner.start(spec, workspace, env=env, secrets=secrets)
        except (VoxplugError, JobConflictError) as exc:
            return error_text(exc)
        return f"{started_notice(job.record.title)} {plan.note}"


def build(ctx: AppContext) -> TabHandle:
    """Lay out the Evaluate tab."""
    return EvaluateTab(ctx).build()
