"""A small in-process rate limiter for join and verification requests.

keyparty serves one event from one process; a sliding window per key
(client address or attendee) is enough and needs no extra service.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections import deque


class RateLimiter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, per_seconds: float) -> int:
        """Count one request; return 0 if allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and now - hits[0] >= per_seconds:
                hits.popleft()
            if len(hits) >= limit:
                return max(1, math.ceil(per_seconds - (now - hits[0])))
            hits.append(now)
            return 0


def init_app(app) -> None:
    app.extensions["keyparty.ratelimit"] = RateLimiter()


def hit(key: str, limit: int, per_seconds: float) -> int:
    """Count one request against this app's limiter; 0 if allowed, else seconds to wait."""
    from flask import current_app

    return current_app.extensions["keyparty.ratelimit"].hit(key, limit, per_seconds)
