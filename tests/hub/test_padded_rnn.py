"""The head's packed RNNs computed on the padded batch: the same values and gradients as s3prl's packed ones."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from superb_redundancy.hub.padded_rnn import PaddedRNNError, adopt, padded_rnn, reverse_within, wanted

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")

#: oneDNN's fused kernel and torch's step-by-step packed loop sum in another order: float rounding only
ATOL = 1e-5


def _s3prl_rnns(module: str, bidirection: bool, seed: int = 0) -> nn.Module:
    """s3prl's ASR head body (``RNNs``) as the demo setting builds it, with seeded weights."""
    from s3prl.downstream.asr.model import RNNs

    torch.manual_seed(seed)
    return RNNs(64, 30, 320, module=module, bidirection=bidirection, dim=[48], dropout=[0.0], layer_norm=[False],
                proj=[False], sample_rate=[1], sample_style="concat", total_rate=-1)


def _batch(seed: int, lengths: list[int], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), frames, 64, generator=generator)
    return x, torch.IntTensor(lengths)  # s3prl's ASR expert gives an IntTensor of lengths


def _pair(module: str, bidirection: bool) -> tuple[nn.Module, nn.Module]:
    packed, padded = _s3prl_rnns(module, bidirection), _s3prl_rnns(module, bidirection)
    padded.load_state_dict(packed.state_dict())
    assert adopt(padded) == 1
    return packed, padded


def test_reverse_within_keeps_the_padding_in_place():
    x = torch.arange(10.0).view(2, 5, 1)
    out = reverse_within(x, torch.tensor([3, 5]))
    assert out[0, :, 0].tolist() == [2.0, 1.0, 0.0, 3.0, 4.0]
    assert out[1, :, 0].tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert torch.equal(reverse_within(out, torch.tensor([3, 5])), x)


