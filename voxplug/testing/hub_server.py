"""A Hugging Face Hub-compatible HTTP server for tests, on loopback, storing repos on disk.

It speaks the routes that ``huggingface_hub`` 2.4 really calls (read from its source: ``hf_api.py``,
``_commit_api.py``, ``lfs.py``, ``file_download.py``, ``utils/_http.py``), so that tests exercise the real client:
``create_repo``, ``upload_file`` / ``upload_folder`` / ``create_commit`` (preupload, validate-yaml, NDJSON commit),
visibility (``create_repo``'s ``"visibility": "public" | "private" | "protected"``, ``update_repo_settings``, read
back as repo info's ``private``), the Git LFS batch API with a basic PUT transfer and a verify step, ``repo_info``
/ ``list_repo_tree`` / ``get_paths_info`` / ``list_repo_commits`` / ``list_repo_refs``, ``hf_hub_download`` and
``snapshot_download`` (HEAD and ranged GET on ``resolve``, LFS files redirected to a "CDN" host like the real
Hub), Space secrets, variables, hardware and runtime, and ``whoami``. Hence ``transformers``'
``from_pretrained("user/x")`` and ``datasets.load_dataset("user/x")`` work against it too.

Pointing the client at the server (what the installed ``huggingface_hub`` 2.4.0 does):

- ``huggingface_hub.constants.ENDPOINT`` (and ``HUGGINGFACE_CO_URL_TEMPLATE``) is read from ``HF_ENDPOINT`` once, at
  import time. ``HfApi(endpoint=...)``, ``hf_hub_download(..., endpoint=...)`` and ``snapshot_download(...,
  endpoint=...)`` accept an explicit endpoint; anything that does not pass one (``transformers``' ``from_pretrained``
  and ``push_to_hub``, ``RepoCard.validate``) uses the import-time constant. ``datasets`` reads ``HF_ENDPOINT`` into
  ``datasets.config.HF_ENDPOINT`` at its own import. So: pass ``endpoint=server.url`` in-process, or run the code in
  a subprocess whose environment holds ``server.client_env()`` (``HF_ENDPOINT``, ``HF_TOKEN``, ...).
- Xet: when ``hf_xet`` is installed (it is here) and ``HF_HUB_DISABLE_XET`` is unset, ``huggingface_hub`` 2.4 sends
  every file the preupload step marks ``lfs`` through Xet storage, unconditionally: the client never asks the
  server which transfer to use, so a server cannot steer it back to Git LFS. This server does not implement Xet
  (CAS); it answers the Xet token routes with 501 (``hf_xet`` then raises ``ConnectionError: ... 501 Not
  Implemented ... /xet-write-token/...``, without the body's advice). Either set ``HF_HUB_DISABLE_XET=1``
  (before import, or ``huggingface_hub.constants.HF_HUB_DISABLE_XET = True``, which the client reads at call
  time) to exercise the classic LFS path, or start the server with ``lfs_patterns=(), lfs_threshold=None`` so that
  every file is ``regular`` (sent inline, base64, in the commit) and Xet is never needed. Downloads never use Xet:
  the server sends no ``X-Xet-Hash`` header and no ``xetHash`` in listings.

For tests: ``fail_next(method, path_substring, status, times)`` makes the next matching requests fail (the client
retries 408/429/5xx on preupload, LFS batch and LFS PUT, not on commit); ``requests`` logs ``(method, path,
status)`` without query strings or headers, so never a token; ``repo_files``, ``repo_commits``, ``repo_visibility``,
``space_secrets``, ``space_variables`` and ``space_hardware`` read the stored state directly.

Not implemented: Xet, pull requests (``create_pr``), branches and tags other than ``main`` (no ``create_branch``;
revisions are branch names or commit ids, none with a ``/``), organizations beyond a list of namespaces per token,
gated repos, ``.gitignore`` rules in preupload, multipart LFS uploads, cross-repo LFS copies (they need a Xet hash),
and ``copyFile`` commit lines (``huggingface_hub`` 2.4 turns ``CommitOperationCopy`` into ``file`` / ``lfsFile``
lines, which work).

Usage::

    with HubServer(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("tester/x")

or, for manual use, ``python -m voxplug.testing.hub_server --port 8765 --root /tmp/hub``.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import hmac
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import uvicorn
import yaml
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

DEFAULT_TOKEN = "hf_voxplug_test_write"
DEFAULT_USER = "tester"
LFS_THRESHOLD = 10 * 1024 * 1024
"""Files at least this large are LFS, whatever their name (the real Hub's limit for regular files)."""

DEFAULT_LFS_PATTERNS = tuple(
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lz4 *.mlmodel *.model *.msgpack *.npy "
    "*.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents* *.wav *.flac *.mp3 *.ogg".split()
)
"""Name patterns stored in LFS at any size, as in the ``.gitattributes`` the Hub puts in every new repo."""

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
VISIBILITIES = ("public", "private", "protected")
SHA256 = re.compile(r"[0-9a-f]{64}")
REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
CARD_METADATA = re.compile(r"^\s*---\r?\n([\s\S]*?)\r?\n---(\r?\n|$)")
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
XET_NOT_SUPPORTED = (
    "This test Hub speaks Git LFS, not Xet: set HF_HUB_DISABLE_XET=1 before importing huggingface_hub,"
    " or start HubServer with lfs_patterns=() and lfs_threshold=None so that every file is regular."
)


def utc_now() -> str:
    """The current time in the Hub's format, e.g. ``2025-01-31T12:00:00.000Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_id(data: bytes) -> str:
    """The git object id (sha1) of a blob with this content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    """An error answered the way the Hub does: JSON ``{"error": ...}`` plus ``X-Error-Code`` / ``X-Error-Message``.

    ``huggingface_hub`` maps ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) to its
    exception classes and shows ``X-Error-Message`` to the user.
    """

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None, **body: Any
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.body = status, message, code, body
        header_message = message.replace("\n", " ").encode("ascii", "replace").decode()  # headers are latin-1
        self.headers = {"X-Error-Message": header_message} | ({"X-Error-Code": code} if code else {})
        self.headers.update(headers or {})

    def response(self) -> JSONResponse:
        """The HTTP response for this error."""
        return JSONResponse({"error": self.message, **self.body}, self.status, headers=self.headers)


# --------------------------------------------------------------------------------------------------- storage


@dataclass
class FileEntry:
    """A file in a commit: where its content lives (sha256 in the object store) and its git/LFS identity."""

    sha256: str
    size: int
    lfs: bool
    oid: str  # git blob id; for an LFS file, the id of its pointer file, as on the Hub

    @classmethod
    def create(cls, sha256: str, size: int, lfs: bool, content: bytes | None = None) -> FileEntry:
        """An entry for stored content; ``content`` is needed for regular files (their git id hashes it)."""
        blob = LFS_POINTER.format(sha256=sha256, size=size).encode() if lfs else content
        assert blob is not None, "regular files need their content to compute the git blob id"
        return cls(sha256=sha256, size=size, lfs=lfs, oid=git_blob_id(blob))

    @property
    def pointer_size(self) -> int:
        """Size of the LFS pointer file that git stores in place of the content."""
        return len(LFS_POINTER.format(sha256=self.sha256, size=self.size))

    def tree_json(self, path: str) -> dict[str, Any]:
        """The entry as ``/tree`` and ``/paths-info`` list it."""
        item: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.lfs:
            item["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return item

    def sibling_json(self, path: str) -> dict[str, Any]:
        """The entry as repo info lists it in ``siblings``."""
        item: dict[str, Any] = {"rfilename": path, "size": self.size, "blobId": self.oid}
        if self.lfs:
            item["lfs"] = {"sha256": self.sha256, "size": self.size, "pointerSize": self.pointer_size}
        return item


@dataclass
class Commit:
    """One commit: a full snapshot of the files plus its message, author and parent."""

    id: str
    parent: str | None
    title: str
    message: str
    author: str
    date: str
    files: dict[str, FileEntry]

    def info_json(self) -> dict[str, Any]:
        """The commit as ``/commits`` lists it."""
        return {
            "id": self.id,
            "title": self.title,
            "message": self.message,
            "authors": [{"user": self.author, "avatar": None}],
            "date": self.date,
        }


@dataclass
class Repo:
    """A repository: identity, visibility, branches, commit history and (for Spaces) settings."""

    repo_type: str
    repo_id: str
    visibility: str  # "public", "private" or (Spaces only) "protected", as create_repo and update_repo_settings send it
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    space: dict[str, Any] | None = None  # sdk, hardware, sleep_time, secrets, variables

    @property
    def private(self) -> bool:
        """What repo info reports as ``private``: anything but ``public`` hides the repo's files from others."""
        return self.visibility != "public"

    @property
    def url_path(self) -> str:
        """The repo's path on the web, e.g. ``datasets/user/x``."""
        return URL_PREFIXES[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit:
        """The commit a branch name or a (possibly abbreviated) commit id points to."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        matches = [c for cid, c in self.commits.items() if len(revision) >= 7 and cid.startswith(revision)]
        if len(matches) != 1:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return matches[0]

    def history(self, commit: Commit) -> list[Commit]:
        """The commit and its ancestors, newest first."""
        chain = [commit]
        while chain[-1].parent is not None:
            chain.append(self.commits[chain[-1].parent])
        return chain

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Repo:
        """Load a repo saved with ``dataclasses.asdict`` (a root saved with a ``private`` flag loads too)."""
        if "private" in data:
            data["visibility"] = "private" if data.pop("private") else "public"
        commits = {
            cid: Commit(**{**c, "files": {p: FileEntry(**e) for p, e in c["files"].items()}})
            for cid, c in data.pop("commits").items()
        }
        return cls(**data, commits=commits)


class RepoStore:
    """Repos as JSON files under ``root/repos/<type>s/<namespace>/<name>.json``, contents under ``root/objects``.

    Contents are addressed by sha256, so regular files and LFS uploads share one store and an LFS object that
    is already present is never uploaded twice.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        (root / "objects").mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        for path in sorted(root.glob("repos/*/*/*.json")):
            repo = Repo.from_json(json.loads(path.read_text()))
            self.repos[repo.repo_type, repo.repo_id] = repo

    def object_path(self, sha256: str) -> Path:
        """Where the content with this sha256 is (or would be) stored; a 400 if ``sha256`` is not a hex digest."""
        if not SHA256.fullmatch(sha256):
            raise HubError(400, f"Invalid object id {sha256[:80]!r}: expected a sha256 hex digest")
        return self.root / "objects" / sha256[:2] / sha256

    def put_object(self, data: bytes) -> str:
        """Store content and return its sha256."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self.object_path(sha256)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return sha256

    def read_object(self, sha256: str) -> bytes:
        """The content with this sha256."""
        return self.object_path(sha256).read_bytes()

    def save(self, repo: Repo) -> None:
        """Write the repo's JSON file."""
        path = self.root / "repos" / f"{repo.repo_type}s" / f"{repo.repo_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(repo), indent=1))

    def delete(self, repo: Repo) -> None:
        """Forget the repo (its objects stay: they may be shared)."""
        del self.repos[repo.repo_type, repo.repo_id]
        (self.root / "repos" / f"{repo.repo_type}s" / f"{repo.repo_id}.json").unlink()

    def commit(
        self, repo: Repo, branch: str, files: dict[str, FileEntry], title: str, message: str, author: str
    ) -> Commit:
        """Record a new commit on ``branch`` (created if absent) and save the repo."""
        parent = repo.branches.get(branch)
        seed = f"{repo.repo_type}/{repo.repo_id}\0{parent}\0{title}\0{time.time_ns()}\0{secrets.token_hex(8)}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, author, utc_now(), files)
        repo.commits[commit.id] = commit
        repo.branches[branch] = commit.id
        self.save(repo)
        return commit


# ----------------------------------------------------------------------------------------------- model cards


def read_card_metadata(readme: str) -> Any:
    """The YAML block at the top of a README (``None`` without one); raises ``yaml.YAMLError`` if it is invalid."""
    match = CARD_METADATA.match(readme)
    return yaml.safe_load(match.group(1)) if match else None


def card_metadata_errors(readme: str) -> list[str]:
    """What the Hub would reject in a README's metadata: YAML syntax, field types, the ``model-index`` shape."""
    try:
        metadata = read_card_metadata(readme)
    except yaml.YAMLError as err:
        return [f"Invalid YAML in README.md metadata: {err}"]
    if metadata is None:
        return []
    if not isinstance(metadata, dict):
        return ["README.md metadata must be a YAML mapping of keys to values"]

    def is_str(value: Any) -> bool:
        return isinstance(value, str)

    def is_str_or_list(value: Any) -> bool:
        return is_str(value) or (isinstance(value, list) and all(is_str(v) for v in value))

    checks = {
        "license": (is_str, "a string"),
        "pipeline_tag": (is_str, "a string"),
        "library_name": (is_str, "a string"),
    }
    for key in ("language", "base_model", "tags", "datasets", "metrics"):
        checks[key] = (is_str_or_list, "a string or a list of strings")
    errors = [
        f'"{key}" must be {expected}'
        for key, (ok, expected) in checks.items()
        if key in metadata and not ok(metadata[key])
    ]
    if "model-index" in metadata:
        errors += model_index_errors(metadata["model-index"])
    return errors


def model_index_errors(model_index: Any) -> list[str]:
    """Shape errors in ``model-index``: a list of ``{name, results: [{task, dataset, metrics}]}``."""
    if not isinstance(model_index, list):
        return ['"model-index" must be a list']
    errors = []
    for i, model in enumerate(model_index):
        where = f"model-index[{i}]"
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"{where}.name" is required and must be a string')
            continue
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f'"{where}.results" must be a list')
            continue
        for j, result in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{at}" must be an object')
                continue
            for part in ("task", "dataset"):
                if not isinstance(result.get(part), dict) or not isinstance(result[part].get("type"), str):
                    errors.append(f'"{at}.{part}.type" is required and must be a string')
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not all(
                isinstance(m, dict) and isinstance(m.get("type"), str) and "value" in m for m in metrics
            ):
                errors.append(f'"{at}.metrics" must be a list of {{type, value}} objects')
    return errors


# ------------------------------------------------------------------------------------------------ the server


class Caller(NamedTuple):
    """Who a token belongs to and what it may do."""

    name: str
    write: bool
    namespaces: frozenset[str]


class LoggedRequest(NamedTuple):
    """One request as the server saw it; the path has no query string and no header is kept."""

    method: str
    path: str
    status: int


@dataclass
class FailureRule:
    """Answer the next ``times`` requests matching ``method`` and ``path_substring`` with ``status``."""

    method: str
    path_substring: str
    status: int
    times: int


class HubServer:
    """A Hub-compatible server on ``127.0.0.1``, run by uvicorn in a background thread.

    Args:
        root: Where repos and file contents are stored (kept across restarts with the same root).
        tokens: ``{token: (username, "read" | "write")}``; default: ``{DEFAULT_TOKEN: (DEFAULT_USER, "write")}``.
        port: Port to listen on; 0 picks a free one.
        lfs_threshold: Files at least this large are LFS; ``None``: size alone never makes a file LFS.
        lfs_patterns: File-name patterns that are LFS at any size.
        lfs_redirect: Redirect downloads of LFS files to a "CDN" URL on ``localhost`` (another host for the client,
            which then drops the Authorization header) as the Hub does; ``False`` serves them directly.
        strict_repo_types: Refuse (400) to create a repo whose id already exists with another repo type. The real
            Hub keeps one namespace per type; this catches a forgotten ``repo_type=``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        tokens: Mapping[str, tuple[str, str]] | None = None,
        port: int = 0,
        lfs_threshold: int | None = LFS_THRESHOLD,
        lfs_patterns: tuple[str, ...] = DEFAULT_LFS_PATTERNS,
        lfs_redirect: bool = True,
        strict_repo_types: bool = True,
    ) -> None:
        self.root = Path(root)
        self.store = RepoStore(self.root)
        self.port = port
        self.lfs_threshold, self.lfs_patterns, self.lfs_redirect = lfs_threshold, lfs_patterns, lfs_redirect
        self.strict_repo_types = strict_repo_types
        self.requests: list[LoggedRequest] = []
        self._tokens: dict[str, Caller] = {}
        for token, (user, role) in (tokens or {DEFAULT_TOKEN: (DEFAULT_USER, "write")}).items():
            self.add_token(token, user, write=role == "write")
        self._failures: list[FailureRule] = []
        self.upload_tickets: dict[str, tuple[str, int]] = {}  # ticket -> (sha256, size) of the expected upload
        self._cdn_key = secrets.token_bytes(16)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = build_app(self)

    # ------------------------------------------------------------------ configuration used by tests

    @property
    def url(self) -> str:
        """The endpoint to give ``huggingface_hub`` (``HF_ENDPOINT`` or ``endpoint=``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """The first write token (the default one unless ``tokens`` said otherwise)."""
        return next(t for t, caller in self._tokens.items() if caller.write)

    def add_token(self, token: str, user: str, write: bool = True, orgs: tuple[str, ...] = ()) -> None:
        """Accept ``token`` as ``user``, with write access to ``user`` and ``orgs`` namespaces if ``write``."""
        self._tokens[token] = Caller(user, write, frozenset((user, *orgs)))

    def fail_next(self, method: str, path_substring: str, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests whose method is ``method`` (``"*"``: any) and whose path contains
        ``path_substring`` with ``status`` and a Hub-like error body, before any other processing."""
        with self.store.lock:
            self._failures.append(FailureRule(method.upper(), path_substring, status, times))

    def client_env(self, token: str | None = None) -> dict[str, str]:
        """Environment variables that point a fresh ``huggingface_hub`` (e.g. in a subprocess) at this server."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": token or self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }

    # ------------------------------------------------------------------ inspection used by tests

    def _repo(self, repo_id: str, repo_type: str) -> Repo:
        repo = self.store.repos.get((repo_type, repo_id))
        if repo is None:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on this test Hub")
        return repo

    def repo_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Path to content of every file of the repo at ``revision``."""
        with self.store.lock:
            files = self._repo(repo_id, repo_type).resolve(revision).files
            return {path: self.store.read_object(entry.sha256) for path, entry in sorted(files.items())}

    def repo_commits(self, repo_id: str, repo_type: str = "model") -> list[Commit]:
        """The commits of ``main``, newest first."""
        with self.store.lock:
            repo = self._repo(repo_id, repo_type)
            return repo.history(repo.resolve("main"))

    def repo_visibility(self, repo_id: str, repo_type: str = "model") -> str:
        """``public``, ``private`` or ``protected``, as the repo was created or last set."""
        with self.store.lock:
            return self._repo(repo_id, repo_type).visibility

    def space_secrets(self, repo_id: str) -> dict[str, str]:
        """Secret names to values, as stored (the HTTP API never returns values)."""
        return {k: v["value"] for k, v in self._space(repo_id)["secrets"].items()}

    def space_variables(self, repo_id: str) -> dict[str, str]:
        """Variable names to values."""
        return {k: v["value"] for k, v in self._space(repo_id)["variables"].items()}

    def space_hardware(self, repo_id: str) -> str:
        """The hardware flavor the Space runs on (requests are granted at once)."""
        return self._space(repo_id)["hardware"]

    def _space(self, repo_id: str) -> dict[str, Any]:
        space = self._repo(repo_id, "space").space
        assert space is not None
        return space

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HubServer:
        """Listen on ``127.0.0.1:port`` in a background thread; return once requests are answered."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="voxplug-hub-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the test Hub server did not start on {self.url}")
            time.sleep(0.01)
        return self

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers for the routes

    def caller(self, request: Request) -> Caller | None:
        """Who sent the request (``None`` without a token); an unknown token is a 401, as on the Hub."""
        authorization = request.headers.get("authorization", "")
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        caller = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return caller

    def writer(self, request: Request, namespace: str, action: str) -> Caller:
        """The caller, if it may write to ``namespace``; a 401 or 403 otherwise."""
        caller = self.caller(request)
        if caller is None:
            raise HubError(401, f"You must be authenticated to {action}")
        if not caller.write:
            raise HubError(403, f"Your token has read access only: it cannot {action}")
        if namespace not in caller.namespaces:
            raise HubError(403, f"You don't have the rights to {action} in the namespace {namespace!r}")
        return caller

    def readable(self, request: Request, repo_type: str, repo_id: str) -> Repo:
        """The repo, if the caller may read it; answered as "not found" otherwise, as on the Hub."""
        caller = self.caller(request)
        repo = self.store.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and (caller is None or repo_id.split("/")[0] not in caller.namespaces)):
            raise HubError(401 if caller is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def writable(self, request: Request, repo_type: str, repo_id: str) -> tuple[Caller, Repo]:
        """The caller and the repo, if the caller may write to it."""
        repo = self.readable(request, repo_type, repo_id)
        return self.writer(request, repo_id.split("/")[0], f"write to {repo_type} {repo_id}"), repo

    def upload_mode(self, path: str, size: int) -> str:
        """``lfs`` or ``regular``, by size and by name."""
        big = self.lfs_threshold is not None and size >= self.lfs_threshold
        by_name = any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], pattern) for pattern in self.lfs_patterns)
        return "lfs" if size > 0 and (big or by_name) else "regular"

    def cdn_signature(self, sha256: str) -> str:
        """What signs the "CDN" URL of an LFS object, so that it can be fetched without a token (like S3 URLs)."""
        return hmac.new(self._cdn_key, sha256.encode(), "sha256").hexdigest()[:32]

    def cdn_url(self, sha256: str) -> str:
        """A signed download URL for an LFS object, on a host the client considers foreign (like a CDN)."""
        return f"http://localhost:{self.port}/lfs-objects/{sha256}?sig={self.cdn_signature(sha256)}"

    def new_upload_ticket(self, sha256: str, size: int) -> str:
        """A one-object credential embedded in an LFS upload URL (the client sends no token with the PUT)."""
        ticket = secrets.token_urlsafe(16)
        self.upload_tickets[ticket] = (sha256, size)
        return ticket

    def take_failure(self, method: str, path: str) -> int | None:
        """The status of an injected failure for this request, if one is pending."""
        with self.store.lock:
            for rule in self._failures:
                if rule.method in ("*", method) and rule.path_substring in path:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._failures.remove(rule)
                    return rule.status
        return None


