"""Hidden states of every layer-dropped variant of one upstream, from one full pass and shared layer prefixes.

For each test batch, :class:`SharedPrunedForward` runs the stock expert ONCE in full (CNN feature extractor,
feature projection, positional convolution, every transformer layer): this is the unpruned variant, and forward
pre-hooks on the layers record each layer's input and call arguments (the padding mask; WavLM's relative-position
bias). Every pruned variant is a keep/drop mask over the L layers; the masks form a prefix trie, walked depth
first: a variant whose first ``j`` decisions equal the unpruned model's reads its state at depth ``j`` from the
full pass, a dropped layer is the identity (the state passes on unchanged, as
:class:`~superb_redundancy.pruning.upstream.DroppedLayer` does), and a kept layer is computed once per distinct
prefix, so variants sharing a prefix share every layer above it. Backward pruning is therefore read off the one
full pass (its variants are prefixes of the unpruned model; no layer is recomputed), and the nested static orders
of BI / kNN-BI share their common prefixes. At a leaf the hidden states are the L+1 entries a pruned upstream
returns (input of each layer; the entry after a dropped layer repeats its input), and the last one is the encoder
output: the state after the last layer, un-padded, plus the encoder's final LayerNorm when the model is pre-LN
(``encoder.layer_norm_first``, e.g. Large) -- for backward pruning by ``p`` that is the full pass's state after
``L - p`` layers, normed. The trained Featurizer and head then run on each variant's hidden states. Every module
is called on exactly the tensors the end-to-end pruned model (:func:`~superb_redundancy.pruning.upstream.build_pruned`)
would call it on, so the results are identical, not merely close; each batch re-checks that the reproduced output
stage equals the stock encoder's output.

:func:`layers_dropped` is the end-to-end reference: the expert with layers replaced in place, restored on exit.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

from superb_redundancy.core.contract import upstream_output
from superb_redundancy.models.families import ModelFamily
from superb_redundancy.pruning.upstream import PrunedUpstream, drop_layers
from superb_redundancy.core.errors import UserError

__all__ = ["Mask", "SharedPrunedForward", "as_upstream_output", "layers_dropped"]

#: one variant: per transformer layer, True = kept
Mask = tuple[bool, ...]


def _mask(dropped: Sequence[int], num_layers: int) -> Mask:
    dropped = set(dropped)
    return tuple(i not in dropped for i in range(num_layers))


def _dropped(mask: Mask) -> tuple[int, ...]:
    return tuple(i for i, keep in enumerate(mask) if not keep)


def _trie(masks: Sequence[Mask]) -> dict:
    """The masks as a prefix trie: node[keep] is the child for the next layer; a leaf holds node["mask"]."""
    trie: dict = {}
    for mask in masks:
        node = trie
        for keep in mask:
            node = node.setdefault(keep, {})
        node["mask"] = mask
    return trie


class SharedPrunedForward:
    """Hidden states of many layer-dropped variants of one stock s3prl expert, computed with shared work.

    ``run(wavs, masks)`` yields ``(mask, hidden_states)`` for each distinct keep-mask (True = layer kept):
    the L+1 hidden states the pruned upstream (:class:`~superb_redundancy.pruning.upstream.PrunedUpstream`,
    non-compact) returns for that batch. See the module docstring for how the work is shared.
    ``layer_calls`` counts the transformer layers computed beyond the full passes.
    """

    def __init__(self, expert: nn.Module, family: ModelFamily):
        self.expert = expert
        self.family = family
        self.layers = family.layers(expert)
        self.encoder = expert.model.encoder
        self.num_layers = len(self.layers)
        self.layer_norm_first = bool(getattr(self.encoder, "layer_norm_first", False))
        self.layer_calls = 0
        self.full_passes = 0

    # -- pieces of the stock encoder ------------------------------------------------------------------------
    def _call_layer(self, index: int, x: Tensor, pos_bias, args: tuple, kwargs: dict):
        call_kwargs = dict(kwargs)
        if "pos_bias" in call_kwargs:
            call_kwargs["pos_bias"] = pos_bias
        out = self.layers[index](x, *args, **call_kwargs)
        self.layer_calls += 1
        hiddens = getattr(self.expert, "_hook_hiddens", None)
        if hiddens is not None:  # s3prl's layer hooks fired on our direct call: drop what they recorded
            hiddens.clear()
        if self.family.layer_output == "wavlm":
            return out[0], out[2]
        return out[0], None

    def _output_stage(self, x: Tensor, frames: int) -> Tensor:
        """What the encoder does after its layer loop: T x B x C -> B x T x C, un-pad, final norm if pre-LN."""
        x = x.transpose(0, 1)[:, :frames]
        if self.layer_norm_first:
            x = self.encoder.layer_norm(x)
        return x

    def _distinct_masks(self, masks: Sequence[Mask]) -> list[Mask]:
        masks = list(dict.fromkeys(tuple(bool(k) for k in m) for m in masks))
        bad = [m for m in masks if len(m) != self.num_layers]
        if bad:
            raise ValueError(f"masks must have {self.num_layers} entries, got {bad[0]}")
        if any(not m[0] for m in masks) and self.family.shared_position_bias:
            raise UserError("WavLM: dropping layer 0 (owner of the relative-position table) is not supported here")
        return masks

    def _full_pass(self, wavs: Sequence[Tensor]) -> tuple[list, Tensor, list[Tensor]]:
        """The stock expert run once: (each layer's (input, args, kwargs), the last layer's output state, the
        L+1 hidden states it returns); checks that the output stage is what :meth:`_output_stage` reproduces."""
        inputs: list = [None] * self.num_layers
        last: list[Tensor] = []

        def capture(index):
            def hook(module, args, kwargs):
                inputs[index] = (args[0], tuple(args[1:]), dict(kwargs))
            return hook

        handles = [layer.register_forward_pre_hook(capture(i), with_kwargs=True) for i, layer in enumerate(self.layers)]
        handles.append(self.layers[-1].register_forward_hook(lambda module, args, out: last.append(out[0])))
        try:
            stock = self.expert(list(wavs))
        finally:
            for handle in handles:
                handle.remove()
        self.full_passes += 1
        stock_hidden = list(stock["hidden_states"])
        frames = stock_hidden[-1].size(1)
        if len(stock_hidden) != self.num_layers + 1 or any(i is None for i in inputs) or len(last) != 1:
            raise RuntimeError("the stock expert did not run every transformer layer once (layerdrop on?)")
        if not torch.equal(self._output_stage(last[0], frames), stock_hidden[-1]):
            raise RuntimeError("the encoder's output stage differs from what pruning_curves reproduces "
                               "(transpose, un-pad, final LayerNorm if pre-LN): s3prl's encoder changed?")
        return inputs, last[0], stock_hidden

    # -- one batch ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def run(self, wavs: Sequence[Tensor], masks: Sequence[Mask]) -> Iterator[tuple[Mask, list[Tensor]]]:
        masks = self._distinct_masks(masks)
        inputs, last, stock_hidden = self._full_pass(wavs)
        frames = stock_hidden[-1].size(1)
        call_args, call_kwargs = inputs[0][1], inputs[0][2]

        def state(depth: int):  # the unpruned model's state entering layer `depth` (depth L: after the stack)
            if depth == self.num_layers:
                return last, None
            x, _, kwargs = inputs[depth]
            return x, kwargs.get("pos_bias")

        def walk(node: dict, depth: int, x: Tensor, pos_bias, full: bool, path: list[Tensor]):
            if depth == self.num_layers:
                yield node["mask"], stock_hidden if full else path + [self._output_stage(x, frames)]
                return
            here = path + [stock_hidden[depth] if full else x.transpose(0, 1)[:, :frames]]
            if True in node:
                if full:
                    nx, npb = state(depth + 1)
                else:
                    nx, npb = self._call_layer(depth, x, pos_bias, call_args, call_kwargs)
                yield from walk(node[True], depth + 1, nx, npb, full, here)
            if False in node:  # dropped: identity, the state passes on
                yield from walk(node[False], depth + 1, x, pos_bias, False, here)

        x0, pb0 = state(0)
        yield from walk(_trie(masks), 0, x0, pb0, True, [])


def as_upstream_output(hidden: Sequence[Tensor]) -> dict:
    """The dict an upstream returns, for the Featurizer's feature selection."""
    return upstream_output(list(hidden))


@contextlib.contextmanager
def layers_dropped(expert: nn.Module, family: ModelFamily, dropped: Sequence[int]) -> Iterator[PrunedUpstream]:
    """The expert with ``dropped`` layers replaced in place by DroppedLayer (exactly what
    :func:`~superb_redundancy.pruning.upstream.build_pruned` builds), as a PrunedUpstream; restored on exit.
    The end-to-end reference: no reload of the checkpoint per variant."""
    layers = family.layers(expert)
    original = list(layers)
    dropped = sorted(set(dropped))
    if family.shared_position_bias and 0 in dropped:
        raise UserError("layers_dropped: WavLM's layer 0 owns the position table; use build_pruned to drop it")

    def rebind():
        for hook in getattr(expert, "hooks", []):
            if hook.handler is not None:
                hook.handler.remove()
                hook.handler = None
            expert._register_hook_handler(hook)

    try:
        drop_layers(expert, family, dropped)
        yield PrunedUpstream(expert, family, dropped, len(original))
    finally:
        for i, layer in enumerate(original):
            layers[i] = layer
        rebind()
