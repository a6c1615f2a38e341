"""The Record tab's privacy notice (what is stored where) and the consent box asked before a dataset's first clip."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from voxplug.app.consent import CONSENT_LABEL, storage_notice


def consent_box(root: Path) -> gr.Checkbox:
    """Lay out the notice in an open accordion and return its consent checkbox (unticked)."""
    with gr.Accordion("Privacy: what is stored where", open=True, elem_id="privacy-notice"):
        gr.Markdown(storage_notice(root))
        return gr.Checkbox(False, label=CONSENT_LABEL, elem_id="consent")
