"""Host pages: run the event from the laptop.

They answer only requests from the laptop itself, unless a host password is
configured; then everyone, the laptop included, logs in (behind a reverse
proxy every request looks local).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import tempfile
import zipfile
from pathlib import Path

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

from keyparty import delivery
from keyparty import events
from keyparty import exports
from keyparty import graphviz
from keyparty import intake
from keyparty import proof
from keyparty import ratelimit
from keyparty import registration
from keyparty import report
from keyparty import verification
from keyparty.badges import badges_for
from keyparty.extensions import db
from keyparty.host.forms import CertificationSettingsForm
from keyparty.host.forms import CreateEventForm
from keyparty.host.forms import ImportForm
from keyparty.host.forms import IntakeForm
from keyparty.host.forms import LoginForm
from keyparty.host.forms import SettingsForm
from keyparty.host.forms import StepForm
from keyparty.i18n import gettext as _
from keyparty.i18n import refusal_message
from keyparty.models import Event
from keyparty.network import is_loopback
from keyparty.network import local_path
from keyparty.network import public_base_url
from keyparty.partylist import group_digest
from keyparty.rules import STEPS
from keyparty.rules import next_step
from keyparty.translatable import N_

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
        flash(_("That is not the host password."), "error")
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
    flash(_("Created {name}. Its id is {id}.", name=event.name, id=event.id), "ok")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>")
def event(event_id: str):
    event = _event_or_404(event_id)
    step = next_step(event.state)
    return render_template(
        "host/event.html",
        event=event,
        summary=events.summary(event),
        totals=verification.totals(event),
        unconfirmed=events.unconfirmed_attendees(event) if event.partylist_sha256 else [],
        step=step,
        step_label=STEPS[step][2] if step else None,
        confirm_steps=CONFIRM_STEPS,
        intake_form=IntakeForm(),
        exports=EXPORTS,
        step_form=StepForm(),
        import_form=ImportForm(),
        settings_form=SettingsForm(
            contexts=event.contexts,
            pace_gap=event.pace_min_gap_seconds,
            pace_window=event.pace_window_seconds,
            pace_max=event.pace_max_in_window,
        ),
        certification_form=CertificationSettingsForm(
            expiry_days=event.cert_expiry_days,
            cap_days=event.cert_expiry_cap_days,
            window_days=event.signing_window_days,
            notation_domain=event.notation_domain,
            policy_url=event.policy_url or "",
        ),
        suggested_policy_url=events.suggested_policy_url(event),
        sha256_groups=group_digest(event.partylist_sha256) if event.partylist_sha256 else [],
        sha512_groups=group_digest(event.partylist_sha512) if event.partylist_sha512 else [],
        registration_url=f"{public_base_url(request.host_url)}/e/{event.id}/register",
        event_url=f"{public_base_url(request.host_url)}/e/{event.id}",
        # O2 by name: a status of each entry, not a count per attendee (P5).
        unproven=proof.unproven(event),
    )


@blueprint.route("/e/<event_id>/step/<step>", methods=["POST"])
def take_step(event_id: str, step: str):
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    if step in CONFIRM_STEPS and request.form.get("confirmed") != "yes":
        # A step that cannot be undone is taken from its confirmation page only.
        return redirect(url_for("host.confirm", event_id=event.id, action=step))
    refusal = events.take_step(event, step)
    if refusal:
        flash(refusal_message(refusal), "error")
    else:
        flash(_("The event is now {state}.", state=_(event.state)), "ok")
    return redirect(url_for("host.event", event_id=event.id))


# Steps that cannot be undone, and what their confirmation page says they do.
CONFIRM_STEPS = {
    "freeze": N_(
        "The party list is fixed: no key can be added, changed or removed after this, and the "
        "event's contexts and certification settings can no longer change. keyparty writes the "
        "list file and its digests, which you read aloud at the event."
    ),
    "close": N_(
        "The event ends: no certification is taken in any more and the exports are final. Key "
        "owners can no longer accept or decline certifications."
    ),
    "purge": N_(
        "The names, email addresses, join links, user IDs, verifications and GnuPG homes of "
        "this event are deleted. The published keyring, the per-key files and the event-wide "
        "totals stay in the instance folder. This cannot be undone."
    ),
}


@blueprint.route("/e/<event_id>/confirm/<action>")
def confirm(event_id: str, action: str):
    """The page that asks once more before freeze, close or purge."""
    event = _event_or_404(event_id)
    if action not in CONFIRM_STEPS:
        abort(404)
    target = (
        url_for("host.purge", event_id=event.id)
        if action == "purge"
        else url_for("host.take_step", event_id=event.id, step=action)
    )
    label = N_("Delete the personal data") if action == "purge" else STEPS[action][2]
    return render_template(
        "host/confirm.html",
        event=event,
        action=action,
        label=label,
        explanation=CONFIRM_STEPS[action],
        # O2: the freeze names the entries nobody has proven yet.
        waiting=proof.unproven(event) if action == "freeze" else [],
        target=target,
        form=StepForm(),
    )


@blueprint.route("/e/<event_id>/purge", methods=["POST"])
def purge(event_id: str):
    """Delete a closed event's personal data (same as `keyparty purge EVENT`)."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    if request.form.get("confirmed") != "yes":
        return redirect(url_for("host.confirm", event_id=event.id, action="purge"))
    try:
        deleted = events.purge(event)
    except ValueError:
        flash(
            _(
                "Purge only a closed event; {event} is {state}. Close it first.",
                event=event.id,
                state=_(event.state),
            ),
            "error",
        )
        return redirect(url_for("host.event", event_id=event.id))
    flash(
        _(
            "Deleted the personal data of {event}: {attendees} attendees, {keys} keys, "
            "{verifications} verifications, {certifications} certifications. Kept: {folder}.",
            event=event.name,
            attendees=deleted["attendees"],
            keys=deleted["keys"],
            verifications=deleted["verifications"],
            certifications=deleted["certifications"],
            folder=str(events.event_files(event) / "final"),
        ),
        "ok",
    )
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/intake", methods=["POST"])
def intake_files(event_id: str):
    """Certifications that came by mail or USB stick (same as `keyparty intake EVENT FILE…`)."""
    event = _event_or_404(event_id)
    form = IntakeForm()
    if not form.validate_on_submit():
        flash(_("Choose at least one certification file."), "error")
        return redirect(url_for("host.event", event_id=event.id))
    uploads = [(f.filename or "upload", f.read()) for f in form.files.data]
    outcomes = intake.take_in(event, uploads)
    return render_template("host/intake.html", event=event, outcomes=outcomes)


