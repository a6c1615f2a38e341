"""Serve the web app (or the demo) on loopback, request every route it has with no session, print what came back.

Run as a script by ``test_security.py``, in a process whose environment already holds ``HF_ENDPOINT`` (the test Hub)
and a recognisable ``HF_TOKEN``, so that ``huggingface_hub`` reads them at import, as it does in a real server::

    python route_scan.py app <root> <server-token mode>
    python route_scan.py demo <model folder>

The routes are read from the served FastAPI app itself (nothing is listed by hand): each one is requested once per
method, its path parameters, query parameters and JSON body filled from its declared parameters, so a route that
needs a ``bucket`` query or a ``bucket_id`` field gets one. Streaming routes are read until they pause. One JSON
object per line on stdout: ``{"method", "path", "status", "token"}`` (``token``: the fake token was in the answer).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCAN_VALUE = "tester/voxplug-scan"
"""What every text parameter gets: shaped like a repo or bucket id, so that Hub-facing routes go all the way."""
MAX_BODY = 1 << 20


def served_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(path, route)`` for every endpoint, descending into mounts and included routers."""
    for route in routes:
        if hasattr(route, "effective_candidates"):  # FastAPI's included router (gradio's /gradio_api)
            yield from served_routes(route.effective_candidates(), prefix)
        elif hasattr(route, "routes") and hasattr(route, "path"):  # a starlette Mount
            yield from served_routes(list(route.routes), prefix + route.path)
        else:
            yield prefix + route.path, route


def sample(annotation: Any) -> Any:
    """A value of the declared type (text for anything not a number, flag, list or mapping)."""
    origin = getattr(annotation, "__origin__", None)
    kinds = [arg for arg in getattr(annotation, "__args__", ()) if arg is not type(None)] if origin else [annotation]
    kind = kinds[0] if kinds else str
    fields = getattr(kind, "model_fields", None)
    if fields is not None:
        return {name: sample(field.annotation) for name, field in fields.items()}
    for base, value in ((bool, True), (int, 1), (float, 1.0), (list, []), (dict, {})):
        if kind is base or getattr(kind, "__origin__", None) is base:
            return value
    return SCAN_VALUE


def declared(dependant: Any, kind: str) -> list[Any]:
    """The ``kind`` parameters (``path_params``, ``query_params``, ``body_params``) of an endpoint and of everything
    it depends on (a dependency such as gradio's ``TargetDep`` declares the ``bucket`` query)."""
    params = list(getattr(dependant, kind))
    for child in dependant.dependencies:
        params += declared(child, kind)
    return params


def request_parts(path: str, route: Any) -> tuple[str, dict[str, Any], Any]:
    """The URL path, query parameters and JSON body for one request to ``route``."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return path, {}, None
    for param in declared(dependant, "path_params"):
        value = sample(param.field_info.annotation)
        for pattern in (f"{{{param.name}}}", f"{{{param.name}:path}}"):
            path = path.replace(pattern, str(value))
    query = {param.alias: sample(param.field_info.annotation) for param in declared(dependant, "query_params")}
    body_params = declared(dependant, "body_params")
    body: Any = None
    if len(body_params) == 1 and hasattr(body_params[0].field_info.annotation, "model_fields"):
        body = sample(body_params[0].field_info.annotation)
    elif body_params:
        body = {param.alias: sample(param.field_info.annotation) for param in body_params}
    return path, query, body


def scan(base_url: str, app: Any, token: str) -> list[dict[str, Any]]:
    """Request every route of ``app`` at ``base_url`` with no cookie and no header of ours."""
    import httpx

    results = []
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=3), follow_redirects=False) as client:
        for path, route in served_routes(list(app.routes)):
            url, query, body = request_parts(path, route)
            for method in sorted(getattr(route, "methods", None) or {"GET"}):
                for parts in ((query, body), ({}, None)):  # with every parameter filled in, and bare
                    status, answer = send(client, method, url, *parts)
                    results.append({"method": method, "path": path, "status": status, "token": token in answer})
    return results


def send(client: Any, method: str, url: str, query: dict[str, Any], body: Any) -> tuple[int, str]:
    """One request; the status and everything it answered (headers and up to 1 MiB of body)."""
    import httpx

    kwargs: dict[str, Any] = {"params": query} | ({"json": body} if body is not None else {})
    try:
        with client.stream(method, url, **kwargs) as response:
            received = b""
            try:
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) > MAX_BODY:
                        break
            except httpx.ReadTimeout:  # a stream (heartbeat, queue data) that stays open
                pass
            headers = "\n".join(f"{key}: {value}" for key, value in response.headers.items())
            return response.status_code, headers + "\n" + received.decode("utf-8", "replace")
    except httpx.ReadTimeout:
        return 0, ""
    except httpx.TransportError as error:  # the server closed the connection: no answer to look at
        return -1, type(error).__name__


def serve_app(root: Path, server_token: str) -> Any:
    from voxplug.app.ui import AppSettings, serve
    from voxplug.testing import free_port

    return serve(AppSettings(root=root, server_token=server_token), port=free_port(), block=False)  # type: ignore[arg-type]


def serve_demo(model: str) -> Any:
    from voxplug_space.demo_app import DemoLimits, build_demo, launch_demo

    from voxplug.testing import free_port

    limits = DemoLimits()
    demo = build_demo(model, limits=limits)
    launch_demo(demo, limits, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    return demo


def main(argv: list[str]) -> None:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    demo = serve_app(Path(argv[1]), argv[2]) if argv[0] == "app" else serve_demo(argv[1])
    try:
        for result in scan(demo.local_url, demo.app, os.environ["HF_TOKEN"]):
            print(json.dumps(result), flush=True)
    finally:
        demo.close()


if __name__ == "__main__":
    main(sys.argv[1:])
