"""A job panel: notice, status, progress bar, optional loss and WER plots, live log and a Cancel button.

The panel polls the server's :class:`~voxplug.app.jobs.JobRunner` on a ``gr.Timer`` for the latest job of its kinds
in the session's workspace; nothing about the job is kept in the browser, so a reload shows it again. A tick that
finds nothing new sends nothing (``gr.skip()``), so idle pages cost almost nothing.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from voxplug.app.jobs import Job, JobRecord
from voxplug.app.markdown_text import literal
from voxplug.app.progress import TrainingProgress, progress_from_run_dir
from voxplug.app.tabs import status_box, table
from voxplug.app.ui import PRIVATE, AppContext, Session

CURVES = (
    ("loss", ("loss", "eval_loss")),
    ("error rate on the eval split", ("eval_wer", "eval_cer")),
)
HISTORY_HEADERS = ["started", "job", "status", "took", "exit status"]
RESULT_LINE = re.compile(r"^(published|deployed|pushed)\b.*?(https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+)")
"""A line where a publish, deploy or push command names what it made; the URL stops at anything Markdown reads."""
ICONS = {"running": "…", "succeeded": "✓", "failed": "✗", "cancelled": "■", "interrupted": "⚠"}


def curves_figure(progress: TrainingProgress | None) -> Any:
    """Loss (left) and eval error rates (right) against the optimizer step, as a matplotlib figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.2), dpi=100, layout="tight")
    rows = progress.rows() if progress else []
    for axis, (title, metrics) in zip(figure.subplots(1, 2), CURVES, strict=True):
        for metric in metrics:
            points = [(row["step"], row["value"]) for row in rows if row["metric"] == metric]
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker="o" if len(points) < 30 else None, label=metric)
        axis.set(title=title, xlabel="optimizer step")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
        else:
            axis.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", transform=axis.transAxes)
    return figure


def progress_bar(fraction: float, caption: str) -> str:
    """The progress bar's HTML."""
    percent = round(100 * max(0.0, min(1.0, fraction)))
    return f'<div class="vp-bar"><div style="width:{percent}%"></div></div><div>{html.escape(caption)}</div>'


def result_links(lines: list[str]) -> list[str]:
    """The URLs that publish and deploy commands reported (``published … to URL``, ``deployed …: URL``)."""
    return [match.group(2) for line in lines if (match := RESULT_LINE.match(line.strip()))]


def format_duration(seconds: float) -> str:
    """``1h 02m``, ``3m 07s`` or ``12s``."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_markdown(record: JobRecord, links: list[str]) -> str:
    """One status line for a job record, plus the links it produced."""
    icon = ICONS.get(record.status, "")
    head = f"{icon} **{literal(record.title)}**: {record.status}"
    if record.status == "running":
        step = literal(record.steps[record.step_index]) if record.steps else ""
        head += f" ({step}, step {record.step_index + 1} of {len(record.steps)}) · {format_duration(record.elapsed_s)}"
    else:
        head += f" after {format_duration(record.elapsed_s)}"
        if record.returncode not in (None, 0):
            head += f" · exit status {record.returncode}"
    if record.message:
        head += f"\n\n{literal(record.message)}"
    return head + "".join(f"\n\n→ [{literal(url)}](<{url}>)" for url in links)


def progress_caption(record: JobRecord, progress: TrainingProgress | None) -> tuple[float, str]:
    """Fraction done and a caption: training steps and latest metrics, else the job's step count."""
    if progress is not None and progress.max_steps:
        parts = [f"step {progress.step}/{progress.max_steps} ({progress.fraction:.0%})"]
        for metric, label in (("loss", "loss"), ("eval_wer", "eval WER")):
            value = progress.latest(metric)
            if value is not None:
                parts.append(f"{label} {value:.1%}" if metric == "eval_wer" else f"{label} {value:.3f}")
        parts.append(progress.resources_caption())
        return progress.fraction, " · ".join(part for part in parts if part)
    done = len(record.steps) if record.status == "succeeded" else record.step_index
    total = max(1, len(record.steps))
    return done / total, f"{done} of {total} step(s) done"