@blueprint.route("/e/<event_id>/relink/<fingerprint>", methods=["POST"])
def relink(event_id: str, fingerprint: str):
    """A new join link for a key's attendee (same as `keyparty relink EVENT FPR`)."""
    event = _event_or_404(event_id)
    if not StepForm().validate_on_submit():
        abort(400)
    try:
        token = events.new_join_link(event, fingerprint)
    except LookupError:
        abort(404)
    key = next(k for k in event.keys if k.fingerprint == fingerprint.upper())
    link = f"{public_base_url(request.host_url)}/join/{token}"
    return render_template("host/relinked.html", event=event, key=key, link=link)


# The downloads of the host page: name -> (what it is, how it is made).
EXPORTS = {
    "keyring.asc": N_("Published keyring (armored)"),
    "keyring.gpg": N_("Published keyring (binary)"),
    "per-key.zip": N_("One file per key (zip)"),
    "per-uid.zip": N_("One file per user ID (zip)"),
    "wkd.zip": N_("Web Key Directory (zip)"),
}


@blueprint.route("/e/<event_id>/export/<name>")
def export(event_id: str, name: str):
    """Each export of `keyparty export`, as a download: only accepted certifications (O1)."""
    event = _event_or_404(event_id)
    if name not in EXPORTS:
        abort(404)
    if name.startswith("keyring."):
        data = exports.keyring(event, armor=name.endswith(".asc"))
        mimetype = "application/pgp-keys"
    else:
        writer = {
            "per-key.zip": exports.write_per_key,
            "per-uid.zip": exports.write_per_user_id,
            "wkd.zip": exports.write_wkd,
        }[name]
        data = _zipped(lambda folder: writer(event, folder))
        mimetype = "application/zip"
    return Response(
        data,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{event.id}-{name}"'},
    )


