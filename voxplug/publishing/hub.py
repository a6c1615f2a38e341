"""Talking to the Hugging Face Hub safely: tokens, repo ids, repo types, one-commit uploads, retries.

Shared by the ``hub`` publisher and the ``space`` deployer (and usable by third-party publishers).

Tokens come only from ``huggingface_hub.get_token()``: the ``HF_TOKEN`` environment variable, else the token
``hf auth login`` stored. They are never read from argv or config, never logged, and never written into a
file that is uploaded (:func:`refuse_files_containing` checks). The endpoint is ``HF_ENDPOINT`` (read by
huggingface_hub when it is imported) unless a publisher's ``endpoint`` option names another one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field

from voxplug.errors import PublishError
from voxplug.extension import PluginOptions

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger("voxplug.publishing")

T = TypeVar("T")
REPO_TYPES = ("model", "dataset", "space")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HubConnectionOptions(PluginOptions):
    """Options every Hub-facing extension shares: where the Hub is and how patiently to retry."""

    endpoint: str | None = Field(None, description="Hub address; default HF_ENDPOINT or https://huggingface.co")
    max_attempts: int = Field(5, ge=1, description="tries per Hub request before giving up on transient errors")
    retry_wait_s: float = Field(2.0, ge=0, description="first wait between tries; doubles each time")

    def retry_policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` these options describe."""
        return RetryPolicy(self.max_attempts, self.retry_wait_s)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently Hub requests are retried on transient failures."""

    attempts: int = 5
    wait_s: float = 2.0

    def run(self, action: Callable[[], T], *, what: str) -> T:
        """Run ``action`` under this policy (see :func:`retry_transient`)."""
        return retry_transient(action, what=what, attempts=self.attempts, wait_s=self.wait_s)


@dataclass(frozen=True)
class HubAccount:
    """Who a token belongs to. The token itself stays out of ``repr`` so it never lands in logs."""

    name: str
    role: str | None
    endpoint: str
    token_source: str

    def __repr__(self) -> str:
        return f"HubAccount(name={self.name!r}, role={self.role!r}, endpoint={self.endpoint!r})"


def hub_api(endpoint: str | None = None) -> HfApi:
    """An ``HfApi`` for ``endpoint`` (default: ``HF_ENDPOINT`` or huggingface.co), without a token bound to it."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint.rstrip("/") if endpoint else None)


def hub_token() -> str:
    """The write token voxplug uses: ``HF_TOKEN`` or the ``hf auth login`` token; a clear error when there is none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        others = [name for name in ("HF_WRITE_TOKEN", "HUGGINGFACE_HUB_TOKEN") if os.environ.get(name)]
        hint = f"; {' and '.join(others)} is set, but voxplug reads only HF_TOKEN" if others else ""
        raise PublishError(
            "no Hugging Face token: set HF_TOKEN in the environment or run `hf auth login` "
            f"(tokens are never read from the command line or config files){hint}"
        )
    return token


def token_source() -> str:
    """Where the token comes from, for error messages (never the token itself)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(name):
            return f"the {name} environment variable"
    return "the `hf auth login` token"


def authenticate(
    api: HfApi, token: str, *, need_write: bool = True, source: str | None = None, retry: RetryPolicy = RetryPolicy()
) -> HubAccount:
    """Check ``token`` with ``whoami`` before anything is uploaded; raise a clear error for a bad or read-only one."""
    source = source or token_source()
    try:
        answer = retry.run(lambda: api.whoami(token=token), what=f"checking the Hugging Face token with {api.endpoint}")
    except PublishError as exc:
        status = _status(exc.__cause__)
        if status in (401, 403):
            raise PublishError(
                f"the Hugging Face token from {source} was refused by {api.endpoint} (HTTP {status}): "
                "it is invalid or expired; create a new one at https://huggingface.co/settings/tokens"
            ) from None
        raise
    role = (((answer.get("auth") or {}).get("accessToken")) or {}).get("role")
    if need_write and role == "read":
        raise PublishError(
            f"the Hugging Face token from {source} (user {answer.get('name')!r}) is read-only; "
            "publishing needs a token with write access"
        )
    return HubAccount(name=str(answer.get("name")), role=role, endpoint=api.endpoint, token_source=source)


