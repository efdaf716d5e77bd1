from __future__ import annotations

import math

import numpy as np

from localmodel_llamacpp.logprobs import token_logprobs


def test_log_softmax_of_the_chosen_token_and_the_best_alternatives_in_order() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0, -50.0], dtype=np.float32)
    total = math.log(sum(math.exp(x) for x in logits))
    chosen, best = token_logprobs(logits, 2, top=3)
    assert math.isclose(chosen, 2.0 - total, rel_tol=1e-9)
    assert [token for token, _ in best] == [1, 3, 2]  # ties keep the lower id first
    assert all(math.isclose(lp, float(logits[t]) - total, rel_tol=1e-9) for t, lp in best)
    assert math.isclose(sum(math.exp(float(x) - total) for x in logits), 1.0)
    assert token_logprobs(logits, 4, top=0) == (float(logits[4]) - total, [])


def test_huge_logits_do_not_overflow() -> None:
    chosen, best = token_logprobs(np.array([1000.0, 999.0], dtype=np.float32), 0, top=1)
    assert math.isclose(chosen, -math.log1p(math.exp(-1.0)), rel_tol=1e-6) and best[0][0] == 0
