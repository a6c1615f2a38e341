"""One autograd node per LoRA layer, or per group of LoRA layers that share their input: PEFT's adapter arithmetic
with fewer kernels and less Python in each step.

PEFT computes a LoRA linear layer as ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` from modules. Under
autocast, over a bf16 base with fp32 adapters, that is per layer and step three linear calls, two weight casts, a
multiply and an add forward, and about as many autograd nodes backward, each with its Python and its kernel
launch. Eager LoRA training of Voxtral on a GPU is bound by that host work, not by the GPU (benchmarks/NOTES.md):
the GPU idles while the host queues thousands of small kernels a step.

:class:`LoraGroupFunction` does the same arithmetic as one autograd node for ``n`` layers called on the same input
``x`` (a Llama block's q/k/v projections, or its gate/up projections; ``n`` is 1 for any other layer). Forward:
``h = s (x [A_1; ...; A_n]^T)`` once for every adapter (one matmul), then ``y_i = x W_i^T`` and ``y_i += h_i B_i^T``
(an ``addmm_``). Backward: the input gradient ``sum_i g_i W_i + s (g_i B_i) A_i`` and the adapters' gradients,
only those needed, written straight in the adapters' dtype by the matmul where the GPU allows. Same math, same
parameters (PEFT's modules, saved and loaded as PEFT's), so nothing outside the step changes.

:func:`use_one_node_lora` puts it on every plain PEFT ``lora.Linear`` of a model, and groups the layers a model
family names as sharing their input (``ModelFamily.lora_shared_inputs``). The first layer of a group called
computes every member's output and hands each sibling its own when the sibling is called on the same tensor; a
sibling called on another tensor computes alone, and a group whose members keep meeting different inputs stops
grouping. A layer falls back to PEFT's own forward wherever the one-node math does not apply (no gradient, adapters
merged or disabled, a base layer that trains, a variant such as DoRA, dropout, several adapters, or dtypes that only
PEFT's casts reconcile).

Not for ZeRO-3 (it reads the weights without calling the modules that gather them) nor under ``torch.compile``
(which fuses PEFT's forward itself); the ``lora`` trainer installs it only in eager runs without DeepSpeed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from types import MethodType
from typing import Any

import torch

ADAPTER = "default"
#: A group whose members were called on different tensors this many times computes them one by one from then on.
MISSES_BEFORE_UNGROUPING = 3

log = logging.getLogger("voxplug.training")


def _mm_in(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` in ``dtype``: written in it by the matmul (cuBLAS's bf16 -> fp32 output) where possible."""
    if dtype == a.dtype:
        return torch.mm(a, b)
    if a.is_cuda and dtype == torch.float32 and a.dtype in (torch.bfloat16, torch.float16) and _MM_OUT_DTYPE:
        return torch.mm(a, b, out_dtype=dtype)
    return torch.mm(a, b).to(dtype)


_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()


