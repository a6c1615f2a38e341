"""fp32 master weights kept by the optimizer (``training.master_weights: optimizer``): the wrapper against torch's
own optimizers and transformers' Trainer, the run's decision, and the memory estimate's account of it."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import torch

from voxplug.config import validate_config
from voxplug.training import memory
from voxplug.training.context import decide, master_weights_decision, master_weights_moot
from voxplug.training.master_weights import MasterWeights

from .masters_toy import Rows, Toy, half_params, outcome, step_beside_fp32, trainer_run, two_groups


def test_the_masters_step_exactly_as_an_fp32_optimizer_and_the_model_holds_their_rounding() -> None:
    """Small chunks split the parameters over several inner optimizers; a scheduler sets every chunk's rate."""
    params = half_params((10, 3, 25, 4))
    reference = [torch.nn.Parameter(p.detach().float()) for p in params]
    wrapped = MasterWeights(two_groups(params), inner=torch.optim.AdamW, inner_kwargs={"lr": 1e-2}, chunk_elements=12)
    plain = torch.optim.AdamW(two_groups(reference), lr=1e-2)
    assert len(wrapped.chunks) == 4 and wrapped.scratch.numel() == 25  # one chunk's gradients at a time
    wrapped.load_state_dict(wrapped.state_dict())  # as accelerate's wrapper does: new group dicts inside
    step_beside_fp32(wrapped, plain, params, reference)
    masters = [master for chunk in wrapped.chunks for master in chunk.masters]
    assert all(torch.equal(master, ref) for master, ref in zip(masters, reference, strict=True))
    assert all(torch.equal(p, ref.bfloat16()) for p, ref in zip(params, reference, strict=True))
    assert all(p.grad is None for p in params) and all(m.grad is None for m in masters)
    inner_rates = {group["lr"] for chunk in wrapped.chunks for group in chunk.optimizer.param_groups}
    assert inner_rates == {group["lr"] for group in wrapped.param_groups} == {plain.param_groups[0]["lr"]}


def test_updates_smaller_than_bf16_can_hold_accumulate_in_the_masters() -> None:
    """Where a pure bf16 optimizer loses every update under a weight's rounding step, the masters keep them."""
    params = half_params((1,))
    params[0].data.fill_(1.0)
    pure = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    wrapped = MasterWeights(params, inner=torch.optim.SGD, inner_kwargs={"lr": 1e-3})
    plain = torch.optim.SGD([pure], lr=1e-3)
    for _ in range(100):
        params[0].grad = torch.ones(1, dtype=torch.bfloat16)
        pure.grad = torch.ones(1, dtype=torch.bfloat16)
        wrapped.step()
        plain.step()
    assert pure.item() == 1.0  # 1 - 0.001 rounds back to 1 in bf16, every step
    assert params[0].item() == pytest.approx(0.9, abs=4e-3)
    assert wrapped.chunks[0].masters[0].item() == pytest.approx(0.9, rel=1e-5)


def test_a_resumed_state_continues_from_the_exact_masters_and_a_foreign_state_is_refused() -> None:
    params = half_params((6, 5))
    wrapped = MasterWeights(params, inner=torch.optim.AdamW, inner_kwargs={"lr": 1e-2}, chunk_elements=6)
    for p in params:
        p.grad = torch.full(p.shape, 0.3, dtype=torch.bfloat16)
    wrapped.step()
    checkpoint = io.BytesIO()
    torch.save(wrapped.state_dict(), checkpoint)
    checkpoint.seek(0)
    saved = torch.load(checkpoint, weights_only=True)
    again = half_params((6, 5), seed=7)  # other weights: the saved masters must replace them
    restored = MasterWeights(again, inner=torch.optim.AdamW, inner_kwargs={"lr": 1e-2}, chunk_elements=6)
    restored.load_state_dict(saved)
    for one, other in ((params, wrapped), (again, restored)):
        for p in one:
            p.grad = torch.full(p.shape, -0.2, dtype=torch.bfloat16)
        other.step()
    assert all(torch.equal(a, b) for a, b in zip(params, again, strict=True))
    for a, b in zip(wrapped.chunks, restored.chunks, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.masters, b.masters, strict=True))
    with pytest.raises(ValueError, match="master_weights=optimizer"):
        restored.load_state_dict(torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))]).state_dict())
    other_shape = MasterWeights(half_params((4, 7)), inner=torch.optim.AdamW, chunk_elements=6)
    with pytest.raises(ValueError, match="other shapes"):
        other_shape.load_state_dict(saved)


