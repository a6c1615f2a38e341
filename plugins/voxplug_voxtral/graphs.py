"""Voxtral's language model with its decoder layers replayed as CUDA graphs in training
(voxplug.training.speed.cuda_graphs).

The Llama model's forward is replaced on the instance: in a training forward of the shape a training batch has
(``inputs_embeds`` only, no attention mask, no cache), the rotary embedding is computed as before, the decoder
layers run through :class:`~voxplug.training.speed.cuda_graphs.LayerGraphs`, and the final norm runs eagerly. The layers
are causal and the batch is right-padded, so a batch may be zero-padded into a larger captured shape (more rows,
more positions): no real position attends to a later one. Every other call (generation, evaluation, an attention
mask, CPU tensors, graphs turned off by a failed capture) runs transformers' own forward, unchanged. Entering
evaluation drops the graphs, so generation has their memory.
"""

from __future__ import annotations

from typing import Any

from transformers.modeling_outputs import BaseModelOutputWithPast

from voxplug.api import LayerGraphs

#: Keyword arguments of a training forward that the layers do not read (any other one, such as packed-sequence
#: lengths for flash attention, sends the batch through transformers' forward).
IGNORED_KWARGS = frozenset({"output_attentions", "output_hidden_states", "num_items_in_batch", "return_dict"})


def graph_language_model(language_model: Any) -> LayerGraphs | None:
    """Replay ``language_model``'s (a ``LlamaModel``) decoder layers as CUDA graphs in training; return the graphs.

    None when the model is not a Llama (nothing changes).
    """
    import torch

    if getattr(language_model.config, "model_type", None) != "llama":
        return None
    layers = list(language_model.layers[: language_model.config.num_hidden_layers])

    def run_layers(hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            hidden = layer(hidden, attention_mask=None, position_embeddings=(cos, sin), use_cache=False)
        return hidden

    # causal layers: a batch pads into a captured shape along rows and positions (hidden states (rows, positions,
    # width); rotary tables (1, positions, head width))
    graphs = LayerGraphs(layers, run_layers, pad_dims=((0, 1), (1,), (1,)))
    transformers_forward = language_model.forward

    def forward(
        input_ids: Any = None,
        attention_mask: Any = None,
        position_ids: Any = None,
        cache: Any = None,
        inputs_embeds: Any = None,
        use_cache: Any = None,
        **kwargs: Any,
    ) -> Any:
        plain = (
            language_model.training
            and inputs_embeds is not None
            and input_ids is None
            and attention_mask is None
            and position_ids is None
            and cache is None
            and not use_cache
            and set(kwargs) <= IGNORED_KWARGS
            and not kwargs.get("output_attentions")
            and not kwargs.get("output_hidden_states")
        )
        if plain:
            positions = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device).unsqueeze(0)
            cos, sin = language_model.rotary_emb(inputs_embeds, position_ids=positions)
            hidden = graphs(inputs_embeds, cos, sin)
            if hidden is not None:
                return BaseModelOutputWithPast(last_hidden_state=language_model.norm(hidden))
        elif not language_model.training:
            graphs.release()
        return transformers_forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )

    language_model.forward = forward
    return graphs
