"""The gradio page: a header (device, token, workspace) and the Record, Train, Evaluate and Publish tabs.

Every event that changes data or starts work is ``api_visibility="private"``: the page calls it, gradio's client
libraries and the API page do not see it, and the app never serves an MCP endpoint, so nobody can train, push or
deploy through an API the page does not show. Per-user state lives on the server: the workspace and the entered
token are in a ``gr.State`` (server memory), the browser keeps only a random workspace id in its local storage
(``gr.BrowserState``), and running jobs are held by the server's :class:`~voxplug.app.jobs.JobRunner`, so
reloading the page finds them again.

Gradio features that act with the server's own credentials are off: run history (which lists and writes Hugging
Face buckets with the server's token for any request from loopback) and the sign-in button outside a Space (whose
stand-in login signs every visitor in as the owner of the server's token).
"""

from __future__ import annotations

import html
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.app.jobs import JobRunner
from voxplug.app.tokens import ResolvedToken, Secret, ServerTokenMode, ServerTokenPolicy, job_environment, resolve_token
from voxplug.app.workspace import Workspace, is_browser_id, legacy_browser_folders, new_browser_id, workspace_for
from voxplug.errors import VoxplugError

if TYPE_CHECKING:
    import gradio as gr

BROWSER_ID_KEY = "voxplug-workspace-id"
BROWSER_STATE_KEY = "voxplug-workspace-id-v1"
"""What gradio encrypts the browser id with in local storage. Gradio sends this key to every page (the browser
decrypts with it), so it cannot be a secret; what matters is that it never changes, so that a restart or an upgrade
of the app still reads every browser's id. The id itself (128 random bits) is what keeps a workspace its owner's."""
UPLOAD_CACHE = (1800, 3600)
"""Every 30 minutes, delete gradio's cached uploads older than an hour (and all of them when the app stops)."""
PRIVATE = "private"
MAX_UPLOAD = "100mb"
"""Largest file an upload may be (a 30 s clip is a few MB even as 48 kHz stereo WAV)."""
CSS = """
.vp-bar {height: 14px; background: #e5e7eb; border-radius: 7px; overflow: hidden; margin: 4px 0;}
.vp-bar > div {height: 100%; background: #f97316; transition: width .4s;}
.vp-banner {padding: 6px 10px; border-radius: 6px; margin: 2px 0;}
.vp-ok {background: #ecfdf5; color: #065f46;} .vp-warn {background: #fff7ed; color: #9a3412;}
.vp-log textarea {white-space: pre; overflow-x: auto; font-family: ui-monospace, monospace; font-size: 12px;}
"""


@dataclass(frozen=True)
class AppSettings:
    """How the app was started (``voxplug app`` options)."""

    root: Path
    host: str = "127.0.0.1"
    server_token: ServerTokenMode = "auto"
    model: str | None = None
    online_phrases: bool = False
    poll_s: float = 1.0
    share: bool = False


@dataclass
class Session:
    """One browser session's server-side state: its workspace, who is signed in, and the tokens it may use."""

    workspace: Workspace | None = None
    username: str | None = None
    token: Secret | None = None
    token_account: str | None = None
    oauth_token: Secret | None = None


