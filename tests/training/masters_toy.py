"""A toy regression trained by transformers' own ``Trainer`` with the fp32 masters in the optimizer: imported by
``test_master_weights.py``, and run as a script on each rank of ``accelerate launch`` (``python masters_toy.py
OUT --steps N --batch B``), which writes every rank's losses, weights and masters to ``OUT/rank-<rank>.pt``. Also
the half-precision weights and the stepping beside an fp32 optimizer that the masters' tests share."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from voxplug.training.master_weights import MasterWeights


def half_params(sizes: tuple[int, ...], dtype: torch.dtype = torch.bfloat16, seed: int = 0) -> list[Any]:
    """Random weights of ``sizes`` in ``dtype``, as parameters."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(size, generator=generator).to(dtype)) for size in sizes]


def two_groups(params: list[Any]) -> list[dict[str, Any]]:
    """As the Trainer groups them: weight decay on the first two, none on the rest."""
    return [{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:], "weight_decay": 0.0}]


def step_beside_fp32(
    masters: MasterWeights, plain: torch.optim.Optimizer, params: list[Any], reference: list[Any], steps: int = 5
) -> None:
    """Step ``masters`` (over the half-precision ``params``) and ``plain`` (an optimizer over their fp32 copies,
    ``reference``) ``steps`` times from the same random gradients, each rate scheduled to 1 / (step + 1)."""
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (step + 1)) for opt in (masters, plain)]
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for param, ref in zip(params, reference, strict=True):
            grad = torch.randn(param.shape, generator=generator).to(param.dtype)
            param.grad, ref.grad = grad, grad.float()
        masters.step()
        plain.step()
        for schedule in schedules:
            schedule.step()
        masters.zero_grad()
        plain.zero_grad()


class Toy(torch.nn.Module):
    """A regression model the Trainer can train: ``loss`` from ``x`` and ``y``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": torch.nn.functional.mse_loss(self.layer(x).float().squeeze(-1), y)}


class Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(3)
        self.x = torch.randn(32, 4, generator=generator).bfloat16()
        self.y = torch.randn(32, generator=generator)

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


def trainer_run(out: Path, *, max_steps: int, resume: Path | None = None, batch: int = 4) -> Any:
    """transformers' own Trainer, with the wrapper as the optimizer it builds, saving every 3 steps."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = Toy().bfloat16()
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=batch,
        learning_rate=1e-2,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        save_steps=3,
        save_strategy="steps",
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    inner, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Rows(),
        optimizer_cls_and_kwargs=(MasterWeights, {"inner": inner, "inner_kwargs": kwargs}),
    )
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return trainer


def outcome(trainer: Any) -> dict[str, Any]:
    """The run's logged losses, the model's weights and the optimizer's masters."""
    wrapped = trainer.optimizer.optimizer
    return {
        "losses": [entry["loss"] for entry in trainer.state.log_history if "loss" in entry],
        "weights": [p.detach().clone() for p in trainer.model.parameters()],
        "masters": [master.clone() for chunk in wrapped.chunks for master in chunk.masters],
        "world_size": trainer.args.world_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resume", type=Path, default=None)
    args = parser.parse_args()
    trainer = trainer_run(args.out, max_steps=args.steps, resume=args.resume, batch=args.batch)
    torch.save(outcome(trainer), args.out / f"rank-{trainer.args.process_index}.pt")


if __name__ == "__main__":
    main()
