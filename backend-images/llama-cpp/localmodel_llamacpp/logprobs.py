"""Log probabilities of a sampled token and its top alternatives, from one position's logits. Pure.

Computed from the model's raw logits (a log-softmax), as OpenAI reports them: what the model thought
of each token, not what temperature, penalties or a grammar made of it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def token_logprobs(
    logits: npt.NDArray[np.float32], token: int, top: int
) -> tuple[float, list[tuple[int, float]]]:
    """(log probability of `token`, the `top` most likely tokens with theirs, most likely first)."""
    shifted = logits.astype(np.float64) - float(logits.max())
    log_total = float(np.log(np.exp(shifted).sum()))
    chosen = float(shifted[token]) - log_total
    if top <= 0:
        return chosen, []
    best = np.argpartition(-shifted, top - 1)[:top]
    best = best[np.argsort(-shifted[best], kind="stable")]
    return chosen, [(int(i), float(shifted[i]) - log_total) for i in best]
