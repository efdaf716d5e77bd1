"""Stop strings over a stream of text pieces.

A stop string can span several tokens, so text that might be the start of one is held back until the
next piece shows whether it is; the stop string itself is never sent. This is what lets a streamed answer
concatenate to exactly the non-streamed one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StopMatcher:
    stops: tuple[str, ...]
    matched: str = field(default="", init=False)  # the stop string that was reached, once one is
    _held: str = field(default="", init=False)

    def feed(self, text: str) -> tuple[str, bool]:
        """Add a piece; return the text that is safe to send and whether a stop string was reached."""
        pending = self._held + text
        hits = [(i, stop) for stop in self.stops if stop and (i := pending.find(stop)) >= 0]
        if hits:
            # The earliest in the text wins; of two starting there, the one listed first.
            at, self.matched = min(hits, key=lambda hit: hit[0])
            self._held = ""
            return pending[:at], True
        keep = self._longest_stop_prefix_suffix(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep], False

    def flush(self) -> str:
        """Text held back when generation ended for another reason."""
        held, self._held = self._held, ""
        return held

    def _longest_stop_prefix_suffix(self, text: str) -> int:
        """Length of the longest end of `text` that a stop string starts with."""
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
