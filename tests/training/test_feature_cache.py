"""The collator's feature cache returns exactly what the plain collator computes, within its memory budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import SPEECH, bundled_rows


@pytest.mark.slow
def test_cached_batches_equal_fresh_ones(tiny_model: Path) -> None:
    import torch
    from voxplug_voxtral.collator import VoxtralBatchBuilder
    from voxplug_voxtral.family import VoxtralFamily, VoxtralTranscriptionCollator

    from voxplug.data.audio import load_audio_16k

    processor = VoxtralFamily().load_processor(str(tiny_model))
    rows = [
        {"audio": load_audio_16k(SPEECH / r["file"]).samples, "text": r["text"], "language": lang, "id": r["file"]}
        for r, lang in zip(bundled_rows()[:3], ["en", None, "en"], strict=True)
    ]
    long_clip = np.concatenate([rows[0]["audio"]] * 20)  # over 30 s: two feature chunks
    rows.append({"audio": long_clip, "text": "long", "language": "en", "id": "long"})
    plain = VoxtralBatchBuilder(processor, attention_mask=False)  # the plugin leaves the mask out
    cached = VoxtralTranscriptionCollator(processor=processor)
    for batch in ([rows[0], rows[3]], [rows[3], rows[1], rows[0]], rows[::-1], [rows[2], rows[2]]):
        expected, got = plain(batch), cached(batch)
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), key
    assert cached.collate.cached_bytes == 5 * 128 * 3000 * 4  # 3 short clips + 2 chunks of the long one


def test_nothing_is_cached_beyond_the_budget(tiny_model: Path) -> None:
    from voxplug_voxtral.family import VoxtralFamily, VoxtralTranscriptionCollator

    from voxplug.data.audio import load_audio_16k

    processor = VoxtralFamily().load_processor(str(tiny_model))
    row = bundled_rows()[0]
    batch = [{"audio": load_audio_16k(SPEECH / row["file"]).samples, "text": row["text"], "language": "en"}]
    collator = VoxtralTranscriptionCollator({"feature_cache_mb": 0}, processor=processor)
    collator(batch)
    assert collator.collate.cached_bytes == 0
