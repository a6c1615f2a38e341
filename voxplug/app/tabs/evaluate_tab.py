"""The Evaluate tab (placeholder until ``voxplug evaluate`` lands)."""

from __future__ import annotations

from typing import Any

import gradio as gr

from voxplug.app.tabs import TabHandle
from voxplug.app.ui import AppContext, Session


def build(ctx: AppContext) -> TabHandle:
    """Lay out the Evaluate tab."""
    with gr.Tab("3 · Evaluate", id="evaluate", elem_id="tab-evaluate"):
        note = gr.Markdown("Evaluation comes next.")

    def refresh(session: Session) -> list[Any]:
        return [gr.skip()]

    return TabHandle(refresh, [note])
