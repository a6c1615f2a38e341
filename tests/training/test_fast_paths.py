"""Fast training paths compute the same loss as the plain model forward on the same batch (tiny Voxtral, CPU).

The GPU benchmark (benchmarks/train_throughput.py) repeats these checks at the full Voxtral-Mini-3B shape.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

SPEECH = Path(__file__).resolve().parents[2] / "examples" / "speech" / "en"


@pytest.fixture(scope="module")
def model_and_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict]:
    """A tiny Voxtral (fp32, eval mode) and a 4-row batch of bundled clips with transcripts of different lengths."""
    import soundfile
    from voxplug_voxtral.collator import VoxtralTranscriptionCollator
    from voxplug_voxtral.loading import load_voxtral
    from voxplug_voxtral.tiny import build_tiny_voxtral

    model, processor = load_voxtral(build_tiny_voxtral(tmp_path_factory.mktemp("tiny")), dtype="fp32", device="cpu")
    model.eval()
    with (SPEECH / "transcripts.tsv").open(encoding="utf-8") as handle:
        clips = list(csv.DictReader(handle, delimiter="\t"))[:4]
    rows = []
    for index, clip in enumerate(clips):
        audio, _ = soundfile.read(SPEECH / clip["file"], dtype="float32")
        rows.append({"audio": audio, "text": " ".join([clip["text"]] * (1 + index % 2)), "language": "en"})
    return model, VoxtralTranscriptionCollator(processor)(rows)


def test_label_mask_marks_positions_before_each_label() -> None:
    from voxplug.training.label_logits import label_logit_mask

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, 7, 8, 9, 2]])
    assert label_logit_mask(labels).tolist() == [
        [False, True, True, False, False],
        [True, True, True, True, False],
    ]


def test_label_logits_loss_equals_plain_forward(model_and_batch: tuple[object, dict]) -> None:
    from voxplug.training.label_logits import label_logit_mask, label_logits_loss, supports_label_logits

    model, batch = model_and_batch
    assert supports_label_logits(model)
    with torch.no_grad():
        plain = model(**batch).loss
        labels = batch["labels"]
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        outputs = model(**inputs, logits_to_keep=label_logit_mask(labels))
        fast = label_logits_loss(outputs, labels)
        items = (labels[:, 1:] != -100).sum()
        summed = label_logits_loss(outputs, labels, num_items_in_batch=items)
    assert outputs.logits.shape[0] == items.item()
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)
    assert torch.allclose(summed, plain, rtol=1e-5, atol=1e-6)


def test_trainer_uses_label_logits_and_gets_the_same_loss(model_and_batch: tuple[object, dict], tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from voxplug.training.transcription_trainer import TranscriptionTrainer

    model, batch = model_and_batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    fast_trainer = TranscriptionTrainer(model=model, args=args)
    plain_trainer = TranscriptionTrainer(model=model, args=args, label_logits_only=False)
    assert fast_trainer.label_logits_only and not plain_trainer.label_logits_only
    items = (batch["labels"][:, 1:] != -100).sum()
    with torch.no_grad():
        fast = fast_trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        plain = plain_trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
    assert torch.allclose(fast, plain, rtol=1e-5, atol=1e-6)


def test_label_logits_gradients_match(model_and_batch: tuple[object, dict]) -> None:
    from voxplug.training.label_logits import label_logit_mask, label_logits_loss

    model, batch = model_and_batch
    weight = model.lm_head.weight

    def grad_of(loss_fn: object) -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        loss_fn().backward()  # type: ignore[operator]
        return weight.grad.detach().clone()

    inputs = {key: value for key, value in batch.items() if key != "labels"}
    plain = grad_of(lambda: model(**batch).loss)
    fast = grad_of(
        lambda: label_logits_loss(model(**inputs, logits_to_keep=label_logit_mask(batch["labels"])), batch["labels"])
    )
    model.zero_grad(set_to_none=True)
    assert torch.allclose(fast, plain, rtol=1e-4, atol=1e-7)


def test_encoder_decoder_models_keep_the_plain_loss() -> None:
    from voxplug.training.label_logits import supports_label_logits

    class Config:
        is_encoder_decoder = True

    class Seq2Seq(torch.nn.Module):
        config = Config()

        def forward(self, input_ids: object = None, logits_to_keep: int = 0) -> None:
            return None

    assert not supports_label_logits(Seq2Seq())


def test_fused_kernels_are_skipped_without_liger(
    model_and_batch: tuple[object, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from voxplug_voxtral.family import VoxtralFamily

    model, batch = model_and_batch
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)  # import fails as when not installed
    with torch.no_grad():
        before = model(**batch).loss
        assert VoxtralFamily().fuse_kernels(model) == []
        assert torch.equal(model(**batch).loss, before)
