"""s3prl's upstream contract: what an upstream's forward returns.

An s3prl upstream maps a list of 1-D 16 kHz waveforms to a dict whose ``hidden_states`` is a list of L+1 tensors
[B, T, D] (the input of each of the L layers, then the last layer's output) at the frame rate its
``get_downsample_rates("hidden_states")`` states (320 samples for the wav2vec2 family). s3prl's Featurizer also
reads ``last_hidden_state`` and, for ``-s hidden_state_<i>``, the single layers.
"""

from __future__ import annotations

__all__ = ["upstream_output", "DOWNSAMPLE_RATE"]

#: samples per frame of hidden_states: the total conv stride of every wav2vec2-family feature encoder s3prl knows
DOWNSAMPLE_RATE = 320


def upstream_output(hidden_states: list) -> dict:
    """s3prl's upstream return dict: ``hidden_states``, ``last_hidden_state`` and ``hidden_state_<i>`` (for ``-s``)."""
    result = {"hidden_states": hidden_states, "last_hidden_state": hidden_states[-1]}
    for i, hidden in enumerate(hidden_states):
        result[f"hidden_state_{i}"] = hidden
    return result
