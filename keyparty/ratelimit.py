"""Rate limits for join, verification and API requests, shared by every server
process: the counters live in the database (table rate_limit).

A fixed window per key (client address or attendee): the first hit opens a
window of `per_seconds`, and up to `limit` hits are allowed in it. One
atomic upsert counts a hit, so two processes (or machines) on one database
never both take the last place in a window.
"""

from __future__ import annotations

import math
import random
import time

from flask import current_app
from flask import has_app_context
from flask import has_request_context
from flask import request
from sqlalchemy import delete
from sqlalchemy import text

from keyparty import storage
from keyparty.extensions import db
from keyparty.models import RateLimit

# Counts one hit and returns the window it fell in (SQLite ≥ 3.35 and
# PostgreSQL both have INSERT … ON CONFLICT … RETURNING). Every expression in
# SET reads the row as it was before this statement.
_HIT = text(
    """
    INSERT INTO rate_limit (key, window_start, hits) VALUES (:key, :now, 1)
    ON CONFLICT (key) DO UPDATE SET
      hits = CASE WHEN rate_limit.window_start <= :now - :per THEN 1
                  ELSE rate_limit.hits + 1 END,
      window_start = CASE WHEN rate_limit.window_start <= :now - :per THEN :now
                          ELSE rate_limit.window_start END
    RETURNING hits, window_start
    """
)

# Where a request keeps what it counted (WSGI environ key): key -> (hits, window start).
_COUNTED = "keyparty.rate_limit_counted"

# Windows older than this are deleted now and then (no limit is that long).
_FORGET_AFTER_SECONDS = 24 * 3600


def init_app(app) -> None:
    """Nothing to set up: the counters are a table (keyparty.models.RateLimit)."""


def hit(key: str, limit: int, per_seconds: float) -> int:
    """Count one request for `key` (once per request, however often it is retried);
    return 0 if allowed, else the seconds to wait.

    Counts in the request's own transaction and commits it: call it before the
    request changes anything. (A second connection would not do on SQLite: a
    request that read before another connection committed cannot write after.)
    """
    return hit_each([(key, limit, per_seconds)])


def hit_each(limits: list[tuple[str, int, float]]) -> int:
    """Count one request against each (key, limit, per_seconds) in turn, as
    `hit` does, up to the first that refuses it (the later ones are not
    counted); return 0 if all allowed, else the seconds to wait.

    One transaction and one commit for all of them: a verification counts
    against its attendee and its address, and each commit (on SQLite, each
    write lock taken) costs the request.
    """
    now = time.time()
    # A request is counted once, however often it runs again after a database
    # conflict (storage.retrying): the count is committed before the conflict,
    # so counting each run would refuse a busy phone's join with 429.
    counted = request.environ.setdefault(_COUNTED, {}) if has_request_context() else {}
    # Behind NAT or a proxy without forwarded addresses many people share one
    # address: the host scales every limit (KEYPARTY_RATE_LIMIT_FACTOR).
    factor = current_app.config.get("RATE_LIMIT_FACTOR", 1) if has_app_context() else 1
    writing = False
    wait = 0
    for key, limit, per_seconds in limits:
        if key in counted:
            hits, window_start = counted[key]
        else:
            if not writing:
                storage.begin_writing()
                writing = True
            hits, window_start = db.session.execute(
                _HIT, {"key": key[:200], "now": now, "per": per_seconds}
            ).one()
            counted[key] = (hits, window_start)
        if hits > math.ceil(limit * factor):
            wait = max(1, math.ceil(window_start + per_seconds - now))
            break
    if writing:
        if random.random() < 0.01:
            db.session.execute(
                delete(RateLimit).where(RateLimit.window_start < now - _FORGET_AFTER_SECONDS)
            )
        db.session.commit()
    return wait
