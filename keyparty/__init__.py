"""keyparty: a PGP key-signing party manager."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from keyparty.config import instance_path_from_env
from keyparty.config import settings_from_env
from keyparty.extensions import csrf
from keyparty.extensions import db

PACKAGE = Path(__file__).resolve().parent


def template_folder() -> str:
    """templates/ at the top of a checkout, or keyparty/templates in a wheel."""
    checkout = PACKAGE.parent / "templates"
    return str(checkout if checkout.is_dir() else PACKAGE / "templates")


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=instance_path_from_env(os.path.join(os.getcwd(), "instance")),
        instance_relative_config=True,
        template_folder=template_folder(),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.from_mapping(settings_from_env(Path(app.instance_path)))
    if test_config:
        app.config.from_mapping(test_config)
    register_extensions(app)
    register_blueprints(app)
    register_commands(app)
    register_template_helpers(app)
    register_security_headers(app)
    register_error_pages(app)
    return app


def register_error_pages(app: Flask) -> None:
    from flask import render_template

    @app.errorhandler(413)
    def too_large(_error):
        message = (
            "That upload is too large. A public key is a few KiB (keyparty takes keys up to "
            "1 MiB); export it with `gpg --armor --export FINGERPRINT`."
        )
        return render_template("message.html", title="Too large", message=message), 413


def register_extensions(app: Flask) -> None:
    from keyparty import ratelimit
    from keyparty import storage

    db.init_app(app)
    csrf.init_app(app)
    storage.init_app(app)
    ratelimit.init_app(app)


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
