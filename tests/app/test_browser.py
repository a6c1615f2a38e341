"""The web app in a real headless Chromium (Debian's, driven by Playwright): record tab, training, bad inputs.

One app server and one browser serve the whole module; each test opens its own page (its own workspace, as a new
visitor would). Screenshots go to ``test-artifacts/app/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import CONNECTED, expect_text, expect_value, give_consent, open_page, shoot, upload

from voxplug.testing import free_port

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny offline Voxtral, the Train tab's default model here (as ``voxplug app --model`` would set it)."""
    from voxplug_voxtral.tiny import build_tiny_voxtral

    return build_tiny_voxtral(tmp_path_factory.mktemp("tiny-voxtral"))


@pytest.fixture(scope="module")
def app_url(app_root: Path, tiny_model: Path, hub: Any) -> Iterator[str]:
    """The app served on loopback for this module."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from voxplug.app.ui import AppSettings, serve

    settings = AppSettings(root=app_root, model=str(tiny_model), poll_s=0.5)
    demo = serve(settings, port=free_port(), block=False)
    yield demo.local_url
    demo.voxplug_context.runner.shutdown()
    demo.close()


@pytest.fixture
def page(browser: Any, app_url: str) -> Iterator[Any]:
    """A fresh visitor's page, loaded and connected to its workspace."""
    context = browser.new_context(viewport={"width": 1280, "height": 1600}, permissions=["microphone"])
    yield open_page(context, app_url)
    context.close()


def wait_for_recorder_upload(page: Any) -> None:
    """Wait until the recorder's clip reached the server: its player then shows the clip's length (0:02)."""
    expect_text(page, "#recorder", r"0:0[1-9]|0:[1-5]\d")


def test_upload_a_clip_and_see_the_row(page: Any, speech_clips: list[tuple[Path, str]]) -> None:
    path, text = speech_clips[0]
    expect_text(page, "#phrase-counter", r"Phrase 1 of 10")
    expect_text(page, "#dataset-summary", r"empty")
    upload(page, [path], text)
    expect_text(page, "#upload-status", r"saved")
    expect_text(page, "#dataset-table", re.escape(text))
    expect_text(page, "#dataset-summary", r"1 clip\(s\)")
    page.locator("#dataset-table [role=gridcell]", has_text=text).first.click()
    expect_value(page, "#row-text textarea", text)
    shoot(page, "01-record-upload")


def test_bad_uploads_show_messages_and_the_app_keeps_serving(
    page: Any, tmp_path: Path, speech_clips: list[tuple[Path, str]]
) -> None:
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("these are my notes, not audio\n")
    upload(page, [not_audio], "hello there")
    expect_text(page, "#upload-status", r"notes\.txt: not a readable audio file.*looks like text")
    path, _text = speech_clips[1]
    page.click("#recorder button[aria-label='Upload file']")
    page.locator("#recorder input[type=file]").set_input_files(str(path))
    wait_for_recorder_upload(page)
    page.locator("#transcript textarea").fill("")
    page.click("#save-clip")
    expect_text(page, "#save-status", r"the transcript is empty")
    shoot(page, "02-record-bad-inputs")
    page.locator("#transcript textarea").fill("A good transcript this time.")
    page.click("#save-clip")
    expect_text(page, "#save-status", r"saved")
    expect_text(page, "#dataset-table", r"A good transcript this time\.")
    expect_text(page, "#phrase-counter", r"Phrase 2 of 10")


def test_record_from_the_microphone_saves_16k_mono(page: Any, app_root: Path) -> None:
    from voxplug.data.store import DatasetStore

    first_phrase = page.locator("#transcript textarea").input_value()
    page.click("#recorder button.record-button")
    page.wait_for_timeout(2000)
    # the player shows the clip as soon as it stops; the server has it only once the browser's upload returns
    with page.expect_response(lambda response: "/upload" in response.url, timeout=60_000):
        page.click("#recorder button.stop-button")
    wait_for_recorder_upload(page)
    page.click("#save-clip")
    expect_text(page, "#save-status", r"Nothing was saved: tick the consent box")  # a new dataset asks first
    give_consent(page)
    page.click("#save-clip")
    expect_text(page, "#save-status", "saved: ." + re.escape(first_phrase))
    expect_text(page, "#dataset-summary", r"Consent: given .* by anonymous browser")
    expect_text(page, "#phrase-counter", r"Phrase 2 of 10")
    expect_text(page, "#phrase-list", r"✓")
    shoot(page, "03-record-microphone")
    stores = [DatasetStore.open(path) for path in app_root.glob("browser-*/datasets/my-voice")]
    (store, row) = next((store, row) for store in stores for row in store.rows() if row["text"] == first_phrase)
    assert row["origin"] == "recording" and row["sample_rate"] in (44100, 48000)  # the browser's rate
    assert store.metadata["consent"]["agreed_by"].startswith("anonymous browser")
    assert sf_info(store.audio_file(row)) == (16000, 1)


