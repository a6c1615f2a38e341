"""Publishing a finished run and deploying its demo, with the lifecycle hooks around each.

:func:`publish_model` is what ``voxplug publish`` and the end of a training run call (on the main process
only); :func:`deploy_demo` is what ``voxplug deploy`` calls. Both pick the extension by name from the plugins,
so a third-party publisher or deployer gets the same checks, staging, model card and hooks as the built-ins.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxplug.publishing.publishable import PublishableModel, find_publishable_model
from voxplug.publishing.staging import RepositoryOptions, stage_repository
from voxplug.tempfiles import temporary_folder

if TYPE_CHECKING:
    from voxplug.extension import PluginOptions
    from voxplug.plugins import PluginHost
    from voxplug.publishing.interface import DeployResult, PublishResult

log = logging.getLogger("voxplug.publishing")


def publish_model(
    path: str | Path,
    *,
    target: str = "local",
    destination: str | None = None,
    options: PluginOptions | dict[str, Any] | None = None,
    host: PluginHost | None = None,
) -> PublishResult:
    """Publish the run (or model folder) at ``path`` with the publisher named ``target``.

    Steps: check the model folder is complete; let the publisher resolve ``destination`` (the Hub publisher
    checks the token here, before anything is uploaded); fire ``before_publish``; stage the repository layout
    and its model card; publish; fire ``after_publish``. Any failure fires ``on_publish_error`` and propagates.
    """
    from voxplug.plugins import get_plugin_host

    host = host or get_plugin_host()
    model = find_publishable_model(path)
    publisher = host.extension("publisher", target)(options)
    resolved = destination or ""
    try:
        resolved = publisher.resolve_destination(model, destination)
        host.before_publish(target=target, model_dir=model.model_dir, destination=resolved)
        repository_options = publisher.options if isinstance(publisher.options, RepositoryOptions) else None
        with staging_folder(model) as staged:
            stage_repository(model, staged, model_id=resolved, options=repository_options, host=host)
            log.info("staged %s for %s", model.model_dir, resolved)
            result = publisher.publish(staged, destination=resolved)
    except BaseException as exc:
        host.on_publish_error(target=target, destination=resolved, error=exc)
        raise
    host.after_publish(result=result)
    return result


@contextmanager
def staging_folder(model: PublishableModel) -> Iterator[Path]:
    """A temporary folder beside the run (same file system, so large files are hard-linked, not copied).

    It is removed afterwards, also after an error, Ctrl+C or SIGTERM (:func:`voxplug.tempfiles.temporary_folder`).
    """
    parent = model.model_dir.parent
    beside_run = os.access(parent, os.W_OK)  # a read-only run folder: stage in the system's temporary folder
    with temporary_folder(parent if beside_run else None, prefix=".voxplug-publish-") as folder:
        yield folder / "repo"


def deploy_demo(
    model_ref: str,
    *,
    target: str = "space",
    destination: str | None = None,
    options: PluginOptions | dict[str, Any] | None = None,
    host: PluginHost | None = None,
) -> DeployResult:
    """Deploy a demo of ``model_ref`` (a Hub repo id) with the deployer named ``target``.

    Fires ``before_deploy`` (a plugin may veto), deploys, then fires ``after_deploy``; any failure fires
    ``on_deploy_error`` and propagates.
    """
    from voxplug.plugins import get_plugin_host

    host = host or get_plugin_host()
    deployer = host.extension("deployer", target)(options)
    try:
        host.before_deploy(target=target, model_ref=model_ref)
        result = deployer.deploy(model_ref, destination=destination)
    except BaseException as exc:
        host.on_deploy_error(target=target, model_ref=model_ref, error=exc)
        raise
    host.after_deploy(result=result)
    return result
