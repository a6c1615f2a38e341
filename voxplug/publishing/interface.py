"""The publisher and deployer extension types, and what they report back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voxplug.extension import Extension


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
    """Publishes a finished model folder somewhere (a local folder, the Hub, ...)."""

    def publish(self, model_dir: Path, *, destination: str | None = None) -> PublishResult:
        """Publish the model in ``model_dir`` to ``destination`` (or the configured one) and say where it went."""
        raise NotImplementedError


class Deployer(Extension):
    """Deploys a demo app for a published model."""

    def deploy(self, model_ref: str, *, destination: str | None = None) -> DeployResult:
        """Deploy a demo of ``model_ref`` (a Hub id or local path) and say where it runs."""
        raise NotImplementedError
