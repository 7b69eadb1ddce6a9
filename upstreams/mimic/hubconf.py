"""s3prl hub entries for mimicking networks: `-u mimic_local -k ARTIFACT` and `-u mimic -k ARTIFACT` (or `-g CONFIG`).

One family serves every teacher family (wav2vec2, HuBERT, WavLM): the artifact records its teacher, so there are
no per-family aliases. The optional `-g CONFIG.yaml` may name `teacher:` (a checkpoint path or hub name whose
sha256 must match the artifact's teacher), `teacher_sha256:`, `family:`, `compact:` (true/false: the hidden-state
layout, overriding the artifact's) and, for `mimic`, `artifact:`.
"""

from superb_redundancy.mimic import register_mimic_upstreams

mimic, mimic_local = register_mimic_upstreams()
