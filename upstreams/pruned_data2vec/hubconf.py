"""s3prl hub entries for layer-pruned data2vec: `-u pruned_data2vec -g SPEC.yaml` and `-u pruned_data2vec_local -k ARTIFACT`."""

from superb_redundancy.pruning.upstream import register_pruned_family

pruned_data2vec, pruned_data2vec_local = register_pruned_family("data2vec")