def test_the_model_holds_the_masters_while_it_is_saved_and_its_bf16_weights_after(tmp_path: Path) -> None:
    """safetensors (which refuses tensors sharing memory) writes the masters of one chunk as they are."""
    from safetensors.torch import load_file, save_file

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)).bfloat16()
    wrapped = MasterWeights(model.parameters(), inner=torch.optim.SGD, inner_kwargs={"lr": 1e-3})
    assert len(wrapped.chunks) == 1
    for param in model.parameters():
        param.grad = torch.ones_like(param)
    wrapped.step()
    masters = dict(zip((name for name, _ in model.named_parameters()), wrapped.chunks[0].masters, strict=True))
    with wrapped.weights_from_masters():
        assert all(p.dtype == torch.float32 for p in model.parameters())
        save_file(model.state_dict(), tmp_path / "model.safetensors")
    saved = load_file(tmp_path / "model.safetensors")
    assert saved.keys() == masters.keys() and all(torch.equal(saved[n], m) for n, m in masters.items())
    for name, param in model.named_parameters():
        assert param.dtype == torch.bfloat16 and torch.equal(param.data, masters[name].bfloat16())


@pytest.mark.slow
def test_transformers_trainer_trains_resumes_and_saves_with_the_masters(tmp_path: Path) -> None:
    """The Trainer builds the wrapper from its own optimizer choice, checkpoints it, and a run resumed from step 3
    ends where the uninterrupted run does, masters included."""
    whole = trainer_run(tmp_path / "whole", max_steps=6)
    optimizer = whole.optimizer.optimizer
    assert isinstance(optimizer, MasterWeights) and whole.model.layer.weight.dtype == torch.bfloat16
    resumed = trainer_run(tmp_path / "resumed", max_steps=6, resume=tmp_path / "whole" / "checkpoint-3")
    assert resumed.state.global_step == 6
    for trainer in (whole, resumed):  # the schedule reached the optimizers that step (linear: 0 at the last step)
        rates = {group["lr"] for chunk in trainer.optimizer.optimizer.chunks for group in chunk.optimizer.param_groups}
        assert rates == set(trainer.lr_scheduler.get_last_lr()) == {0.0}
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    again = resumed.optimizer.optimizer
    for a, b in zip(optimizer.chunks, again.chunks, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.masters, b.masters, strict=True))
    first = torch.load(tmp_path / "whole" / "checkpoint-3" / "optimizer.pt", weights_only=True)
    assert first["masters"][0][0].dtype == torch.float32 and len(first["chunks"]) == len(optimizer.chunks)


@pytest.mark.slow
def test_two_ddp_ranks_keep_the_same_masters_and_train_as_one_process(tmp_path: Path) -> None:
    """Under DDP (two CPU ranks over gloo, as ``accelerate launch`` starts them) the bf16 gradients are averaged
    across the ranks before the masters step: both ranks hold the same masters, and the run follows one process
    of the same global batch up to the rounding of that bf16 average. A run resumed from step 3 on two ranks ends
    where the uninterrupted one does."""
    from voxplug.testing import free_port

    from .conftest import REPO, run_cli

    def launch(out: Path, *extra: str) -> list[dict[str, Any]]:
        out.mkdir()
        command = ["-m", "accelerate.commands.launch", "--main_process_port", str(free_port())]
        command += ["--config_file", "configs/accelerate/cpu-2proc.yaml"]
        command += [str(Path(__file__).with_name("masters_toy.py")), str(out), "--batch", "2", *extra]
        run_cli(command, cwd=REPO, env={"ACCELERATE_USE_CPU": "1"})
        return [torch.load(out / f"rank-{rank}.pt", weights_only=True) for rank in (0, 1)]

    one = outcome(trainer_run(tmp_path / "one", max_steps=6))
    ranks = launch(tmp_path / "two")
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    first, second = ranks
    assert all(torch.equal(a, b) for a, b in zip(first["masters"], second["masters"], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(first["weights"], second["weights"], strict=True))
    assert first["masters"][0].dtype == torch.float32 and first["weights"][0].dtype == torch.bfloat16
    assert first["losses"] == pytest.approx(one["losses"], rel=1e-2)
    for ours, theirs in zip(first["masters"], one["masters"], strict=True):
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-3)
    resumed = launch(tmp_path / "resumed", "--resume", str(tmp_path / "two" / "checkpoint-3"))
    for key in ("masters", "weights"):
        assert all(torch.equal(a, b) for a, b in zip(resumed[0][key], first[key], strict=True))