# ------------------------------------------------------------------------------------------------ JSON shapes


def repo_type_of(kind: str) -> str:
    """``models`` / ``datasets`` / ``spaces`` (as in ``/api/models/...``) to a repo type."""
    if kind not in REPO_TYPES:
        raise HubError(404, f"Unknown repo kind {kind!r}: expected models, datasets or spaces")
    return REPO_TYPES[kind]


def is_true(value: str | None) -> bool:
    """A boolean query or form parameter, as ``httpx`` and ``requests`` send them."""
    return (value or "").lower() in ("1", "true")


def folder_json(files: dict[str, FileEntry], folder: str) -> dict[str, Any]:
    """A folder as ``/tree`` lists it; its oid hashes its content so that it changes when the content does."""
    listing = "".join(f"{p}\0{e.oid}\0" for p, e in sorted(files.items()) if p.startswith(folder + "/"))
    return {"type": "directory", "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0, "path": folder}


def tree_json(files: dict[str, FileEntry], folder: str, recursive: bool) -> list[dict[str, Any]]:
    """``/tree`` items under ``folder`` ("" for the root): files and folders, sorted by path."""
    base = f"{folder}/" if folder else ""
    items: dict[str, dict[str, Any]] = {}
    for path, entry in files.items():
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            subfolder = base + "/".join(parts[:depth])
            if subfolder not in items:
                items[subfolder] = folder_json(files, subfolder)
        if recursive or len(parts) == 1:
            items[path] = entry.tree_json(path)
    return [items[path] for path in sorted(items)]


def path_info_json(files: dict[str, FileEntry], path: str) -> dict[str, Any] | None:
    """A file or folder as ``/paths-info`` describes it, or ``None`` if absent."""
    path = path.strip("/")
    if path in files:
        return files[path].tree_json(path)
    if any(p.startswith(path + "/") for p in files):
        return folder_json(files, path)
    return None


def last_commit_json(repo: Repo, head: Commit, path: str) -> dict[str, Any]:
    """The oldest commit since which ``path`` (file or folder) is unchanged, as ``expand=True`` listings give it."""

    def state(commit: Commit) -> dict[str, str]:
        return {p: e.oid for p, e in commit.files.items() if p == path or p.startswith(path + "/")}

    newest, current = head, state(head)
    for commit in repo.history(head)[1:]:
        if state(commit) != current:
            break
        newest = commit
    return {"id": newest.id, "title": newest.title, "date": newest.date}


def repo_info_json(store: RepoStore, repo: Repo, commit: Commit) -> dict[str, Any]:
    """The body of ``/api/{models,datasets,spaces}/{id}``: sha, siblings, privacy, ``cardData`` from the README."""
    card = None
    if "README.md" in commit.files:
        try:
            card = read_card_metadata(store.read_object(commit.files["README.md"].sha256).decode())
        except (yaml.YAMLError, UnicodeDecodeError):
            card = None
    card = card if isinstance(card, dict) else None
    tags = (card or {}).get("tags") or []
    info: dict[str, Any] = {
        "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": commit.id,
        "createdAt": repo.created_at,
        "lastModified": commit.date,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [tags] if isinstance(tags, str) else tags,
        "cardData": card,
        "siblings": [entry.sibling_json(path) for path, entry in sorted(commit.files.items())],
        "usedStorage": sum(entry.size for entry in commit.files.values()),
    }
    if repo.space is not None:
        info.update(sdk=repo.space["sdk"], runtime=space_runtime_json(repo), subdomain=repo.repo_id.replace("/", "-"))
    return info


def space_runtime_json(repo: Repo) -> dict[str, Any]:
    """A Space's runtime: its hardware (granted at once), and ``RUNNING`` once ``main`` holds its app file."""
    assert repo.space is not None
    app_file = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}
    running = app_file[repo.space["sdk"]] in repo.resolve("main").files
    hardware = repo.space["hardware"]
    return {
        "stage": "RUNNING" if running else "NO_APP_FILE",
        "hardware": {"current": hardware, "requested": hardware},
        "gcTimeout": repo.space["sleep_time"],
        "storage": None,
        "devMode": False,
    }


