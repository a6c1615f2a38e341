"""Hugging Face tokens in the web app: one lookup order, held in server memory only, never shown or logged.

Lookup order (the same for every job the app starts, so that training, publishing and deploying all act as the
same account):

1. the token this browser session entered in the password field (kept in server memory, in the session's
   state: never written to a file, never sent back to the browser);
2. on a Space with OAuth, the signed-in user's own token;
3. the server's own token, ``huggingface_hub.get_token()`` (``HF_TOKEN``, else the ``hf auth login`` token),
   but only for sessions the server may lend it to (:class:`ServerTokenPolicy`): otherwise anybody who can open
   the page could push under the owner's account.

A job receives the resolved token as ``HF_TOKEN`` in its environment, never on a command line (which process
lists and logs show). The rest of its environment is allow-listed (:func:`job_environment`): a job started by any
visitor must not read the server's other secrets (cloud keys, OAuth client secrets, database passwords), and no
token variable but that ``HF_TOKEN`` reaches it, so the child process cannot pick a different token. All job
output passes through :func:`redact` before it is kept or shown.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from voxplug.errors import PublishError

TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HF_WRITE_TOKEN", "HF_READ_TOKEN")
"""Environment variables that may hold a Hugging Face token; jobs get only ``HF_TOKEN``, set by the app."""
JOB_ENV_NAMES = frozenset(
    "PATH HOME USER LOGNAME SHELL TERM LANG LANGUAGE TZ TMPDIR TEMP TMP VIRTUAL_ENV LD_LIBRARY_PATH "
    "SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CURL_CA_BUNDLE HTTP_PROXY HTTPS_PROXY NO_PROXY "
    "http_proxy https_proxy no_proxy OMP_NUM_THREADS MKL_NUM_THREADS OPENBLAS_NUM_THREADS TOKENIZERS_PARALLELISM "
    "MPLCONFIGDIR".split()
)
"""Variables a job inherits from the server by name: the system's basics, certificates, proxies, thread counts."""
JOB_ENV_PREFIXES = (
    "LC_", "XDG_", "PYTHON", "CUDA_", "NVIDIA_", "NCCL_", "TORCH", "PYTORCH_", "TRITON_",
    "HF_", "TRANSFORMERS_", "DATASETS_", "ACCELERATE_", "VOXPLUG_",
)  # fmt: skip
"""Prefixes of the variables a job inherits: Python, the accelerator stack, the Hugging Face libraries, voxplug."""
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|(^|_)(API_)?KEY($|_)", re.IGNORECASE)
"""Names never inherited even under an allowed prefix (``HF_TOKEN_PATH``, ``VOXPLUG_API_KEY``, ...)."""
_TOKEN_SHAPE = re.compile(r"hf_(?:oauth_)?[A-Za-z0-9]{8,}")
"""A Hugging Face token: ``hf_`` and letters and digits; OAuth sessions' tokens start with ``hf_oauth_``."""
REDACTED = "hf_***"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

ServerTokenMode = Literal["auto", "always", "never"]


class Secret:
    """A token that does not show itself: ``repr``/``str`` print ``***``; :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The token itself, for a child process's environment."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __deepcopy__(self, memo: dict) -> Secret:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class ServerTokenPolicy:
    """Which sessions may use the server's own Hugging Face token when they entered none.

    ``auto`` lends it when the app listens on loopback only (the person at the machine owns it), is not a Space and
    has no public share link (``shared``: a gradio.live tunnel reaches loopback from the whole internet), and on a
    Space only to the signed-in Space owner; ``always`` lends it to every session (for a server behind your own
    authentication); ``never`` never does.
    """

    mode: ServerTokenMode = "auto"
    host: str = "127.0.0.1"
    shared: bool = False

    def allows(self, username: str | None) -> bool:
        """Whether a session of ``username`` (None when not signed in) may use the server's token."""
        if self.mode != "auto":
            return self.mode == "always"
        space_owner = os.environ.get("SPACE_AUTHOR_NAME")
        if os.environ.get("SPACE_ID"):
            return bool(username) and username == space_owner
        return self.host in LOOPBACK_HOSTS and not self.shared


@dataclass(frozen=True)
class ResolvedToken:
    """The token a job will use and where it came from (``entered``, ``oauth``, ``server`` or ``none``)."""

    secret: Secret | None
    source: Literal["entered", "oauth", "server", "none"]

    def describe(self) -> str:
        """Where the token comes from, in words (never the token)."""
        return {
            "entered": "the token entered in this session",
            "oauth": "your Hugging Face sign-in",
            "server": "the server's token (HF_TOKEN or `hf auth login`)",
            "none": "no token",
        }[self.source]


def server_token() -> str | None:
    """The server's token: ``HF_TOKEN``, else the ``hf auth login`` token (``huggingface_hub.get_token``)."""
    from huggingface_hub import get_token

    return get_token() or None


def resolve_token(
    entered: Secret | None, *, policy: ServerTokenPolicy, username: str | None, oauth: Secret | None = None
) -> ResolvedToken:
    """Apply the lookup order of the module docstring."""
    if entered is not None and entered.reveal():
        return ResolvedToken(entered, "entered")
    if oauth is not None and oauth.reveal():
        return ResolvedToken(oauth, "oauth")
    if policy.allows(username):
        found = server_token()
        if found:
            return ResolvedToken(Secret(found), "server")
    return ResolvedToken(None, "none")


def inherited(name: str) -> bool:
    """Whether a job inherits the server's variable ``name`` (:data:`JOB_ENV_NAMES`, :data:`JOB_ENV_PREFIXES`)."""
    if name in JOB_ENV_NAMES:
        return True
    return name.startswith(JOB_ENV_PREFIXES) and name not in TOKEN_ENV_VARS and not _SECRET_NAME.search(name)


def job_environment(token: ResolvedToken, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a job: the allow-listed variables of ``base`` (:func:`inherited`), plus ``HF_TOKEN`` when
    a token is resolved.

    Without a token, ``HF_TOKEN_PATH`` points at nothing so the child cannot fall back on the server's login. A job
    never runs a plugin file that lies beside a config in a workspace (``VOXPLUG_NO_LOCAL_PLUGINS``): a visitor must
    not get the server to run their code.
    """
    env = {key: value for key, value in (os.environ if base is None else base).items() if inherited(key)}
    env["VOXPLUG_NO_LOCAL_PLUGINS"] = "1"
    if token.secret is not None:
        env["HF_TOKEN"] = token.secret.reveal()
    else:
        env["HF_TOKEN_PATH"] = os.devnull
    return env


def redact(text: str, secrets: list[Secret] | tuple[Secret, ...] = ()) -> str:
    """``text`` with every given secret, and anything shaped like an ``hf_`` token, replaced by ``hf_***``."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, REDACTED)
    return _TOKEN_SHAPE.sub(REDACTED, text)


def check_token(token: Secret) -> str:
    """Ask the Hub (``HF_ENDPOINT``) who ``token`` belongs to; returns the account name.

    Raises :class:`~voxplug.errors.PublishError` with a message that never contains the token.
    """
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None)
    try:
        answer = api.whoami(token=token.reveal())
    except Exception as exc:
        reason = redact(f"{type(exc).__name__}: {exc}", [token])
        raise PublishError(f"the Hub at {api.endpoint} refused the token ({reason.splitlines()[0]})") from None
    return str(answer.get("name") or "unknown")
