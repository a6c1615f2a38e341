"""fp32 master weights kept by the optimizer, for full fine-tuning a model that holds and computes in bf16.

Mixed precision as the Trainer does it keeps fp32 weights in the model and casts them to bf16 in every forward
pass, and casts every gradient back to fp32: two casts of the whole model each step, and fp32 gradients in memory.
With ``training.master_weights: optimizer`` the model loads in bf16 and trains in it; :class:`MasterWeights` wraps
the Trainer's optimizer so that its updates still happen on fp32 copies (the masters), which are then rounded into
the model's weights. Small updates accumulate in the masters rather than vanishing in bf16's 8-bit mantissa.

The parameters are taken in chunks of at most :data:`~voxplug.training.memory.CHUNK_ELEMENTS` elements. Each chunk
has its own instance of the wrapped optimizer, and one shared fp32 scratch buffer takes the gradients of one chunk at
a time, so fp32 gradients never exist for the whole model at once. With PyTorch's fused AdamW on a GPU the chunks
step in one pass instead (:mod:`voxplug.training.speed.masters_adamw`), which needs no fp32 gradients at all. Each
master is a tensor of its own (no two share storage), so the saved model writes them as they are.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from voxplug.training.memory import CHUNK_ELEMENTS
from voxplug.training.speed.masters_adamw import adamw_applies, adamw_step

log = logging.getLogger("voxplug.training")


@dataclass
class _Chunk:
    """The model's parameters of one chunk, their fp32 masters, and the optimizer stepping the masters."""

    params: list[torch.Tensor]
    masters: list[torch.Tensor]
    optimizer: torch.optim.Optimizer

    @property
    def elements(self) -> int:
        return sum(master.numel() for master in self.masters)