def _zipped(write) -> bytes:
    """The files `write(folder)` makes, as a zip archive (paths relative to the folder)."""
    with tempfile.TemporaryDirectory(prefix="kpx") as scratch:
        folder = Path(scratch) / "export"
        write(folder)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder).as_posix())
        return buffer.getvalue()


@blueprint.route("/e/<event_id>/import", methods=["POST"])
def import_keys(event_id: str):
    event = _event_or_404(event_id)
    form = ImportForm()
    if not form.validate_on_submit():
        flash(_("Choose at least one file to import."), "error")
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
    return export(event_id, "keyring.asc")


@blueprint.route("/e/<event_id>/report")
def report_page(event_id: str):
    event = _event_or_404(event_id)
    picture = report.picture(event, current_app.config["REPORT_DRAWING_WAIT_SECONDS"])
    if picture.error:
        flash(picture.error, "error")
    return render_template(
        "host/report.html",
        event=event,
        totals=report.totals(event),
        picture=picture,
        expiring=report.expiring_count(event, 60),
    )


@blueprint.route("/e/<event_id>/report/picture-<digest>.svg")
def report_picture(event_id: str, digest: str):
    """The picture the report page links (a large one), by its digest: the
    address names what the page showed, never a newer drawing. (Not cached,
    as every host page: it holds the attendees' names.)"""
    data = report.picture_svg(event_id, digest)
    if data is None:
        abort(404)
    return Response(data, mimetype="image/svg+xml")


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
        # Failures are shown as failures, each in its own red box.
        for line in result.lines:
            failed = line.startswith(("Failed", "Not sent"))
            flash(line, "error" if failed else "ok")
    except delivery.DeliveryError as problem:
        flash(str(problem), "error")
    return redirect(url_for("host.event", event_id=event.id))


@blueprint.route("/e/<event_id>/settings", methods=["POST"])
def settings(event_id: str):
    event = _event_or_404(event_id)
    form = SettingsForm()
    if not form.validate_on_submit():
        flash(_("Fill in every setting with a whole number of seconds or people."), "error")
        return redirect(url_for("host.event", event_id=event.id))
    refusal = events.configure(
        event, form.contexts.data, form.pace_gap.data, form.pace_window.data, form.pace_max.data
    )
    _flash_outcome(refusal)
    return redirect(url_for("host.event", event_id=event.id))


def _flash_outcome(refusal) -> None:
    if refusal:
        flash(f"{refusal.rule}: {refusal_message(refusal)}", "error")
    else:
        flash(_("Settings saved."), "ok")


@blueprint.route("/e/<event_id>/certification-settings", methods=["POST"])
def certification_settings(event_id: str):
    """D1, D3 and C1 settings (same as `keyparty event set EVENT --expiry-days …`)."""
    event = _event_or_404(event_id)
    form = CertificationSettingsForm()
    if not form.validate_on_submit():
        flash(_("Fill in the expiry, cap and signing window as whole numbers of days."), "error")
        return redirect(url_for("host.event", event_id=event.id))
    refusal = events.configure_certification(
        event,
        form.expiry_days.data,
        form.cap_days.data,
        form.window_days.data,
        form.notation_domain.data,
        form.policy_url.data or "",
    )
    _flash_outcome(refusal)
    return redirect(url_for("host.event", event_id=event.id))
