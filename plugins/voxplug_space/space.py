"""The ``space`` deployer: a Gradio Space on the Hugging Face Hub that demos a published model.

What it does, in order (nothing is created until every check has passed):

1. checks the write token (``HF_TOKEN`` or the login) with ``whoami``;
2. checks the model exists on the Hub and reads its ``voxplug.json`` (adapter or full, base model, languages); an
   adapter's base must be a Hub id (``base_model`` option, else the one ``voxplug.json`` names);
3. for a private model, takes a READ token from the environment variable named by ``read_token_env``
   (``HF_READ_TOKEN``), refusing when it is missing, is the write token, or is itself a write token;
4. creates (or reuses) the Space, private when the model is, reads its visibility back (an existing Space that
   is not what was asked is refused), and uploads ``app.py``, a pinned ``requirements.txt`` and ``README.md`` in
   one commit;
5. sets ``VOXPLUG_MODEL_ID`` (and ``VOXPLUG_BASE_MODEL_ID`` for adapters) and the demo's limits
   (``VOXPLUG_CONCURRENCY``, ``VOXPLUG_QUEUE_SIZE``, ``VOXPLUG_MAX_AUDIO_S``, ``VOXPLUG_MAX_FILE_MB``) as Space
   variables and the read token as the ``HF_TOKEN`` Space secret, all through the API, never in a file;
6. requests hardware when ``hardware`` is set, then returns the Space's address (no waiting for the build).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import Field, field_validator

from voxplug.api import Deployer, DeployResult, PublishError, hub, hub_repo_ids, is_local_path, temporary_folder

if TYPE_CHECKING:
    from huggingface_hub import HfApi

T = TypeVar("T")
READ_TOKEN_SECRET = "HF_TOKEN"
"""The secret name huggingface_hub (and so transformers) reads inside the Space."""


class SpaceOptions(hub.HubConnectionOptions):
    """Options of the ``space`` deployer."""

    space_id: str | None = Field(None, description="the Space repo id; default <user>/<model name>-demo")
    private: bool | None = Field(None, description="Space visibility; None: private exactly when the model is")
    hardware: str | None = Field(None, description="hardware to request now (e.g. t4-small; needs billing)")
    suggested_hardware: str = Field("t4-small", description="README suggestion; cpu-basic is too slow for Voxtral")
    read_token_env: str = Field("HF_READ_TOKEN", description="environment variable holding a READ token")
    title: str | None = Field(None, description="Space title; default the model name")
    short_description: str | None = Field(None, description="one line, at most 60 characters")
    tags: list[str] = Field(default_factory=list)
    max_new_tokens: int = Field(256, ge=1, description="longest transcript, in tokens")
    mcp_server: bool = Field(False, description="also serve Gradio's MCP endpoint (anyone can call it)")
    concurrency: int = Field(1, ge=1, description="transcriptions that run at once; the others wait in the queue")
    queue_size: int = Field(16, ge=1, description="requests that may wait; beyond that visitors are turned away")
    max_audio_s: float = Field(60.0, gt=0, description="longest clip the demo transcribes, in seconds")
    max_file_mb: float = Field(20.0, gt=0, description="largest upload the demo accepts, in MB")
    base_model: str | None = Field(
        None, description="an adapter's base model (a Hub id); default: the one the model's voxplug.json names"
    )

    @field_validator("hardware", "suggested_hardware")
    @classmethod
    def _known_hardware(cls, value: str | None) -> str | None:
        """Refuse a hardware flavor the Hub does not have before anything is created."""
        from huggingface_hub import SpaceHardware

        known = [flavor.value for flavor in SpaceHardware]
        if value is not None and value not in known:
            raise ValueError(f"unknown Space hardware {value!r} (known: {', '.join(known)})")
        return value


@dataclass
class HubSession:
    """One deployment's connection: the API, the write token and the retry policy (the token stays out of repr)."""

    api: HfApi
    token: str = field(repr=False)
    retry: hub.RetryPolicy

    def run(self, action: Callable[[], T], what: str) -> T:
        """Run one Hub request under the retry policy."""
        return self.retry.run(action, what=what)


@dataclass
class SpacePlan:
    """What the Space will serve: checked before anything is created."""

    model_id: str
    facts: dict[str, Any]
    space_id: str
    private: bool
    read_token: str | None = field(default=None, repr=False)
    base_model: str | None = None