def sf_info(path: Path) -> tuple[int, int]:
    import soundfile as sf

    info = sf.info(path)
    return info.samplerate, info.channels


def test_two_visitors_do_not_see_each_others_data(browser: Any, app_url: str, speech_clips) -> None:
    path, text = speech_clips[2]
    contexts = [browser.new_context(viewport={"width": 1280, "height": 1200}) for _ in range(2)]
    alice, bob = (context.new_page() for context in contexts)
    for visitor in (alice, bob):
        visitor.goto(app_url)
        visitor.wait_for_selector(CONNECTED, timeout=30_000)
    upload(alice, [path], text)
    expect_text(alice, "#dataset-table", re.escape(text))
    bob.reload()
    bob.wait_for_selector(CONNECTED, timeout=30_000)
    expect_text(bob, "#dataset-summary", r"empty")
    assert text not in bob.locator("#dataset-table").inner_text()
    alice.reload()
    expect_text(alice, "#dataset-table", re.escape(text))
    for context in contexts:
        context.close()


def open_train_tab(page: Any, speech_clips: list[tuple[Path, str]], count: int = 6) -> None:
    """Upload ``count`` clips at once, then open the Train tab with that dataset chosen."""
    clips = speech_clips[:count]
    upload(page, [path for path, _ in clips], "\n".join(text for _, text in clips))
    expect_text(page, "#dataset-summary", rf"{count} clip\(s\)")
    page.get_by_role("tab", name="2 · Train").click()
    expect_value(page, "#train-dataset input", "my-voice")


def set_number(page: Any, elem_id: str, value: float) -> None:
    """Type ``value`` into a form field, a number or a text box, and leave it (Gradio reads it on blur)."""
    field = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    field.fill(str(value))
    field.press("Tab")


def test_the_whole_journey_train_evaluate_publish_deploy(page: Any, speech_clips, hub: Any, app_root: Path) -> None:
    open_train_tab(page, speech_clips)
    page.get_by_label("Full fine-tune").check()
    for elem_id, value in (("train-max-steps", 4), ("train-batch_size", 1), ("train-effective_batch", 1)):
        set_number(page, elem_id, value)
    set_number(page, "train-logging_steps", 1)
    page.click("#train-start")
    expect_text(page, "#train-notice", r"Started")
    expect_text(page, "#train-status", r"running")
    page.click("#train-start")
    expect_text(page, "#train-notice", r"already running.*you started.*cancel it")
    page.reload()
    page.wait_for_selector(CONNECTED, timeout=30_000)
    page.get_by_role("tab", name="2 · Train").click()
    expect_text(page, "#train-status", r"Training my-voice-full-.*(running|succeeded)")
    expect_text(page, "#train-status", r"succeeded", timeout=180_000)
    expect_text(page, "#train-progress", r"step 4/4 \(100%\)")
    expect_value(page, "#train-log textarea", re.compile(r"step 4/4.*eval WER", re.S))
    page.wait_for_timeout(1000)
    shoot(page, "04-train-finished")

    page.get_by_role("tab", name="3 · Evaluate").click()
    expect_value(page, "#evaluate-run input", re.compile(r"my-voice-full-"))
    expect_text(page, "#evaluate-summary", r"Only the fine-tuned model")
    page.click("#evaluate-start")
    expect_text(page, "#evaluate-notice", r"Started.*eval split: 1 clip")
    expect_text(page, "#evaluate-status", r"succeeded", timeout=120_000)
    expect_text(page, "#evaluate-summary", r"WER \d+\.\d% → \d+\.\d%")
    expect_text(page, "#evaluate-metrics", r"base.*fine-tuned")
    page.wait_for_timeout(500)
    shoot(page, "05-evaluate-compared")

    publish_dataset_model_and_space(page, hub)
    secrets = (hub.token.encode(), b"hf_voxplugTestReadOnly123")
    leaked = [p for p in app_root.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in secrets)]
    assert leaked == [], f"the token was written to {leaked}"


