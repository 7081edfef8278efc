"""keyparty: a PGP key-signing party manager."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from keyparty.config import instance_path_from_env
from keyparty.config import make_instance_folder
from keyparty.config import settings_from_env
from keyparty.extensions import csrf
from keyparty.extensions import db
from keyparty.network import TrustedHosts

PACKAGE = Path(__file__).resolve().parent


def template_folder() -> str:
    """templates/ at the top of a checkout, or keyparty/templates in a wheel."""
    checkout = PACKAGE.parent / "templates"
    return str(checkout if checkout.is_dir() else PACKAGE / "templates")


class KeypartyFlask(Flask):
    def log_exception(self, exc_info) -> None:
        """Log a failed request without its tokens (a join or confirmation link
        stays valid after a failure: it must not sit in a log file)."""
        from flask import request

        path = request.path
        for name, value in (request.view_args or {}).items():
            if "token" in name and value:
                path = path.replace(str(value), "…")
        self.logger.error(f"Exception on {path} [{request.method}]", exc_info=exc_info)


def create_app(test_config: dict | None = None) -> Flask:
    app = KeypartyFlask(
        __name__,
        instance_path=instance_path_from_env(os.path.join(os.getcwd(), "instance")),
        instance_relative_config=True,
        template_folder=template_folder(),
    )
    make_instance_folder(Path(app.instance_path))
    app.config.from_mapping(settings_from_env(Path(app.instance_path)))
    if test_config:
        app.config.from_mapping(test_config)
    if app.config.get("TRUSTED_HOSTS") is None:
        app.config["TRUSTED_HOSTS"] = TrustedHosts(
            app.config.get("PUBLIC_URL"), app.config.get("TRUSTED_HOSTS_EXTRA")
        )
    register_proxy(app)
    register_extensions(app)
    register_blueprints(app)
    register_database_retries(app)
    register_commands(app)
    register_template_helpers(app)
    register_security_headers(app)
    register_request_limits(app)
    register_error_pages(app)
    return app


KIB = 1024
MIB = 1024 * KIB
# The largest body each route takes; every other request takes a few KiB of
# form fields. A key is at most 1 MiB (keycheck), armored a third more.
BODY_LIMITS = {
    "attendee.register": 3 * MIB // 2,
    "api.upload_certification": 256 * KIB,
    # A pasted clearsigned challenge or detached signature (O2).
    "attendee.prove": 64 * KIB,
    # The host imports whole keyrings (a conference's can be tens of MiB).
    "host.import_keys": 64 * MIB,
}
FORM_LIMIT = 16 * KIB
BIG_BODY = 64 * KIB


def register_request_limits(app: Flask) -> None:
    """Read, size-check and parse every request body before the view runs,
    so no view holds a database transaction while a client sends or a
    parser chews. A body over the route's limit is refused with 413 from
    its Content-Length, before it is read (or as soon as a body without
    one passes the limit)."""
    from flask import render_template
    from flask import request

    from keyparty import ratelimit
    from keyparty.i18n import gettext

    def too_many(wait: int):
        message = gettext("Too many requests. Wait {wait} s and try again.", wait=wait)
        page = render_template("message.html", title=gettext("Slow down"), message=message)
        return page, 429, {"Retry-After": str(wait)}

    def read_body_first():
        limit = BODY_LIMITS.get(request.endpoint or "", FORM_LIMIT)
        request.max_content_length = limit
        request.max_form_memory_size = limit
        if (request.content_length or 0) > BIG_BODY:
            # Large bodies cost reading and parsing: a few a minute per address,
            # refused (429) before a byte of the body is read.
            wait = ratelimit.hit(f"big-body:{request.remote_addr}", 20, 60)
            if wait:
                return too_many(wait)
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
                request.form  # noqa: B018  (parses the body now, within the limit)
            else:
                request.get_data()

    # First of all before_request functions: CSRF protection reads the form too.
    app.before_request_funcs.setdefault(None, []).insert(0, read_body_first)


def register_error_pages(app: Flask) -> None:
    from flask import render_template

    @app.errorhandler(413)
    def too_large(_error):
        message = (
            "That is too large: nothing was stored. A public key is a few KiB (keyparty "
            "takes keys up to 1 MiB); export it with `gpg --armor --export FINGERPRINT`."
        )
        return render_template("message.html", title="Too large", message=message), 413

    from sqlalchemy.exc import SQLAlchemyError

    from keyparty.i18n import gettext
    from keyparty.storage import is_disk_full

    @app.errorhandler(OSError)
    @app.errorhandler(SQLAlchemyError)
    def disk_full(error):
        """A full or read-only disk is said plainly, never as a refused key."""
        if not is_disk_full(error):
            raise error
        db.session.rollback()
        app.logger.error("The instance folder cannot be written: %s", error)
        message = gettext("The server's disk is full; nothing was stored. Tell the host.")
        return render_template("message.html", title=gettext("Disk full"), message=message), 507


def register_extensions(app: Flask) -> None:
    from keyparty import ratelimit
    from keyparty import storage

    db.init_app(app)
    csrf.init_app(app)
    storage.init_app(app)
    ratelimit.init_app(app)


def register_proxy(app: Flask) -> None:
    """Behind PROXY_HOPS reverse proxies (KEYPARTY_PROXY_HOPS), take the client's
    address, scheme, host and port from their X-Forwarded-* headers: the host
    pages then see the real client (not the proxy's loopback address) and
    links are made with https."""
    hops = app.config.get("PROXY_HOPS") or 0
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)


def register_database_retries(app: Flask) -> None:
    """Every view runs again after a transient database conflict; never a 500 for it."""
    from keyparty import storage

    storage.retry_conflicts(app)


def register_blueprints(app: Flask) -> None:
    from keyparty.api.routes import blueprint as api
    from keyparty.attendee.routes import blueprint as attendee
    from keyparty.host.routes import blueprint as host

    app.register_blueprint(attendee)
    app.register_blueprint(host)
    app.register_blueprint(api)


def register_commands(app: Flask) -> None:
    from keyparty.cli import commands

    for command in commands:
        app.cli.add_command(command)


def register_template_helpers(app: Flask) -> None:
    from keyparty import i18n
    from keyparty.partylist import group_digest
    from keyparty.partylist import group_fingerprint

    i18n.init_app(app)
    app.jinja_env.filters["digest"] = lambda hexdigest: " ".join(group_digest(hexdigest))
    app.jinja_env.filters["digest_groups"] = group_digest
    app.jinja_env.filters["fingerprint"] = group_fingerprint


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response
