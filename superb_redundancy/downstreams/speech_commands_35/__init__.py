"""``-d speech_commands_35``: the paper's task, 35-word keyword spotting on Speech Commands v0.02 (no silence)."""