@dataclass
class AppContext:
    """What every tab shares: settings, the job runner, the token policy and the session state component."""

    settings: AppSettings
    runner: JobRunner
    session: gr.State = field(init=False)

    @property
    def policy(self) -> ServerTokenPolicy:
        """Which sessions may use the server's own token."""
        return ServerTokenPolicy(self.settings.server_token, self.settings.host, shared=self.settings.share)

    def token_for(self, session: Session) -> ResolvedToken:
        """The token jobs of ``session`` use (see :mod:`voxplug.app.tokens` for the order)."""
        return resolve_token(session.token, policy=self.policy, username=session.username, oauth=session.oauth_token)

    def account_for(self, session: Session) -> str:
        """The Hub account of the token jobs of ``session`` use (asked with ``whoami`` unless already known)."""
        from voxplug.app.tokens import check_token

        token = self.token_for(session)
        if token.secret is None:
            raise VoxplugError("no Hugging Face token: enter one in the Publish tab")
        if token.source == "entered" and session.token_account:
            return session.token_account
        return check_token(token.secret)

    def job_environment(self, session: Session, extra: dict[str, str] | None = None) -> tuple[dict[str, str], tuple]:
        """The environment for a job of ``session`` and the secrets to redact from its output."""
        token = self.token_for(session)
        env = job_environment(token)
        env.update(extra or {})
        secrets = tuple(secret for secret in (token.secret, session.token, session.oauth_token) if secret)
        return env, secrets


def workspace_of(session: Session | None) -> Workspace:
    """The session's workspace; raises a :class:`VoxplugError` telling the user to reload when there is none."""
    if session is None or session.workspace is None:
        raise VoxplugError("the page is not connected to a workspace yet: reload the page")
    return session.workspace


def device_banner() -> str:
    """HTML saying which accelerator training will use, without importing torch."""
    gpus = _nvidia_gpus()
    if gpus:
        return _banner("ok", f"GPU ready: {', '.join(gpus)}. Voxtral Mini fine-tunes here.")
    space = os.environ.get("SPACE_ID")
    hint = (
        f' <a href="https://huggingface.co/spaces/{space}?duplicate=true" target="_blank">Duplicate this Space</a> '
        "onto GPU hardware to fine-tune Voxtral Mini."
        if space
        else " Use a machine with an NVIDIA GPU to fine-tune Voxtral Mini."
    )
    return _banner("warn", "No GPU found: training runs on the CPU, which suits only the tiny test model." + hint)