class SpaceDeployer(Deployer):
    """Deploys the voxplug demo app for a Hub model as a Gradio Space."""

    name = "space"
    description = "a Gradio demo Space on the Hugging Face Hub"
    Options = SpaceOptions
    options: SpaceOptions

    def deploy(self, model_ref: str, *, destination: str | None = None) -> DeployResult:
        """Create or update the demo Space of the Hub model ``model_ref`` and return its address."""
        from voxplug_space.space_files import pinned_requirements

        session = HubSession(hub.hub_api(self.options.endpoint), hub.hub_token(), self.options.retry_policy())
        plan = self._plan(session, model_ref, destination)
        pinned_requirements()  # refuses dev and git installs before the Space exists
        hub.ensure_repo(
            session.api, session.token, plan.space_id, repo_type="space", private=plan.private,
            retry=session.retry, space_sdk="gradio",
        )  # fmt: skip
        self._upload_files(session, plan)
        self._configure(session, plan)
        url = hub.repo_url(session.api, plan.space_id, "space")
        hub.log.info("deployed the demo of %s to %s (%s)", plan.model_id, url, _runtime_stage(session, plan.space_id))
        return DeployResult(target=self.name, destination=plan.space_id, url=url)

    def _plan(self, session: HubSession, model_ref: str, destination: str | None) -> SpacePlan:
        """Check the token, the model and the read token; name the Space."""
        account = hub.authenticate(session.api, session.token, retry=session.retry)
        model_id = self._model_id(model_ref, account)
        private_model = _model_is_private(session, model_id)
        facts = _model_facts(session, model_id)
        base_model = self._base_model(model_id, facts)
        read_token = self._read_token(session, private_model)
        space_name = destination or self.options.space_id or _space_name(model_id)
        space_id = hub.full_repo_id(space_name, account, repo_type="space")
        private = private_model if self.options.private is None else self.options.private
        return SpacePlan(model_id, facts, space_id, private, read_token, base_model)

    def _base_model(self, model_id: str, facts: dict[str, Any]) -> str | None:
        """An adapter's base model as a Hub id (the Space loads it from the Hub); None for a full model.

        A base that is no Hub id (a model published from a local copy, by a voxplug that recorded the folder) is
        refused: the Space could not load it, and its README and variables never name a local folder.
        """
        if facts.get("kind") != "adapter":
            return None
        base = self.options.base_model or str(facts.get("base_model") or "")
        if base and not is_local_path(base) and hub_repo_ids([base]):
            return base
        raise PublishError(
            f"{model_id} is an adapter whose voxplug.json names no base model on the Hub; deploy it with "
            "-o base_model=<owner/name> (the Hub id of the model it was trained on)"
        )

    def _model_id(self, model_ref: str, account: hub.HubAccount) -> str:
        if Path(model_ref).expanduser().exists():
            raise PublishError(
                f"{model_ref} is a local folder: a Space loads its model from the Hub, so publish it first "
                "(voxplug publish RUN --target hub) and deploy the repo id; run it locally with voxplug demo"
            )
        return hub.full_repo_id(model_ref, account)

    def _read_token(self, session: HubSession, private_model: bool) -> str | None:
        """The read token for the Space secret: required for a private model, never a write token."""
        variable = self.options.read_token_env
        read_token = os.environ.get(variable) or None
        if read_token is None:
            if private_model:
                raise PublishError(
                    f"the model is private, so the Space needs a READ token to load it: create one at "
                    f"https://huggingface.co/settings/tokens and set {variable} (or name another variable with "
                    "--read-token-env); your write token is never given to a Space"
                )
            return None
        if read_token == session.token:
            raise PublishError(f"{variable} holds your write token; the Space secret must be a separate READ token")
        source = f"the {variable} environment variable"
        account = hub.authenticate(session.api, read_token, need_write=False, source=source, retry=session.retry)
        if account.role == "write":
            raise PublishError(f"{variable} holds a write token ({account.name}); give the Space a READ token")
        return read_token

    def _upload_files(self, session: HubSession, plan: SpacePlan) -> None:
        """``app.py``, ``requirements.txt`` and ``README.md`` in one commit, after checking no token is in them."""
        from voxplug_space.space_files import SpaceCard, write_space_files

        facts = plan.facts
        card = SpaceCard(
            model_id=plan.model_id,
            title=self.options.title or plan.model_id.rsplit("/", 1)[-1],
            suggested_hardware=self.options.suggested_hardware,
            base_model=plan.base_model,
            tags=[*([facts["family"]] if facts.get("family") else []), *self.options.tags],
            short_description=self.options.short_description,
            license=facts.get("license"),
        )

        with temporary_folder(prefix="voxplug-space-") as folder:  # removed also on Ctrl+C and SIGTERM
            write_space_files(folder, card)
            for secret in filter(None, (session.token, plan.read_token)):
                hub.refuse_files_containing(folder, secret)
            message = f"Demo of {plan.model_id} (voxplug)"
            hub.commit_folder(
                session.api, session.token, plan.space_id, folder, repo_type="space", message=message,
                retry=session.retry,
            )  # fmt: skip

    def _configure(self, session: HubSession, plan: SpacePlan) -> None:
        """Space variables, the read-token secret and the hardware request, all through the API."""
        api, token, space_id = session.api, session.token, plan.space_id
        for key, value in _space_variables(plan, self.options).items():
            session.run(lambda k=key, v=value: api.add_space_variable(space_id, k, v, token=token), f"setting {key}")
        if plan.read_token is not None:
            read_token = plan.read_token
            session.run(
                lambda: api.add_space_secret(space_id, READ_TOKEN_SECRET, read_token, token=token),
                f"setting the {READ_TOKEN_SECRET} secret",
            )
        if self.options.hardware:
            hardware = self.options.hardware
            session.run(
                lambda: api.request_space_hardware(space_id, hardware, token=token),
                f"requesting {hardware} hardware (upgraded hardware needs billing on the account)",
            )