def full_repo_id(destination: str, account: HubAccount, *, repo_type: str = "model") -> str:
    """``name`` → ``<user>/name``; checks the id with huggingface_hub's validator and rejects type prefixes."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    for other, prefix in URL_PREFIXES.items():
        if prefix and destination.startswith(prefix):
            raise PublishError(
                f"invalid repo id {destination!r}: drop the {prefix!r} prefix; this target publishes a {repo_type} repo"
                + (f", not a {other} repo" if other != repo_type else "")
            )
    repo_id = destination if "/" in destination else f"{account.name}/{destination}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PublishError(f"invalid repo id {repo_id!r}: {exc}") from None
    if repo_id.count("/") != 1:
        raise PublishError(f"invalid repo id {repo_id!r}: expected 'owner/name'")
    return repo_id


def repo_url(api: HfApi, repo_id: str, repo_type: str = "model") -> str:
    """The web address of a repo on ``api``'s endpoint."""
    return f"{api.endpoint}/{URL_PREFIXES[repo_type]}{repo_id}"


def ensure_repo(
    api: HfApi,
    token: str,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    retry: RetryPolicy = RetryPolicy(),
    **create: Any,
) -> bool:
    """Create ``repo_id`` (or reuse it) and check its visibility is ``private``; return True when it already existed.

    A repo of that name that exists only as another type is refused: publishing a model under the name of your
    dataset or Space is almost always a mix-up. The visibility is read back from the Hub, since an existing repo
    keeps the one it has: when it is not what was asked, :class:`PublishError` says so before anything is uploaded.
    """

    def exists(kind: str) -> bool:
        return retry.run(lambda: api.repo_exists(repo_id, repo_type=kind, token=token), what=f"looking up {repo_id}")

    if exists(repo_type):
        check_visibility(api, token, repo_id, repo_type=repo_type, private=private, retry=retry, existed=True)
        return True
    others = [other for other in REPO_TYPES if other != repo_type and exists(other)]
    if others:
        where = ", ".join(repo_url(api, repo_id, other) for other in others)
        raise PublishError(
            f"{repo_id} already exists as a {' and a '.join(others)} repo ({where}), not a {repo_type} repo; "
            f"choose another name for the {repo_type}"
        )
    retry.run(
        lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, token=token, **create),
        what=f"creating {repo_type} repo {repo_id}",
    )
    check_visibility(api, token, repo_id, repo_type=repo_type, private=private, retry=retry, existed=False)
    log.info("created %s %s repo %s", visibility_name(private), repo_type, repo_id)
    return False


def visibility_name(private: bool) -> str:
    """``private`` or ``public``."""
    return "private" if private else "public"


def check_visibility(
    api: HfApi,
    token: str,
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    retry: RetryPolicy = RetryPolicy(),
    existed: bool = True,
) -> None:
    """Read the repo's visibility back from the Hub; raise :class:`PublishError` when it is not ``private``.

    ``create_repo(exist_ok=True)`` leaves an existing repo's visibility as it was, and a server may not make what
    was asked, so "private" is never assumed: only what the Hub reports counts.
    """
    info = retry.run(
        lambda: api.repo_info(repo_id, repo_type=repo_type, token=token), what=f"reading the visibility of {repo_id}"
    )
    actual = getattr(info, "private", None)
    if actual is None:
        where = repo_url(api, repo_id, repo_type)
        raise PublishError(f"{where}: the Hub did not say whether the repo is private; nothing was uploaded")
    if bool(actual) == private:
        return
    wanted, found = visibility_name(private), visibility_name(bool(actual))
    how = "an existing repo keeps its visibility" if existed else "the Hub did not create it as asked"
    type_flag = "" if repo_type == "model" else f" --type {repo_type}"
    raise PublishError(
        f"{repo_url(api, repo_id, repo_type)} is {found}, but you asked for a {wanted} {repo_type} repo ({how}); "
        f"nothing was uploaded. Make it {wanted} first (`hf repos settings {repo_id}{type_flag} --{wanted}` or the "
        f"repo's settings page), or ask for a {found} repo"
    )


