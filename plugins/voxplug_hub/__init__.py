"""voxplug_hub: the ``local`` and ``hub`` publishers.

Both publish the same repository layout (see :mod:`voxplug.publishing.staging`): ``local`` writes it to a
folder (the default target), ``hub`` commits it to a Hugging Face model repo in one commit. This package is a
plugin exactly like a third-party one: it registers through the ``voxplug`` entry-point group.
"""

from __future__ import annotations

from voxplug import hookimpl
from voxplug.api import Register


@hookimpl
def register_publishers(register: Register) -> None:
    """Hand voxplug the ``local`` and ``hub`` publishers."""
    from voxplug_hub.hub_repo import HubPublisher
    from voxplug_hub.local_folder import LocalPublisher

    register(LocalPublisher)
    register(HubPublisher)