def _space_variables(plan: SpacePlan, options: SpaceOptions) -> dict[str, str]:
    variables = {"VOXPLUG_MODEL_ID": plan.model_id, "VOXPLUG_MAX_NEW_TOKENS": str(options.max_new_tokens)}
    if plan.base_model:
        variables["VOXPLUG_BASE_MODEL_ID"] = plan.base_model
    variables["VOXPLUG_MCP_SERVER"] = "1" if options.mcp_server else "0"
    variables.update(
        VOXPLUG_CONCURRENCY=str(options.concurrency),
        VOXPLUG_QUEUE_SIZE=str(options.queue_size),
        VOXPLUG_MAX_AUDIO_S=f"{options.max_audio_s:g}",
        VOXPLUG_MAX_FILE_MB=f"{options.max_file_mb:g}",
    )
    return variables


def _model_is_private(session: HubSession, model_id: str) -> bool:
    """Whether the model is private; a clear error when the token cannot see it."""
    api, token = session.api, session.token
    if not session.run(lambda: api.repo_exists(model_id, token=token), f"looking up {model_id}"):
        raise PublishError(f"model {model_id} not found on {api.endpoint} (or your token cannot see it)")
    return bool(session.run(lambda: api.model_info(model_id, token=token), f"reading {model_id}").private)


def _model_facts(session: HubSession, model_id: str) -> dict[str, Any]:
    """The model's ``voxplug.json`` (kind, base model, family, languages), or what its files imply."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    api, token = session.api, session.token
    try:
        path = session.run(
            lambda: hf_hub_download(model_id, "voxplug.json", token=token, endpoint=api.endpoint), f"reading {model_id}"
        )
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except PublishError as exc:
        if not isinstance(exc.__cause__, EntryNotFoundError):
            raise
    files = session.run(lambda: api.list_repo_files(model_id, token=token), f"listing {model_id}")
    return {"kind": "adapter" if "adapter_config.json" in files else "full"}


def _runtime_stage(session: HubSession, space_id: str) -> str:
    """One look at the Space's state (it builds in the background; voxplug does not wait for it)."""
    try:
        runtime = session.api.get_space_runtime(space_id, token=session.token)
    except Exception as exc:  # informational only: the Space exists whatever this says
        return f"state unknown: {type(exc).__name__}"
    return f"stage {runtime.stage}, hardware {runtime.hardware or runtime.requested_hardware or 'pending'}"


def _space_name(model_id: str) -> str:
    return f"{model_id.rsplit('/', 1)[-1]}-demo"