def test_a_lora_run_is_evaluated_against_its_base(page: Any, speech_clips) -> None:
    """The default method: the adapter is evaluated on the base model it was trained from, then without it."""
    open_train_tab(page, speech_clips)
    page.get_by_label("LoRA adapter").check()
    for elem_id, value in (("train-max-steps", 3), ("train-batch_size", 1), ("train-effective_batch", 1)):
        set_number(page, elem_id, value)
    page.click("#train-start")
    expect_text(page, "#train-status", r"Training my-voice-lora-.*succeeded", timeout=180_000)
    page.get_by_role("tab", name="3 · Evaluate").click()
    expect_value(page, "#evaluate-run input", re.compile(r"my-voice-lora-"))
    page.click("#evaluate-start")
    expect_text(page, "#evaluate-status", r"succeeded", timeout=120_000)
    expect_text(page, "#evaluate-summary", r"WER \d+\.\d% → \d+\.\d%")
    expect_text(page, "#evaluate-metrics", r"base.*fine-tuned")
    page.wait_for_timeout(500)  # the progress bar's width animates
    shoot(page, "05b-evaluate-lora")


def publish_dataset_model_and_space(page: Any, hub: Any) -> None:
    """The Publish tab: token once, then dataset, model and Space, each a job with its link."""
    page.get_by_role("tab", name="4 · Publish & deploy").click()
    expect_text(page, "#token-status", r"no token")
    page.locator("#hf-token input").fill(hub.token)
    page.click("#use-token")
    expect_text(page, "#token-status", r"token accepted for account \*?\*?tester")
    expect_value(page, "#hf-token input", "")
    expect_text(page, "#session-banner", r"the token entered in this session \(tester\)")
    assert hub.token not in page.content()

    page.locator("#dataset-repo textarea").fill("tester/my-voice-data")
    page.click("#push-dataset")
    expect_text(page, "#publish-status", r"Pushing dataset my-voice: succeeded.*datasets/tester/my-voice-data", 90_000)
    page.locator("#model-repo textarea").fill("tester/my-voice-tiny")
    page.click("#publish-model")
    expect_text(page, "#publish-status", r"Publishing my-voice-full-.*succeeded.*tester/my-voice-tiny", 90_000)
    expect_value(page, "#space-model textarea", "tester/my-voice-tiny")
    page.click("#deploy-space")
    expect_text(page, "#publish-status", r"failed.*the model is private, so the Space needs a READ token", 60_000)
    read_token = "hf_voxplugTestReadOnly123"
    hub.add_token(read_token, "tester", write=False)
    page.locator("#space-read-token input").fill(read_token)
    page.click("#deploy-space")
    expect_text(page, "#publish-status", r"Deploying a demo of tester/my-voice-tiny: succeeded.*spaces/tester", 120_000)
    expect_value(page, "#space-read-token input", "")
    shoot(page, "06-published-and-deployed")
    assert "README.md" in hub.repo_files("tester/my-voice-data", "dataset")
    card = hub.repo_files("tester/my-voice-tiny")["README.md"].decode()
    assert "- tester/my-voice-data" in card.split("---")[1]  # the dataset pushed after training, in datasets:
    secrets = hub.space_secrets("tester/my-voice-tiny-demo")
    assert hub.token not in secrets.values() and read_token in secrets.values()


def test_a_crashing_job_shows_its_error_and_the_app_keeps_serving(page: Any, speech_clips) -> None:
    open_train_tab(page, speech_clips, count=5)
    model = page.locator("#train-model input")
    model.fill("tester/no-such-model")  # a Hub id the test Hub does not have
    model.press("Enter")
    page.click("#train-start")
    expect_text(page, "#train-status", r"failed", timeout=90_000)
    status = expect_text(page, "#train-status", r"exit status [1-9].*no-such-model")
    assert "Traceback" not in status
    shoot(page, "07-train-crashed")
    page.get_by_role("tab", name="1 · Record").click()
    expect_text(page, "#dataset-summary", r"5 clip\(s\)")


def test_cancel_a_running_training(page: Any, speech_clips) -> None:
    open_train_tab(page, speech_clips, count=4)
    set_number(page, "train-max-steps", 500)
    set_number(page, "train-batch_size", 1)
    set_number(page, "train-logging_steps", 1)
    page.click("#train-start")
    expect_text(page, "#train-progress", r"step [1-9]\d*/500", timeout=120_000)
    page.click("#train-cancel")
    expect_text(page, "#train-status", r"cancelled", timeout=30_000)
    shoot(page, "08-train-cancelled")
