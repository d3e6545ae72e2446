"""Host-to-device prefetch for the training loop: batches are put on the devices ``depth``
steps ahead, so a step never waits for its input's transfer.

JAX dispatches a step asynchronously; pulling and putting the next batches right after that
dispatch lets the host pipeline and the host-to-device copies of the next ``depth`` batches run
while the devices compute (double buffering at ``depth=2``).

Resume stays exact: the buffer reads the data iterator ahead, so :meth:`get_state` returns the
iterator state recorded right after the last batch the loop *consumed* (not after the last one
read), and :meth:`set_state` drops the buffer. A checkpoint therefore resumes on the first batch
not yet trained on, as without prefetch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any


class DevicePrefetch:
    """Wraps a data iterator (``next``, ``get_state``, ``set_state``); yields ``put(batch)``."""

    def __init__(self, it: Iterator, put: Callable[[Any], Any], depth: int = 2):
        if depth < 0:
            raise ValueError(f"train.prefetch must be >= 0, got {depth}")
        self._it, self._put, self._depth = it, put, int(depth)
        self._buf: deque = deque()
        self._state = it.get_state()  # nothing consumed yet

    def __iter__(self) -> DevicePrefetch:
        return self

    def _read(self) -> None:
        batch = self._put(next(self._it))
        self._buf.append((batch, self._it.get_state()))

    def __next__(self) -> Any:
        if not self._buf:
            self._read()
        batch, self._state = self._buf.popleft()
        while len(self._buf) < self._depth:  # issue the next transfers before returning
            self._read()
        return batch

    def get_state(self) -> Any:
        """The data iterator's state after the last batch returned by ``next``."""
        return self._state

    def set_state(self, state: Any) -> None:
        self._buf.clear()
        self._it.set_state(state)
        self._state = self._it.get_state()

    def start_prefetch(self) -> None:
        if hasattr(self._it, "start_prefetch"):
            self._it.start_prefetch()
