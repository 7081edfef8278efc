"""The JSON API used by `keyparty sign`: the signer's bundle, and one
certification per request (there is no list-taking call, P2).

Authenticated by the signer's signing token (Authorization: Bearer), not by
a cookie, so CSRF does not apply here.
"""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import jsonify
from flask import request

from keyparty import intake
from keyparty import ratelimit
from keyparty.bundle import bundle_for
from keyparty.extensions import csrf
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.network import public_base_url
from keyparty.registration import hash_token

blueprint = Blueprint("api", __name__, url_prefix="/api")
csrf.exempt(blueprint)

MAX_CERTIFICATION_BYTES = 256 * 1024


def _error(status: int, message: str):
    response = jsonify(error=message)
    response.status_code = status
    return response


def _signer(event_id: str) -> Attendee:
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
    signer = (
        db.session.scalar(
            db.select(Attendee).where(Attendee.signing_token_sha256 == hash_token(token))
        )
        if token
        else None
    )
    if signer is None or signer.event_id != event_id:
        if ratelimit.hit(f"api-miss:{request.remote_addr}", 10, 60):
            abort(_error(429, "Too many failed attempts; wait a minute."))
        abort(_error(401, "Unknown signing token: copy it again from your phone page."))
    return signer


@blueprint.errorhandler(413)
def too_large(_error):
    return _error(413, "One certification file is a few KiB; this is too large.")


def _limited(bucket: str, limit: int, per_seconds: int):
    wait = ratelimit.hit(bucket, limit, per_seconds)
    if wait:
        abort(_error(429, f"Too many uploads. Wait {wait} s and try again."))


@blueprint.route("/e/<event_id>/bundle")
def bundle(event_id: str):
    signer = _signer(event_id)
    if signer.event.state != "signing":
        return _error(409, f"The event is {signer.event.state}; signing has not started.")
    return jsonify(bundle_for(signer, public_base_url(request.host_url)))


@blueprint.route("/e/<event_id>/certifications", methods=["POST"])
def upload_certification(event_id: str):
    # One certification per request (P2), so these also bound the refusals
    # one signer or one address can have stored: 30 a minute.
    _limited(f"upload-address:{request.remote_addr}", 60, 60)
    signer = _signer(event_id)
    _limited(f"upload:{signer.id}", 30, 60)
    data = request.get_data()
    if len(data) > MAX_CERTIFICATION_BYTES:
        return _error(413, "One certification file is a few KiB; this is too large.")
    event: Event = signer.event
    outcomes = intake.take_in(event, [("upload", data)], uploader=signer)
    return jsonify(
        outcomes=[
            {
                "status": o.status,
                "fingerprint": o.target,
                "user_id": o.user_id,
                "context": o.context,
                "rule": o.rule,
                "message": o.message,
            }
            for o in outcomes
        ]
    )
