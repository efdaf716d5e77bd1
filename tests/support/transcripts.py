"""How close a transcription is to what was said: the word error rate speech tests assert on."""

from __future__ import annotations

import re


def words(text: str) -> list[str]:
    """Lower-case words, punctuation dropped: what a transcript is compared by."""
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: str, heard: str) -> float:
    """Edits (substitutions, insertions, deletions) over the reference's words."""
    said, got = words(reference), words(heard)
    distances = list(range(len(got) + 1))
    for i, word in enumerate(said, 1):
        previous, distances[0] = distances[0], i
        for j, other in enumerate(got, 1):
            previous, distances[j] = (
                distances[j],
                min(distances[j] + 1, distances[j - 1] + 1, previous + (word != other)),
            )
    return distances[-1] / len(said)
