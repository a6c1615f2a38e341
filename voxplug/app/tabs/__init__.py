"""The app's tabs. Each module has ``build(ctx)``, which lays the tab out inside the open ``gr.Tabs`` and returns
a :class:`TabHandle`: what to refresh when the page loads or the tab is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from voxplug.app.markdown_text import literal


@dataclass
class TabHandle:
    """A tab's refresh function (it takes the session) and the components it updates."""

    refresh: Callable[..., Any]
    refresh_outputs: list[Any]

    def handler(self, session: Any) -> Any:
        """:attr:`refresh` shaped for gradio: a single output is returned bare, several as a list.

        Before the page load has connected the session to its workspace there is nothing to show: nothing changes.
        """
        import gradio as gr

        if getattr(session, "workspace", None) is None:
            values = [gr.skip()] * len(self.refresh_outputs)
        else:
            values = self.refresh(session)
        return values[0] if len(self.refresh_outputs) == 1 else values

    def wire(self, tab: Any, session: Any) -> TabHandle:
        """Refresh when ``tab`` is opened; returns itself."""
        tab.select(self.handler, [session], self.refresh_outputs, api_visibility="private")
        return self


def table(rows: list[list[Any]], headers: list[str]) -> pd.DataFrame:
    """Rows for a ``gr.Dataframe``, with its headers even when there are no rows."""
    return pd.DataFrame(rows, columns=headers)


def error_text(exc: BaseException) -> str:
    """An exception as one line of Markdown for the page; what it quotes (names, paths, repo ids) shows as typed."""
    return f"✗ {literal(exc)}"


def status_box(elem_id: str, value: str = "") -> Any:
    """A Markdown status line that never renders LaTeX (user text in it is escaped with :func:`literal`)."""
    import gradio as gr

    return gr.Markdown(value, elem_id=elem_id, latex_delimiters=[])
