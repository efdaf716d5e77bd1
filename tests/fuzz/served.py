"""What the fuzz stage serves, shared by the test (which starts it) and the hooks (which ask for it)."""

from __future__ import annotations

CHAT = "smollm2"  # chat and completion
ALIAS = "gpt-4o-mini"  # another name of CHAT
EMBEDDING = "smollm2-embed"  # embedding only
# The cap on tokens per request (the manifest's `maxTokens`): a generated max_tokens above it is a 400, so
# no generated request keeps a backend busy for long (a body asking for 2**31 tokens answers at once). Not
# below 16, the default max_tokens of /v1/completions, or every completion without one would be a 400.
MAX_TOKENS = 16
# Prompts times answers (`n`) in one request, or inputs of one embeddings request (the router's
# max_inputs_per_request, 2048 by default): more are a 400, so one generated body is at most this many
# generations of MAX_TOKENS tokens.
MAX_INPUTS = 4

# The names a generated body's `model` is replaced with, per path; the generated name stays one of the
# choices, so unknown names (404) and names serving another task (400) are still asked for.
NAMES_BY_PATH = {
    "/v1/embeddings": [EMBEDDING, EMBEDDING, CHAT],
    "/v1/tokenize": [CHAT, EMBEDDING, ALIAS],
}
GENERATION_NAMES = [CHAT, ALIAS, CHAT, EMBEDDING]  # every other path
