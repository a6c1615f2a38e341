"""The ``hub`` publisher: the published repository layout committed to a Hugging Face model repo.

- The token comes from ``HF_TOKEN`` or the ``hf auth login`` token, and is checked with ``whoami`` before
  anything else happens; it is never logged, and the upload is refused if any file contains it.
- The repo is created private unless ``private: false`` (``--public``), or reused when it exists; a dataset or
  Space of that name is refused. Its visibility is read back from the Hub: an existing repo that is not what was
  asked (a public repo for a private publish) is refused before anything is uploaded.
- Everything goes up in ONE commit (``create_commit``): model, processor, README.md card, results, ``merged/``.
  Large files take huggingface_hub's large-file path (Xet on the Hub, Git LFS on servers without Xet).
- Transient failures (HTTP 429/5xx, dropped connections) are retried with exponential backoff; files already
  on the Hub are skipped, so re-running a failed publish completes the repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from voxplug.api import Publisher, PublishResult, RepositoryOptions, hub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

    from voxplug.api import PublishableModel


class HubOptions(RepositoryOptions, hub.HubConnectionOptions):
    """Options of the ``hub`` publisher."""

    private: bool = Field(
        True,
        description="the repo must be private (false: public); a new repo is created so, an existing repo the Hub "
        "reports otherwise is refused before anything is uploaded",
    )
    commit_message: str | None = Field(None, description="default: 'Publish <run name> with voxplug'")
    remove_stale_files: bool = Field(
        True,
        description="in the same commit, delete the repo's files this publish does not have (an earlier run's "
        "adapter or weights, which loaders would otherwise pick up); false keeps them",
    )


class HubPublisher(Publisher):
    """Commits the published layout to a Hugging Face model repo, in one commit."""

    name = "hub"
    description = "a Hugging Face Hub model repo (private by default), uploaded in one commit"
    Options = HubOptions
    options: HubOptions

    def __init__(self, options: HubOptions | dict | None = None) -> None:
        super().__init__(options)
        self._api: HfApi | None = None
        self._token: str | None = None
        self._message = self.options.commit_message

    def resolve_destination(self, model: PublishableModel, destination: str | None) -> str:
        """Check the token (whoami) and the repo id; default ``<user>/<run name>``."""
        account = self._authenticate()
        self._message = self._message or f"Publish {model.name} with voxplug"
        return hub.full_repo_id(destination or model.name, account)

    def publish(self, model_dir: Path, *, destination: str | None = None) -> PublishResult:
        """Create or reuse the repo ``destination`` and commit every file of ``model_dir`` to it at once."""
        if self._api is None or self._token is None or destination is None or "/" not in destination:
            destination = hub.full_repo_id(destination or model_dir.name, self._authenticate())
        api, token = self._api, self._token
        assert api is not None and token is not None
        hub.refuse_files_containing(model_dir, token)
        hub.ensure_repo(api, token, destination, repo_type="model", private=self.options.private, retry=self._retry)
        message = self._message or "Publish with voxplug"
        commit = hub.commit_folder(
            api,
            token,
            destination,
            model_dir,
            repo_type="model",
            message=message,
            retry=self._retry,
            remove_stale=self.options.remove_stale_files,
        )
        files = sorted(path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*") if path.is_file())
        url = hub.repo_url(api, destination)
        hub.log.info("published %d files to %s (commit %s)", len(files), url, commit[:10])
        return PublishResult(target=self.name, destination=destination, url=url, files=files)

    @property
    def _retry(self) -> hub.RetryPolicy:
        return self.options.retry_policy()

    def _authenticate(self) -> hub.HubAccount:
        self._api = hub.hub_api(self.options.endpoint)
        self._token = hub.hub_token()
        return hub.authenticate(self._api, self._token, retry=self._retry)
