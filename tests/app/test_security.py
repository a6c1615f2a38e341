"""The attacks of a second user, an anonymous visitor and a reader of published files, run against the real app.

Each test does what an attacker did to an earlier version and checks that it no longer works:

- every route the app serves, requested with no session while the server holds an ``HF_TOKEN``, never reaches
  the Hub or answers with the token (gradio's run history used to list and create buckets with it);
- a browser id is never shown or written, and a workspace folder's name (which run files and logs carry) sent back
  as an id opens nothing;
- a restart of the ``voxplug app`` process keeps a browser's workspace, for that browser only;
- transcripts and file names show as text, never as images, links or forms;
- a refused *Start training* changes nothing in the workspace;
- the base-model field reaches no server path and says nothing about which exist;
- a repo name is never read as a command-line option (``--help`` once made a push "succeed");
- jobs inherit no server secret, and ``hf_oauth_`` tokens are redacted from their logs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CONNECTED, expect_text, expect_value, open_page, upload

from voxplug.app.jobs import JobRunner, JobSpec, JobStep
from voxplug.app.tokens import Secret
from voxplug.app.ui import AppContext, AppSettings, Session
from voxplug.app.workspace import Workspace
from voxplug.errors import ConfigError
from voxplug.testing import free_port

HERE = Path(__file__).resolve().parent
SERVER_TOKEN = "hf_voxplugServerSecret0123456789"
"""The server's own token in these tests: recognisable in any answer, and a real account on the test Hub."""
OAUTH_WITHOUT_SPACE = {
    "OAUTH_CLIENT_ID": "voxplug-test-client",
    "OAUTH_CLIENT_SECRET": "voxplug-test-oauth-secret",
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "http://127.0.0.1:9",
}
"""Sign-in variables on a machine that is not a Space (gradio then signs visitors in as the token's owner)."""
BEACON = "http://127.0.0.1:9/beacon"
"""Where injected images, links and forms point: nothing listens there, and the page must never ask."""


def server_environment(hub: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a server whose own token is :data:`SERVER_TOKEN`, talking to ``hub``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGING", "SPACE_", "OAUTH_", "OPENID_", "GRADIO_"))
    }
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=SERVER_TOKEN, HF_HUB_DISABLE_XET="1", GRADIO_ANALYTICS_ENABLED="False")
    return env | (extra or {})


