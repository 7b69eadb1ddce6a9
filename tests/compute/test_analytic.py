"""MACs from an upstream's shape alone (compute/analytic.py) against the MACs counted on the built model
(compute.count_macs): the numbers a study's cost estimate prices its runs by, offline."""

from __future__ import annotations

import pytest

from superb_redundancy.compute.macs import count_macs
from superb_redundancy.compute.analytic import Shape, parse_conv_layers
from superb_redundancy.models.families import get_family


def test_conv_layers_are_read_without_evaluating_code():
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2") == \
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    with pytest.raises(ValueError, match="only list/tuple literals"):
        parse_conv_layers("__import__('os').getcwd()")


@pytest.mark.parametrize("samples", [16000, 12345, 8000, 48000])
def test_the_tiny_wav2vec2s_macs_are_the_counted_ones_exactly(tiny_ckpts, hub, samples):
    import torch

    checkpoint = torch.load(tiny_ckpts["wav2vec2"], map_location="cpu", weights_only=True)
    shape = Shape.from_config(get_family("wav2vec2").config(checkpoint))
    counted = count_macs(hub.wav2vec2_local(ckpt=str(tiny_ckpts["wav2vec2"])).eval(), samples)
    predicted = shape.macs(samples)
    assert predicted["frames"] == counted["frames"]
    assert predicted["total"] == counted["macs"], (predicted, counted["macs"])
    assert predicted["stack"] == counted["stack_macs"] and predicted["cnn"] == counted["cnn_macs"]


@pytest.mark.slow
@pytest.mark.parametrize("name, tolerance", [("wav2vec2_base", 0.0), ("wavlm_base", 0.005)])
def test_real_size_macs_within_tolerance(tmp_path, hub, name, tolerance):
    """Real-size Base architectures (random weights) at 1 s: wav2vec2 exactly, WavLM within 0.5% (its gated
    relative position bias is not in the shape; its encoder does not pad the frames to an even count)."""
    import torch

    from superb_redundancy.models.architectures import get_architecture, write_architecture_checkpoint

    path = write_architecture_checkpoint(name, tmp_path / f"{name}.pt")
    family = get_architecture(name).family
    expert = getattr(hub, f"{family}_local")(ckpt=str(path)).eval()
    counted = count_macs(expert, 16000)["macs"]
    shape = Shape.from_config(get_family(family).config(torch.load(path, map_location="cpu", weights_only=True)), family)
    assert shape.macs(16000)["total"] == pytest.approx(counted, rel=tolerance, abs=0)
