"""Nothing that changes data, trains, pushes or deploys is offered as an API or MCP endpoint."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from voxplug.app.ui import AppSettings, serve


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="module")
def app_url(root: Path) -> Iterator[str]:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = serve(AppSettings(root=root), port=port, block=False)
    yield demo.local_url
    demo.close()


def test_the_api_lists_no_endpoint(app_url: str) -> None:
    from gradio_client import Client

    api = Client(app_url, verbose=False).view_api(return_format="dict", print_info=False)
    assert api["named_endpoints"] == {} and api["unnamed_endpoints"] == {}


def test_no_mcp_server(app_url: str) -> None:
    for path in ("gradio_api/mcp/sse", "gradio_api/mcp/schema"):
        assert httpx.get(app_url + path, timeout=10).status_code == 404


def test_workspace_files_are_not_served_by_path(app_url: str, root: Path) -> None:
    secret_clip = root / "browser-0123456789abcdef0123456789abcdef" / "datasets" / "d" / "audio" / "x.wav"
    secret_clip.parent.mkdir(parents=True)
    secret_clip.write_bytes(b"RIFF....WAVE")
    for path in (secret_clip, Path("/etc/passwd")):
        assert httpx.get(f"{app_url}gradio_api/file={path}", timeout=10).status_code in (403, 404)