def scan_routes(hub: Any, args: list[str], extra_env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Serve the app (or demo) in a fresh process and request every route it serves (``route_scan.py``)."""
    process = subprocess.run(
        [sys.executable, str(HERE / "route_scan.py"), *args],
        env=server_environment(hub, extra_env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]


def assert_nothing_acted_with_the_token(results: list[dict[str, Any]], hub: Any) -> None:
    paths = {result["path"] for result in results}
    assert {"/config", "/gradio_api/queue/join", "/gradio_api/upload"} <= paths, "the scan missed gradio's API"
    assert [result for result in results if result["token"]] == [], "a route answered with the server's token"
    assert hub.requests == [], f"a request with no session made the server call the Hub: {hub.requests}"


# ------------------------------------------------------------------------------------ every route, no session


@pytest.mark.slow
@pytest.mark.parametrize("extra_env", [{}, OAUTH_WITHOUT_SPACE], ids=["loopback", "oauth-variables-off-a-space"])
def test_no_route_of_the_app_acts_with_the_servers_token(
    hub_server: Any, tmp_path: Path, extra_env: dict[str, str]
) -> None:
    hub_server.add_token(SERVER_TOKEN, "server-owner")
    results = scan_routes(hub_server, ["app", str(tmp_path / "root"), "never"], extra_env)
    assert_nothing_acted_with_the_token(results, hub_server)


@pytest.mark.slow
def test_no_route_of_the_demo_acts_with_the_spaces_token(hub_server: Any, tiny_voxtral: Path) -> None:
    hub_server.add_token(SERVER_TOKEN, "space-owner")
    assert_nothing_acted_with_the_token(scan_routes(hub_server, ["demo", str(tiny_voxtral)]), hub_server)


# ------------------------------------------------------------------------------------ jobs' environment


PRINT_ENVIRONMENT = (
    sys.executable,
    "-c",
    "import os; print('names', sorted(os.environ)); print('oauth token hf_oauth_AbCdEf0123456789XyZabc')",
)


def test_jobs_inherit_no_server_secret_and_oauth_tokens_are_redacted(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "OAUTH_CLIENT_SECRET": "oauth-secret",
        "DATABASE_URL": "postgres://voxplug:password@db/voxplug",
        "WANDB_API_KEY": "wandb-key",
        "VOXPLUG_API_KEY": "plugin-key",
        "HF_WRITE_TOKEN": "hf_serverWriteToken123456",
        "HF_TOKEN": SERVER_TOKEN,
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    ctx = AppContext(AppSettings(root=workspace.root, server_token="never"), JobRunner(program=PRINT_ENVIRONMENT))
    env, job_secrets = ctx.job_environment(Session(workspace, token=Secret("hf_enteredByTheUser12345")))
    job = ctx.runner.start(JobSpec("publish", "env", [JobStep("env", [])], lock="hub:x"), workspace, env=env)
    assert ctx.runner.wait(job, 60) and job.record.status == "succeeded", job.log_text()
    names = re.search(r"names (\[.*\])", job.log_text()).group(1)
    inherited = set(json.loads(names.replace("'", '"')))
    assert inherited & set(secrets) == {"HF_TOKEN"}  # the entered token, as HF_TOKEN, and no other secret
    assert {"PATH", "HF_ENDPOINT"} <= inherited
    assert "hf_oauth_" not in job.log_text() and "oauth token hf_***" in job.log_text()
    assert env["HF_TOKEN"] == "hf_enteredByTheUser12345" and job_secrets


def test_a_public_share_link_never_lends_the_servers_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SERVER_TOKEN)
    monkeypatch.delenv("SPACE_ID", raising=False)
    on_loopback = AppContext(AppSettings(root=tmp_path), JobRunner())
    shared = AppContext(AppSettings(root=tmp_path, share=True), JobRunner())  # voxplug app --share
    assert on_loopback.token_for(Session()).source == "server"
    assert shared.token_for(Session()).source == "none"  # a gradio.live link reaches loopback from anywhere


# ------------------------------------------------------------------------------------ the base-model field


def test_the_base_model_is_one_offered_a_workspace_folder_or_a_hub_id(workspace: Workspace, tmp_path: Path) -> None:
    from voxplug.app.train_form import check_base_model

    (workspace.runs_dir / "r1" / "model").mkdir(parents=True)
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (workspace.path / "escape").symlink_to(outside)
    offered = {"mistralai/Voxtral-Mini-3B-2507", "/srv/models/default"}
    assert check_base_model("/srv/models/default", workspace, offered) == "/srv/models/default"
    assert check_base_model("runs/r1/model", workspace, offered) == str((workspace.runs_dir / "r1" / "model").resolve())
    assert check_base_model("someone/voxtral-ft", workspace, offered) == "someone/voxtral-ft"
    refusals = {}
    for value in (str(outside), "/etc", "/no/such/folder", "../../..", "escape", "~/models", "-h", ""):
        with pytest.raises(ConfigError) as refused:
            check_base_model(value, workspace, offered)
        refusals[value] = str(refused.value).replace(repr(value), "<value>")
    assert len(set(refusals.values())) == 1, refusals  # the same words whether the path exists or not


# ------------------------------------------------------------------------------------ in a real browser


def load_fn_index(app_url: str) -> int:
    """The event that sends the browser's stored id on page load (the one whose only input is the BrowserState)."""
    import httpx

    config = httpx.get(app_url + "config", timeout=30).json()
    state = next(c["id"] for c in config["components"] if c.get("type") == "browserstate")
    return next(dep["id"] for dep in config["dependencies"] if dep["inputs"] == [state])


def sent_browser_ids(page: Any) -> list[str]:
    """Start recording the browser ids the page sends (32 hex digits in a queue request's data)."""
    seen: list[str] = []

    def record(request: Any) -> None:
        if "/gradio_api/queue/join" in request.url:
            data = (request.post_data_json or {}).get("data") or []
            seen.extend(value for value in data if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value))

    page.on("request", record)
    return seen


def send_id_on_load(context: Any, fn_index: int, browser_id: str) -> None:
    """Make every page of ``context`` send ``browser_id`` on load, as a browser holding that id would."""

    def swap(route: Any) -> None:
        body = route.request.post_data_json or {}
        if body.get("fn_index") == fn_index:
            body["data"] = [browser_id]
            route.continue_(post_data=json.dumps(body))
        else:
            route.continue_()

    context.route("**/gradio_api/queue/join*", swap)


def workspace_holding(root: Path, text: str) -> Path:
    """The workspace folder under ``root`` whose ``my-voice`` dataset holds a clip with transcript ``text``."""
    rows = [path for path in root.glob("*/datasets/my-voice/data.jsonl") if text in path.read_text()]
    assert len(rows) == 1, rows
    return rows[0].parents[2]


def page_with_a_clip(context: Any, url: str, root: Path, clip: tuple[Path, str]) -> tuple[Any, Path]:
    """A new visitor's page that saved ``clip`` into its ``my-voice`` dataset, and its workspace folder."""
    page = open_page(context, url)
    upload(page, [clip[0]], clip[1])
    expect_text(page, "#dataset-summary", r"1 clip")
    return page, workspace_holding(root, clip[1])


