"""Self-supervised wav2vec 2.0 pretraining of a small model, one concept per module: :mod:`.settings` (what a run
depends on; light), :mod:`.audio` (the clips and the batches), :mod:`.objective` (the model and its loss),
:mod:`.record` (the training record), :mod:`.train` (the run). :mod:`superb_redundancy.models.pretrain` is the
public face (``from superb_redundancy.models import pretrain``).

Nothing is imported here, so that importing :mod:`.settings` (the CLI's parser does) imports no torch.
"""
