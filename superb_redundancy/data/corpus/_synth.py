"""Synthesis worker: ``python -m superb_redundancy.data.corpus._synth`` reads JSON requests on stdin and writes an
``.npz`` (``samples``: every utterance's int16 samples back to back, ``lengths``) on stdout.

A fresh interpreter per unit of clips keeps espeak-ng's carried-over generator state out of the output (see
:mod:`superb_redundancy.data.corpus.speech`); a plain subprocess (rather than multiprocessing) never re-imports the
caller's ``__main__``, so ``generate()`` also works from unguarded scripts and notebooks.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np

from superb_redundancy.data.corpus.speech import synthesize_unit


def main() -> int:
    requests = [(text, voice, int(seed)) for text, voice, seed in json.load(sys.stdin)]
    outputs = synthesize_unit(requests)
    buffer = io.BytesIO()
    samples = np.concatenate(outputs) if outputs else np.zeros(0, np.int16)
    np.savez(buffer, samples=samples.astype(np.int16), lengths=np.array([len(o) for o in outputs], np.int64))
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