def files_and_names(root: Path) -> bytes:
    """Every path under ``root`` and every file's bytes, to look for a string anywhere the app wrote."""
    parts = []
    for path in sorted(root.rglob("*")):
        parts.append(str(path).encode())
        if path.is_file():
            parts.append(path.read_bytes())
    return b"\n".join(parts)


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="module")
def app_url(app_root: Path, hub: Any) -> Iterator[str]:
    """The app on loopback, with real ``python -m voxplug`` jobs (talking to the test Hub)."""
    from voxplug.app.ui import serve

    demo = serve(AppSettings(root=app_root, poll_s=0.5), port=free_port(), block=False)
    yield demo.local_url
    demo.voxplug_context.runner.shutdown()
    demo.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile (its own local storage), closed after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    yield context
    context.close()


@pytest.mark.browser
def test_a_workspace_key_is_never_shown_and_a_leaked_folder_name_opens_nothing(
    browser: Any, context: Any, app_url: str, app_root: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    path, text = speech_clips[3]
    victim = open_page(context, app_url)
    upload(victim, [path], text)
    expect_text(victim, "#dataset-table", re.escape(text))
    sent = sent_browser_ids(victim)
    victim.reload()
    victim.wait_for_selector(CONNECTED, timeout=30_000)
    expect_text(victim, "#dataset-summary", r"Consent: given")
    assert sent, "the page sent no browser id on reload"
    key = sent[0]
    for tab in ("1 · Record", "2 · Train", "3 · Evaluate", "4 · Publish & deploy"):
        victim.get_by_role("tab", name=tab).click()
        assert key not in victim.content() and key[:12] not in victim.inner_text("body"), f"the key shows in {tab}"
    assert key.encode() not in files_and_names(app_root), "the key was written under the app's root"

    folder = workspace_holding(app_root, text)
    hexdigits = folder.name.split("-", 1)[1]
    for leaked in (hexdigits, hexdigits[:32], folder.name):
        attacker_context = browser.new_context()
        send_id_on_load(attacker_context, load_fn_index(app_url), leaked)
        attacker = open_page(attacker_context, app_url)
        expect_text(attacker, "#dataset-summary", r"empty")
        assert text not in attacker.inner_text("body"), f"the folder name {leaked!r} opened the victim's workspace"
        attacker_context.close()
    victim.reload()
    expect_text(victim, "#dataset-table", re.escape(text))


@pytest.mark.browser
def test_status_messages_show_user_text_as_text(
    context: Any, app_url: str, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    page = open_page(context, app_url)
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "beacon" in request.url else None)
    payload = (
        f"Look ![pixel]({BEACON}.png) <img src={BEACON}.gif> [click here]({BEACON}) "
        f'<form action="{BEACON}"><input name=q></form> <a href="{BEACON}">there</a> $$x^2$$ done'
    )
    not_audio = tmp_path / "[click](evil.example) [pixel](beacon.png).txt"  # gradio keeps brackets in names
    not_audio.write_text("not audio\n")
    path, _text = speech_clips[4]
    upload(page, [path, not_audio], f"{payload}\nsecond line")
    status = expect_text(page, "#upload-status", r"not a readable audio file")
    assert "![pixel](" in status and "<form action=" in status and "$$x^2$$" in status  # shown as typed
    assert "[click](evil.example) [pixel](beacon.png).txt" in status
    expect_text(page, "#dataset-table", re.escape("[click here]"))
    for selector in ("#upload-status", "#dataset-summary", "#dataset-table"):
        rendered = page.locator(selector)
        assert rendered.locator("img, a, form, input[name=q], .katex").count() == 0, rendered.inner_html()
    page.locator("#dataset-table [role=gridcell]", has_text="click here").first.click()
    page.click("#delete-row")
    expect_text(page, "#row-status", r"deleted row .*<img src=")
    assert page.locator("#row-status").locator("img, a, form").count() == 0
    assert asked == [], f"the page fetched what a transcript or file name named: {asked}"


@pytest.mark.browser
def test_the_base_model_field_reaches_no_server_path(
    context: Any, app_url: str, app_root: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    page, workspace = page_with_a_clip(context, app_url, app_root, speech_clips[5])
    page.get_by_role("tab", name="2 · Train").click()
    expect_value(page, "#train-dataset input", "my-voice")
    notices = {}
    for server_path in ("/etc", "/no/such/folder"):
        model = page.locator("#train-model input")
        model.fill(server_path)
        model.press("Enter")
        page.click("#train-start")
        notices[server_path] = expect_text(page, "#train-notice", re.escape(server_path) + r".*Hugging Face model id")
    assert notices["/etc"].replace("/etc", "X") == notices["/no/such/folder"].replace("/no/such/folder", "X")
    assert list((workspace / "configs").iterdir()) == [] and list((workspace / "jobs").iterdir()) == []


@pytest.mark.browser
def test_a_repo_name_is_never_read_as_an_option(
    context: Any, app_url: str, app_root: Path, hub: Any, speech_clips: list[tuple[Path, str]]
) -> None:
    page, workspace = page_with_a_clip(context, app_url, app_root, speech_clips[6])
    page.get_by_role("tab", name="4 · Publish & deploy").click()
    page.locator("#hf-token input").fill(hub.token)
    page.click("#use-token")
    expect_text(page, "#token-status", r"token accepted")
    for repo in ("--help", "-h", "--public"):
        page.locator("#dataset-repo textarea").fill(repo)
        page.click("#push-dataset")
        expect_text(page, "#publish-notice", re.escape(repo) + r".* is not a repo id")
    assert "Started" not in page.inner_text("#publish-notice")
    expect_text(page, "#publish-status", r"No job yet")
    assert list((workspace / "jobs").iterdir()) == []


# ------------------------------------------------------------------------------------ a refused start


@pytest.fixture(scope="module")
def blocked_app(app_root: Path, hub: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The app, whose jobs wait until the returned file exists (a training that holds the accelerator)."""
    from voxplug.app.ui import serve

    release = tmp_path_factory.mktemp("release") / "go"
    wait = "import pathlib, sys, time\nwhile not pathlib.Path(sys.argv[1]).exists(): time.sleep(0.05)"
    runner = JobRunner(program=(sys.executable, "-c", wait, str(release)), cancel_grace_s=1)
    demo = serve(AppSettings(root=app_root / "blocked", poll_s=0.5), port=free_port(), block=False, runner=runner)
    yield demo.local_url, release
    release.touch()
    runner.shutdown()
    demo.close()


def start_training(page: Any, run_name: str, epochs: float) -> str:
    """Open the Train tab afresh, name the run, set the epochs, press *Start training*; the notice it got."""
    page.reload()
    page.wait_for_selector(CONNECTED, timeout=30_000)
    page.get_by_role("tab", name="2 · Train").click()
    expect_value(page, "#train-dataset input", "my-voice")
    page.locator("#train-run-name textarea").fill(run_name)
    page.locator("#train-epochs input").fill(str(epochs))
    page.locator("#train-epochs input").press("Tab")
    page.click("#train-start")
    return expect_text(page, "#train-notice", r"Started|✗")


@pytest.mark.browser
def test_a_refused_second_start_changes_nothing(
    context: Any, blocked_app: tuple[str, Path], app_root: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    url, _release = blocked_app
    page, workspace = page_with_a_clip(context, url, app_root / "blocked", speech_clips[7])
    assert "Started" in start_training(page, "first-run", 1)
    configs = workspace / "configs"
    before = {p.name: p.read_bytes() for p in configs.iterdir()}
    assert list(before) == ["first-run.yaml"]
    for run_name in ("first-run", ""):  # the running job's name, and a new automatic one
        assert re.search(r"already running.*you started", start_training(page, run_name, 7))
        assert {p.name: p.read_bytes() for p in configs.iterdir()} == before


# ------------------------------------------------------------------------------------ a restart


def start_app_process(root: Path, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    """``voxplug app`` as a server runs it, once it answers on ``port``."""
    import httpx

    process = subprocess.Popen(
        [sys.executable, "-m", "voxplug", "app", "--root", str(root), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.25)
    process.kill()
    raise AssertionError(f"voxplug app did not start: {process.communicate()[0][-3000:]}")


def stop_app_process(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


@pytest.mark.browser
@pytest.mark.slow
def test_a_restart_keeps_each_browsers_workspace_for_that_browser_only(
    browser: Any, context: Any, hub: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    root, port = tmp_path / "root", free_port()
    url = f"http://127.0.0.1:{port}/"
    env = server_environment(hub) | {"HF_TOKEN_PATH": os.devnull}
    del env["HF_TOKEN"]
    process = start_app_process(root, port, env)
    try:
        page = open_page(context, url)
        path, text = speech_clips[8]
        upload(page, [path], text)
        expect_text(page, "#dataset-table", re.escape(text))
        sent = sent_browser_ids(page)
        page.reload()
        expect_text(page, "#dataset-table", re.escape(text))
        stop_app_process(process)
        process = start_app_process(root, port, env)
        page.reload()
        page.wait_for_selector(CONNECTED, timeout=30_000)
        expect_text(page, "#dataset-table", re.escape(text))
        assert len(sent) == 2 and sent[0] == sent[1]  # the browser kept its id: it was read, not replaced
        stranger_context = browser.new_context()
        stranger = open_page(stranger_context, url)
        expect_text(stranger, "#dataset-summary", r"empty")
        assert text not in stranger.inner_text("body")
        stranger_context.close()
    finally:
        stop_app_process(process)
