"""``training.compile``: the Trainer compiles a copy of each repeated block; losses match eager; generation stays eager.

Compiling is a GPU feature in practice (CUDA defaults to it), but inductor also compiles for the CPU, so the same
path runs here on the tiny Voxtral.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")


def compiles(config: Any, total_steps: int | None = None, world_size: int = 1) -> bool:
    """The compile rule of :mod:`voxplug.training.context` for ``config`` in a run of ``total_steps``."""
    from voxplug.training.context import compile_decision, deepspeed_wanted

    return compile_decision(config, total_steps=total_steps, world_size=world_size, deepspeed=deepspeed_wanted(config))


def test_compile_defaults_follow_the_machine_and_refuse_deepspeed(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from voxplug.errors import TrainingError
    from voxplug.training.context import COMPILE_AUTO_MIN_STEPS as LONG

    from .conftest import validated

    auto = validated(make_config(training__compile=None), tmp_path)
    assert compiles(auto, LONG) is torch.cuda.is_available()
    assert compiles(validated(make_config(training__compile=True), tmp_path)) is True
    assert compiles(validated(make_config(training__compile=False), tmp_path), LONG) is False
    zero2 = "deepspeed/zero2.json"
    with pytest.raises(TrainingError, match="training.compile=true is not supported under DeepSpeed"):
        compiles(validated(make_config(training__compile=True, training__deepspeed=zero2), tmp_path))
    deepspeed_auto = validated(make_config(training__compile=None, training__deepspeed=zero2), tmp_path)
    assert compiles(deepspeed_auto, LONG) is False
    monkeypatch.setattr("voxplug.training.devices.cuda_available", lambda: True)
    assert compiles(auto, LONG) is True
    # auto compiles only a run long enough to pay the compile time back, and not when the length is unknown
    assert compiles(auto, LONG - 1) is False
    assert compiles(auto) is False
    # several processes: DDP with compile has not been run, so auto is off
    assert compiles(auto, LONG, world_size=2) is False
    assert compiles(validated(make_config(training__compile=True), tmp_path), world_size=2) is True


def test_the_run_decides_auto_compile_from_its_step_count_and_leaves_the_config_alone(
    tmp_path: Path, make_config: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from voxplug.training.context import COMPILE_AUTO_MIN_STEPS, decide

    from .conftest import validated

    monkeypatch.setattr("voxplug.training.devices.cuda_available", lambda: True)
    for steps, expected in ((COMPILE_AUTO_MIN_STEPS, True), (COMPILE_AUTO_MIN_STEPS - 1, False)):
        config = validated(make_config(training__max_steps=steps), tmp_path)
        assert config.training.compile is None  # the default is auto
        with caplog.at_level("INFO", logger="voxplug.training"):
            context = decide(config, {}, train_rows=12, world_size=1)
        assert context.plan.total_steps == steps
        assert context.compile is expected
        assert config.training.compile is None  # the decision lives in the context, never in the config
        assert f"{'on' if expected else 'off'} for {steps} optimizer steps" in caplog.text
    config = validated(make_config(training__compile=False), tmp_path)
    assert decide(config, {}, train_rows=COMPILE_AUTO_MIN_STEPS * 8, world_size=1).compile is False
    assert config.training.compile is False  # a choice the user made stays


@pytest.mark.slow
def test_a_compiled_run_trains_compiled_blocks_to_the_eager_losses(tmp_path: Path, make_config: Any) -> None:
    from torch._dynamo.utils import counters
    from transformers import TrainerCallback

    from voxplug.training.run import train

    from .conftest import validated

    seen: dict[str, Any] = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            seen["torch_compile"] = args.torch_compile
            seen["eager_model_compiled"] = any(
                isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in model.modules()
            )

    losses = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        counters.clear()
        config = make_config(
            training__compile=compiled,
            training__max_steps=4,
            training__output_dir=str(tmp_path / f"run-{compiled}"),
            training__seed=7,
        )
        result = train(validated(config, tmp_path), progress=False, callbacks=[Inspect()])
        history = json.loads((result.run_dir / "trainer_state.json").read_text())["log_history"]
        losses[compiled] = [entry["loss"] for entry in history if "loss" in entry]
        assert "eval_wer" in result.eval_results  # generation ran (on the uncompiled model)
        if compiled:
            assert seen["torch_compile"] and not seen["eager_model_compiled"]
            # one graph for the first decoder layer (its input needs no grad), one for the others, dynamic shapes
            assert 1 <= counters["stats"]["unique_graphs"] <= 12
    assert len(losses[True]) == len(losses[False]) == 4
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
