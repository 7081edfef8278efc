"""Host pages: run the event from the laptop.

They answer only requests from the laptop itself, unless a host password is
configured; then everyone, the laptop included, logs in (behind a reverse
proxy every request looks local).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint
from flask import Response
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from markupsafe import Markup

from keyparty import delivery
from keyparty import events
from keyparty import exports
from keyparty import graphviz
from keyparty import proof
from keyparty import publishing
from keyparty import ratelimit
from keyparty import registration
from keyparty import report
from keyparty import verification
from keyparty.badges import badges_for
from keyparty.extensions import db
from keyparty.host.forms import ConfirmForm
from keyparty.host.forms import CreateEventForm
from keyparty.host.forms import ImportForm
from keyparty.host.forms import LoginForm
from keyparty.host.forms import SettingsForm
from keyparty.host.forms import StepForm
from keyparty.models import Event
from keyparty.network import is_loopback
from keyparty.network import local_path
from keyparty.network import public_base_url
from keyparty.partylist import group_digest
from keyparty.rules import STEPS
from keyparty.rules import next_step

blueprint = Blueprint("host", __name__, url_prefix="/host")


def host_session_tag() -> str | None:
    """What a logged-in host's session holds: a keyed hash of the current host
    password. A session made under another password (changed, or the server
    restarted with another one) no longer matches: it is logged out."""
    password = current_app.config.get("HOST_PASSWORD")
    if not password:
        return None
    key = current_app.config["SECRET_KEY"]
    key = key.encode() if isinstance(key, str) else key
    return hmac.new(key, b"host-password:" + password.encode(), hashlib.sha256).hexdigest()


@blueprint.before_request
def only_the_host():
    if request.endpoint == "host.login":
        return None
    tag = host_session_tag()
    if tag:
        if not hmac.compare_digest(str(session.get("host", "")), tag):
            session.pop("host", None)
            return redirect(url_for("host.login", next=request.path))
    elif not is_loopback(request.remote_addr):
        return render_template("host/not_here.html"), 403
    return None


@blueprint.after_request
def never_cached(response):
    # Host pages show join links, tokens and the whole party: never kept by a browser cache.
    response.headers["Cache-Control"] = "no-store"
    return response


# Host password guesses per client address: 5 a minute, 10 in 10 minutes,
# 20 an hour; past each, the wait grows (1 min, 10 min, 1 h).
LOGIN_LIMITS = ((5, 60), (10, 600), (20, 3600))


def _login_wait() -> int:
    address = request.remote_addr or "?"
    waits = [ratelimit.hit(f"host-login:{n}:{address}", n, s) for n, s in LOGIN_LIMITS]
    return max(waits)


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    password = current_app.config.get("HOST_PASSWORD")
    if not password:
        return redirect(url_for("host.index"))
    form = LoginForm()
    if form.validate_on_submit():
        wait = _login_wait()
        if wait:
            flash(f"Too many attempts from this address. Wait {wait} s and try again.", "error")
            return render_template("host/login.html", form=form), 429
        if hmac.compare_digest(form.password.data.encode(), password.encode()):
            session["host"] = host_session_tag()
            target = local_path(request.args.get("next"), url_for("host.index"))
            return redirect(target if target.startswith("/host") else url_for("host.index"))
        flash("That is not the host password.", "error")
        return render_template("host/login.html", form=form), 401
    return render_template("host/login.html", form=form)


@blueprint.route("/logout", methods=["POST"])
def logout():
    if not StepForm().validate_on_submit():
        abort(400)
    session.pop("host", None)
    flash("Logged out.", "ok")
    return redirect(url_for("host.login") if host_session_tag() else url_for("attendee.index"))


def _event_or_404(event_id: str) -> Event:
    event = db.session.get(Event, event_id)
    if event is None:
        abort(404)
    return event


@blueprint.route("/")
def index():
    all_events = db.session.scalars(db.select(Event).order_by(Event.created_at.desc())).all()
    return render_template("host/index.html", events=all_events, form=CreateEventForm())


@blueprint.route("/events", methods=["POST"])
def create_event():
    form = CreateEventForm()
    if not form.validate_on_submit():
        all_events = db.session.scalars(db.select(Event).order_by(Event.created_at.desc())).all()
        return render_template("host/index.html", events=all_events, form=form), 400
    event = events.create_event(form.name.data, form.date.data)
    flash(f"Created {event.name}. Its id is {event.id}.", "ok")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>")
def event(event_id: str):
    event = _event_or_404(event_id)
    step = next_step(event.state)
    return render_template(
        "host/event.html",
        event=event,
        counts=events.counts(event),
        totals=verification.totals(event),
        step=step,
        step_label=STEPS[step][2] if step else None,
        step_form=StepForm(),
        import_form=ImportForm(),
        settings_form=SettingsForm(
            contexts=event.contexts,
            pace_gap=event.pace_min_gap_seconds,
            pace_window=event.pace_window_seconds,
            pace_max=event.pace_max_in_window,
        ),
        sha256_groups=group_digest(event.partylist_sha256) if event.partylist_sha256 else [],
        sha512_groups=group_digest(event.partylist_sha512) if event.partylist_sha512 else [],
        registration_url=f"{public_base_url(request.host_url)}/e/{event.id}/register",
        event_url=f"{public_base_url(request.host_url)}/e/{event.id}",
        # O2 and T4 by name: a status of each entry, not a count per attendee (P5).
        unproven=proof.unproven(event),
        unconfirmed=proof.unconfirmed(event) if event.frozen_at else [],
    )


@blueprint.route("/e/<event_id>/step/<step>", methods=["POST"])
def take_step(event_id: str, step: str):
    event = _event_or_404(event_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    waiting = proof.unproven(event) if step == "freeze" and event.state == "registration" else []
    if waiting and form.confirm.data != "yes":
        # O2: the freeze names the entries nobody has proven, and asks.
        return render_template(
            "host/confirm_freeze.html", event=event, waiting=waiting, form=ConfirmForm()
        )
    refusal = events.take_step(event, step)
    if refusal:
        flash(refusal.message, "error")
    else:
        flash(f"The event is now {event.state}.", "ok")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/import", methods=["POST"])
def import_keys(event_id: str):
    event = _event_or_404(event_id)
    form = ImportForm()
    if not form.validate_on_submit():
        flash("Choose at least one file to import.", "error")
        return redirect(url_for("host.event", event_id=event.id))
    try:
        inputs, signups = registration.sort_files([(f.filename, f.read()) for f in form.files.data])
    except ValueError as problem:
        flash(str(problem), "error")
        return redirect(url_for("host.event", event_id=event.id))
    result = registration.register_keys(event, inputs, events.event_home(event), signups=signups)
    base_url = public_base_url(request.host_url)
    sent = None
    links = proof.import_links(result)
    if links and not form.hand_out.data:
        # O2: each join link leaves encrypted to its key.
        try:
            sent = delivery.send_join_links(
                event,
                links,
                base_url,
                delivery.smtp_settings(current_app.config),
                events.event_files(event) / "outbox",
            )
        except delivery.DeliveryError as problem:
            flash(f"{problem} The keys are registered: relink them or import again.", "error")
    return render_template(
        "host/imported.html",
        event=event,
        result=result,
        base_url=base_url,
        hand_out=form.hand_out.data,
        linked={key.fingerprint: token for key, token in links},
        sent=sent,
        outbox=events.event_files(event) / "outbox",
    )


@blueprint.route("/e/<event_id>/remove/<fingerprint>", methods=["POST"])
def remove_key(event_id: str, fingerprint: str):
    """Host clean-up before the freeze (same as `keyparty remove`)."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    try:
        removed, name, attendee_gone = events.remove_key(event, fingerprint)
    except (LookupError, ValueError) as problem:
        flash(str(problem).strip("'\""), "error")
    else:
        also = " (their only key: the attendee is removed too)" if attendee_gone else ""
        flash(f"Removed {removed} of {name}{also}.", "ok")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/partylist.txt")
