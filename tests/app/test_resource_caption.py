"""The app shows a run's resource readings live: parsed from the progress lines, shown in the progress caption."""

from __future__ import annotations

from voxplug.app.jobs import JobRecord
from voxplug.app.progress import TrainingProgress
from voxplug.app.tabs.job_panel import progress_caption


def test_resource_readings_reach_the_progress_caption() -> None:
    progress = TrainingProgress()
    line = "step 3/10  loss 2.5000  samples_per_s 2.1000  audio_s_per_s 6.3000  gpu_mem_gb 12.1000  gpu_util_pct 87"
    assert progress.feed(line)
    record = JobRecord("id", "train", "Training", "w", "running", ["train"])
    _fraction, caption = progress_caption(record, progress)
    assert caption == "step 3/10 (30%) · loss 2.500 · 2.10 samples/s · 6.3 audio s/s · GPU 12.1 GB · GPU busy 87 %"
    assert [point.metric for point in progress.points] == ["loss"]  # readings are not plotted
