"""s3prl hub entries for layer-pruned wav2vec2: `-u pruned_wav2vec2 -g SPEC.yaml` and `-u pruned_wav2vec2_local -k ARTIFACT`."""

from superb_redundancy.pruning.upstream import register_pruned_family

pruned_wav2vec2, pruned_wav2vec2_local = register_pruned_family("wav2vec2")