def partylist(event_id: str):
    event = _event_or_404(event_id)
    if event.partylist is None:
        abort(404)
    return events.party_list_download(event)


@blueprint.route("/e/<event_id>/publish-list", methods=["POST"])
def publish_list(event_id: str):
    """Offer the frozen list on the public event page, or stop offering it."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    publish = request.form.get("publish") == "1"
    events.set_publish_list(event, publish)
    where = f"{public_base_url(request.host_url)}/e/{event.id}"
    flash(
        f"The party list is published on {where} once frozen."
        if publish
        else "The party list is no longer on the public event page.",
        "ok",
    )
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/mail-list", methods=["POST"])
def mail_list(event_id: str):
    """Mail the frozen list to every attendee not mailed yet (or write the outbox)."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    try:
        result = delivery.mail_party_list(
            event,
            delivery.smtp_settings(current_app.config),
            events.event_files(event) / "outbox",
        )
    except delivery.DeliveryError as problem:
        flash(str(problem), "error")
    else:
        flash(result.summary, "error" if result.refused else "ok")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/badges")
def badges(event_id: str):
    event = _event_or_404(event_id)
    return render_template(
        "badges.html", event=event, badges=badges_for(event, public_base_url(request.host_url))
    )


@blueprint.route("/e/<event_id>/keyring.asc")
def keyring(event_id: str):
    """The published keyring: only certifications their owners accepted (O1)."""
    event = _event_or_404(event_id)
    return Response(
        exports.keyring(event),
        mimetype="application/pgp-keys",
        headers={"Content-Disposition": f'attachment; filename="keyring-{event.id}.asc"'},
    )