class MasterWeights(torch.optim.Optimizer):
    """An optimizer over a half-precision model whose state and weights are fp32 masters.

    ``params`` are the model's parameters or parameter groups, as any optimizer takes them; ``inner`` the optimizer
    class that steps the masters, with ``inner_kwargs`` (what ``Trainer.get_optimizer_cls_and_kwargs`` returns).
    ``param_groups`` are the inner optimizers' own group dicts, read afresh each time (loading a state dict replaces
    them), so a learning-rate scheduler sets every chunk's rate. ``full_state`` are parameters whose masters keep
    32-bit state under an 8-bit bitsandbytes optimizer, as the Trainer keeps the embeddings' (it registers that
    for the model's parameters, which the inner optimizers never see). Its state dict holds the masters beside the inner
    optimizers' states, so a resumed run continues from the exact fp32 weights rather than from their bf16 rounding.
    ``fused`` steps the chunks in one pass over memory (:func:`~voxplug.training.speed.masters_adamw.adamw_step`)
    where that applies (``torch.optim.AdamW`` built fused or capturable, on a CUDA device with Triton), from each
    chunk's second step on (its first creates the inner optimizer's state); false: always in three passes.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        inner: type[torch.optim.Optimizer],
        inner_kwargs: dict[str, Any] | None = None,
        chunk_elements: int = CHUNK_ELEMENTS,
        full_state: Iterable[torch.Tensor] = (),
        fused: bool = True,
    ) -> None:
        groups = _as_groups(params)
        self.chunks = [_chunk(members, groups, inner, inner_kwargs or {}) for members in _split(groups, chunk_elements)]
        _keep_32bit_state(self.chunks, full_state)
        self.defaults = self.chunks[0].optimizer.defaults if self.chunks else {}
        largest = max((chunk.elements for chunk in self.chunks), default=0)
        device = self.chunks[0].masters[0].device if self.chunks else None
        self.scratch = torch.empty(largest, dtype=torch.float32, device=device)
        #: whether a step runs :func:`~voxplug.training.speed.masters_adamw.adamw_step` (AdamW in one pass)
        self.fused = fused and device is not None and all(adamw_applies(c.optimizer, device) for c in self.chunks)
        if self.chunks:
            passes = "in one pass" if self.fused else "in three passes (gradients to fp32, the step, masters back)"
            log.info("master weights: %s steps the fp32 masters %s", type(self.chunks[0].optimizer).__name__, passes)
        self._optimizer_step_pre_hooks: dict[int, Any] = {}
        self._optimizer_step_post_hooks: dict[int, Any] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """Every chunk's optimizer's parameter groups: the dicts those optimizers read their options from."""
        return [group for chunk in self.chunks for group in chunk.optimizer.param_groups]

    @property
    def state(self) -> dict[torch.Tensor, Any]:  # type: ignore[override]
        """The inner optimizers' states by master tensor."""
        return {key: value for chunk in self.chunks for key, value in chunk.optimizer.state.items()}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """Step each chunk's masters from the model's gradients and round them into the model's weights: in one pass
        where :attr:`fused` and the chunk's optimizer has its state, else by copying the gradients into fp32,
        stepping the inner optimizer and copying the masters back."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for chunk in self.chunks:
            ready = [(p, m) for p, m in zip(chunk.params, chunk.masters, strict=True) if p.grad is not None]
            if not ready or (self.fused and adamw_step(chunk.optimizer, ready)):
                continue
            grads = _views(self.scratch, [m for _, m in ready])
            torch._foreach_copy_(grads, [p.grad for p, _ in ready])
            for (_, master), grad in zip(ready, grads, strict=True):
                master.grad = grad
            chunk.optimizer.step()
            for _, master in ready:
                master.grad = None
            torch._foreach_copy_([p for p, _ in ready], [m for _, m in ready])
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the model's gradients (the masters hold none between steps)."""
        for chunk in self.chunks:
            for param in chunk.params:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """The masters and each chunk's optimizer state."""
        return {
            "masters": [chunk.masters for chunk in self.chunks],
            "chunks": [chunk.optimizer.state_dict() for chunk in self.chunks],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore the masters and optimizer states of :meth:`state_dict`, and round the masters into the model."""
        masters, states = state_dict.get("masters"), state_dict.get("chunks")
        if masters is None or states is None or len(masters) != len(self.chunks) or len(states) != len(self.chunks):
            raise ValueError(
                "this optimizer state was not saved with training.master_weights=optimizer for this model: resume "
                "with the master_weights setting the checkpoint was trained with"
            )
        for chunk, saved, state in zip(self.chunks, masters, states, strict=True):
            shapes = [tuple(master.shape) for master in chunk.masters]
            if [tuple(tensor.shape) for tensor in saved] != shapes:
                raise ValueError(
                    "the saved master weights have other shapes than this model's trained weights: the checkpoint is "
                    "of another model or training method"
                )
            with torch.no_grad():
                torch._foreach_copy_(chunk.masters, list(saved))
            chunk.optimizer.load_state_dict(state)
            with torch.no_grad():
                torch._foreach_copy_(chunk.params, chunk.masters)

    def hold_the_model(self) -> bool:
        """Whether the model's weights are the masters' rounding, as after every step (not after the Trainer has
        loaded another checkpoint's weights into the model)."""
        with torch.no_grad():
            return all(
                torch.equal(param, master.to(param.dtype))
                for chunk in self.chunks
                for param, master in zip(chunk.params, chunk.masters, strict=True)
            )

    def load_masters(self, path: str | Path) -> None:
        """Take the masters of the state dict saved at ``path`` (a checkpoint's ``optimizer.pt``; the optimizer
        states in it are not read into memory)."""
        saved = torch.load(path, map_location="cpu", mmap=True, weights_only=True)["masters"]
        for chunk, tensors in zip(self.chunks, saved, strict=True):
            with torch.no_grad():
                torch._foreach_copy_(chunk.masters, list(tensors))

    @contextmanager
    def weights_from_masters(self) -> Iterator[None]:
        """Inside the block the model's parameters hold their fp32 masters (the masters themselves, no copy), for
        saving the exact trained weights; after it, their bf16 weights again."""
        swapped = [(param, param.data) for chunk in self.chunks for param in chunk.params]
        masters = [master for chunk in self.chunks for master in chunk.masters]
        try:
            for (param, _), master in zip(swapped, masters, strict=True):
                param.data = master
            yield
        finally:
            for param, data in swapped:
                param.data = data

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise NotImplementedError("MasterWeights takes all its parameters when it is built")

    def __repr__(self) -> str:
        inner = type(self.chunks[0].optimizer).__name__ if self.chunks else "nothing"
        elements = sum(chunk.elements for chunk in self.chunks)
        return f"MasterWeights({inner}, {elements} fp32 masters in {len(self.chunks)} chunks)"


def embeddings_in_32_bits(model: torch.nn.Module, inner: type, inner_kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The embedding weights of ``model`` where ``inner`` is an 8-bit bitsandbytes optimizer, else none: the
    parameters whose state the Trainer keeps in 32 bits with such an optimizer (``full_state``)."""
    if "bitsandbytes" not in str(inner) or inner_kwargs.get("optim_bits") != 8:
        return []
    return [module.weight for module in model.modules() if isinstance(module, torch.nn.Embedding)]


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    """Parameter groups as dicts with a list of the parameters that train (an optimizer's accepted forms)."""
    params = list(params)
    if params and not isinstance(params[0], dict):
        params = [{"params": params}]
    groups = [{**group, "params": [p for p in group["params"] if p.requires_grad]} for group in params]
    return [group for group in groups if group["params"]]


def _split(groups: list[dict[str, Any]], chunk_elements: int) -> list[list[tuple[int, torch.Tensor]]]:
    """The parameters, with their group's index, in chunks of at most ``chunk_elements`` elements (a larger
    parameter is a chunk of its own)."""
    chunks: list[list[tuple[int, torch.Tensor]]] = [[]]
    size = 0
    for index, group in enumerate(groups):
        for param in group["params"]:
            if chunks[-1] and size + param.numel() > chunk_elements:
                chunks.append([])
                size = 0
            chunks[-1].append((index, param))
            size += param.numel()
    return [chunk for chunk in chunks if chunk]


def _chunk(
    members: list[tuple[int, torch.Tensor]],
    groups: list[dict[str, Any]],
    inner: type[torch.optim.Optimizer],
    inner_kwargs: dict[str, Any],
) -> _Chunk:
    """A chunk's fp32 masters, copied from its parameters, and an optimizer over them with the groups' options."""
    params = [param for _, param in members]
    masters = [param.detach().to(torch.float32, copy=True) for param in params]
    by_group: dict[int, list[torch.Tensor]] = {}
    for (index, _), master in zip(members, masters, strict=True):
        by_group.setdefault(index, []).append(master)
    inner_groups = [
        {**{k: v for k, v in groups[index].items() if k != "params"}, "params": views}
        for index, views in by_group.items()
    ]
    return _Chunk(params, masters, inner(inner_groups, **inner_kwargs))


def _keep_32bit_state(chunks: list[_Chunk], params: Iterable[torch.Tensor]) -> None:
    """Give the masters of ``params`` 32-bit state in bitsandbytes' optimizers (its per-tensor override)."""
    wanted = {id(param) for param in params}
    for chunk in chunks:
        manager = getattr(chunk.optimizer, "mng", None)  # bitsandbytes' GlobalOptimManager: one per process
        for param, master in zip(chunk.params, chunk.masters, strict=True):
            if manager is not None and id(param) in wanted:
                manager.override_config(master, key_value_dict={"optim_bits": 32})
                # keyed by id(): forgotten with the master, so no later tensor at its address inherits it
                weakref.finalize(master, manager.pid2config.pop, id(master), None)


def _views(buffer: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Consecutive views of ``buffer`` shaped like each tensor of ``like``."""
    views, offset = [], 0
    for tensor in like:
        views.append(buffer[offset : offset + tensor.numel()].view(tensor.shape))
        offset += tensor.numel()
    return views
