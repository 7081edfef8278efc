"""Attendee pages: register a key, then at the event, on a phone: join,
confirm your own entry, show your code, scan others', and record one
decision per user ID."""

from __future__ import annotations

import functools
from datetime import UTC
from datetime import datetime
from urllib.parse import urlsplit

from flask import Blueprint
from flask import abort
from flask import current_app
from flask import flash
from flask import has_request_context
from flask import jsonify
from flask import make_response
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from markupsafe import Markup
from sqlalchemy import bindparam
from sqlalchemy.orm import joinedload

from keyparty import delivery
from keyparty import events
from keyparty import exports
from keyparty import pairing
from keyparty import proof
from keyparty import publishing
from keyparty import ratelimit
from keyparty import registration
from keyparty import report
from keyparty import rules
from keyparty import verification
from keyparty.attendee.forms import ButtonForm
from keyparty.attendee.forms import ConfirmEntryForm
from keyparty.attendee.forms import JoinForm
from keyparty.attendee.forms import ProofForm
from keyparty.attendee.forms import RegistrationForm
from keyparty.attendee.forms import RejoinForm
from keyparty.attendee.forms import VerificationForm
from keyparty.badges import verification_url
from keyparty.bundle import bundle_for
from keyparty.extensions import db
from keyparty.i18n import LANGUAGES
from keyparty.i18n import choose_language
from keyparty.i18n import current_language
from keyparty.i18n import gettext as _
from keyparty.i18n import refusal_message
from keyparty.i18n import sentence
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Challenge
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import UserID
from keyparty.models import Verification
from keyparty.network import is_loopback
from keyparty.network import local_path
from keyparty.network import public_base_url
from keyparty.qr import fingerprint_payload
from keyparty.qr import qr_svg