@blueprint.route("/e/<event_id>/report")
def report_page(event_id: str):
    event = _event_or_404(event_id)
    try:
        graph = Markup(report.inline_svg(report.draw_graph(event, "svg")))
    except graphviz.GraphvizError as problem:
        graph = None
        flash(str(problem), "error")
    return render_template(
        "host/report.html",
        event=event,
        totals=report.totals(event),
        figures=report.graph_figures(report.certification_graph(event)),
        graph=graph,
        expiring=len(report.expiring(publishing.owner_accepted(event), 60)),
    )


@blueprint.route("/e/<event_id>/report/graph.<fmt>")
def report_graph(event_id: str, fmt: str):
    """The graph as a file: SVG, or PNG for printing."""
    event = _event_or_404(event_id)
    if fmt not in graphviz.FORMATS:
        abort(404)
    try:
        data = report.draw_graph(event, fmt)
    except graphviz.GraphvizError as problem:
        return Response(str(problem), status=503, mimetype="text/plain")
    return Response(
        data,
        mimetype="image/svg+xml" if fmt == "svg" else "image/png",
        headers={"Content-Disposition": f'attachment; filename="graph-{event.id}.{fmt}"'},
    )


@blueprint.route("/e/<event_id>/deliver", methods=["POST"])
def deliver(event_id: str):
    """C3: send the email certifications (or write them to the outbox)."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    try:
        result = delivery.deliver(
            event,
            public_base_url(request.host_url),
            delivery.smtp_settings(current_app.config),
            events.event_files(event) / "outbox",
        )
        flash(delivery.describe(result), "ok")
    except delivery.DeliveryError as problem:
        flash(str(problem), "error")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/settings", methods=["POST"])
def settings(event_id: str):
    event = _event_or_404(event_id)
    form = SettingsForm()
    if not form.validate_on_submit():
        flash("Fill in every setting with a whole number of seconds or people.", "error")
        return redirect(url_for("host.event", event_id=event.id))
    refusal = events.configure(
        event, form.contexts.data, form.pace_gap.data, form.pace_window.data, form.pace_max.data
    )
    flash(str(refusal) if refusal else "Settings saved.", "error" if refusal else "ok")
    return redirect(url_for("host.event", event_id=event.id))
