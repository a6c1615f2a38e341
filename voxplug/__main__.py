"""``python -m voxplug`` runs the CLI."""

from voxplug.cli import main

main()