def _cast_rows(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """``tensors`` stacked along rows in ``dtype``, and each as a view of the stack; tensors of different widths
    are cast one by one (and there is no stack: None)."""
    if len(tensors) == 1:
        stacked = tensors[0].to(dtype)
        return stacked, [stacked]
    if len({tensor.shape[1] for tensor in tensors}) > 1:
        return None, [tensor.to(dtype) for tensor in tensors]
    stacked = torch.cat(tensors).to(dtype)  # two kernels (cat's own casting copies each input on its own)
    return stacked, list(stacked.split_with_sizes([tensor.shape[0] for tensor in tensors]))


def _split_columns(matrix: torch.Tensor, widths: list[int]) -> Sequence[torch.Tensor]:
    return matrix.split_with_sizes(widths, dim=1) if len(widths) > 1 else (matrix,)


def _scale_columns(matrix: torch.Tensor, widths: list[int], scalings: tuple[float, ...]) -> None:
    """Multiply each layer's block of columns of ``matrix`` (``widths`` wide) by its scaling, in place: one kernel
    when the scalings are equal."""
    if len(set(scalings)) == 1:
        matrix.mul_(scalings[0])
        return
    for part, scaling in zip(_split_columns(matrix, widths), scalings, strict=True):
        part.mul_(scaling)


class LoraGroupFunction(torch.autograd.Function):
    """``y_i = x W_i^T + b_i + s_i (x A_i^T) B_i^T`` in ``dtype`` for the ``n`` layers of a group, with their
    gradients, as one autograd node (see the module doc). ``params`` holds ``(W_i, b_i, A_i, B_i)`` per layer."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, scalings: tuple[float, ...], dtype: torch.dtype, *params: torch.Tensor | None
    ) -> tuple[torch.Tensor, ...]:
        weights, biases, lora_as, lora_bs = params[0::4], params[1::4], params[2::4], params[3::4]
        flat = x.reshape(-1, x.shape[-1]).to(dtype)
        a, _ = _cast_rows(lora_as, dtype)  # (sum of ranks, in): every A has the input's width
        _, bs = _cast_rows(lora_bs, dtype)
        ranks = [b.shape[1] for b in lora_bs]
        h = torch.mm(flat, a.t())  # every adapter's down-projection in one matmul
        _scale_columns(h, ranks, scalings)
        hs = _split_columns(h, ranks)
        ws = [weight.to(dtype) for weight in weights]
        outs = []
        for w, bias, b, part in zip(ws, biases, bs, hs, strict=True):
            out = torch.mm(flat, w.t()) if bias is None else torch.addmm(bias.to(dtype), flat, w.t())
            out.addmm_(part, b.t())
            outs.append(out.view(*x.shape[:-1], out.shape[-1]))
        ctx.save_for_backward(flat, h, a, *bs, *ws)
        ctx.set_materialize_grads(False)
        ctx.meta = (x.shape, x.dtype, scalings, ranks, [t.dtype for t in lora_as], [t.dtype for t in lora_bs])
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *grad_outs: torch.Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        shape, x_dtype, scalings, ranks, a_dtypes, b_dtypes = ctx.meta
        n = len(scalings)
        flat, h, a, *rest = ctx.saved_tensors
        bs, ws = rest[:n], rest[n:]
        # an output the loss does not use has no gradient (grads are not materialized): its adapters get None, as
        # with PEFT's separate layers, and it adds nothing to the input's gradient
        grads = [None if g is None else g.reshape(-1, g.shape[-1]).to(flat.dtype) for g in grad_outs]
        used = [i for i, g in enumerate(grads) if g is not None]
        needs = ctx.needs_input_grad
        needs_x = needs[0] and bool(used)
        needs_a = [needs[5 + 4 * i] and grads[i] is not None for i in range(n)]
        needs_b = [needs[6 + 4 * i] and grads[i] is not None for i in range(n)]
        grad_x = grad_a = None
        if needs_x or any(needs_a):
            # s_i g_i B_i for every layer, side by side: (tokens, sum of ranks)
            if n == 1:
                grad_h = torch.mm(grads[0], bs[0])
            else:
                grad_h = flat.new_empty((flat.shape[0], sum(ranks)))
                for g, b, part in zip(grads, bs, _split_columns(grad_h, ranks), strict=True):
                    if g is None:
                        part.zero_()
                    else:
                        torch.mm(g, b, out=part)
            _scale_columns(grad_h, ranks, scalings)
            if needs_x:
                grad_x = torch.mm(grads[used[0]], ws[used[0]])
                for i in used[1:]:
                    grad_x.addmm_(grads[i], ws[i])
                grad_x = grad_x.addmm_(grad_h, a).view(shape).to(x_dtype)
            if any(needs_a):
                grad_a = _mm_in(grad_h.t(), flat, a_dtypes[0])  # every A's gradient in one matmul
                grad_a = grad_a.split_with_sizes(ranks) if n > 1 else (grad_a,)
        per_layer: list[Any] = []
        for i, (g, part) in enumerate(zip(grads, _split_columns(h, ranks), strict=True)):
            grad_b = _mm_in(g.t(), part, b_dtypes[i]) if needs_b[i] else None
            grad_a_i = grad_a[i].to(a_dtypes[i]) if grad_a is not None and needs_a[i] else None
            per_layer += [None, None, grad_a_i, grad_b]
        return (grad_x, None, None, *per_layer)


def one_node_applies(layer: Any) -> bool:
    """Whether ``layer`` is a plain PEFT LoRA linear layer this module's forward computes exactly as PEFT does:
    one adapter named ``default``, no dropout, no LoRA variant (DoRA...), an ``nn.Linear`` base, no fan-in-fan-out
    weight layout, and no LoRA bias."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    return (
        type(layer) is LoraLinear
        and type(layer.base_layer) is torch.nn.Linear
        and set(layer.lora_A.keys()) == {ADAPTER}
        and not layer.lora_variant
        and not layer.fan_in_fan_out
        and type(layer.lora_dropout[ADAPTER]) is torch.nn.Identity
        and not getattr(layer, "lora_bias", {}).get(ADAPTER, False)
    )


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor, lora_a: torch.Tensor) -> torch.dtype | None:
    """The dtype PEFT's forward computes in here: autocast's, or the one every tensor already has; else None."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    if x.dtype == weight.dtype == lora_a.dtype:
        return x.dtype
    return None


def _params(layer: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``layer``'s base weight and bias and its adapter's A and B, looked up in the modules' own dictionaries (ten
    times cheaper than attribute access through ``nn.Module.__getattr__``, and this runs for every layer a step)."""
    modules = layer._modules
    base = modules["base_layer"]._parameters
    lora_a = modules["lora_A"]._modules[ADAPTER]._parameters["weight"]
    return base["weight"], base.get("bias"), lora_a, modules["lora_B"]._modules[ADAPTER]._parameters["weight"]


