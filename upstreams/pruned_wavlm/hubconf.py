"""s3prl hub entries for layer-pruned wavlm: `-u pruned_wavlm -g SPEC.yaml` and `-u pruned_wavlm_local -k ARTIFACT`."""

from superb_redundancy.pruning.upstream import register_pruned_family

pruned_wavlm, pruned_wavlm_local = register_pruned_family("wavlm")
