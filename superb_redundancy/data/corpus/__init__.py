"""A deterministic synthetic corpus (espeak-ng speech) in the layouts s3prl 0.4.18's SUPERB downstreams read.

    from superb_redundancy.data.corpus.generate import generate
    paths = generate(Path("work/study/data"))            # all four tasks, default size (~40 s on 2 cores)
    paths["speech_commands"], paths["asr_bucket_file"], ...

Tasks: ``speech_commands`` (KS, v0.01 12-class + a 35-word v0.02 layout), ``voxceleb1`` (SID), ``emotion`` (ER,
IEMOCAP-style with leave-one-session-out metadata), ``asr`` (LibriSpeech-style with bucket CSVs). See
:mod:`superb_redundancy.data.corpus.plans` for the layouts and ``superb-redundancy corpus -h`` for the command.
"""
