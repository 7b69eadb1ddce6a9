"""The corpus' words and sentences, and the character dictionary for the ASR downstream."""

from __future__ import annotations

import numpy as np

__all__ = [
    "KS_COMMANDS",
    "KS_UNKNOWN_WORDS",
    "KS_V2_WORDS",
    "CHAR_SYMBOLS",
    "sentence",
    "char_dict_text",
]

# Speech Commands v0.01, as SUPERB uses it: 10 commands; every other word is "_unknown_" (10 of the dataset's
# 20 other words here: enough that "_unknown_" is a varied class rather than a few memorisable words).
KS_COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
KS_UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow")
# Speech Commands v0.02: 35 words.
KS_V2_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four", "go", "happy",
    "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six", "stop",
    "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)

# A small grammar for read-speech sentences: DET ADJ NOUN VERB DET NOUN [ADVERBIAL], plus a few fixed lines.
_DETS = ("the", "a", "my", "her", "his", "our", "that", "this")
_ADJS = ("old", "little", "green", "quiet", "bright", "heavy", "small", "dark", "warm", "cold", "young", "tall")
_NOUNS = ("man", "woman", "dog", "river", "house", "garden", "window", "letter", "horse", "ship", "morning",
          "child", "road", "table", "door", "king", "voice", "forest", "bird", "friend")
_VERBS = ("saw", "found", "opened", "carried", "followed", "watched", "painted", "heard", "closed", "crossed",
          "remembered", "brought", "liked", "left")
_ADVERBIALS = ("today", "at night", "in the rain", "very slowly", "after dinner", "by the sea", "once again",
               "without a word", "before noon", "with great care")
_FIXED = (
    "it's a long way to the north",
    "we didn't know what to say",
    "she'll be home before the evening",
    "they wouldn't open the gate",
    "there is nothing left in the box",
    "he said that the weather would change",
    "i can't find the key anywhere",
    "you're standing on my coat",
)


def sentence(rng: np.random.Generator) -> str:
    """One lowercase sentence (letters, spaces and apostrophes only)."""
    if rng.random() < 0.2:
        return _FIXED[int(rng.integers(len(_FIXED)))]
    pick = lambda words: words[int(rng.integers(len(words)))]  # noqa: E731
    words = [pick(_DETS), pick(_ADJS), pick(_NOUNS), pick(_VERBS), pick(_DETS), pick(_NOUNS)]
    if rng.random() < 0.6:
        words.append(pick(_ADVERBIALS))
    return " ".join(words)


# Letters in rough English frequency order after the word boundary; the counts only satisfy fairseq's
# "<symbol> <count>" line format (s3prl's Dictionary.load reads them; CTC training ignores them).
CHAR_SYMBOLS = ("|", "E", "T", "A", "O", "N", "I", "H", "S", "R", "D", "L", "U", "M", "W", "C", "F", "G", "Y",
                "P", "B", "V", "K", "'", "X", "J", "Q", "Z")


def char_dict_text() -> str:
    """The character dictionary in fairseq's format: one ``<symbol> <count>`` line per symbol."""
    return "".join(f"{symbol} {1000 * (len(CHAR_SYMBOLS) - i)}\n" for i, symbol in enumerate(CHAR_SYMBOLS))