@pytest.mark.slow
def test_a_run_that_keeps_an_earlier_checkpoint_saves_that_checkpoints_masters(tmp_path: Path) -> None:
    """With ``load_best_model_at_end`` the Trainer puts the best checkpoint's bf16 weights back in the model; the
    saved model is then that checkpoint's masters, read from its optimizer state, not the last step's."""
    from transformers import Trainer, TrainingArguments

    from voxplug.training.run import exact_weights

    torch.manual_seed(0)
    model = Toy().bfloat16()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=6,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_steps=2,
        eval_steps=2,
        eval_strategy="steps",
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        greater_is_better=True,  # the worst loss "wins": an earlier checkpoint than the last
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        label_names=["y"],
    )
    inner, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Rows(),
        eval_dataset=Rows(),
        optimizer_cls_and_kwargs=(MasterWeights, {"inner": inner, "inner_kwargs": kwargs}),
    )
    trainer.train()
    best = Path(trainer.state.best_model_checkpoint)
    assert best.name != f"checkpoint-{trainer.state.global_step}"
    expected = torch.load(best / "optimizer.pt", weights_only=True)["masters"][0]
    last = [master.clone() for master in trainer.optimizer.optimizer.chunks[0].masters]
    with exact_weights(trainer):
        written = [param.detach().clone() for param in model.parameters()]
    assert all(torch.equal(w, e) for w, e in zip(written, expected, strict=True))
    assert not all(torch.equal(w, m) for w, m in zip(written, last, strict=True))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_resuming_with_the_other_setting_is_refused_with_the_one_to_use(tmp_path: Path) -> None:
    from voxplug.errors import TrainingError
    from voxplug.training.run import check_master_weights_of

    params = half_params((4,))
    states = {
        "optimizer": MasterWeights(params, inner=torch.optim.AdamW).state_dict(),
        "model": torch.optim.AdamW(params).state_dict(),
    }
    for trained, state in states.items():
        folder = tmp_path / trained / "checkpoint-2"
        folder.mkdir(parents=True)
        torch.save(state, folder / "optimizer.pt")
        check_master_weights_of(folder, trained == "optimizer")  # the same setting resumes
        with pytest.raises(TrainingError, match=f"resume with training.master_weights={trained}"):
            check_master_weights_of(folder, trained != "optimizer")
    check_master_weights_of(tmp_path, True)  # no optimizer state saved (DeepSpeed's own layout): nothing to read


def config(tmp_path: Path, **training: Any) -> Any:
    return validate_config({"training": {"method": "full", **training}}, base_dir=tmp_path)


def test_the_masters_apply_to_full_fine_tuning_in_bf16_only_and_say_why_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = config(tmp_path, master_weights="optimizer")
    assert master_weights_decision(asked, precision="bf16", deepspeed=False, adapter=False)
    assert not master_weights_decision(config(tmp_path), precision="bf16", deepspeed=False, adapter=False)
    cases = {
        "adapters": {"adapter": True},
        "computes in fp16": {"precision": "fp16"},
        "DeepSpeed": {"deepspeed": True},
    }
    for reason, change in cases.items():
        facts = {"precision": "bf16", "deepspeed": False, "adapter": False, **change}
        assert reason in master_weights_moot(asked, **facts)
        with caplog.at_level(logging.WARNING, logger="voxplug.training"):
            caplog.clear()
            assert not master_weights_decision(asked, **facts)
        assert "training.master_weights=optimizer does not apply" in caplog.text and reason in caplog.text
    dtype = validate_config(
        {"model": {"dtype": "fp32"}, "training": {"method": "full", "master_weights": "optimizer"}}, base_dir=tmp_path
    )
    assert "model.dtype=fp32" in master_weights_moot(dtype, precision="bf16", deepspeed=False, adapter=False)
    # accumulating micro-batches adds bf16 gradients: said where the batch is decided
    from voxplug.training.memory import BatchChoice

    fixed = {"batch_size": 2, "grad_accum": 4}
    with caplog.at_level(logging.WARNING, logger="voxplug.training"):
        for accumulated in (config(tmp_path, master_weights="optimizer", **fixed), asked):
            caplog.clear()
            choice = BatchChoice(2, accumulated.training.grad_accum, False, "config")
            with monkeypatch.context() as patched:
                patched.setattr("voxplug.training.context.batch_decision", lambda *a, choice=choice, **k: choice)
                patched.setattr("voxplug.training.devices.resolve_precision", lambda requested: "bf16")
                patched.setattr("voxplug.training.devices.cuda_available", lambda: True)
                assert decide(accumulated, {}, train_rows=16, world_size=1).master_weights
            said = "add up in bf16" in caplog.text
            assert said == (accumulated.training.grad_accum > 1)
    # on this CPU the run computes in fp32: the weights stay in the model, and the record says so
    context = decide(asked, {}, train_rows=16, world_size=1)
    assert not context.master_weights and context.record()["master_weights"] == "model"


