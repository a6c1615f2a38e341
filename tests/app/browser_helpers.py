"""What the browser tests share: Debian's Chromium and how to drive the app's page (upload, wait for text)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A fake microphone (a beeping tone) that needs no permission prompt, to record through the real page.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
CONNECTED = "#session-banner:has-text('Workspace')"
"""Shown once the page load has connected the session to its workspace."""


def open_page(context: Any, url: str) -> Any:
    """A new page of ``context`` at ``url``, connected to its workspace."""
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector(CONNECTED, timeout=30_000)
    return page


def shoot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def give_consent(page: Any) -> None:
    """Tick the Record tab's consent box (asked before a dataset's first clip)."""
    page.locator("#consent input[type=checkbox]").check()


def upload(page: Any, files: list[Path], transcripts: str) -> None:
    """Choose files in the upload box, type their transcripts and save them (consent given first)."""
    give_consent(page)
    page.locator("#upload-files input[type=file]").set_input_files([str(path) for path in files])
    # gradio copies and lists the files first, which takes long on a loaded machine
    page.wait_for_selector(f"#upload-files :text({files[0].name!r})", timeout=120_000)
    page.locator("#upload-transcripts textarea").fill(transcripts)
    page.click("#save-uploads")


def expect_text(page: Any, selector: str, pattern: str, timeout: float = 45_000) -> str:
    """Wait until ``selector``'s text matches ``pattern`` (a regex); return the text."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(re.compile(pattern, re.S), timeout=timeout)
    return page.locator(selector).inner_text()


def expect_value(page: Any, selector: str, value: str | re.Pattern[str], timeout: float = 30_000) -> None:
    """Wait until the input at ``selector`` holds ``value``."""
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_value(value, timeout=timeout)
