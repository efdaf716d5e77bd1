"""How many generating sequences one decode step takes: the size measured to give the most tokens/s.

Taking every ready sequence in each step is right where a step costs about the same whatever its size
(the weights are read once for all: bigger models, GPUs). It is wrong where a step is bound by
arithmetic: SmolLM2-135M Q4_1 on one core decodes one token in 5.9 ms but two together in 15.0 ms
(llama.cpp's batched kernels for small batches are slower per token than its one-token path there), so
stepping two sequences in turn makes about a quarter more tokens than stepping them together.

So each decoder times its steps by size and takes, each step, the size whose measured tokens per second
is best. Sizes are powers of two up to the ready count, and the ready count itself; one not measured
yet is tried first, and every `REFRESH_EVERY` steps the size measured longest ago is tried again, so the
figures follow the KV cache growing and the machine's load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REFRESH_EVERY = 64  # steps between re-measuring the stalest size
SMOOTHING = 0.25  # weight of the newest timing in a size's running average


def candidate_sizes(ready: int) -> list[int]:
    """Powers of two below `ready`, and `ready` itself, largest first."""
    sizes = {ready}
    size = 1
    while size < ready:
        sizes.add(size)
        size *= 2
    return sorted(sizes, reverse=True)


@dataclass
class StepSizer:
    seconds: dict[int, float] = field(default_factory=dict)  # size -> running average of a step's time
    measured_at: dict[int, int] = field(default_factory=dict)  # size -> step count when last timed
    steps: int = 0  # steps recorded so far; the decoder numbers its steps by it

    def size(self, ready: int) -> int:
        """How many of `ready` sequences the next step takes."""
        sizes = candidate_sizes(ready)
        unmeasured = [size for size in sizes if size not in self.seconds]
        if unmeasured:
            return unmeasured[0]  # the full batch first: what every batching server does
        if self.steps % REFRESH_EVERY == 0:
            return min(sizes, key=lambda size: self.measured_at[size])
        return max(sizes, key=lambda size: size / self.seconds[size])

    def record(self, size: int, seconds: float) -> None:
        previous = self.seconds.get(size)
        self.seconds[size] = seconds if previous is None else previous + SMOOTHING * (seconds - previous)
        self.steps += 1
        self.measured_at[size] = self.steps
