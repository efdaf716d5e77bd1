"""The prompt set: open-ended asks, so that most answers run to the token limit rather than stop early."""

from __future__ import annotations

PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a bicycle turns pedalling into forward motion.",
    "Describe a busy market in a coastal town early in the morning.",
    "List ten ideas for a weekend trip and say a few words about each.",
    "Explain to a child why the sky is blue and why sunsets are red.",
    "Write a letter to a friend describing your first week at a new job.",
    "Describe how bread is made, from the field to the bakery.",
    "Tell the history of a small mountain village over three hundred years.",
)
