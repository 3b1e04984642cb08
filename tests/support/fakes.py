"""Small stand-ins shared by unit tests: a movable clock, an in-memory counter, frame mutations."""

from __future__ import annotations

from hypothesis import strategies as st


class Clock:
    """ticks in ms that the test moves (the hal functions transports and the uplink use)."""

    def __init__(self) -> None:
        self.t = 0

    def ticks_ms(self) -> int:
        return self.t

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def ticks_add(self, a: int, d: int) -> int:
        return a + d


class Counter:
    """In-memory stand-in for the persisted counter (only next() is used)."""

    def __init__(self, start: int = 0) -> None:
        self.value = start

    def next(self) -> int:
        n = self.value
        self.value += 1
        return n


def mutations(max_pos: int, max_blob: int) -> st.SearchStrategy[tuple[str, int, bytes]]:
    """One edit of a frame: an operation, a position and the bytes it uses."""
    return st.tuples(
        st.sampled_from(["set", "xor", "insert", "delete", "truncate", "append", "splice"]),
        st.integers(min_value=0, max_value=max_pos),
        st.binary(min_size=1, max_size=max_blob),
    )


def mutate(f: bytes, muts: list[tuple[str, int, bytes]]) -> bytes:
    g = bytearray(f)
    for op, pos, blob in muts:
        i = pos % (len(g) + 1)
        if op == "set" and i < len(g):
            g[i] = blob[0]
        elif op == "xor" and i < len(g):
            g[i] ^= blob[0] or 1
        elif op == "insert":
            g[i:i] = blob
        elif op == "delete":
            del g[i : i + len(blob)]
        elif op == "truncate":
            del g[i:]
        elif op == "append":
            g += blob
        elif op == "splice":
            g[i : i + len(blob)] = blob
    return bytes(g)
