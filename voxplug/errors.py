"""Exceptions voxplug raises for problems a user can act on.

The CLI prints a :class:`VoxplugError` as one line (the traceback only under ``--debug``), so every message
names the culprit: the file, the row, the config key or the plugin, and what was expected.
"""

from __future__ import annotations


class VoxplugError(Exception):
    """Base class of every error voxplug reports to a user."""


class ConfigError(VoxplugError):
    """A configuration file, key or override is malformed or invalid."""


class PluginError(VoxplugError):
    """A plugin failed to load, implements an unknown hook, or clashes with another plugin."""


class DataError(VoxplugError):
    """A dataset, manifest or row is unusable."""


class AudioError(DataError):
    """An audio file cannot be decoded or breaks a limit."""


class ModelError(VoxplugError):
    """A model or processor cannot be loaded or does not fit the run."""


class TrainingError(VoxplugError):
    """Training cannot start or did not finish."""


class PublishError(VoxplugError):
    """Publishing a model or dataset, or deploying a demo, failed."""