def space_settings_json(items: dict[str, dict[str, Any]], with_values: bool) -> dict[str, dict[str, Any]]:
    """Space variables (with values) or secrets (never with values) as the Hub lists them."""
    return {
        key: {"key": key, "description": item.get("description"), "updatedAt": item["updatedAt"]}
        | ({"value": item["value"]} if with_values else {})
        for key, item in items.items()
    }


def new_space_settings(payload: dict[str, Any]) -> dict[str, Any]:
    """A Space's settings from a ``/api/repos/create`` payload: SDK, hardware, sleep time, secrets, variables."""
    if payload.get("sdk") not in SPACE_SDKS:
        raise HubError(400, f"Invalid Space SDK {payload.get('sdk')!r}: expected one of {', '.join(SPACE_SDKS)}")
    now = utc_now()
    for item in (payload.get("secrets") or []) + (payload.get("variables") or []):
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), str):
            raise HubError(400, "Space secrets and variables need a string 'key' and 'value'")
    settings = {
        kind: {
            item["key"]: {"value": item["value"], "description": item.get("description"), "updatedAt": now}
            for item in payload.get(kind) or []
        }
        for kind in ("secrets", "variables")
    }
    hardware = payload.get("hardware") or "cpu-basic"
    return {"sdk": payload["sdk"], "hardware": hardware, "sleep_time": payload.get("sleepTimeSeconds"), **settings}


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` inclusive for a ``Range: bytes=...`` header, ``None`` without one; 416 if unsatisfiable."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    first, last = match.groups() if match else ("", "")
    if first:
        start, end = int(first), min(int(last or size - 1), size - 1)
    elif last:
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = size, 0  # unparsable: unsatisfiable
    if start >= size or start > end:
        unsatisfiable = {"Content-Range": f"bytes */{size}"}
        raise HubError(416, f"Range {header!r} not satisfiable for {size} bytes", headers=unsatisfiable)
    return start, end


def content_response(request: Request, data: bytes, headers: dict[str, str]) -> Response:
    """File content with ``Range`` support; a HEAD request gets the headers only."""
    span = parse_range(request.headers.get("range"), len(data))
    status = 200
    if span is not None:
        headers["Content-Range"] = f"bytes {span[0]}-{span[1]}/{len(data)}"
        data, status = data[span[0] : span[1] + 1], 206
    headers.update({"Accept-Ranges": "bytes", "Content-Length": str(len(data))})
    body = b"" if request.method == "HEAD" else data
    return Response(body, status, headers=headers, media_type="application/octet-stream")


# ------------------------------------------------------------------------------------------------ the routes


def build_app(hub: HubServer) -> FastAPI:
    """The FastAPI app behind ``hub``: error handling, failure injection and logging, then each group of routes."""
    app = FastAPI(title="voxplug test Hub", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, error: HubError) -> JSONResponse:
        return error.response()

    @app.middleware("http")
    async def inject_failures_and_log(request: Request, call_next: Any) -> Response:
        status = hub.take_failure(request.method, request.url.path)
        if status is None:
            response: Response = await call_next(request)
        else:
            response = HubError(status, f"Injected failure ({status}) by the test Hub").response()
        with hub.store.lock:
            hub.requests.append(LoggedRequest(request.method, request.url.path, response.status_code))
        return response

    for add_routes in (add_repo_routes, add_listing_routes, add_commit_routes, add_lfs_routes, add_space_routes):
        add_routes(app, hub)
    for repo_type, prefix in URL_PREFIXES.items():
        # Registered last: "/{namespace}/{name}/resolve/..." must not shadow the /api routes.
        app.add_api_route(
            f"/{prefix}{{namespace}}/{{name}}/resolve/{{revision}}/{{path:path}}",
            resolve_route(hub, repo_type),
            methods=["GET", "HEAD"],
        )
    return app


def add_repo_routes(app: FastAPI, hub: HubServer) -> None:
    """``whoami-v2``, repo create / delete and repo info."""
    store = hub.store

    @app.get("/api/whoami-v2")
    async def whoami(request: Request) -> dict[str, Any]:
        caller = hub.caller(request)
        if caller is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        role = "write" if caller.write else "read"
        orgs = [{"type": "org", "name": org, "fullname": org} for org in sorted(caller.namespaces - {caller.name})]
        return {
            "type": "user",
            "name": caller.name,
            "fullname": caller.name,
            "email": None,
            "isPro": False,
            "orgs": orgs,
            "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": role}},
        }

    @app.post("/api/repos/create")
    async def create_repo(request: Request) -> JSONResponse:
        payload = await request.json()
        repo_type, repo_id = repo_from_payload(hub, request, payload)
        hub.writer(request, repo_id.split("/")[0], f"create a {repo_type} repo")
        if not REPO_NAME.match(repo_id.split("/")[1]):
            raise HubError(400, f"Invalid repo name {repo_id!r}: use letters, digits, '-', '_' and '.' (96 at most)")
        with store.lock:
            if (repo_type, repo_id) in store.repos:
                url = f"{hub.url}/{URL_PREFIXES[repo_type]}{repo_id}"
                raise HubError(409, f"You already created this {repo_type} repo", url=url)
            others = [t for t in URL_PREFIXES if (t, repo_id) in store.repos]
            if hub.strict_repo_types and others:
                raise HubError(
                    400,
                    f"Cannot create {repo_type} repo {repo_id}: a {others[0]} repo with this id "
                    "already exists on this test Hub (a missing repo_type=?)",
                )
            repo = Repo(repo_type, repo_id, requested_visibility(payload, repo_type) or "public", utc_now())
            repo.space = new_space_settings(payload) if repo_type == "space" else None
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in hub.lfs_patterns).encode()
            entry = FileEntry.create(store.put_object(gitattributes), len(gitattributes), False, gitattributes)
            store.repos[repo_type, repo_id] = repo
            store.commit(repo, "main", {".gitattributes": entry}, "initial commit", "", repo_id.split("/")[0])
        return JSONResponse({"url": f"{hub.url}/{repo.url_path}", "name": repo_id, "id": repo_id})

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request) -> JSONResponse:
        repo_type, repo_id = repo_from_payload(hub, request, await request.json())
        with store.lock:
            store.delete(hub.writable(request, repo_type, repo_id)[1])
        return JSONResponse({})

    @app.put("/api/{kind}/{namespace}/{name}/settings")
    async def update_settings(request: Request, kind: str, namespace: str, name: str) -> JSONResponse:
        payload = await request.json()
        repo_type = repo_type_of(kind)
        with store.lock:
            repo = hub.writable(request, repo_type, f"{namespace}/{name}")[1]
            visibility = requested_visibility(payload, repo_type)
            if visibility is not None:
                repo.visibility = visibility
                store.save(repo)
        return JSONResponse({})

    @app.get("/api/{kind}/{namespace}/{name}")
    @app.get("/api/{kind}/{namespace}/{name}/revision/{revision}")
    async def repo_info(request: Request, kind: str, namespace: str, name: str, revision: str = "main") -> Any:
        with store.lock:
            repo = hub.readable(request, repo_type_of(kind), f"{namespace}/{name}")
            return repo_info_json(store, repo, repo.resolve(revision))


def requested_visibility(payload: dict[str, Any], repo_type: str) -> str | None:
    """The visibility a create or settings payload asks for, or None when it names none.

    ``huggingface_hub`` 2.4 sends ``"visibility": "public" | "private" | "protected"`` (protected: Spaces only);
    older clients sent ``"private": true | false``. A repo created without either is public, as in a user's
    namespace on the Hub.
    """
    visibility = payload.get("visibility")
    if visibility is None and isinstance(payload.get("private"), bool):
        visibility = "private" if payload["private"] else "public"
    if visibility is None:
        return None
    if visibility not in VISIBILITIES or (visibility == "protected" and repo_type != "space"):
        allowed = VISIBILITIES if repo_type == "space" else VISIBILITIES[:2]
        expected = " or ".join(allowed)
        raise HubError(400, f"Invalid visibility {visibility!r} for a {repo_type} repo: expected {expected}")
    return visibility


def repo_from_payload(hub: HubServer, request: Request, payload: dict[str, Any]) -> tuple[str, str]:
    """Repo type and id from a create/delete payload (``organization`` defaults to the caller's name)."""
    repo_type = payload.get("type") or "model"
    if repo_type not in URL_PREFIXES:
        raise HubError(400, f"Invalid repo type {repo_type!r}: expected model, dataset or space")
    caller = hub.caller(request)
    namespace = payload.get("organization") or (caller.name if caller else "")
    return repo_type, f"{namespace}/{payload.get('name', '')}"


def add_listing_routes(app: FastAPI, hub: HubServer) -> None:
    """Refs, commits, tree and paths-info."""
    store = hub.store

    @app.get("/api/{kind}/{namespace}/{name}/refs")
    async def list_refs(request: Request, kind: str, namespace: str, name: str) -> Any:
        repo = hub.readable(request, repo_type_of(kind), f"{namespace}/{name}")
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in sorted(repo.branches.items())]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": []}

    @app.get("/api/{kind}/{namespace}/{name}/commits/{revision}")
    async def list_commits(request: Request, kind: str, namespace: str, name: str, revision: str) -> Any:
        with store.lock:
            repo = hub.readable(request, repo_type_of(kind), f"{namespace}/{name}")
            return [commit.info_json() for commit in repo.history(repo.resolve(revision))]

    @app.get("/api/{kind}/{namespace}/{name}/tree/{revision}")
    @app.get("/api/{kind}/{namespace}/{name}/tree/{revision}/{path:path}")
    async def list_tree(request: Request, kind: str, namespace: str, name: str, revision: str, path: str = "") -> Any:
        with store.lock:
            repo = hub.readable(request, repo_type_of(kind), f"{namespace}/{name}")
            commit, path = repo.resolve(revision), path.strip("/")
            if path and not any(p.startswith(path + "/") for p in commit.files):
                raise HubError(404, f"Folder {path!r} not found at {revision}", "EntryNotFound")
            items = tree_json(commit.files, path, is_true(request.query_params.get("recursive")))
            if is_true(request.query_params.get("expand")):
                for item in items:
                    item["lastCommit"] = last_commit_json(repo, commit, item["path"])
            return items

    @app.post("/api/{kind}/{namespace}/{name}/paths-info/{revision}")
    async def paths_info(request: Request, kind: str, namespace: str, name: str, revision: str) -> Any:
        form = parse_qs((await request.body()).decode())  # form-encoded: paths=a&paths=b&expand=False
        with store.lock:
            repo = hub.readable(request, repo_type_of(kind), f"{namespace}/{name}")
            commit = repo.resolve(revision)
            infos = [info for p in form.get("paths", []) if (info := path_info_json(commit.files, p))]
            if is_true(form.get("expand", [""])[0]):
                for info in infos:
                    info["lastCommit"] = last_commit_json(repo, commit, info["path"])
            return infos


def add_commit_routes(app: FastAPI, hub: HubServer) -> None:
    """Model card check, preupload (upload mode per file) and the NDJSON commit."""
    store = hub.store

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request) -> JSONResponse:
        hub.caller(request)
        content = str((await request.json()).get("content", ""))
        if errors := card_metadata_errors(content):
            return JSONResponse({"error": "\n".join(errors), "errors": [{"message": e} for e in errors]}, 400)
        empty = not read_card_metadata(content)
        warnings = [{"message": "Empty or missing yaml metadata in repo card"}] if empty else []
        return JSONResponse({"errors": [], "warnings": warnings})

    @app.post("/api/{kind}/{namespace}/{name}/preupload/{revision}")
    async def preupload(request: Request, kind: str, namespace: str, name: str, revision: str) -> Any:
        payload = await request.json()
        with store.lock:
            repo = hub.writable(request, repo_type_of(kind), f"{namespace}/{name}")[1]
            reject_pull_requests(request)
            commit = repo.resolve(revision)
            files = []
            for item in payload.get("files", []):
                existing = commit.files.get(item["path"])
                # The client compares this oid with its own: sha256 for LFS files, git blob id for regular ones.
                oid = existing and (existing.sha256 if existing.lfs else existing.oid)
                mode = hub.upload_mode(item["path"], int(item["size"]))
                files.append({"path": item["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
            return {"files": files, "commitOid": commit.id}

    @app.post("/api/{kind}/{namespace}/{name}/commit/{revision}")
    async def commit(request: Request, kind: str, namespace: str, name: str, revision: str) -> Any:
        try:
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        except ValueError as err:
            raise HubError(400, f"The commit payload is not NDJSON: {err}") from err
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a 'header' line")
        header = lines[0]["value"]
        with store.lock:
            caller, repo = hub.writable(request, repo_type_of(kind), f"{namespace}/{name}")
            reject_pull_requests(request)
            if revision not in repo.branches:
                raise HubError(404, f"Branch {revision!r} not found: commit to an existing branch", "RevisionNotFound")
            head = repo.resolve(revision)
            if header.get("parentCommit") not in (None, head.id):
                raise HubError(412, f"A commit has happened since {header['parentCommit']}: the head is {head.id}")
            files = dict(head.files)
            for line in lines[1:]:
                try:
                    apply_commit_line(store, files, line.get("key"), line.get("value") or {})
                except (KeyError, TypeError, ValueError) as err:
                    raise HubError(400, f"Malformed commit line {line.get('key')!r}: {err!r}") from err
            check_readme(store, files, head)
            title, message = header.get("summary") or "Update", header.get("description") or ""
            new = store.commit(repo, revision, files, title, message, caller.name)
        url = f"{hub.url}/{repo.url_path}/commit/{new.id}"
        return {"success": True, "commitOid": new.id, "commitUrl": url, "hookOutput": "", "pullRequestUrl": None}


def reject_pull_requests(request: Request) -> None:
    """A clear 400 for ``create_pr=True``, which this server does not implement."""
    if request.query_params.get("create_pr"):
        raise HubError(400, "Pull requests (create_pr=True) are not supported by this test Hub")


def apply_commit_line(store: RepoStore, files: dict[str, FileEntry], key: str | None, value: dict[str, Any]) -> None:
    """Apply one NDJSON commit line (``file``, ``lfsFile``, ``deletedFile``, ``deletedFolder``) to ``files``."""
    path = str(value.get("path", "")).strip("/")
    if key == "file":
        data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"].encode()
        files[path] = FileEntry.create(store.put_object(data), len(data), False, data)
    elif key == "lfsFile":
        oid = str(value.get("oid", ""))
        if not store.object_path(oid).exists():
            raise HubError(400, f"LFS object {oid} for {path} was not uploaded: use the LFS batch API first")
        files[path] = FileEntry.create(oid, store.object_path(oid).stat().st_size, lfs=True)
    elif key == "deletedFile":
        if files.pop(path, None) is None:
            raise HubError(404, f"Cannot delete {path}: no such file", "EntryNotFound")
    elif key == "deletedFolder":
        inside = [p for p in files if p.startswith(path + "/")]
        if not inside:
            raise HubError(404, f"Cannot delete folder {path}: no such folder", "EntryNotFound")
        for p in inside:
            del files[p]
    else:
        raise HubError(400, f"Unsupported commit line {key!r}: expected file, lfsFile, deletedFile or deletedFolder")


def check_readme(store: RepoStore, files: dict[str, FileEntry], head: Commit) -> None:
    """Refuse a commit that changes README.md to invalid metadata, as the Hub does (whatever the client checked)."""
    readme = files.get("README.md")
    if readme is not None and readme != head.files.get("README.md"):
        if errors := card_metadata_errors(store.read_object(readme.sha256).decode(errors="replace")):
            raise HubError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))


def add_lfs_routes(app: FastAPI, hub: HubServer) -> None:
    """Git LFS batch API (basic transfer), the upload and "CDN" download of objects, and the Xet refusal."""
    store = hub.store
    for repo_type, prefix in URL_PREFIXES.items():
        app.add_api_route(
            f"/{prefix}{{namespace}}/{{name}}.git/info/lfs/objects/batch",
            lfs_batch_route(hub, repo_type),
            methods=["POST"],
        )
        app.add_api_route(
            f"/{prefix}{{namespace}}/{{name}}.git/info/lfs/objects/verify",
            lfs_verify_route(hub, repo_type),
            methods=["POST"],
        )

    @app.put("/lfs-upload/{oid}")
    async def lfs_upload(request: Request, oid: str) -> JSONResponse:
        ticket = request.query_params.get("ticket", "")
        expected = hub.upload_tickets.get(ticket)
        if expected is None or expected[0] != oid:
            raise HubError(403, "Invalid or expired upload URL: ask the LFS batch API for a new one")
        data = await request.body()
        if len(data) != expected[1]:
            raise HubError(400, f"Size mismatch for {oid}: announced {expected[1]} bytes, received {len(data)}")
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"sha256 mismatch: the uploaded content does not hash to {oid}")
        with store.lock:
            store.put_object(data)
            # only this ticket is spent: one batch may hand out one per path for two paths of the same content
            hub.upload_tickets.pop(ticket, None)
        return JSONResponse({}, headers={"ETag": f'"{oid}"'})

    @app.api_route("/lfs-objects/{oid}", methods=["GET", "HEAD"])
    async def lfs_object(request: Request, oid: str) -> Response:
        if not hmac.compare_digest(hub.cdn_signature(oid), request.query_params.get("sig", "")):
            raise HubError(403, "Invalid or missing signature")
        if not store.object_path(oid).exists():
            raise HubError(404, f"No LFS object {oid}")
        return content_response(request, store.read_object(oid), {"ETag": f'"{oid}"'})

    @app.api_route("/api/{kind}/{namespace}/{name}/xet-{token_type}-token/{revision}", methods=["GET", "POST"])
    async def xet_token(kind: str, namespace: str, name: str, token_type: str, revision: str) -> Response:
        raise HubError(501, XET_NOT_SUPPORTED)


def lfs_batch_route(hub: HubServer, repo_type: str) -> Any:
    """``POST {repo}.git/info/lfs/objects/batch``: upload and verify actions pointing back to this server."""

    async def lfs_batch(request: Request, namespace: str, name: str) -> JSONResponse:
        payload = await request.json()
        with hub.store.lock:
            repo = hub.writable(request, repo_type, f"{namespace}/{name}")[1]
            if payload.get("operation") != "upload":
                raise HubError(400, "Only the LFS 'upload' operation is supported: download files with /resolve")
            ref = (payload.get("ref") or {}).get("name")
            if ref is not None and ref not in repo.branches:
                raise HubError(404, f"Branch {ref!r} not found", "RevisionNotFound")
            objects = []
            for obj in payload.get("objects", []):
                oid, size = str(obj.get("oid", "")), obj.get("size")
                item: dict[str, Any] = {"oid": oid, "size": size if isinstance(size, int) else 0}
                if not SHA256.fullmatch(oid) or not isinstance(size, int) or size < 0:
                    item["error"] = {"code": 422, "message": "oid must be a sha256 hex digest and size an integer"}
                elif not hub.store.object_path(oid).exists():  # no "actions": the client skips the upload
                    ticket = hub.new_upload_ticket(oid, size)
                    item["actions"] = {
                        "upload": {"href": f"{hub.url}/lfs-upload/{oid}?ticket={ticket}", "expires_in": 3600},
                        "verify": {"href": f"{hub.url}/{repo.url_path}.git/info/lfs/objects/verify"},
                    }
                objects.append(item)
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return JSONResponse(body, media_type="application/vnd.git-lfs+json")

    return lfs_batch


def lfs_verify_route(hub: HubServer, repo_type: str) -> Any:
    """``POST {repo}.git/info/lfs/objects/verify``: confirm an uploaded object is stored with the announced size."""

    async def lfs_verify(request: Request, namespace: str, name: str) -> JSONResponse:
        payload = await request.json()
        hub.writable(request, repo_type, f"{namespace}/{name}")
        path = hub.store.object_path(str(payload.get("oid", "")))
        if not path.exists() or path.stat().st_size != payload.get("size"):
            raise HubError(404, f"LFS object {payload.get('oid')} of size {payload.get('size')} was not uploaded")
        return JSONResponse({"success": True})

    return lfs_verify


def resolve_route(hub: HubServer, repo_type: str) -> Any:
    """``GET`` / ``HEAD {repo}/resolve/{revision}/{path}`` with the headers ``hf_hub_download`` relies on:
    ``X-Repo-Commit``, ``ETag`` (git blob id, or sha256 for LFS), ``X-Linked-Etag`` / ``X-Linked-Size`` and a
    redirect to the "CDN" for LFS files, ``Content-Length`` and ``Range`` support."""

    async def resolve(request: Request, namespace: str, name: str, revision: str, path: str) -> Response:
        with hub.store.lock:
            commit = hub.readable(request, repo_type, f"{namespace}/{name}").resolve(revision)
        headers = {"X-Repo-Commit": commit.id}
        entry = commit.files.get(path)
        if entry is None:  # X-Repo-Commit lets the client cache the absence
            raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", headers=headers)
        if not entry.lfs:
            return content_response(request, hub.store.read_object(entry.sha256), {**headers, "ETag": f'"{entry.oid}"'})
        etag = f'"{entry.sha256}"'
        headers.update({"ETag": etag, "X-Linked-Etag": etag, "X-Linked-Size": str(entry.size)})
        if hub.lfs_redirect:
            return Response(status_code=302, headers={**headers, "Location": hub.cdn_url(entry.sha256)})
        return content_response(request, hub.store.read_object(entry.sha256), headers)

    return resolve


def add_space_routes(app: FastAPI, hub: HubServer) -> None:
    """Space runtime, hardware requests, secrets and variables."""
    store = hub.store

    @app.get("/api/spaces/{namespace}/{name}/runtime")
    async def space_runtime(request: Request, namespace: str, name: str) -> Any:
        with store.lock:
            return space_runtime_json(hub.readable(request, "space", f"{namespace}/{name}"))

    @app.post("/api/spaces/{namespace}/{name}/hardware")
    async def request_hardware(request: Request, namespace: str, name: str) -> Any:
        payload = await request.json()
        if not isinstance(payload.get("flavor"), str) or not payload["flavor"]:
            raise HubError(400, "Missing hardware 'flavor'")
        with store.lock:
            repo = hub.writable(request, "space", f"{namespace}/{name}")[1]
            assert repo.space is not None
            repo.space["hardware"] = payload["flavor"]
            repo.space["sleep_time"] = payload.get("sleepTimeSeconds", repo.space["sleep_time"])
            store.save(repo)
            return space_runtime_json(repo)

    for kind in ("secrets", "variables"):
        app.add_api_route(
            f"/api/spaces/{{namespace}}/{{name}}/{kind}",
            space_settings_route(hub, kind),
            methods=["GET", "POST", "DELETE"],
        )


def space_settings_route(hub: HubServer, kind: str) -> Any:
    """``GET`` / ``POST`` / ``DELETE /api/spaces/{id}/{secrets,variables}``; secret values are never returned."""

    async def space_settings(request: Request, namespace: str, name: str) -> JSONResponse:
        payload = await request.json() if request.method != "GET" else {}
        with hub.store.lock:
            repo = hub.writable(request, "space", f"{namespace}/{name}")[1]  # settings are for the owner only
            assert repo.space is not None
            items = repo.space[kind]
            if request.method == "POST":
                if not isinstance(payload.get("key"), str) or not isinstance(payload.get("value"), str):
                    raise HubError(400, f"A Space {kind[:-1]} needs a string 'key' and a string 'value'")
                description = payload.get("description")
                items[payload["key"]] = {"value": payload["value"], "description": description, "updatedAt": utc_now()}
            elif request.method == "DELETE":
                items.pop(str(payload.get("key")), None)
            hub.store.save(repo)
            return JSONResponse(space_settings_json(items, with_values=kind == "variables"))

    return space_settings


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground: ``python -m voxplug.testing.hub_server --port 8765 --root DIR``."""
    parser = argparse.ArgumentParser(description="A Hugging Face Hub-compatible server for tests (loopback only).")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--root", type=Path, required=True, help="where repos are stored")
    parser.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="TOKEN:USER[:read]",
        help=f"a token to accept (repeatable); default: {DEFAULT_TOKEN} for {DEFAULT_USER}",
    )
    args = parser.parse_args(argv)
    tokens = {}
    for spec in args.token:
        token, user, *role = spec.split(":")
        tokens[token] = (user, role[0] if role else "write")
    hub = HubServer(args.root, tokens=tokens or None, port=args.port).start()
    print(f"Test Hub on {hub.url}, storing repos in {hub.root}. For a client:", flush=True)
    for key, value in hub.client_env().items():
        value = "<one of your --token values>" if key == "HF_TOKEN" and tokens else value
        print(f"  export {key}={value}", flush=True)
    try:
        while hub.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
