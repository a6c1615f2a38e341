"""The ``space`` deployer: a Gradio Space on the Hugging Face Hub that demos a published model.

What it does, in order (nothing is created until every check has passed):

1. checks the write token (``HF_TOKEN`` or the login) with ``whoami``;
2. checks the model exists on the Hub and reads its ``voxplug.json`` (adapter or full, base model, languages);
3. for a private model, takes a READ token from the environment variable named by ``read_token_env``
   (``HF_READ_TOKEN``), refusing when it is missing, is the write token, or is itself a write token;
4. creates (or reuses) the Space, private when the model is, and uploads ``app.py``, a pinned
   ``requirements.txt`` and ``README.md`` in one commit;
5. sets ``VOXPLUG_MODEL_ID`` (and ``VOXPLUG_BASE_MODEL_ID`` for adapters) as Space variables and the read
   token as the ``HF_TOKEN`` Space secret, all through the API, never in a file;
6. requests hardware when ``hardware`` is set, then returns the Space's address (no waiting for the build).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from voxplug.errors import PublishError
from voxplug.publishing import hub
from voxplug.publishing.interface import Deployer, DeployResult

if TYPE_CHECKING:
    from huggingface_hub import HfApi

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

    @field_validator("hardware", "suggested_hardware")
    @classmethod
    def _known_hardware(cls, value: str | None) -> str | None:
        """Refuse a hardware flavor the Hub does not have before anything is created."""
        from huggingface_hub import SpaceHardware

        known = [flavor.value for flavor in SpaceHardware]
        if value is not None and value not in known:
            raise ValueError(f"unknown Space hardware {value!r} (known: {', '.join(known)})")
        return value


class SpaceDeployer(Deployer):
    """Deploys the voxplug demo app for a Hub model as a Gradio Space."""

    name = "space"
    description = "a Gradio demo Space on the Hugging Face Hub"
    Options = SpaceOptions
    options: SpaceOptions

    def deploy(self, model_ref: str, *, destination: str | None = None) -> DeployResult:
        """Create or update the demo Space of the Hub model ``model_ref`` and return its address."""
        retry = self.options.retry_policy()
        api, token = hub.hub_api(self.options.endpoint), hub.hub_token()
        account = hub.authenticate(api, token, retry=retry)
        model_id = self._model_id(model_ref, account)
        private_model = self._model_visibility(api, token, model_id, retry)
        spec = _model_facts(api, token, model_id)
        read_token = self._read_token(api, token, private_model, retry)
        space_id = hub.full_repo_id(
            destination or self.options.space_id or _space_name(model_id), account, repo_type="space"
        )
        private = private_model if self.options.private is None else self.options.private
        hub.ensure_repo(api, token, space_id, repo_type="space", private=private, retry=retry, space_sdk="gradio")
        self._upload_files(api, token, space_id, model_id, spec, secrets=[token, read_token], retry=retry)
        self._configure(api, token, space_id, model_id, spec, read_token, retry)
        url = hub.repo_url(api, space_id, "space")
        hub.log.info("deployed the demo of %s to %s (%s)", model_id, url, _runtime_stage(api, token, space_id))
        return DeployResult(target=self.name, destination=space_id, url=url)

    def _model_id(self, model_ref: str, account: hub.HubAccount) -> str:
        if Path(model_ref).expanduser().exists():
            raise PublishError(
                f"{model_ref} is a local folder: a Space loads its model from the Hub, so publish it first "
                "(voxplug publish RUN --target hub) and deploy the repo id; run it locally with voxplug demo"
            )
        return hub.full_repo_id(model_ref, account)

    @staticmethod
    def _model_visibility(api: HfApi, token: str, model_id: str, retry: hub.RetryPolicy) -> bool:
        """Whether the model is private; a clear error when the token cannot see it."""
        if not retry.run(lambda: api.repo_exists(model_id, token=token), what=f"looking up {model_id}"):
            raise PublishError(f"model {model_id} not found on {api.endpoint} (or your token cannot see it)")
        info = retry.run(lambda: api.model_info(model_id, token=token), what=f"reading {model_id}")
        return bool(info.private)

    def _read_token(self, api: HfApi, write_token: str, private_model: bool, retry: hub.RetryPolicy) -> str | None:
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
        if read_token == write_token:
            raise PublishError(f"{variable} holds your write token; the Space secret must be a separate READ token")
        account = hub.authenticate(
            api, read_token, need_write=False, source=f"the {variable} environment variable", retry=retry
        )
        if account.role == "write":
            raise PublishError(f"{variable} holds a write token ({account.name}); give the Space a READ token")
        return read_token

    def _upload_files(
        self,
        api: HfApi,
        token: str,
        space_id: str,
        model_id: str,
        spec: dict[str, Any],
        *,
        secrets: list[str | None],
        retry: hub.RetryPolicy,
    ) -> None:
        from voxplug_space.space_files import SpaceCard, write_space_files

        card = SpaceCard(
            model_id=model_id,
            title=self.options.title or model_id.rsplit("/", 1)[-1],
            suggested_hardware=self.options.suggested_hardware,
            base_model=spec.get("base_model") if spec.get("kind") == "adapter" else None,
            tags=[*([spec["family"]] if spec.get("family") else []), *self.options.tags],
            short_description=self.options.short_description,
            license=spec.get("license"),
        )
        with tempfile.TemporaryDirectory(prefix="voxplug-space-") as folder:
            write_space_files(Path(folder), card)
            for secret in filter(None, secrets):
                hub.refuse_files_containing(Path(folder), secret)
            hub.commit_folder(
                api,
                token,
                space_id,
                Path(folder),
                repo_type="space",
                message=f"Demo of {model_id} (voxplug)",
                retry=retry,
            )

    def _configure(
        self,
        api: HfApi,
        token: str,
        space_id: str,
        model_id: str,
        spec: dict[str, Any],
        read_token: str | None,
        retry: hub.RetryPolicy,
    ) -> None:
        """Space variables, the read-token secret and the hardware request, all through the API."""
        for key, value in _space_variables(model_id, spec, self.options).items():
            retry.run(lambda k=key, v=value: api.add_space_variable(space_id, k, v, token=token), what=f"setting {key}")
        if read_token is not None:
            retry.run(
                lambda: api.add_space_secret(space_id, READ_TOKEN_SECRET, read_token, token=token),
                what=f"setting the {READ_TOKEN_SECRET} secret",
            )
        if self.options.hardware:
            hardware = self.options.hardware
            retry.run(
                lambda: api.request_space_hardware(space_id, hardware, token=token),
                what=f"requesting {hardware} hardware (upgraded hardware needs billing on the account)",
            )


def _space_variables(model_id: str, spec: dict[str, Any], options: SpaceOptions) -> dict[str, str]:
    variables = {"VOXPLUG_MODEL_ID": model_id, "VOXPLUG_MAX_NEW_TOKENS": str(options.max_new_tokens)}
    if spec.get("kind") == "adapter" and spec.get("base_model"):
        variables["VOXPLUG_BASE_MODEL_ID"] = str(spec["base_model"])
    variables["VOXPLUG_MCP_SERVER"] = "1" if options.mcp_server else "0"
    return variables


def _model_facts(api: HfApi, token: str, model_id: str) -> dict[str, Any]:
    """The model's ``voxplug.json`` (kind, base model, family, languages), or what its files imply."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        path = hf_hub_download(model_id, "voxplug.json", token=token, endpoint=api.endpoint)
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except EntryNotFoundError:
        files = api.list_repo_files(model_id, token=token)
        return {"kind": "adapter" if "adapter_config.json" in files else "full"}


def _runtime_stage(api: HfApi, token: str, space_id: str) -> str:
    """One look at the Space's state (it builds in the background; voxplug does not wait for it)."""
    try:
        runtime = api.get_space_runtime(space_id, token=token)
    except Exception as exc:  # informational only: the Space exists whatever this says
        return f"state unknown: {type(exc).__name__}"
    return f"stage {runtime.stage}, hardware {runtime.hardware or runtime.requested_hardware or 'pending'}"


def _space_name(model_id: str) -> str:
    return f"{model_id.rsplit('/', 1)[-1]}-demo"
