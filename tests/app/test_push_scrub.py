"""Dataset pushes started from the app scrub personal data from the transcripts unless the user turns it off."""

from __future__ import annotations

from pathlib import Path

from voxplug.app.hub_steps import dataset_push_step


def test_app_pushes_scrub_by_default_and_can_opt_out() -> None:
    scrubbed = dataset_push_step(Path("d"), "me/d", private=True)
    assert scrubbed.args == ["data", "push", "--scrub=email,url,phone,digits", "--", "d", "me/d"]
    assert dataset_push_step(Path("d"), "me/d", private=False, scrub=()).args == [
        "data",
        "push",
        "--public",
        "--",
        "d",
        "me/d",
    ]
