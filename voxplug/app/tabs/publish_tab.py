"""The Publish tab: a Hugging Face token entered once, then push the dataset, publish the model and deploy a Space.

The token goes into a password field once; it is checked with ``whoami``, kept in the session's server-side
state, the field is cleared, and the page only ever says whose token it is. Jobs get it as ``HF_TOKEN`` in their
environment (never on a command line, never in a file), every job uses the same token, and their output is
redacted.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from voxplug.app.hub_steps import (
    PUSH_SCRUBBERS,
    READ_TOKEN_ENV,
    dataset_push_step,
    deploy_step,
    publish_step,
    repo_name,
)
from voxplug.app.jobs import JobConflictError, JobSpec, JobStep
from voxplug.app.markdown_text import literal
from voxplug.app.tabs import TabHandle, error_text, status_box
from voxplug.app.tabs.job_panel import JobPanel, started_notice
from voxplug.app.tokens import Secret, check_token
from voxplug.app.ui import PRIVATE, AppContext, Session, session_banner, workspace_of
from voxplug.errors import VoxplugError

HARDWARE_CHOICES = [
    ("keep the Space's hardware (cpu-basic for a new Space)", ""),
    ("t4-small (GPU, billed)", "t4-small"),
    ("l4x1 (GPU, billed)", "l4x1"),
    ("a10g-small (GPU, billed)", "a10g-small"),
    ("cpu-upgrade", "cpu-upgrade"),
]


class PublishTab:
    """Builds the Publish tab and starts publishing jobs."""

    def __init__(self, ctx: AppContext, banner: Any) -> None:
        self.ctx = ctx
        self.banner = banner

    def build(self) -> TabHandle:
        """Lay the tab out and wire its events."""
        with gr.Tab("4 · Publish & deploy", id="publish", elem_id="tab-publish") as tab:
            self._token_box()
            self._dataset_box()
            self._model_box()
            self._space_box()
            self.panel = JobPanel(self.ctx, ("publish",), "publish")
        self._wire()
        return TabHandle(self.refresh, self.refresh_outputs).wire(tab, self.ctx.session)

    def _token_box(self) -> None:
        gr.Markdown(
            "### Hugging Face token\nEnter a token with **write** access once: it stays in this server's memory for "
            "this session only and is never shown again. Without one, the server's own token is used only where "
            "that is allowed (see docs/app.md)."
        )
        with gr.Row(equal_height=True):
            self.token = gr.Textbox(type="password", label="Token", placeholder="hf_…", elem_id="hf-token", scale=3)
            self.use_token_button = gr.Button("Use this token", variant="primary", elem_id="use-token", scale=1)
            self.forget_token_button = gr.Button("Forget it", elem_id="forget-token", scale=1)
        self.token_status = status_box("token-status")

    def _dataset_box(self) -> None:
        gr.Markdown("### Push a dataset")
        with gr.Row():
            self.dataset = gr.Dropdown([], label="Dataset", elem_id="publish-dataset")
            self.dataset_repo = gr.Textbox(
                label="Dataset repo", placeholder="your-name/my-voice", elem_id="dataset-repo"
            )
            self.dataset_private = gr.Checkbox(True, label="Private", elem_id="dataset-private")
            self.dataset_scrub = gr.Checkbox(
                True,
                label="Scrub e-mails, web addresses, phone and long numbers from transcripts",
                elem_id="dataset-scrub",
            )
            self.push_dataset_button = gr.Button("Push dataset", elem_id="push-dataset")

    def _model_box(self) -> None:
        gr.Markdown("### Publish a trained model")
        with gr.Row():
            self.run = gr.Dropdown([], label="Run", elem_id="publish-run")
            self.model_repo = gr.Textbox(label="Model repo", placeholder="your-name/my-voxtral", elem_id="model-repo")
            self.model_private = gr.Checkbox(True, label="Private", elem_id="model-private")
            self.publish_model_button = gr.Button("Publish model", elem_id="publish-model")

    def _space_box(self) -> None:
        gr.Markdown("### Deploy a demo Space for a published model")
        with gr.Row():
            self.space_model = gr.Textbox(label="Published model repo", elem_id="space-model")
            self.space_id = gr.Textbox(label="Space (empty: <model>-demo)", elem_id="space-id")
            self.hardware = gr.Dropdown(HARDWARE_CHOICES, value="", label="Hardware", elem_id="space-hardware")
            self.space_private = gr.Checkbox(True, label="Private", elem_id="space-private")
        with gr.Row():
            self.read_token = gr.Textbox(
                type="password",
                label="Read-only token for the Space (optional; needed for a private model)",
                elem_id="space-read-token",
            )
            self.deploy_button = gr.Button("Deploy Space", elem_id="deploy-space")

    def _wire(self) -> None:
        session = self.ctx.session
        self.use_token_button.click(
            self.use_token,
            [session, self.token],
            [session, self.token, self.token_status, self.banner],
            api_visibility=PRIVATE,
        )
        self.forget_token_button.click(
            self.forget_token, [session], [session, self.token_status, self.banner], api_visibility=PRIVATE
        )
        self.push_dataset_button.click(
            self.push_dataset,
            [session, self.dataset, self.dataset_repo, self.dataset_private, self.dataset_scrub],
            [self.panel.notice],
            api_visibility=PRIVATE,
        )
        self.publish_model_button.click(
            self.publish_model,
            [session, self.run, self.model_repo, self.model_private],
            [self.panel.notice, self.space_model],
            api_visibility=PRIVATE,
        )
        self.deploy_button.click(
            self.deploy,
            [session, self.space_model, self.space_id, self.hardware, self.space_private, self.read_token],
            [self.panel.notice, self.read_token],
            api_visibility=PRIVATE,
        )

    @property
    def refresh_outputs(self) -> list[Any]:
        """What :meth:`refresh` updates."""
        return [self.dataset, self.run, self.token_status]

    def refresh(self, session: Session) -> list[Any]:
        """Offer the workspace's datasets and finished runs; say which token is in use."""
        workspace = workspace_of(session)
        datasets = workspace.dataset_names()
        runs = [name for name in workspace.run_names() if (workspace.run_path(name) / "model").is_dir()]
        return [
            gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=runs, value=runs[0] if runs else None),
            self._token_line(session),
        ]

    def _token_line(self, session: Session) -> str:
        token = self.ctx.token_for(session)
        account = f" (account **{literal(session.token_account)}**)" if token.source == "entered" else ""
        return f"Jobs use {token.describe()}{account}."

    # -- token ----------------------------------------------------------------------------------------------

    def use_token(self, session: Session, text: str) -> list[Any]:
        """Check the entered token with the Hub, keep it in the session, clear the field."""
        text = (text or "").strip()
        if not text:
            return [session, "", "✗ the token field is empty", gr.skip()]
        secret = Secret(text)
        try:
            account = check_token(secret)
        except VoxplugError as exc:
            return [session, "", error_text(exc), gr.skip()]
        session.token, session.token_account = secret, account
        return [session, "", f"✓ token accepted for account **{literal(account)}**", session_banner(self.ctx, session)]

    def forget_token(self, session: Session) -> list[Any]:
        """Drop the session's token."""
        session.token, session.token_account = None, None
        return [session, "Token forgotten. " + self._token_line(session), session_banner(self.ctx, session)]

    # -- jobs -----------------------------------------------------------------------------------------------

    def push_dataset(self, session: Session, dataset: str | None, repo: str, private: bool, scrub: bool = True) -> str:
        """Start ``voxplug data push`` (with ``--scrub`` of :data:`~voxplug.app.hub_steps.PUSH_SCRUBBERS` if asked)."""
        try:
            workspace = workspace_of(session)
            if not dataset:
                raise VoxplugError("choose a dataset to push")
            path, repo = workspace.dataset_path(dataset), repo_name(repo, "dataset repo")
            step = dataset_push_step(path, repo, private=private, scrub=PUSH_SCRUBBERS if scrub else ())
            return self._start(session, f"Pushing dataset {dataset}", [step])
        except VoxplugError as exc:
            return error_text(exc)

    def publish_model(self, session: Session, run: str | None, repo: str, private: bool) -> list[str]:
        """Start ``voxplug publish``; the repo is copied into the Space box for the next step."""
        try:
            workspace = workspace_of(session)
            if not run:
                raise VoxplugError("choose a finished run to publish")
            repo = repo_name(repo, "model repo")
            step = publish_step(workspace.run_path(run), repo, private=private)
            return [self._start(session, f"Publishing {run}", [step]), repo]
        except VoxplugError as exc:
            return [error_text(exc), gr.skip()]

    def deploy(
        self, session: Session, model_repo: str, space_id: str, hardware: str, private: bool, read_token: str
    ) -> list[str]:
        """Start ``voxplug deploy``; the optional read token travels as ``HF_READ_TOKEN`` in the job's environment."""
        try:
            model_repo = repo_name(model_repo, "published model repo")
            steps = [
                deploy_step(
                    model_repo, private=private, space_id=space_id, hardware=hardware, read_token=bool(read_token)
                )
            ]
            extra = {READ_TOKEN_ENV: read_token.strip()} if read_token else {}
            secrets = (Secret(read_token.strip()),) if read_token else ()
            return [self._start(session, f"Deploying a demo of {model_repo}", steps, extra, secrets), ""]
        except VoxplugError as exc:
            return [error_text(exc), ""]

    def _start(
        self,
        session: Session,
        title: str,
        steps: list[JobStep],
        extra_env: dict[str, str] | None = None,
        extra_secrets: tuple[Secret, ...] = (),
    ) -> str:
        workspace = workspace_of(session)
        if self.ctx.token_for(session).source == "none":
            raise VoxplugError("no Hugging Face token: enter one above (or start the app with HF_TOKEN set)")
        env, secrets = self.ctx.job_environment(session, extra_env)
        spec = JobSpec("publish", title, steps, lock=f"hub:{workspace.key}")
        try:
            job = self.ctx.runner.start(spec, workspace, env=env, secrets=secrets + extra_secrets)
        except JobConflictError as exc:
            return error_text(exc)
        return started_notice(job.record.title)


def build(ctx: AppContext, banner: Any) -> TabHandle:
    """Lay out the Publish tab."""
    return PublishTab(ctx, banner).build()
