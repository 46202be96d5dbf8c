"""One small least-recently-used cache for objects that are expensive to build (loaded models,
fitted checks), shared by every place that keeps such objects in a process."""

import os
import threading
from collections import OrderedDict


class LRUCache:
    """Thread-safe; keeps at most ``maxsize`` items (an int, or a callable read at each insert so a
    setting can change it). A forked child starts empty: it never reuses its parent's objects (a
    TensorFlow model used across a fork hangs)."""

    def __init__(self, maxsize):
        self._maxsize = maxsize
        self._items = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _capacity(self):
        size = self._maxsize() if callable(self._maxsize) else self._maxsize
        return max(1, int(size))

    def _forget_if_forked(self):
        if self._pid != os.getpid():
            self._items.clear()
            self._pid = os.getpid()

    def get(self, key, default=None):
        with self._lock:
            self._forget_if_forked()
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key, value):
        with self._lock:
            self._forget_if_forked()
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity():
                self._items.popitem(last=False)
        return value

    def clear(self):
        with self._lock:
            self._items.clear()
            self._pid = os.getpid()

    def keys(self):
        """Least recently used first."""
        with self._lock:
            self._forget_if_forked()
            return list(self._items)

    def __len__(self):
        return len(self.keys())
