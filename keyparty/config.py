"""Configuration: sensible defaults, overridden by KEYPARTY_* environment variables.

The instance folder holds everything an event needs (database, secret key,
GnuPG homes, generated files) and can be copied to another machine: nothing
inside it stores an absolute path.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_PORT = 8000


def instance_path_from_env(default: str) -> str:
    return os.path.abspath(os.environ.get("KEYPARTY_INSTANCE") or default)


def make_instance_folder(path: Path) -> None:
    """The instance folder, readable by this user only (it holds the database,
    the secret key and every attendee's data)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def load_secret_key(instance: Path) -> str:
    """Read the instance's session key, creating it (mode 0600 from the start) on first start."""
    from keyparty.storage import create_private_file

    path = instance / "secret_key"
    create_private_file(path, secrets.token_hex(32).encode())
    return path.read_text().strip()


def database_url(instance: Path) -> str:
    """KEYPARTY_DATABASE_URL, or the SQLite file in the instance folder."""
    return os.environ.get("KEYPARTY_DATABASE_URL") or f"sqlite:///{instance / 'keyparty.sqlite3'}"


# Server threads per process when KEYPARTY_THREADS is not set (serving.THREADS).
DEFAULT_THREADS = 32
# Database connections a process may open beyond one per thread.
POOL_OVERFLOW = 8


def pool_size() -> int:
    """Database connections kept per process: one per server thread
    (KEYPARTY_THREADS, set by `keyparty serve` for its workers; 32 if unset)."""
    value = os.environ.get("KEYPARTY_THREADS") or ""
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_THREADS


def settings_from_env(instance: Path) -> dict:
    env = os.environ
    return {
        "SQLALCHEMY_DATABASE_URI": database_url(instance),
        "SECRET_KEY": env.get("KEYPARTY_SECRET_KEY") or load_secret_key(instance),
        # Host pages answer only loopback requests unless this is set.
        "HOST_PASSWORD": env.get("KEYPARTY_HOST_PASSWORD") or None,
        # Base URL printed into badge QR codes; the LAN address when unset.
        "PUBLIC_URL": env.get("KEYPARTY_PUBLIC_URL") or None,
        # More names the server is reached by (comma-separated), besides
        # localhost, the LAN addresses and PUBLIC_URL's; other Host headers get 400.
        "TRUSTED_HOSTS_EXTRA": env.get("KEYPARTY_TRUSTED_HOSTS") or None,
        # Behind a reverse proxy: how many proxies in front set X-Forwarded-For,
        # -Proto, -Host and -Port (werkzeug's ProxyFix trusts that many); 0
        # trusts none, so no client can claim another address.
        "PROXY_HOPS": int(env.get("KEYPARTY_PROXY_HOPS") or 0),
        "GPG_BINARY": env.get("KEYPARTY_GPG") or "gpg",
        # C3 delivery; the SMTP password is read from KEYPARTY_SMTP_PASSWORD only.
        "SMTP_HOST": env.get("KEYPARTY_SMTP_HOST") or None,
        "SMTP_PORT": env.get("KEYPARTY_SMTP_PORT") or None,
        "SMTP_SECURITY": env.get("KEYPARTY_SMTP_SECURITY") or "starttls",
        "SMTP_USER": env.get("KEYPARTY_SMTP_USER") or None,
        "SMTP_SENDER": env.get("KEYPARTY_SMTP_SENDER") or None,
        # The largest body of any route (the host's keyring import); each
        # route has its own, smaller limit (keyparty.BODY_LIMITS).
        "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
        # User IDs per registered key (keycheck.MAX_USER_IDS): a cap, not a speed race.
        "MAX_USER_IDS": int(env.get("KEYPARTY_MAX_USER_IDS") or 100),
        # Registrations (keys) per client address per window: web sign-up
        # runs gpg, so one address cannot flood the event with keys.
        "REGISTRATION_LIMIT": int(env.get("KEYPARTY_REGISTRATION_LIMIT") or 10),
        "REGISTRATION_WINDOW_SECONDS": int(env.get("KEYPARTY_REGISTRATION_WINDOW") or 600),
        # One connection per server thread (`keyparty serve --threads`, which
        # passes its count to each worker as KEYPARTY_THREADS), so no request
        # waits for a connection while another holds the write lock; a few
        # more for the odd second session.
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": pool_size(),
            "max_overflow": POOL_OVERFLOW,
        },
        "SESSION_COOKIE_HTTPONLY": True,
        # The session cookie is signed and sent again only when the session
        # changed (join, language, a message shown next), not on every page:
        # re-signing it cost every phone request CPU. It lasts 31 days from
        # the last change (Flask's PERMANENT_SESSION_LIFETIME), longer than an
        # event's verifying phase.
        "SESSION_REFRESH_EACH_REQUEST": False,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        # Every rate limit is multiplied by this (phones sharing one address).
        "RATE_LIMIT_FACTOR": float(env.get("KEYPARTY_RATE_LIMIT_FACTOR") or 1),
        # The report's picture (keyparty.report): drawn in the background
        # this long after an owner's decision (the decisions made meanwhile
        # go into the same drawing); the report page waits this long for a
        # drawing it had to start itself, then shows the previous picture
        # (or none) and says a new one is being drawn.
        "REPORT_DRAW_AFTER_CHANGES": True,
        "REPORT_DRAW_DELAY_SECONDS": 1.0,
        "REPORT_DRAWING_WAIT_SECONDS": float(env.get("KEYPARTY_REPORT_WAIT") or 0.5),
    }