def commit_folder(
    api: HfApi,
    token: str,
    repo_id: str,
    folder: Path,
    *,
    repo_type: str,
    message: str,
    retry: RetryPolicy = RetryPolicy(),
    remove_stale: bool = False,
) -> str:
    """Upload every file of ``folder`` to ``repo_id`` in ONE commit; return the commit id.

    Large files go through the transfer huggingface_hub picks (Xet on the Hub, Git LFS elsewhere) during the
    pre-upload; files already on the remote are skipped, so a retry (or re-running after a crash) resumes
    instead of starting over. Transient failures are retried with exponential backoff. With ``remove_stale``
    the same commit deletes the remote files ``folder`` does not have (``.gitattributes`` excepted), so the repo
    holds exactly this upload.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    files = sorted(path for path in folder.rglob("*") if path.is_file())
    names = {path.relative_to(folder).as_posix() for path in files}

    def commit() -> Any:
        operations: list[Any] = [CommitOperationAdd(path.relative_to(folder).as_posix(), str(path)) for path in files]
        if remove_stale:
            remote = api.list_repo_files(repo_id, repo_type=repo_type, token=token)
            stale = sorted(name for name in remote if name not in names and name != ".gitattributes")
            operations += [CommitOperationDelete(name) for name in stale]
            if stale:
                log.info("removing %d file(s) of an earlier upload from %s: %s", len(stale), repo_id, ", ".join(stale))
        return api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type, token=token)

    info = retry.run(commit, what=f"uploading {len(files)} files to {repo_id}")
    return str(info.oid)


def retry_transient(action: Callable[[], T], *, what: str, attempts: int = 5, wait_s: float = 2.0) -> T:
    """Run ``action``; on a transient failure (HTTP 5xx/429, connection error, timeout) wait and retry.

    Waits ``wait_s``, then twice as long each time, at most ``attempts`` tries in all. A Hub or network error
    that is not transient, or still fails on the last try, becomes a :class:`PublishError` naming ``what``
    failed (the original error is its ``__cause__``); other exceptions propagate unchanged.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if is_transient(exc) and attempt < attempts:
                delay = wait_s * 2 ** (attempt - 1)
                log.warning("%s failed (%s); retry %d/%d in %.1f s", what, _reason(exc), attempt, attempts - 1, delay)
                time.sleep(delay)
                continue
            if _is_hub_or_network_error(exc):
                tries = f" after {attempt} tries" if attempt > 1 else ""
                raise PublishError(f"{what} failed{tries}: {_reason(exc)}") from exc
            raise
    raise AssertionError("unreachable")


def _is_hub_or_network_error(exc: BaseException) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(exc, (HfHubHTTPError, _transport_error(), ConnectionError, TimeoutError))


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help: HTTP 408/425/429/5xx, or a connection-level error."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(exc, HfHubHTTPError):
        return _status(exc) in TRANSIENT_STATUS
    return isinstance(exc, (_transport_error(), ConnectionError, TimeoutError))


def _transport_error() -> type[Exception]:
    """The HTTP client's connection-level error class (huggingface_hub 2.x uses httpx2, older versions httpx)."""
    try:
        import httpx2 as httpx
    except ImportError:  # pragma: no cover - depends on the huggingface_hub release
        import httpx
    return httpx.TransportError


def _status(exc: Any) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _reason(exc: BaseException) -> str:
    """The first line of an error, without the request id noise huggingface_hub appends."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


SCANNED_SIZE_LIMIT = 64 * 1024 * 1024


def refuse_files_containing(folder: Path, secret: str) -> None:
    """Raise when any file under ``folder`` contains ``secret`` (a token must never be uploaded).

    Files larger than 64 MiB (weights) are not read; every config, card, JSON and app file is.
    """
    needle = secret.encode()
    leaking = [
        path.relative_to(folder).as_posix()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.stat().st_size <= SCANNED_SIZE_LIMIT and needle in path.read_bytes()
    ]
    if leaking:
        raise PublishError(f"refusing to upload: your Hugging Face token appears in {', '.join(leaking)}")
