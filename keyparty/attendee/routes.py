"""Attendee pages: register a key, join from a phone, see a key's entry."""

from __future__ import annotations

from flask import Blueprint
from flask import abort
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from markupsafe import Markup

from keyparty import events
from keyparty import registration
from keyparty.attendee.forms import RegistrationForm
from keyparty.extensions import db
from keyparty.models import Attendee
from keyparty.models import Event
from keyparty.models import Key
from keyparty.network import public_base_url
from keyparty.qr import qr_svg

blueprint = Blueprint("attendee", __name__)


def _event_or_404(event_id: str) -> Event:
    event = db.session.get(Event, event_id)
    if event is None:
        abort(404)
    return event


def current_attendee() -> Attendee | None:
    attendee_id = session.get("attendee_id")
    return db.session.get(Attendee, attendee_id) if attendee_id else None


@blueprint.route("/")
def index():
    open_events = db.session.scalars(
        db.select(Event).where(Event.state == "registration").order_by(Event.created_at)
    ).all()
    return render_template("index.html", events=open_events, me=current_attendee())


@blueprint.route("/e/<event_id>/register", methods=["GET", "POST"])
def register(event_id: str):
    event = _event_or_404(event_id)
    form = RegistrationForm()
    rejected = []
    if form.validate_on_submit():
        result = registration.register_keys(
            event,
            [("your key", form.key_data())],
            events.event_home(event),
            one_key=True,
            name=form.name.data,
            email=form.email.data,
        )
        if result.accepted:
            accepted = result.accepted[0]
            join_url = None
            if accepted.join_token:
                base = public_base_url(request.host_url)
                join_url = f"{base}{url_for('attendee.join', token=accepted.join_token)}"
            return render_template(
                "registered.html",
                event=event,
                key=accepted.key,
                updated=accepted.updated,
                join_url=join_url,
                join_svg=Markup(qr_svg(join_url)) if join_url else None,
            )
        rejected = result.rejected
    status = 400 if request.method == "POST" else 200
    return render_template("register.html", event=event, form=form, rejected=rejected), status


@blueprint.route("/join/<token>")
def join(token: str):
    attendee = db.session.scalar(
        db.select(Attendee).where(Attendee.join_token_sha256 == registration.hash_token(token))
    )
    if attendee is None:
        return render_template("join_unknown.html"), 404
    session.clear()
    session["attendee_id"] = attendee.id
    session.permanent = True
    # Away from the URL holding the token, so it is not left in the history.
    return redirect(url_for("attendee.me"))


@blueprint.route("/me")
def me():
    attendee = current_attendee()
    if attendee is None:
        return render_template("join_first.html"), 401
    return render_template("me.html", attendee=attendee, event=attendee.event)


@blueprint.route("/e/<event_id>/k/<fingerprint>")
def key(event_id: str, fingerprint: str):
    event = _event_or_404(event_id)
    fingerprint = registration.normalize_fingerprint(fingerprint)
    found = db.session.scalar(
        db.select(Key).where(Key.event_id == event.id, Key.fingerprint == fingerprint)
    )
    if found is None:
        return render_template("key_unknown.html", event=event, fingerprint=fingerprint), 404
    return render_template("key.html", event=event, key=found, me=current_attendee())