def _one_node_dtype(layer: Any, x: torch.Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.dtype | None:
    """The dtype ``layer``'s one-node math computes in on ``x``, or None where PEFT's forward must run instead."""
    if args or kwargs or layer.disable_adapters or layer.merged_adapters or not torch.is_grad_enabled():
        return None
    weight, bias, lora_a, _ = _params(layer)
    if weight.requires_grad or (bias is not None and bias.requires_grad) or layer.active_adapters != [ADAPTER]:
        return None
    return _compute_dtype(x, weight, lora_a)


def decide_peft_input_cast(layer: Any, x: torch.Tensor) -> None:
    """Before PEFT's forward of ``layer`` on ``x``: cast the input to the adapters' dtype only without autocast
    (under autocast the cast to fp32 would be cast straight back to bf16 for the matmul)."""
    layer.cast_input_dtype_enabled = not torch.is_autocast_enabled(x.device.type)


def _apply(layers: Sequence[Any], x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    params: list[torch.Tensor | None] = []
    for layer in layers:
        params += _params(layer)
    scalings = tuple(layer.scaling[ADAPTER] for layer in layers)
    return LoraGroupFunction.apply(x, scalings, dtype, *params)


class SharedInputGroup:
    """Adapted layers of one module that its forward calls on the same tensor (q/k/v, gate/up): the first called
    computes them all as one node and keeps the siblings' outputs until each sibling is called on that tensor."""

    def __init__(self, layers: Sequence[Any], names: Sequence[str]) -> None:
        self.layers, self.names = list(layers), "/".join(names)
        self.index = {layer: i for i, layer in enumerate(self.layers)}
        self.input: torch.Tensor | None = None
        self.pending: dict[int, torch.Tensor] = {}
        self.misses = 0
        self.grouping = True

    def take(self, layer: Any, x: torch.Tensor) -> torch.Tensor | None:
        """``layer``'s output if a sibling computed it on this very tensor (checked then for every member)."""
        if self.input is not x:
            return None
        out = self.pending.pop(self.index[layer], None)
        if not self.pending:
            self.input = None
        return out

    def output(self, layer: Any, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Compute ``layer``'s output on ``x``, and its siblings' with it where they can be."""
        if self.pending:  # a sibling's output was never asked for on its tensor: they do not share it
            self.pending, self.input = {}, None
            self.misses += 1
            if self.misses >= MISSES_BEFORE_UNGROUPING:
                self.grouping = False
                log.info("LoRA: %s are not called on one input; they run one by one from now on", self.names)
        if not self.grouping or any(
            other is not layer and _one_node_dtype(other, x, (), {}) != dtype for other in self.layers
        ):
            return _apply((layer,), x, dtype)[0]
        outs = _apply(self.layers, x, dtype)
        index = self.index[layer]
        self.pending = {i: out for i, out in enumerate(outs) if i != index}
        self.input = x
        return outs[index]


def _one_node_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    group = self.__dict__.get("_lora_group")
    if group is not None and not (args or kwargs):
        out = group.take(self, x)
        if out is not None:
            return out
    dtype = _one_node_dtype(self, x, args, kwargs)
    if dtype is None:
        decide_peft_input_cast(self, x)
        return self._peft_forward(x, *args, **kwargs)
    if group is None:
        return _apply((self,), x, dtype)[0]
    return group.output(self, x, dtype)


def use_one_node_lora(model: Any, shared_inputs: Iterable[Sequence[str]] = ()) -> int:
    """Give every LoRA layer of ``model`` that :func:`one_node_applies` to the one-node forward; return how many.

    ``shared_inputs`` names sibling layers (``("q_proj", "k_proj", "v_proj")``) that their parent module calls on
    the same input; where two or more of a group's names are one-node children of one module, they run as one
    node. Per instance: the layers' class, parameters and ``state_dict`` stay PEFT's. ``restore_peft_forward``
    undoes it."""
    count = 0
    for module in model.modules():
        if "_peft_forward" not in module.__dict__ and one_node_applies(module):
            module._peft_forward = module.forward
            module.forward = MethodType(_one_node_forward, module)
            count += 1
    names = [tuple(group) for group in shared_inputs]
    for parent in model.modules():
        for group in names:
            children = {name: getattr(parent, name, None) for name in group}
            members = {
                name: child
                for name, child in children.items()
                if isinstance(child, torch.nn.Module)
                and "_peft_forward" in vars(child)
                and "_lora_group" not in vars(child)
            }
            if len(members) > 1 and len({m.base_layer.in_features for m in members.values()}) == 1:
                shared = SharedInputGroup(list(members.values()), list(members))
                for member in members.values():
                    member.__dict__["_lora_group"] = shared
    return count


def shared_input_groups(model: Any) -> int:
    """How many groups of layers sharing their input :func:`use_one_node_lora` formed in ``model``."""
    return len({id(m.__dict__["_lora_group"]) for m in model.modules() if "_lora_group" in m.__dict__})


def restore_peft_forward(model: Any) -> int:
    """Give every layer :func:`use_one_node_lora` changed its PEFT forward back; return how many."""
    count = 0
    for module in model.modules():
        if "_peft_forward" in module.__dict__:
            del module.forward, module._peft_forward
            module.__dict__.pop("_lora_group", None)
            count += 1
    return count