@pytest.mark.parametrize("module", ["LSTM", "GRU"])
@pytest.mark.parametrize("bidirection", [True, False])
@pytest.mark.parametrize("frames", [40, 43])  # the longest clip fills the batch, or padding follows it too
def test_outputs_and_gradients_equal_the_packed_computation(module, bidirection, frames):
    packed, padded = _pair(module, bidirection)
    x, lengths = _batch(1, [40, 17, 33, 1, 28], frames)
    results = []
    for model in (packed, padded):
        xi = x.clone().requires_grad_()
        logits, out_lengths = model(xi, lengths)
        (logits.square().sum() + logits[:, :, 3].sum()).backward()
        results.append((logits.detach(), out_lengths, xi.grad, {n: p.grad for n, p in model.named_parameters()}))
    (logits_a, lengths_a, dx_a, grads_a), (logits_b, lengths_b, dx_b, grads_b) = results
    assert logits_a.shape == logits_b.shape == (5, 40, 30)
    assert torch.equal(lengths_a, lengths_b) and lengths_b.dtype == torch.int64
    torch.testing.assert_close(logits_b, logits_a, atol=ATOL, rtol=0)
    torch.testing.assert_close(dx_b, dx_a, atol=ATOL, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        scale = grad.abs().max().item()
        torch.testing.assert_close(grads_b[name], grad, atol=ATOL * max(1.0, scale), rtol=0, msg=name)


def test_training_follows_the_same_path():
    """Twenty Adam steps on the same batches end at the same weights (to rounding) either way."""
    packed, padded = _pair("LSTM", True)
    weights = []
    for model in (packed, padded):
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        for step in range(20):
            x, lengths = _batch(100 + step, [30, 22, 9, 30], 30)
            optimizer.zero_grad()
            logits, _ = model(x, lengths)
            logits.log_softmax(-1)[:, :, 0].mean().neg().backward()
            optimizer.step()
        weights.append(model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, atol=1e-4, rtol=0, msg=name)


def test_adopt_keeps_weights_and_checkpoints_and_is_idempotent():
    packed, padded = _pair("LSTM", True)
    assert adopt(padded) == 0
    state = padded.state_dict()
    assert list(state) == list(packed.state_dict())
    assert all(torch.equal(state[k], v) for k, v in packed.state_dict().items())


def test_other_rnns_and_other_calls_get_torchs_own_computation():
    deep = nn.LSTM(8, 6, num_layers=2, batch_first=True)
    projected = nn.LSTM(8, 6, proj_size=3, batch_first=True)
    assert adopt(nn.Sequential(deep, projected)) == 0
    rnn = nn.LSTM(8, 6, bidirectional=True, batch_first=True)
    reference = nn.LSTM(8, 6, bidirectional=True, batch_first=True)
    reference.load_state_dict(rnn.state_dict())
    assert adopt(rnn) == 1
    x = torch.randn(3, 7, 8)
    out, (h, c) = rnn(x)  # padded input: torch's own call, bit for bit, final state included
    ref_out, (ref_h, ref_c) = reference(x)
    assert torch.equal(out, ref_out) and torch.equal(h, ref_h) and torch.equal(c, ref_c)
    packed = pack_padded_sequence(x, torch.tensor([7, 4, 2]), batch_first=True, enforce_sorted=False)
    zeros = (torch.zeros(2, 3, 6), torch.zeros(2, 3, 6))
    assert rnn(packed, zeros)[1] is not None  # an initial state given: torch's own computation
    assert rnn(packed)[1] is None  # the padded computation: no final state, so no caller can use a wrong one


def test_padded_rnn_masks_past_each_length():
    rnn = nn.GRU(4, 3, bidirectional=True, batch_first=True)
    out = padded_rnn(rnn, torch.randn(2, 6, 4), torch.tensor([5, 2]))
    assert out.shape == (2, 5, 6)
    assert not out[1, 2:].any() and out[1, :2].abs().sum() > 0


@pytest.mark.parametrize("config, expected", [({}, False), ({"runner": {}}, False),
                                              ({"runner": {"padded_rnn": True}}, True),
                                              ({"runner": {"padded_rnn": False}}, False)])
def test_wanted_from_config(config, expected):
    assert wanted(config) is expected


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_a_bad_value_names_it_and_what_is_valid(value):
    with pytest.raises(PaddedRNNError, match=rf"runner.padded_rnn: {value!r}; valid: true or false"):
        wanted({"runner": {"padded_rnn": value}})


def _run_asr(corpus_root: Path, ckpt: Path, expdir: Path, value: str) -> subprocess.CompletedProcess:
    from superb_redundancy.data import tasks

    data = tasks.format_overrides(tasks.data_overrides("asr", corpus_root))
    return subprocess.run(
        [sys.executable, str(ROOT / "run_downstream.py"), "-m", "train", "-u", "wav2vec2_local", "-k", str(ckpt),
         "-d", "asr", "-c", str(tasks.config_path("asr", "tiny")), "-p", str(expdir), "--device", "cpu",
         "-o", data + ",,config.runner.total_steps=6,,config.runner.eval_step=6,,config.runner.save_step=6"
                      f",,config.runner.padded_rnn={value}"],
        cwd=expdir.parent, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_run_downstream_with_the_padded_rnn_as_a_user_runs_it(tiny_ckpts, corpus_root, tmp_path):
    result = _run_asr(corpus_root, tiny_ckpts["wav2vec2"], tmp_path / "exp", "True")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the head's 1 RNN layer computed on the padded batch, not packed (runner.padded_rnn)" in result.stderr
    assert (tmp_path / "exp" / "states-6.ckpt").is_file()


@pytest.mark.slow
def test_a_bad_value_stops_run_downstream_with_one_line(tiny_ckpts, corpus_root, tmp_path):
    result = _run_asr(corpus_root, tiny_ckpts["wav2vec2"], tmp_path / "exp", "maybe")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "run_downstream.py: error: runner.padded_rnn: 'maybe'; valid: true or false" in result.stderr
    assert "Traceback" not in result.stderr and not list((tmp_path / "exp").glob("states-*.ckpt"))
