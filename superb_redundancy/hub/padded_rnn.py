"""A head's packed RNN computed on the padded batch: the same numbers, several times faster to train on a CPU.

s3prl's ASR head (``RNNLayer`` in ``s3prl/downstream/asr/model.py``) packs each batch before its LSTM so that
padding never enters the recurrence. On a CPU, torch runs a packed LSTM step by step with autograd, and its
backward pass took 0.36 s on a batch of 16 x 190 frames, against 0.04 s for oneDNN's fused kernel on the padded
batch. Padding at the end of a clip cannot reach its valid frames in the forward direction, and the backward
direction gives the same values when each clip is reversed within its own length. So with ``runner.padded_rnn:
true`` in a downstream config, our runner (:mod:`superb_redundancy.hub.runner`) has the head's single-layer
LSTMs and GRUs answer packed input that way: outputs and gradients agree with the packed computation to float
rounding (tests/hub/test_padded_rnn.py), the weights and checkpoints are the same. The final hidden state is not
computed (``RNNLayer`` discards it); a caller that asks for it, or passes an initial one, or runs on CUDA (where
cuDNN's packed kernel is fast), gets torch's own computation. s3prl's own ``run_downstream.py`` ignores the key.
"""

from __future__ import annotations

import types
from typing import Callable, Optional

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from superb_redundancy.core.errors import UserError

__all__ = ["CONFIG_KEY", "PaddedRNNError", "wanted", "reverse_within", "padded_rnn", "adopt", "enable"]

#: the key in a downstream config's ``runner`` section (false or absent: s3prl's packed computation)
CONFIG_KEY = "padded_rnn"

_WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class PaddedRNNError(UserError):
    """A bad ``runner.padded_rnn``: one line for the user."""


def wanted(config: dict) -> bool:
    """The ``runner.padded_rnn`` of a downstream config (false when absent); a value other than a bool is refused."""
    value = (config.get("runner") or {}).get(CONFIG_KEY, False)
    if not isinstance(value, bool):
        raise PaddedRNNError(f"runner.{CONFIG_KEY}: {value!r}; valid: true or false")
    return value


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of ``x`` [B, T, D] reversed within its own length; the padding after it stays where it is."""
    t = torch.arange(x.size(1), device=x.device)[None, :]
    last = lengths.to(x.device)[:, None] - 1
    index = torch.where(t <= last, last - t, t)
    return x.gather(1, index[:, :, None].expand_as(x))


def _direction(rnn: nn.RNNBase, template: nn.RNNBase, x: torch.Tensor, suffix: str) -> torch.Tensor:
    """One direction of a single-layer ``rnn`` on the padded batch ``x``, through a one-way module of its shape."""
    weights = {f"{name}_l0": getattr(rnn, f"{name}_l0{suffix}") for name in _WEIGHTS if hasattr(rnn, f"{name}_l0")}
    return functional_call(template, weights, (x,))[0]


def _template(rnn: nn.RNNBase) -> nn.RNNBase:
    """A one-way, one-layer module of ``rnn``'s kind and shape whose weights are always passed in (meta, no memory)."""
    return type(rnn)(rnn.input_size, rnn.hidden_size, num_layers=1, bias=rnn.bias, batch_first=True,
                     device="meta")


def padded_rnn(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor,
               template: Optional[nn.RNNBase] = None) -> torch.Tensor:
    """What the single-layer ``rnn`` gives the packed batch of ``x`` [B, T, D] with ``lengths``, as a padded
    [B, max(lengths), H * directions] tensor with zeros past each length (``pad_packed_sequence``'s layout)."""
    template = _template(rnn) if template is None else template
    lengths = torch.as_tensor(lengths, dtype=torch.int64)
    x = x[:, : int(lengths.max())]
    outputs = [_direction(rnn, template, x, "")]
    if rnn.bidirectional:
        outputs.append(reverse_within(_direction(rnn, template, reverse_within(x, lengths), "_reverse"), lengths))
    out = torch.cat(outputs, dim=-1)
    valid = torch.arange(x.size(1), device=x.device)[None, :] < lengths.to(x.device)[:, None]
    return out * valid[:, :, None]


def _supported(rnn: nn.Module) -> bool:
    return type(rnn) in (nn.LSTM, nn.GRU) and rnn.num_layers == 1 and not getattr(rnn, "proj_size", 0)


def adopt(model: nn.Module) -> int:
    """Make every single-layer LSTM and GRU inside ``model`` compute packed CPU input on the padded batch;
    returns how many. Idempotent; parameters, state dict and other input are untouched."""
    count = 0
    for rnn in model.modules():
        if not _supported(rnn) or "_padded_rnn" in rnn.__dict__:
            continue
        template = _template(rnn)
        own = type(rnn).forward

        def forward(self, input, hx=None, _own=own, _template=template):
            if not isinstance(input, PackedSequence) or hx is not None or input.data.is_cuda:
                return _own(self, input, hx)
            padded, lengths = pad_packed_sequence(input, batch_first=True)
            out = padded_rnn(self, padded, lengths, _template)
            # the final state is not computed: the packed caller we serve (s3prl's RNNLayer) throws it away
            return pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False), None

        rnn.forward = types.MethodType(forward, rnn)
        rnn.__dict__["_padded_rnn"] = True
        count += 1
    return count


def enable(note: Callable[[str], None]) -> None:
    """Make s3prl's downstream Runner adopt its head's RNNs when its config asks (``runner.padded_rnn: true``),
    saying so through ``note``. Idempotent; the runner of this package calls it before s3prl starts."""
    from s3prl.downstream import runner as s3prl_runner

    if getattr(s3prl_runner.Runner._get_downstream, "_padded_rnn", False):
        return
    original_init, original = s3prl_runner.Runner.__init__, s3prl_runner.Runner._get_downstream

    def __init__(self, args, config):
        wanted(config)  # a bad value stops the run before the upstream loads
        original_init(self, args, config)

    def _get_downstream(self):
        entry = original(self)
        count = adopt(entry.model) if wanted(self.config) else 0
        if count and str(self.args.device).startswith("cpu"):
            note(f"the head's {count} RNN layer{'s' if count > 1 else ''} computed on the padded batch, not packed "
                 f"(runner.{CONFIG_KEY}): the same values to float rounding, faster on a CPU")
        return entry

    _get_downstream._padded_rnn = True
    s3prl_runner.Runner.__init__ = __init__
    s3prl_runner.Runner._get_downstream = _get_downstream