class JobPanel:
    """The widgets showing the latest job of ``kinds`` for the session, refreshed by a timer."""

    def __init__(
        self,
        ctx: AppContext,
        kinds: tuple[str, ...],
        prefix: str,
        *,
        plot: bool = False,
        results: tuple[list[Any], Callable[[JobRecord], list[Any]]] | None = None,
    ) -> None:
        """``results``: components to fill when a job succeeds, and how (called with the finished job's record)."""
        self.ctx = ctx
        self.kinds = kinds
        self.result_outputs, self.show_results = results or ([], None)
        self.notice = status_box(f"{prefix}-notice")
        self.status = status_box(f"{prefix}-status", "No job yet.")
        self.bar = gr.HTML(progress_bar(0, ""), elem_id=f"{prefix}-progress")
        self.plots = [gr.Plot(curves_figure(None), label="Training curves", elem_id=f"{prefix}-plot")] if plot else []
        self.cancel_button = gr.Button("Cancel the running job", variant="stop", elem_id=f"{prefix}-cancel")
        self.log = gr.Textbox(
            label="Log",
            lines=12,
            max_lines=12,
            autoscroll=True,
            interactive=False,
            elem_id=f"{prefix}-log",
            elem_classes=["vp-log"],
        )
        with gr.Accordion("Job history", open=False):
            self.history = gr.Dataframe(
                table([], HISTORY_HEADERS), interactive=False, wrap=True, elem_id=f"{prefix}-history"
            )
        self.seen = gr.State(None)
        self.timer = gr.Timer(ctx.settings.poll_s)
        self.timer.tick(
            self.update,
            [ctx.session, self.seen],
            self.outputs,
            api_visibility=PRIVATE,
            show_progress="hidden",
            concurrency_limit=None,  # ticks take milliseconds; they never wait behind a slow event
        )
        self.cancel_button.click(self.cancel, [ctx.session], [self.notice], api_visibility=PRIVATE)

    @property
    def outputs(self) -> list[Any]:
        """What a tick updates (the signature state first)."""
        return [self.seen, self.status, self.bar, *self.plots, self.log, self.history, *self.result_outputs]

    def cancel(self, session: Session) -> str:
        """Cancel the session's latest running job of this panel's kinds."""
        workspace = session.workspace if session else None
        job = self.ctx.runner.latest(workspace, self.kinds) if workspace else None
        if job is None or job.record.finished:
            return "There is no running job to cancel."
        return self.ctx.runner.cancel(job.id, workspace)

    def update(self, session: Session | None, seen: Any) -> list[Any]:
        """One tick: the latest job's status, progress, curves and log, or ``gr.skip()`` when nothing changed."""
        workspace = session.workspace if session else None
        if workspace is None:
            return [gr.skip()] * len(self.outputs)
        job = self.ctx.runner.latest(workspace, self.kinds)
        finished = job.record if job is not None else None
        if job is not None:
            signature: Any = (job.id, job.record.status, job.line_count, job.record.step_index)
            render = lambda: self._render_live(job)  # noqa: E731
        else:
            record = next((r for r in self.ctx.runner.history(workspace) if r.kind in self.kinds), None)
            signature = (record.id, record.status) if record else "none"
            render = lambda: self._render_record(record, workspace.jobs_dir)  # noqa: E731
        if signature == seen:
            return [gr.skip()] * len(self.outputs)
        history = table(self._history_rows(workspace), HISTORY_HEADERS)
        return [signature, *render(), history, *self._results(finished)]

    def _results(self, record: JobRecord | None) -> list[Any]:
        """Fill the result components when the latest job has succeeded (ticks only render on a change)."""
        if self.show_results is None:
            return []
        if record is None or record.status != "succeeded":
            return [gr.skip()] * len(self.result_outputs)
        return self.show_results(record)

    def _history_rows(self, workspace: Any) -> list[list[Any]]:
        return [
            [
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started)),
                record.title,
                record.status,
                format_duration(record.elapsed_s),
                "" if record.returncode is None else record.returncode,
            ]
            for record in self.ctx.runner.history(workspace)
            if record.kind in self.kinds
        ]

    def _render_live(self, job: Job) -> list[Any]:
        lines = list(job.lines)
        progress = job.progress if job.progress.max_steps else None
        return self._render(job.record, progress, lines, job.log_text())

    def _render_record(self, record: JobRecord | None, jobs_dir: Path) -> list[Any]:
        if record is None:
            return self._render(None, None, [], "")
        log_path = jobs_dir / f"{record.id}.log"
        text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.is_file() else ""
        lines = text.splitlines()[-400:]
        progress = progress_from_run_dir(Path(record.run_dir)) if record.run_dir and record.kind == "train" else None
        return self._render(record, progress, lines, "\n".join(lines))

    def _render(
        self, record: JobRecord | None, progress: TrainingProgress | None, lines: list[str], log: str
    ) -> list[Any]:
        if record is None:
            outputs: list[Any] = ["No job yet.", progress_bar(0, "")]
        else:
            fraction, caption = progress_caption(record, progress)
            outputs = [status_markdown(record, result_links(lines)), progress_bar(fraction, caption)]
        outputs += [curves_figure(progress) for _plot in self.plots]
        outputs.append(log)
        return outputs


def started_notice(title: str) -> str:
    """The notice shown when a job starts."""
    return f"▶ Started **{literal(title)}** at {time.strftime('%H:%M:%S')}. Progress and logs appear below."
