"""Consent before recording: what the app stores where, and who agreed to it, kept in the dataset's metadata.

Before the first clip goes into a dataset, the Record tab shows :func:`storage_notice` and asks the visitor to tick
the consent box; :func:`ensure_consent` then writes :func:`consent_record` into the dataset's ``dataset.json``
(``consent``: who, when, and the exact text agreed to, with its hash). A dataset that already holds a consent
record takes more clips without asking again. Nothing here needs gradio.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from voxplug.app.markdown_text import literal
from voxplug.app.workspace import USER_PREFIX, Workspace
from voxplug.data.store import DatasetStore, utc_now
from voxplug.errors import DataError

CONSENT_VERSION = 1
CONSENT_TEXT = (
    "I agree that the recordings I make or upload here, and their transcripts, are stored in this workspace on "
    "this server to build a speech dataset and fine-tune a speech recognition model. They stay on this machine "
    "unless I push the dataset, publish a model or deploy a demo myself, and I can delete them at any time."
)
"""The statement a visitor agrees to; its text and hash are copied into the dataset's consent record."""
CONSENT_LABEL = "I agree: store my recordings and transcripts in this workspace (see above)"
ANONYMOUS = "anonymous browser"
REFUSAL = (
    "✗ Nothing was saved: tick the consent box under *Privacy: what is stored where* first. Your recordings are "
    "kept in this server's workspace folder and never leave it unless you push or publish them."
)


def storage_notice(root: Path) -> str:
    """What the app stores, where, and who can see it (Markdown for the Record tab)."""
    return "\n".join(
        [
            f"- **Where:** clips are saved as 16 kHz mono WAV files, with their transcripts, in your workspace "
            f"folder on **this server**: `{root}/<your workspace>/datasets/<dataset>/` (`data.jsonl`, `audio/`, "
            "`dataset.json`). Training runs, their logs and models go to `runs/` in the same workspace.",
            "- **Who can see them:** you, from this browser (or your Hugging Face login), and whoever runs this "
            "server. Other visitors get their own workspace and never see yours.",
            "- **What leaves the machine:** nothing, unless you push the dataset, publish a model or deploy a demo "
            "from the *Publish* tab (private repositories by default). Transcripts can be scrubbed of e-mail "
            "addresses, phone numbers, web addresses and long numbers first (`voxplug data push --scrub`); the "
            "audio itself is never changed.",
            "- **Deleting:** *Delete clip* removes a clip and its audio file; deleting the dataset folder removes "
            "everything, including this consent record.",
            f"\n> {CONSENT_TEXT}",
        ]
    )


def who_agreed(workspace: Workspace, username: str | None = None) -> str:
    """The consenting party as the record names it: the Hugging Face user, else "anonymous browser".

    Never the browser's id or its workspace folder: the record is shown on the page and travels with the dataset.
    """
    if username:
        return f"Hugging Face user {username}"
    if workspace.key.startswith(USER_PREFIX):
        return f"Hugging Face user {workspace.key.removeprefix(USER_PREFIX)}"
    return ANONYMOUS


def consent_record(who: str, *, dataset: str) -> dict[str, Any]:
    """What ``dataset.json`` keeps: who agreed, when, to which text (and its SHA-256), for which dataset.

    ``stored_in`` names the dataset folder inside the workspace (``datasets/<name>``), never a server path.
    """
    return {
        "version": CONSENT_VERSION,
        "agreed_by": who,
        "agreed_at": utc_now(),
        "text": CONSENT_TEXT,
        "text_sha256": hashlib.sha256(CONSENT_TEXT.encode("utf-8")).hexdigest(),
        "stored_in": f"this server's workspace, datasets/{dataset}",
        "via": "voxplug app, Record tab",
    }


def dataset_consent(workspace: Workspace, dataset: str | None) -> dict[str, Any] | None:
    """The consent record of ``dataset``, or None when it does not exist or nobody agreed yet."""
    if not dataset:
        return None
    try:
        path = workspace.dataset_path(dataset)
        if not (path / "dataset.json").is_file():
            return None
        consent = DatasetStore.open(path).metadata.get("consent")
    except DataError:
        return None
    return consent if isinstance(consent, dict) and consent.get("agreed_at") else None


def ensure_consent(
    workspace: Workspace, dataset: str, *, agreed: bool, who: str, language: str | None = None
) -> str | None:
    """None when clips may be saved into ``dataset`` (consent on file, or given now and recorded), else a message.

    Giving consent creates the dataset when needed (with ``language`` as its default) and records who agreed.
    """
    if dataset_consent(workspace, dataset) is not None:
        return None
    if not agreed:
        return REFUSAL
    from voxplug.app.recording import open_dataset

    try:
        store = open_dataset(workspace, dataset, language=language)
    except DataError as exc:
        return f"✗ {literal(exc)}"
    store.set_consent(consent_record(who, dataset=store.path.name))
    return None


def consent_line(workspace: Workspace, dataset: str | None) -> str:
    """One line for the dataset summary: when and by whom consent was given, or that it will be asked for."""
    consent = dataset_consent(workspace, dataset)
    if consent is None:
        return "Consent: not given yet for this dataset; you will be asked before its first clip is saved."
    when = str(consent.get("agreed_at", ""))[:19].replace("T", " ")
    who = str(consent.get("agreed_by", "unknown"))
    if who.startswith(ANONYMOUS):
        who = ANONYMOUS  # records of earlier versions named the workspace folder after it
    return f"Consent: given {literal(when)} UTC by {literal(who)} (kept in dataset.json)."