def test_the_run_asks_for_the_one_pass_step_unless_told_not_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``training.speed.masters_one_pass`` reaches the optimizer the Trainer builds (``MasterWeights(fused=...)``)."""
    from voxplug.training.run import TrainingRun

    for setting in (True, False):
        chosen = config(tmp_path, master_weights="optimizer", speed={"masters_one_pass": setting})
        with monkeypatch.context() as patched:
            patched.setattr("voxplug.training.devices.resolve_precision", lambda requested: "bf16")
            patched.setattr("voxplug.training.devices.cuda_available", lambda: True)
            context = decide(chosen, {}, train_rows=16, world_size=1)
        assert context.master_weights and context.speed.masters_one_pass is setting
        run = TrainingRun.__new__(TrainingRun)
        monkeypatch.setattr(run, "_context", lambda context=context: context, raising=False)
        args = type("Args", (), {"optim": "adamw_torch_fused"})()
        monkeypatch.setattr(
            "transformers.Trainer.get_optimizer_cls_and_kwargs",
            staticmethod(lambda args, model: (torch.optim.AdamW, {"lr": 1e-3, "fused": True})),
        )
        cls, kwargs = run._master_weights_optimizer(args, torch.nn.Linear(2, 2))
        assert cls is MasterWeights and kwargs["fused"] is setting


def test_the_estimate_counts_bf16_weights_and_gradients_with_fp32_masters_and_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Per trained parameter, masters in the optimizer take bf16 weights and gradients (2 + 2 bytes) and fp32
    masters and moments (4 + 8), where fp32 weights in the model take 4 + 4 + 8 plus bf16 casts of the linear ones:
    the estimate of a model with only linear layers is 16 bytes against 20, plus one chunk of fp32 gradients."""
    from voxplug.training.memory import LayerStack, ModelShape, RowSize, TrainedWeights, step_memory

    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), torch.nn.Linear(64, 32, bias=False))
    model.get_output_embeddings = lambda: None  # type: ignore[method-assign]
    shape = ModelShape(model, (LayerStack("language_model", 1, 64, 128, 0, True),))
    trained = TrainedWeights(base=frozenset(n for n, _ in model.named_parameters()), added=0, scopes=frozenset())
    row = RowSize(chunks=0, text_tokens=10)
    elements = 64 * 64 + 64 * 32
    in_model = step_memory(shape, trained, row, base_dtype="fp32", precision="bf16", optim="adamw_torch_fused")
    in_optimizer = step_memory(
        shape, trained, row, base_dtype="bf16", precision="bf16", optim="adamw_torch_fused", master_weights=True
    )
    states = {"weights": "trained_weight_bytes", "grads": "gradient_bytes", "opt": "optimizer_bytes"}
    model_side = {key: getattr(in_model, name) for key, name in states.items()}
    assert model_side == {"weights": 4 * elements, "grads": 4 * elements, "opt": 8 * elements}
    assert in_model.autocast_copy_bytes == 2 * elements
    optimizer_side = {key: getattr(in_optimizer, name) for key, name in states.items()}
    assert optimizer_side == {"weights": 2 * elements, "grads": 2 * elements, "opt": (12 + 4) * elements}
    assert in_optimizer.autocast_copy_bytes == 0
    # a parameter larger than a chunk is a chunk of its own: the fp32 gradients' scratch holds at least it
    monkeypatch.setattr(memory, "CHUNK_ELEMENTS", 1000)
    small_chunks = step_memory(
        shape, trained, row, base_dtype="bf16", precision="bf16", optim="adamw_torch_fused", master_weights=True
    )
    assert small_chunks.optimizer_bytes == 12 * elements + 64 * 64 * 4


def test_embeddings_keep_32_bit_state_under_an_8_bit_optimizer_as_the_trainer_keeps_them(tmp_path: Path) -> None:
    """With ``optim: adamw_8bit`` the Trainer keeps embeddings' state in 32 bits; with the masters in the
    optimizer, the embeddings' masters do, and every other weight keeps 8-bit state (one chunk each, so that no
    override reaches another chunk's parameter at the same position)."""
    from transformers import Trainer, TrainingArguments

    from voxplug.training.master_weights import embeddings_in_32_bits

    model = torch.nn.Sequential(torch.nn.Embedding(64, 128), torch.nn.Linear(128, 64, bias=False)).bfloat16()
    args = TrainingArguments(output_dir=str(tmp_path), optim="adamw_8bit", use_cpu=True, report_to=[])
    inner, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    full_state = embeddings_in_32_bits(model, inner, kwargs)
    assert full_state == [model[0].weight]
    wrapped = MasterWeights(
        model.parameters(), inner=inner, inner_kwargs=kwargs, chunk_elements=64 * 128, full_state=full_state
    )
    assert len(wrapped.chunks) == 2
    for param in model.parameters():
        param.grad = torch.randn_like(param)
    wrapped.step()
    embedding, linear = (chunk.optimizer.state[chunk.masters[0]] for chunk in wrapped.chunks)
    assert embedding["state1"].dtype == torch.float32 and linear["state1"].dtype == torch.uint8
    adamw = Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=str(tmp_path), use_cpu=True), model)
    assert embeddings_in_32_bits(model, *adamw) == []