blueprint = Blueprint("attendee", __name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _event_or_404(event_id: str) -> Event:
    event = db.session.get(Event, event_id)
    if event is None:
        abort(404)
    return event


# Where a request keeps the attendee its session speaks for (WSGI environ key).
_ME = "keyparty.me"


def current_attendee() -> Attendee | None:
    """The attendee whose own session this is (T2, O2), or None.

    A session names its event, its attendee and a per-attendee secret kept
    (hashed) in the database: a cookie from another instance, a purged event
    or from before a relink, re-join or proof opens nothing.
    """
    cached = request.environ.get(_ME, _ME)
    if cached is not _ME:  # a page asks twice: its view, and the templates' context
        return cached
    attendee_id = session.get("attendee_id")
    attendee = db.session.get(Attendee, attendee_id) if isinstance(attendee_id, int) else None
    if not proof.session_opens(attendee, session.get("event_id"), session.get("secret")):
        attendee = None
    request.environ[_ME] = attendee
    return attendee


def _sign_in(attendee: Attendee) -> None:
    """This browser's session speaks for `attendee` from now on, no other's."""
    # Mails to the attendee come in the language of their phone.
    attendee.language = current_language()
    secret = proof.open_session(attendee)
    request.environ.pop(_ME, None)
    lang = session.get("lang")
    session.clear()
    session["event_id"] = attendee.event_id
    session["attendee_id"] = attendee.id
    session["secret"] = secret
    if lang:
        session["lang"] = lang
    session.permanent = True


def no_store(view):
    """Pages that show a join link, a signing token or a session: never cached."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        response = make_response(view(*args, **kwargs))
        response.headers["Cache-Control"] = "no-store"
        return response

    return wrapper


def _too_fast(bucket: str, limit: int, per_seconds: int, registering: bool = False, more=()):
    """A 429 page when this request goes over its rate limit, else None.

    `more`: further (bucket, limit, per_seconds), counted in the same
    transaction, each only if the ones before allowed the request.
    """
    wait = ratelimit.hit_each([(bucket, limit, per_seconds), *more])
    if wait:
        if registering:
            message = _(
                "Too many registrations from this address: at most {limit} keys in {minutes} "
                "minutes. Try again in {wait} s.",
                limit=limit,
                minutes=max(1, per_seconds // 60),
                wait=wait,
            )
        else:
            message = _("Too many requests. Wait {wait} s and try again.", wait=wait)
        response = render_template("message.html", title=_("Slow down"), message=message), 429
        return response
    return None


@blueprint.route("/")
def index():
    open_events = db.session.scalars(
        db.select(Event).where(Event.state == "registration").order_by(Event.created_at)
    ).all()
    return render_template("index.html", events=open_events, me=current_attendee())


@blueprint.route("/lang/<code>")
def set_language(code: str):
    if code in LANGUAGES:
        choose_language(code)
        me = current_attendee()
        if me is not None and me.language != code:
            me.language = code  # mails to them come in this language
            db.session.commit()
    return redirect(local_path(request.args.get("next")))


def _base_url() -> str:
    return public_base_url(request.host_url)


@blueprint.route("/e/<event_id>/register", methods=["GET", "POST"])
@no_store
def register(event_id: str):
    if request.method == "POST":
        # Each registration runs gpg: one address cannot flood the event with keys.
        config = current_app.config
        limited = _too_fast(
            f"register:{request.remote_addr}",
            config["REGISTRATION_LIMIT"],
            config["REGISTRATION_WINDOW_SECONDS"],
            registering=True,
        )
        if limited:
            return limited
    form = RegistrationForm()
    # The form is checked before the event is read (no transaction yet).
    valid = form.validate_on_submit()
    event = _event_or_404(event_id)
    rejected = []
    if valid:
        result = registration.register_keys(
            event,
            [("your key", form.key_data())],
            events.event_home(event),
            one_key=True,
            name=form.name.data,
            email=form.email.data,
            issue_links=False,
        )
        if result.accepted:
            # O2: new or already registered, the key's holder proves possession
            # before the entry has a join link, a session or a say.
            started = proof.start(
                result.accepted[0].key,
                "register",
                _base_url(),
                name=form.name.data,
                email=form.email.data or None,
            )
            # E.g. no encryption subkey: said now, before the proof step.
            for warning in result.accepted[0].warnings:
                flash(sentence(warning), "error")
            flash(
                _("Key updated: prove that you hold it to take its entry.")
                if result.accepted[0].updated
                else _("Your key is on the list. One step left: prove that you hold it."),
                "ok",
            )
            return redirect(
                url_for("attendee.prove", event_id=event.id, public_id=started.challenge.public_id)
            )
        rejected = result.rejected
        if any(r.problem == "secret-key" for r in rejected):
            # A secret key is never sent back to the browser, not even into the form.
            form.key_text.data = ""
    status = 400 if request.method == "POST" else 200
    return render_template("register.html", event=event, form=form, rejected=rejected), status


def _challenge_or_404(event: Event, public_id: str) -> Challenge:
    challenge = proof.find(public_id)
    if challenge is None or challenge.event_id != event.id:
        abort(404)
    return challenge


def _prove_page(event: Event, challenge: Challenge, form: ProofForm, refusal=None, status=200):
    expired = rules.check_challenge(
        challenge.expires_at, challenge.used_at, challenge.failed_attempts, _now()
    )
    return render_template(
        "prove.html",
        event=event,
        challenge=challenge,
        key=challenge.key,
        form=form,
        refusal=refusal,
        expired=expired,
        again_url=url_for(
            "attendee.register" if challenge.purpose == "register" else "attendee.rejoin",
            event_id=event.id,
        ),
    ), status


@blueprint.route("/e/<event_id>/prove/<public_id>", methods=["GET", "POST"])
@no_store
def prove(event_id: str, public_id: str):
    """O2: answer the challenge by the decrypted code or a signature."""
    event = _event_or_404(event_id)
    challenge = _challenge_or_404(event, public_id)
    form = ProofForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _prove_page(event, challenge, form, status=200 if request.method == "GET" else 400)
    limited = _too_fast(f"prove:{request.remote_addr}", 30, 600)
    if limited:
        return limited
    if (form.signed.data or "").strip():
        refusal = proof.answer_signature(challenge, form.signed.data, _now())
    elif (form.code.data or "").strip():
        refusal = proof.answer_code(challenge, form.code.data, _now())
    else:
        refusal = rules.missing_answer()
    if refusal:
        return _prove_page(event, challenge, form, refusal, 409)
    attendee = proof.prove(challenge, _now())
    if challenge.purpose == "rejoin":
        _sign_in(attendee)
        flash(_("You proved that you hold the key: this phone is back in."), "ok")
        return redirect(url_for("attendee.me"))
    token = proof.new_join_link(attendee)
    join_url = proof.join_url(_base_url(), token)
    return render_template(
        "registered.html",
        event=event,
        key=challenge.key,
        join_url=join_url,
        join_path=url_for("attendee.join", token=token),
        join_svg=Markup(qr_svg(join_url)),
        join_form=JoinForm(),
    )


@blueprint.route("/e/<event_id>/prove/<public_id>/challenge.asc")
def challenge_file(event_id: str, public_id: str):
    """The encrypted challenge as a file, for `gpg --decrypt FILE`."""
    challenge = _challenge_or_404(_event_or_404(event_id), public_id)
    if not challenge.message:
        abort(404)
    response = current_app.response_class(challenge.message, mimetype="application/pgp-encrypted")
    response.headers["Content-Disposition"] = 'attachment; filename="keyparty-challenge.asc"'
    return response


@blueprint.route("/e/<event_id>/prove/<public_id>/challenge.txt")
def challenge_text(event_id: str, public_id: str):
    """The text to sign as a file, for `gpg --clearsign FILE`."""
    challenge = _challenge_or_404(_event_or_404(event_id), public_id)
    response = current_app.response_class(challenge.text, mimetype="text/plain")
    response.headers["Content-Disposition"] = 'attachment; filename="keyparty-challenge.txt"'
    return response


def _fingerprint_from(text: str) -> str:
    """A fingerprint as typed, or read from a badge code (OPENPGP4FPR:… or the
    key page's address)."""
    text = (text or "").strip()
    if text.upper().startswith("OPENPGP4FPR:"):
        text = text[len("OPENPGP4FPR:") :].split("#", 1)[0]
    elif "/k/" in text:
        text = text.rsplit("/k/", 1)[1].split("/", 1)[0].split("?", 1)[0]
    return registration.normalize_fingerprint(text)


@blueprint.route("/e/<event_id>/rejoin", methods=["GET", "POST"])
def rejoin(event_id: str):
    """O2: back in on this phone (a lost phone, a new server address) by
    proving possession of the key again."""
    event = _event_or_404(event_id)
    form = RejoinForm()
    problem = None
    if form.validate_on_submit():
        limited = _too_fast(f"rejoin:{request.remote_addr}", 10, 600)
        if limited:
            return limited
        found = _key_or_none(event, _fingerprint_from(form.fingerprint.data))
        if found is None:
            problem = _(
                "No key with this fingerprint is registered for {event}. Check it with "
                "`gpg --fingerprint`, or register the key first.",
                event=event.name,
            )
        else:
            started = proof.start(found, "rejoin", _base_url())
            return redirect(
                url_for("attendee.prove", event_id=event.id, public_id=started.challenge.public_id)
            )
    status = 400 if request.method == "POST" else 200
    return render_template("rejoin.html", event=event, form=form, problem=problem), status


@blueprint.route("/join/<token>", methods=["GET", "POST"])
@no_store
def join(token: str):
    """A join link is spent only by a POST from its own page: a GET or HEAD
    (link previews, mail scanners, an <img> elsewhere) shows the button and
    spends nothing. A phone that speaks for someone else is asked first."""
    limited = _too_fast(f"join:{request.remote_addr}", 30, 60)
    if limited:
        return limited
    target = proof.find_join(token, _now())
    if target is None:
        limited = _too_fast(f"join-miss:{request.remote_addr}", 10, 60)
        if limited:
            return limited
        return render_template("join_unknown.html"), 404
    me = current_attendee()
    other = me if me is not None and me.id != target.attendee.id else None
    form = JoinForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("join.html", target=target.attendee, other=other, form=form)
    if other is not None and not form.switch.data:
        # Never switched silently: the phone's owner chooses.
        return render_template("join.html", target=target.attendee, other=other, form=form), 409
    attendee = proof.redeem_join(token, _now())
    if attendee is None:
        return render_template("join_unknown.html"), 404
    _sign_in(attendee)
    # Away from the URL holding the token, so it is not left in the history.
    return redirect(url_for("attendee.me"))


def _require_me():
    me = current_attendee()
    if me is None:
        abort(401)
    return me


@blueprint.errorhandler(401)
def join_first(_error):
    return render_template("join_first.html"), 401


def _load_session_attendee(query) -> Attendee | None:
    """Load the attendee the session names by `query` (a select of Attendee
    by the bound parameter `attendee_id`, with what the page shows), in one
    query, and return it (unchecked: keep the reference, the
    session's identity map holds it only as long as someone does);
    current_attendee then finds it loaded and checks the session as always.
    A page of one's own then costs one query, not one per relationship it
    shows."""
    attendee_id = session.get("attendee_id")
    if not isinstance(attendee_id, int) or _ME in request.environ:
        return None
    return db.session.scalars(query, {"attendee_id": attendee_id}).unique().one_or_none()


_ME_PAGE = (
    db.select(Attendee)
    .options(joinedload(Attendee.event), joinedload(Attendee.keys).joinedload(Key.user_ids))
    .where(Attendee.id == bindparam("attendee_id"))
)


@blueprint.route("/me")
@no_store
def me():
    loaded = _load_session_attendee(_ME_PAGE)  # noqa: F841  (held: see the function)
    attendee = _require_me()
    event = attendee.event
    after_event = event.state in ("signing", "closed")
    can_confirm = rules.check_entry_confirmation(event.state) is None
    # Forms are built only when the page shows them (each costs a phone request CPU).
    asks_confirmation = can_confirm and attendee.entry_confirmed_at is None
    return render_template(
        "me.html",
        attendee=attendee,
        event=event,
        confirm_form=ConfirmEntryForm() if asks_confirmation else None,
        can_confirm=can_confirm,
        button_form=ButtonForm() if event.state == "signing" else None,
        # A signer sees the outcome of their own certifications, no one else's
        # (there are none before signing starts: no queries then).
        given=_latest_judgements(attendee) if after_event else [],
        expiring=_expiring_soon(attendee) if after_event else {"given": [], "received": []},
        pairings=pairing.pending_for(attendee) if event.state == "signing" else [],
        group=pairing.group,
    )


def _latest_judgements(attendee: Attendee) -> list[Certification]:
    """The outcome of each certification this attendee uploaded: a certification
    judged again (refused during cooling-off, accepted later) shows its last
    judgement only."""
    latest: dict[str, Certification] = {}
    for certification in db.session.scalars(
        db.select(Certification)
        .where(Certification.signer_id == attendee.id)
        .order_by(Certification.received_at, Certification.id)
    ):
        latest.pop(certification.signature_sha256, None)
        latest[certification.signature_sha256] = certification
    return list(latest.values())


EXPIRING_DAYS = 60


def _expiring_soon(attendee: Attendee) -> dict[str, list[Certification]]:
    """D4: my certifications, given and received, that expire within 60 days."""
    given, received = report.given_and_received(attendee)
    return {
        "given": report.expiring(given, EXPIRING_DAYS),
        "received": report.expiring(received, EXPIRING_DAYS),
    }


@blueprint.route("/me/signing-token", methods=["POST"])
@no_store
def signing_token():
    """A new token for `keyparty sign`, shown once; the previous one stops working."""
    attendee = _require_me()
    if not ButtonForm().validate_on_submit():
        abort(400)
    if attendee.event.state != "signing":
        flash(_("Signing starts when the host starts it, after the cooling-off."), "error")
        return redirect(url_for("attendee.me"))
    replaced = attendee.signing_token_sha256 is not None
    token = pairing.issue_signing_token(attendee)
    db.session.commit()
    base = public_base_url(request.host_url)
    return render_template(
        "signing_token.html",
        event=attendee.event,
        token=token,
        replaced=replaced,
        event_url=f"{base}/e/{attendee.event_id}",
    )


@blueprint.route("/me/pairing/<int:pairing_id>/<answer>", methods=["POST"])
def answer_pairing(pairing_id: int, answer: str):
    """Allow or deny a computer that asks to sign as me (keyparty sign without a token)."""
    attendee = _require_me()
    if not ButtonForm().validate_on_submit() or answer not in ("allow", "deny"):
        abort(400)
    answered = pairing.answer(attendee, pairing_id, answer == "allow")
    if answered is None:
        flash(_("That request is over: run keyparty sign again for a new code."), "error")
    elif answer == "allow":
        flash(
            _(
                "Allowed: the computer showing {code} signs as you now. "
                "An earlier signing token stops working.",
                code=pairing.group(answered.user_code),
            ),
            "ok",
        )
    else:
        flash(
            _(
                "Denied: the computer showing {code} gets nothing.",
                code=pairing.group(answered.user_code),
            ),
            "ok",
        )
    return redirect(url_for("attendee.me"))


@blueprint.route("/me/bundle.json")
@no_store
def signing_bundle():
    """The signer's bundle, for `keyparty sign FILE` on an offline machine."""
    attendee = _require_me()
    if attendee.event.state != "signing":
        abort(409)
    response = jsonify(bundle_for(attendee, public_base_url(request.host_url)))
    filename = f"keyparty-{attendee.event_id}-bundle.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@blueprint.route("/me/partylist.txt")
def my_party_list():
    """The frozen list for every attendee: their own copy to check with sha256sum."""
    event = _require_me().event
    if event.partylist is None:
        abort(404)
    return events.party_list_download(event)


@blueprint.route("/e/<event_id>")
def event_page(event_id: str):
    """The public page of an event; the list is offered when the host published it."""
    event = _event_or_404(event_id)
    return render_template("event.html", event=event, published=_published(event))


def _published(event: Event) -> bool:
    return bool(event.publish_list and event.partylist is not None)


@blueprint.route("/e/<event_id>/partylist.txt")
def public_party_list(event_id: str):
    event = _event_or_404(event_id)
    if not _published(event):
        abort(404)
    return events.party_list_download(event)


@blueprint.route("/e/<event_id>/policy")
def policy(event_id: str):
    return render_template(
        "policy.html",
        event=_event_or_404(event_id),
        contexts=rules.CONTEXT_LABELS,
        bases=rules.BASES,
    )


@blueprint.route("/me/received")
def received():
    """O1: the certifications made on my key; mine to accept or decline."""
    attendee = _require_me()
    return render_template(
        "received.html",
        attendee=attendee,
        event=attendee.event,
        certifications=publishing.certifications_received(attendee),
        button_form=ButtonForm(),
    )


@blueprint.route("/me/received/<int:certification_id>/<decision>", methods=["POST"])
def decide(certification_id: int, decision: str):
    attendee = _require_me()
    found = db.session.get(Certification, certification_id)
    # Another owner's certification looks exactly like a missing one.
    if found is None or found.key is None or found.key.attendee_id != attendee.id:
        abort(404)
    if decision not in ("accepted", "declined") or not ButtonForm().validate_on_submit():
        abort(400)
    refusal = publishing.decide(found, decision)
    if refusal:
        flash(f"{refusal.rule}: {refusal_message(refusal)}", "refusal")
    elif decision == "accepted":
        flash(_("Accepted: it is published with your key."), "ok")
    else:
        flash(_("Declined: it will not be published. The signer is not told."), "ok")
    return redirect(url_for("attendee.received"))


@blueprint.route("/me/key.asc")
def my_signed_key():
    """My key with the certifications I accepted, to import or publish."""
    attendee = _require_me()
    response = current_app.response_class(
        exports.own_key(attendee), mimetype="application/pgp-keys"
    )
    name = attendee.keys[0].fingerprint if attendee.keys else "key"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.asc"'
    return response


@blueprint.route("/confirm/<token>", methods=["GET", "POST"])
@no_store
def confirm_email(token: str):
    """C3: the link from the encrypted mail proves the address; the owner's
    button accepts. A GET alone changes nothing, so a mail scanner or link
    preview that opens the link cannot accept for the owner."""
    form = ButtonForm()
    waiting = db.session.scalar(
        db.select(Certification).where(
            Certification.delivery_token_sha256 == registration.hash_token(token)
        )
    )
    if request.method == "GET" or not form.validate_on_submit():
        if waiting is None:
            return render_template(
                "message.html",
                title=_("This link does not work"),
                message=_("It was already used, or it is not a keyparty confirmation link."),
            ), 404
        # Say exactly what the button accepts: which user ID, certified by whom, how.
        return render_template("confirm_email.html", form=form, certification=waiting)
    refusal = waiting and rules.check_owner_decision(waiting.key.event.state, None, "accepted")
    if refusal:
        return render_template(
            "message.html", title=_("Too late"), message=refusal_message(refusal)
        ), 409
    certification = delivery.confirm(token)
    if certification is None:
        return render_template(
            "message.html",
            title=_("This link does not work"),
            message=_("It was already used, or it is not a keyparty confirmation link."),
        ), 404
    return render_template(
        "message.html",
        title=_("Thank you"),
        message=_("Your address is confirmed and the certification is published with your key."),
    )


@blueprint.route("/me/confirm", methods=["POST"])
def confirm_entry():
    attendee = _require_me()
    form = ConfirmEntryForm()
    if not form.validate_on_submit():
        flash(_("Tick both boxes once you have checked your entry and the digest."), "error")
        return redirect(url_for("attendee.me"))
    refusal = verification.confirm_entry(attendee, _now())
    if refusal:
        flash(refusal_message(refusal), "error")
    else:
        flash(_("Thank you: others can now verify your key."), "ok")
    return redirect(url_for("attendee.me"))


@blueprint.route("/me/code")
def my_code():
    attendee = _require_me()
    base = public_base_url(request.host_url)
    codes = [
        {
            "key": key,
            "fingerprint_svg": Markup(qr_svg(fingerprint_payload(key.fingerprint))),
            "url_svg": Markup(qr_svg(verification_url(base, key.event_id, key.fingerprint))),
        }
        for key in attendee.keys
    ]
    return render_template("code.html", attendee=attendee, codes=codes)


def _secure_context() -> bool:
    """Browsers give the camera to pages only over HTTPS or on the phone's own localhost."""
    return request.is_secure or is_loopback(urlsplit(request.host_url).hostname)


@blueprint.route("/scan")
def scan():
    attendee = _require_me()
    return render_template(
        "scan.html",
        attendee=attendee,
        event=attendee.event,
        secure=_secure_context(),
        base_url=public_base_url(request.host_url),
    )


# Built once: building a statement with its eager loads cost about as much
# CPU as running it (bound parameters make it reusable; SQLAlchemy caches
# its SQL either way).
_KEY_WITH_EVENT = (
    db.select(Key)
    .options(joinedload(Key.event), joinedload(Key.user_ids), joinedload(Key.attendee))
    .where(Key.event_id == bindparam("event_id"), Key.fingerprint == bindparam("fingerprint"))
)


def _key_or_none(event: Event | str, fingerprint: str) -> Key | None:
    """The key with this fingerprint in `event` (an Event or its id), with its
    event, user IDs and owner loaded in the same query (the key page and a
    verification read all four)."""
    event_id = event if isinstance(event, str) else event.id
    found = db.session.scalars(
        _KEY_WITH_EVENT,
        {"event_id": event_id, "fingerprint": registration.normalize_fingerprint(fingerprint)},
    )
    # One row per user ID: unique() folds them into the one key.
    return found.unique().one_or_none()


def _event_and_key(event_id: str, fingerprint: str) -> tuple[Event, Key | None]:
    """The event (404 when there is none) and its key with this fingerprint,
    or None: one query when the key exists, as it does for every scan."""
    found = _key_or_none(event_id, fingerprint)
    if found is not None:
        return found.event, found
    return _event_or_404(event_id), None


@blueprint.route("/e/<event_id>/k/<fingerprint>")
def key(event_id: str, fingerprint: str):
    event, found = _event_and_key(event_id, fingerprint)
    if found is None:
        return render_template("key_unknown.html", event=event, fingerprint=fingerprint), 404
    return _key_page(event, found)


def _key_page(event: Event, key: Key, forms: dict | None = None, status: int = 200):
    """The key page; `forms` holds a submitted VerificationForm by user ID id,
    shown again with its choices and picks (a refused or incomplete POST)."""
    me = current_attendee()
    mine = {}
    if me is not None and me.event_id == event.id:
        # Only the signer's own verifications of this key: never anyone else's (T3).
        for v in verification.active_verifications_of_key(me, key):
            mine.setdefault(v.user_id_id, []).append(v)
    forms = forms or {}
    # Each user ID's choices as plain data: the template writes the radio
    # buttons itself (a WTForms form per user ID, built and rendered field by
    # field, was a quarter of the page's CPU on every scan).
    choices = {}
    for uid in key.user_ids:
        form = forms.get(uid.id)
        if form is None:
            choices[uid.id] = (verification.contexts_offered(event, uid), None, None)
        else:
            offered = tuple(value for value, _label in form.context.choices)
            choices[uid.id] = (offered, form.context.data, form.basis.data)
    return render_template(
        "key.html",
        event=event,
        key=key,
        me=me,
        mine=mine,
        choices=choices,
        bases=rules.BASES,
        own_key=me is not None and me.id == key.attendee_id,
        owner_confirmed=key.attendee.entry_confirmed_at is not None,
        verifying=event.state == "verifying",
        context_labels=rules.CONTEXT_LABELS,
    ), status


def _verification_form(contexts, prefix: str) -> VerificationForm:
    form = VerificationForm(prefix=prefix)
    form.context.choices = [(c, c) for c in contexts]
    form.basis.choices = [(b.id, b.label) for b in rules.BASES.values()]
    return form


@blueprint.route("/e/<event_id>/k/<fingerprint>/u/<int:uid_id>", methods=["POST"])
def verify(event_id: str, fingerprint: str, uid_id: int):
    """Record one verification of one user ID (P2): there is no other way in."""
    event, key = _event_and_key(event_id, fingerprint)
    user_id = db.session.get(UserID, uid_id)
    if key is None or user_id is None or user_id.key_id != key.id:
        abort(404)
    # The signer is always the session's own attendee: no parameter can
    # name anyone else (T2).
    me = _require_me()
    limited = _too_fast(
        f"verify:{me.id}", 60, 60, more=[(f"verify-address:{request.remote_addr}", 240, 60)]
    )
    if limited:
        return limited
    form = _verification_form(verification.event_contexts(event), prefix=f"u{uid_id}")
    if not form.validate_on_submit():
        flash(_("Choose a context and say how you know this person."), "error")
        return _key_page(event, key, {uid_id: form}, 400)
    recorded, refusal = verification.record(
        me, me, user_id, form.context.data, form.basis.data, _now()
    )
    if refusal:
        flash(f"{refusal.rule}: {refusal_message(refusal)}", "refusal")
        return _key_page(event, key, {uid_id: form}, 409)
    flash(
        _(
            "Recorded: you verified {uid} ({context}).",
            uid=user_id.text,
            context=_(recorded.context),
        ),
        "ok",
    )
    return redirect(url_for("attendee.key", event_id=event.id, fingerprint=key.fingerprint))


@blueprint.route("/me/verifications")
def my_verifications():
    attendee = _require_me()
    return render_template(
        "verifications.html",
        attendee=attendee,
        event=attendee.event,
        verifications=verification.active_verifications(attendee),
        withdraw_form=ButtonForm(),
    )


@blueprint.route("/v/<int:verification_id>/withdraw", methods=["POST"])
def withdraw(verification_id: int):
    me = current_attendee()
    found = db.session.get(Verification, verification_id)
    # Someone else's verification looks exactly like a missing one (T3, P5).
    if found is None or me is None or found.signer_id != me.id:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    refusal = verification.withdraw(found, me, _now())
    if refusal:
        flash(f"{refusal.rule}: {refusal_message(refusal)}", "refusal")
    else:
        flash(_("Withdrawn: it will not become a certification."), "ok")
    return redirect(local_path(request.form.get("next"), url_for("attendee.my_verifications")))


@blueprint.app_context_processor
def phone_context():
    return {"me": current_attendee()} if has_request_context() else {}
