"""The publisher and deployer extension types, and what they report back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.extension import Extension

if TYPE_CHECKING:
    from voxplug.publishing.publishable import PublishableModel


@dataclass
class PublishResult:
    """Where a publisher put a model or dataset."""

    target: str
    destination: str
    url: str | None = None
    files: list[str] = field(default_factory=list)
    kind: str = "model"


@dataclass
class DeployResult:
    """Where a deployer put a demo."""

    target: str
    destination: str
    url: str | None = None


@dataclass
class ModelCard:
    """A model card being rendered: YAML metadata plus Markdown sections, and the facts behind them."""

    metadata: dict[str, Any]
    sections: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class Publisher(Extension):
    """Publishes a finished model folder somewhere (a local folder, the Hub, ...).

    :func:`voxplug.publishing.publish.publish_model` drives it: it checks the run's model folder, asks
    :meth:`resolve_destination` where the model goes (before any hook fires or anything is written), renders
    the repository layout with its model card into a staging folder, and hands that folder to :meth:`publish`.
    """

    def resolve_destination(self, model: PublishableModel, destination: str | None) -> str:
        """Where :meth:`publish` will put ``model``: ``destination`` checked and completed, or a default.

        Runs before ``before_publish`` fires and before anything is written, so it is the place to check
        credentials and names. The default returns ``destination`` or the run's name.
        """
        return destination or model.name

    def publish(self, model_dir: Path, *, destination: str | None = None) -> PublishResult:
        """Publish the repository folder ``model_dir`` (model, processor, README.md card, results) to
        ``destination`` and say where it went."""
        raise NotImplementedError


class Deployer(Extension):
    """Deploys a demo app for a published model."""

    def deploy(self, model_ref: str, *, destination: str | None = None) -> DeployResult:
        """Deploy a demo of ``model_ref`` (a Hub id or local path) and say where it runs."""
        raise NotImplementedError
