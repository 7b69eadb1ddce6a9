"""s3prl hub entries for layer-pruned hubert: `-u pruned_hubert -g SPEC.yaml` and `-u pruned_hubert_local -k ARTIFACT`."""

from superb_redundancy.pruning.upstream import register_pruned_family

pruned_hubert, pruned_hubert_local = register_pruned_family("hubert")
