"""On a CUDA device, pruned and mimic upstreams give what they give on the CPU (skipped without CUDA).

Tolerance: TF32 is turned off, so the matrix products are fp32 on both devices; the remaining differences come
from the order of accumulation (cuDNN convolutions, reduction trees), stated as ``atol=1e-4, rtol=1e-4`` on the
tiny models and ``atol=1e-3, rtol=1e-3`` on the 95 M-parameter Base architecture (12 layers of accumulation).
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def fp32_matmuls():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _both_devices(upstream, wavs, atol: float, rtol: float) -> None:
    upstream = upstream.eval()
    with torch.no_grad():
        on_cpu = [h.clone() for h in upstream.cpu()(wavs)["hidden_states"]]
        on_cuda = [h.cpu() for h in upstream.cuda()([w.cuda() for w in wavs])["hidden_states"]]
    assert len(on_cpu) == len(on_cuda)
    for a, b in zip(on_cpu, on_cuda):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol)


def _wavs(*lengths: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(n, generator=generator) for n in lengths]


@pytest.mark.parametrize("family, dropped", [("wav2vec2", [1]), ("hubert", [2]), ("wavlm", [0])])
def test_pruned_upstream_on_cuda_equals_cpu(family, dropped, tiny_ckpts):
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    model = build_pruned(family, PruneSpec(base=str(tiny_ckpts[family]), drop_layers=dropped))
    _both_devices(model, _wavs(16000, 12000), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind, n_layers", [("linear", 1), ("transformer", 2)])
def test_mimic_upstream_on_cuda_equals_cpu(kind, n_layers, tiny_ckpts, tmp_path):
    from superb_redundancy.mimic.artifact import load_mimic_artifact
    from superb_redundancy.mimic.config import MimicConfig
    from superb_redundancy.mimic.baselines import init_artifact

    path = init_artifact(str(tiny_ckpts["wav2vec2"]), MimicConfig.tiny(kind=kind, n_layers=n_layers),
                         tmp_path / "m.pt")
    _both_devices(load_mimic_artifact(path), _wavs(16000, 12000), atol=1e-4, rtol=1e-4)


def test_pruned_base_architecture_on_cuda_equals_cpu(tmp_path):
    from superb_redundancy.models.architectures import write_architecture_checkpoint
    from superb_redundancy.pruning.spec import PruneSpec
    from superb_redundancy.pruning.upstream import build_pruned

    base = write_architecture_checkpoint("wav2vec2_base", tmp_path / "base.pt")
    model = build_pruned("wav2vec2", PruneSpec(base=str(base), drop_layers=[3, 4, 5]))
    _both_devices(model, _wavs(16000), atol=1e-3, rtol=1e-3)
