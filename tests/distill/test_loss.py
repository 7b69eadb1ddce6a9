"""The distillation loss (superb_redundancy.distill.loss): the MSE over valid frames only."""

import torch

from superb_redundancy.distill.loss import masked_mse


def test_padded_frames_do_not_count():
    torch.manual_seed(0)
    prediction, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    mask = torch.tensor([[False] * 5, [False, False, True, True, True]])
    valid = torch.cat([((prediction - target) ** 2)[0], ((prediction - target) ** 2)[1, :2]])
    assert torch.allclose(masked_mse(prediction, target, mask), valid.mean())
    changed = target.clone()
    changed[1, 2:] += 100.0  # what the padding holds is never read
    assert torch.equal(masked_mse(prediction, changed, mask), masked_mse(prediction, target, mask))
    assert torch.allclose(masked_mse(prediction, target, None), ((prediction - target) ** 2).mean())
