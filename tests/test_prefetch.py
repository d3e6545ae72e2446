"""DevicePrefetch against plain iteration: same batches, and the state of what was consumed."""

from __future__ import annotations

import numpy as np
import pytest

from aird_jax.prefetch import DevicePrefetch


class Counter:
    """A stateful iterator (state = position), the shape of the pipeline's."""

    def __init__(self):
        self.pos = 0

    def __next__(self):
        self.pos += 1
        return np.full(3, self.pos - 1)

    def get_state(self):
        return {"pos": self.pos}

    def set_state(self, s):
        self.pos = s["pos"]


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_batches_and_state_equal_plain_iteration(depth):
    puts = []

    def put(b):
        puts.append(int(b[0]))
        return b * 10

    ref, pre = Counter(), DevicePrefetch(Counter(), put, depth)
    for k in range(5):
        np.testing.assert_array_equal(next(pre), next(ref) * 10)
        assert pre.get_state() == ref.get_state()  # what was consumed, not what was read
        assert len(puts) == k + 1 + depth  # the next `depth` transfers are already issued
    # Resume from a consumed position (a checkpoint): the plain continuation.
    state = pre.get_state()
    for _ in range(2):
        next(pre)
    pre.set_state(state)
    again = Counter()
    again.set_state(state)
    for _ in range(3):
        np.testing.assert_array_equal(next(pre), next(again) * 10)
        assert pre.get_state() == again.get_state()


def test_negative_depth_refused():
    with pytest.raises(ValueError, match="train.prefetch must be >= 0"):
        DevicePrefetch(Counter(), lambda b: b, -1)
