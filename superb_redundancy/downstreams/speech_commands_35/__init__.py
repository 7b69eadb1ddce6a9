"""``-d speech_commands_35``: the paper's task, 35-word keyword spotting on Speech Commands v0.02 (no silence)."""

from superb_redundancy.downstreams.speech_commands_35.dataset import (CLASSES, SpeechCommands35Dataset, load_split,
                                                                      load_splits)

__all__ = ["CLASSES", "SpeechCommands35Dataset", "load_split", "load_splits"]