def _nvidia_gpus() -> list[str]:
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        output = subprocess.run([program, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(")[0].strip() for line in output.splitlines() if line.startswith("GPU")]


def _banner(kind: str, html: str) -> str:
    return f'<div class="vp-banner vp-{kind}">{html}</div>'


def session_banner(ctx: AppContext, session: Session) -> str:
    """HTML naming the workspace and saying which Hugging Face token jobs would use (never the token)."""
    workspace = workspace_of(session)
    token = ctx.token_for(session)
    if token.source == "none":
        token_html = _banner("warn", "No Hugging Face token: enter one in the Publish tab to push or deploy.")
    else:
        account = f" ({session.token_account})" if token.source == "entered" and session.token_account else ""
        token_html = _banner("ok", html.escape(f"Hub token: {token.describe()}{account}."))
    where = _banner(
        "ok", html.escape(f"Workspace: {workspace.label}. Your datasets and runs are kept apart from other users'.")
    )
    return where + token_html


def build_app(settings: AppSettings, runner: JobRunner | None = None) -> gr.Blocks:
    """Build the page. ``runner`` is shared by every session (one per server)."""
    import gradio as gr

    from voxplug.app.tabs import evaluate_tab, publish_tab, record_tab, train_tab

    ctx = AppContext(settings=settings, runner=runner or JobRunner())
    # Uploads and microphone takes are copied into the workspace when saved; gradio's copies go after an hour.
    with gr.Blocks(title="voxplug", analytics_enabled=False, delete_cache=UPLOAD_CACHE) as demo:
        browser_id = gr.BrowserState(None, storage_key=BROWSER_ID_KEY, secret=BROWSER_STATE_KEY)
        ctx.session = gr.State(Session())
        with gr.Row():
            gr.Markdown("# voxplug\nFine-tune a speech recognition model on **your** voice, in your browser.")
            if hugging_face_sign_in():
                gr.LoginButton()
        gr.HTML(device_banner(), elem_id="device-banner")
        banner = gr.HTML(elem_id="session-banner")
        with gr.Tabs():
            tabs = [
                record_tab.build(ctx),
                train_tab.build(ctx),
                evaluate_tab.build(ctx),
                publish_tab.build(ctx, banner),
            ]
        loaded = demo.load(
            _connect_handler(ctx),
            inputs=[browser_id],
            outputs=[browser_id, ctx.session, banner],
            api_visibility=PRIVATE,
        )
        for tab in tabs:
            loaded.then(tab.handler, inputs=[ctx.session], outputs=tab.refresh_outputs, api_visibility=PRIVATE)
    demo.voxplug_context = ctx  # type: ignore[attr-defined]
    return demo


def hugging_face_sign_in() -> bool:
    """Whether the page offers *Sign in with Hugging Face*: only on a Space with OAuth.

    Elsewhere gradio replaces the sign-in with a stand-in that signs every visitor in as the owner of the server's
    token (and asks the Hub who that is, with that token), which would hand them that user's workspace.
    """
    return bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID"))


def _connect(
    ctx: AppContext,
    browser_id: str | None,
    profile: gr.OAuthProfile | None = None,
    oauth_token: gr.OAuthToken | None = None,
) -> tuple[str, Session, str]:
    """Page load: find (or make) this browser's workspace, or the signed-in user's."""
    browser_id = browser_id if is_browser_id(browser_id) else new_browser_id()
    username = getattr(profile, "username", None)
    session = Session(
        workspace=workspace_for(ctx.settings.root, username=username, browser_id=browser_id),
        username=username,
        oauth_token=Secret(oauth_token.token) if oauth_token is not None else None,
    )
    return browser_id, session, session_banner(ctx, session)


def _connect_handler(ctx: AppContext) -> Any:
    """The page-load handler, annotated with real gradio types so that gradio injects the OAuth profile and token."""
    import gradio as gr

    def connect(browser_id: str | None, profile: Any = None, oauth_token: Any = None) -> tuple[str, Session, str]:
        return _connect(ctx, browser_id, profile, oauth_token)

    connect.__annotations__ = {
        "browser_id": str | None,
        "profile": gr.OAuthProfile | None,
        "oauth_token": gr.OAuthToken | None,
        "return": tuple,
    }
    return connect


def serve(
    settings: AppSettings,
    *,
    port: int | None = None,
    block: bool = True,
    runner: JobRunner | None = None,
) -> Any:
    """Build and launch the app; returns the ``gr.Blocks`` (with ``block=False``, the server keeps running).

    ``runner`` runs the jobs (default: ``python -m voxplug`` subprocesses).
    """
    runner = runner or JobRunner()
    settings.root.mkdir(parents=True, exist_ok=True)
    _report_legacy_workspaces(settings.root)
    demo = build_app(settings, runner)
    if block:
        _stop_on_sigterm()
    demo.queue(default_concurrency_limit=4).launch(
        server_name=settings.host,
        server_port=port,
        share=settings.share,
        mcp_server=False,
        run_history=False,
        enable_monitoring=False,
        footer_links=["gradio"],
        blocked_paths=[str(settings.root.resolve())],
        max_file_size=MAX_UPLOAD,
        prevent_thread_lock=not block,
        quiet=not block,
        css=CSS,
        theme="soft",
    )
    if block:
        runner.shutdown()
    return demo


def _report_legacy_workspaces(root: Path) -> None:
    """Say, at start, how many workspace folders of an earlier layout are no longer opened (see ``workspace``)."""
    legacy = legacy_browser_folders(root)
    if legacy:
        print(
            f"note: {len(legacy)} workspace folder(s) in {root} are named by a browser id (browser-<32 hex digits>, "
            "from an earlier voxplug); the app no longer opens them. See docs/app.md, Workspaces.",
            flush=True,
        )


def _stop_on_sigterm() -> None:
    """Turn SIGTERM (a container stopping) into the Ctrl+C path, so running jobs are stopped, not orphaned."""
    import signal
    import threading

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, interrupt)
