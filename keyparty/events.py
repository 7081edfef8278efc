"""Events: create them, move them through their lifecycle, freeze the list.

The web pages and the command line call these same functions, so a button
on the host page and its command always do the same thing.
"""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from datetime import UTC
from datetime import date
from datetime import datetime
from pathlib import Path

from flask import Response
from flask import current_app
from sqlalchemy import func
from sqlalchemy import select

from keyparty import exports
from keyparty import homes
from keyparty import openpgp
from keyparty import report
from keyparty import verification
from keyparty.extensions import db
from keyparty.gpg import GnuPGHome
from keyparty.models import Attendee
from keyparty.models import Certification
from keyparty.models import Event
from keyparty.models import Key
from keyparty.models import ReportDrawing
from keyparty.models import SigningPairing
from keyparty.models import Verification
from keyparty.partylist import ListEntry
from keyparty.partylist import digests
from keyparty.partylist import render_party_list
from keyparty.registration import normalize_fingerprint
from keyparty.rules import STEPS
from keyparty.rules import CertificationSettings
from keyparty.rules import Pace
from keyparty.rules import Refusal
from keyparty.rules import check_certification_settings
from keyparty.rules import check_contexts_change
from keyparty.rules import check_freeze
from keyparty.rules import check_pace_settings
from keyparty.rules import check_policy_url
from keyparty.rules import check_step
from keyparty.translatable import N_


class EventNotFound(LookupError):
    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"No event {event_id!r}. `keyparty event list` shows the events on this instance."
        )


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40]


def create_event(name: str, event_date: date | None = None, draft: bool = False) -> Event:
    """A new event, open for registration unless `draft`. Its id is a slug of its name."""
    name = name.strip()
    if not name:
        raise ValueError(
            "An event needs a name, for example `keyparty event create 'FOSDEM 2027'`."
        )
    base = slugify(name) or "event"
    taken = set(db.session.scalars(select(Event.id).where(Event.id.like(f"{base}%"))))
    event_id = base
    n = 2
    while event_id in taken:
        event_id = f"{base}-{n}"
        n += 1
    event = Event(
        id=event_id, name=name, date=event_date, state="draft" if draft else "registration"
    )
    db.session.add(event)
    db.session.commit()
    event_home(event)
    return event


def get_event(event_id: str) -> Event:
    event = db.session.get(Event, event_id)
    if event is None:
        raise EventNotFound(event_id)
    return event


def event_home(event: Event) -> GnuPGHome:
    """The event's GnuPG home: a working copy of the keys stored in the database,
    rebuilt from it when missing or built at another generation of the keys
    (a copied instance folder, another server process or machine)."""
    path = Path(current_app.instance_path) / "gnupg" / event.id
    home = GnuPGHome(path, binary=current_app.config["GPG_BINARY"])
    keys_generation, _ = homes.generations(event)
    if homes.built_at(home) != f"k{keys_generation}":
        rebuild_home(event, home)
    return home


def event_files(event: Event) -> Path:
    """Where generated files (the party list) are written."""
    path = Path(current_app.instance_path) / "events" / event.id
    path.mkdir(parents=True, exist_ok=True)
    return path


def take_step(event: Event, step: str, now: datetime | None = None) -> Refusal | None:
    """Move the event one step along its lifecycle, or say why not."""
    refusal = check_step(event.state, step)
    if refusal is None and step == "freeze":
        refusal = check_freeze(len(event.keys))
    if refusal:
        return refusal
    if step == "freeze":
        freeze(event, now or datetime.now(UTC))
    if step == "start-signing":
        # D3: the signing window starts now, not at the event's date; in whole
        # seconds, as OpenPGP signature times are.
        started = (now or datetime.now(UTC)).replace(microsecond=0, tzinfo=None)
        event.signing_started_at = started
    event.state = STEPS[step][1]
    db.session.commit()
    return None


def freeze(event: Event, now: datetime) -> None:
    """Fix the party list: numbers, the exact text, its two digests, the file."""
    for number, key in enumerate(event.keys, 1):
        key.list_number = number
    text = render_party_list(
        event.name, event.id, event.date, now.replace(tzinfo=None), party_list_entries(event)
    )
    sums = digests(text)
    event.frozen_at = now.replace(tzinfo=None)
    event.partylist = text
    event.partylist_sha256 = sums["SHA256"]
    event.partylist_sha512 = sums["SHA512"]
    write_party_list(event, event_files(event) / "partylist.txt")


def _usage(capabilities: str) -> str:
    """The primary key's own usage in the order gpg prints it, e.g. "SC" from "scESC"."""
    own = {c.upper() for c in capabilities if c.islower()}
    return "".join(c for c in "SCEA" if c in own)


def party_list_entries(event: Event) -> list[ListEntry]:
    """The list's entries; usage flags are read from the event's GnuPG home."""
    fingerprints = [key.fingerprint for key in event.keys]
    usage = {
        record.fingerprint: _usage(record.capabilities)
        for record in event_home(event).list_keys(fingerprints)
    }
    return [
        ListEntry(
            number=key.list_number,
            fingerprint=key.fingerprint,
            algorithm=key.algorithm,
            created=key.created.date(),
            expires=key.expires.date() if key.expires else None,
            user_ids=tuple(uid.text for uid in key.user_ids),
            usage=usage.get(key.fingerprint, ""),
        )
        for key in event.keys
    ]


def write_party_list(event: Event, path: Path) -> Path:
    """Write exactly the frozen bytes: `sha256sum` of the file is the published digest."""
    if event.partylist is None:
        raise ValueError(f"The party list of {event.id} is not frozen yet: `keyparty freeze`.")
    path.write_bytes(event.partylist.encode("utf-8"))
    return path


def party_list_name(event: Event) -> str:
    """The file name every download of the list carries: partylist-EVENT.txt."""
    return f"partylist-{event.id}.txt"


def party_list_download(event: Event) -> Response:
    """The frozen list as a download: exactly the frozen bytes, whoever asks
    (host page, phone, public event page), so every copy has the read-aloud digest."""
    if event.partylist is None:
        raise ValueError(f"The party list of {event.id} is not frozen yet: `keyparty freeze`.")
    return Response(
        event.partylist.encode("utf-8"),
        headers={
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{party_list_name(event)}"',
            # A proxy or browser must not re-encode or compress what is hashed.
            "Cache-Control": "no-transform",
            "X-Content-Type-Options": "nosniff",
        },
    )


def set_publish_list(event: Event, publish: bool) -> None:
    """Offer (or stop offering) the frozen list on the public event page."""
    event.publish_list = publish
    db.session.commit()


def counts(event: Event) -> dict[str, int]:
    """Event-wide totals only (P5: nothing per attendee)."""
    return {
        "attendees": db.session.scalar(
            select(func.count()).select_from(Attendee).where(Attendee.event_id == event.id)
        ),
        "keys": db.session.scalar(
            select(func.count()).select_from(Key).where(Key.event_id == event.id)
        ),
    }


# The event-wide totals of the host page and `keyparty status`, in the order shown
# (N_: the page shows each name translated).
TOTALS = (
    N_("attendees"),
    N_("keys"),
    N_("entries confirmed"),
    N_("entries unconfirmed"),
    N_("verifications"),
    N_("withdrawn"),
    N_("certifications accepted"),
    N_("certifications published"),
    N_("refusals"),
)


def summary(event: Event) -> dict[str, int]:
    """Event-wide totals, keyed by the names in TOTALS (P5: nothing per attendee).

    One function for the host page and `keyparty status`, so both say the same.
    """
    counted = counts(event)
    verified = verification.totals(event)
    certified = dict(
        db.session.execute(
            select(Certification.status, func.count())
            .where(Certification.event_id == event.id)
            .group_by(Certification.status)
        ).all()
    )
    published = db.session.scalar(
        select(func.count())
        .select_from(Certification)
        .where(
            Certification.event_id == event.id,
            Certification.status == "accepted",
            Certification.owner_decision == "accepted",
        )
    )
    confirmed = verified["confirmed entries"]
    return {
        "attendees": counted["attendees"],
        "keys": counted["keys"],
        "entries confirmed": confirmed,
        "entries unconfirmed": counted["attendees"] - confirmed,
        "verifications": verified["verifications"],
        "withdrawn": verified["withdrawn"],
        "certifications accepted": certified.get("accepted", 0),
        "certifications published": published,
        "refusals": sum(verified["refusals"].values()),
    }


def unconfirmed_attendees(event: Event) -> list[Attendee]:
    """Attendees who have not confirmed their own entry on the frozen list (T4), by name."""
    return sorted(
        (a for a in event.attendees if a.entry_confirmed_at is None), key=lambda a: a.name
    )


def rebuild_home(event: Event, home: GnuPGHome | None = None) -> int:
    """Make the event's working GnuPG home again from the database: every key
    and every certification intake accepted. Returns the key count.

    (`consistency.rebuild` rebuilds the published home too.)
    """
    home = home or GnuPGHome(
        Path(current_app.instance_path) / "gnupg" / event.id,
        binary=current_app.config["GPG_BINARY"],
    )
    accepted = db.session.scalars(
        select(Certification).where(
            Certification.event_id == event.id, Certification.status == "accepted"
        )
    ).all()
    with home.staged() as stage:
        # The generation first: keys committed meanwhile make the home look
        # older than it is (rebuilt once more), never newer.
        keys_generation, _ = homes.generations(event)
        for name in ("pubring.kbx", "trustdb.gpg"):
            (stage.path / name).unlink(missing_ok=True)
        armored = db.session.scalars(select(Key.armored).where(Key.event_id == event.id)).all()
        pieces = [openpgp.dearmor(text.encode()) for text in armored]
        pieces += (openpgp.dearmor(c.armored.encode()) for c in accepted)
        if pieces:
            stage.import_blocks(openpgp.group_by_key(pieces), options=None)
        homes.mark_built(stage, f"k{keys_generation}")
        stage.commit()
    return len(armored)


def configure(
    event: Event,
    contexts: str | None = None,
    pace_gap: int | None = None,
    pace_window: int | None = None,
    pace_max: int | None = None,
) -> Refusal | None:
    """Set the event's contexts (C1) and pace (P4); nothing changes if refused.

    Contexts are fixed at the freeze (C1): a different list after it is refused.
    """
    names = [c.strip() for c in (contexts or event.contexts).split(",") if c.strip()]
    if not names or any(not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", c) for c in names):
        return Refusal(
            "C1",
            "Contexts are short lower-case names separated by commas, e.g. identity,email.",
        )
    refusal = check_contexts_change(event.state, event.contexts.split(","), names)
    if refusal:
        return refusal
    pace = Pace(
        pace_gap if pace_gap is not None else event.pace_min_gap_seconds,
        pace_window if pace_window is not None else event.pace_window_seconds,
        pace_max if pace_max is not None else event.pace_max_in_window,
    )
    refusal = check_pace_settings(pace)
    if refusal:
        return refusal
    event.contexts = ",".join(names)
    event.pace_min_gap_seconds = pace.min_gap_seconds
    event.pace_window_seconds = pace.window_seconds
    event.pace_max_in_window = pace.max_in_window
    db.session.commit()
    return None


def new_join_link(event: Event, fingerprint: str) -> str:
    """A fresh join token for the attendee of this key (a lost phone): every
    older session, join link and signing token of theirs ends (O2)."""
    from keyparty import proof

    return proof.new_join_link(find_key(event, fingerprint).attendee)


def find_key(event: Event, fingerprint: str) -> Key:
    """The key of this event with this fingerprint; LookupError naming it if none."""
    wanted = normalize_fingerprint(fingerprint)
    key = next((k for k in event.keys if k.fingerprint == wanted), None)
    if key is None:
        raise LookupError(f"No key {wanted} at {event.id}; `keyparty status {event.id}`.")
    return key


def remove_key(event: Event, fingerprint: str) -> tuple[str, str, bool]:
    """Host clean-up before the freeze: remove a key, and its attendee when
    it was their last. Returns the fingerprint, the attendee's name and
    whether the attendee went too.

    Raises LookupError (no such key) or ValueError (the list is frozen).
    """
    key = find_key(event, fingerprint)
    if event.state not in ("draft", "registration"):
        raise ValueError(
            f"The party list of {event.id} is frozen ({event.state}): nothing can be removed "
            "from it, since everyone checks it against the digests read aloud."
        )
    attendee = key.attendee
    removed = (key.fingerprint, attendee.name)
    last = len(attendee.keys) == 1
    db.session.delete(key)
    db.session.flush()
    if last:
        db.session.delete(attendee)
    db.session.commit()
    db.session.expire(event)
    # The database is the record: both GnuPG homes (working and published) follow it.
    from keyparty import consistency

    consistency.rebuild(event)
    return (*removed, last)


def purge(event: Event) -> dict[str, int]:
    """After a closed event: keep the exports and event-wide totals, delete
    the personal data (names, emails, tokens, user IDs, verifications) and
    the event's GnuPG homes. Returns what was deleted."""
    if event.state != "closed":
        raise ValueError(f"Purge only a closed event; {event.id} is {event.state}.")
    final = event_files(event) / "final"
    final.mkdir(parents=True, exist_ok=True)
    exports.write_keyring(event, final / "keyring.asc")
    exports.write_per_key(event, final / "per-key")
    (final / "totals.json").write_text(
        json.dumps(report.totals(event), indent=2, ensure_ascii=False)
    )
    deleted = {
        "attendees": len(event.attendees),
        "keys": len(event.keys),
        "certifications": db.session.query(Certification).filter_by(event_id=event.id).delete(),
        "verifications": db.session.query(Verification).filter_by(event_id=event.id).delete(),
    }
    db.session.query(SigningPairing).filter_by(event_id=event.id).delete()
    # The report's picture carries the attendees' names.
    db.session.query(ReportDrawing).filter_by(event_id=event.id).delete()
    for key in list(event.keys):
        db.session.delete(key)
    db.session.flush()
    for attendee in list(event.attendees):
        db.session.delete(attendee)
    event.partylist = None
    db.session.commit()
    homes = Path(current_app.instance_path) / "gnupg"
    for home in (homes / event.id, homes / f"{event.id}.published"):
        shutil.rmtree(home, ignore_errors=True)
    deleted["gnupg homes"] = 2
    # Every generated file but the kept exports: the party list, the outbox
    # of delivery mails (addresses, names), anything else written here.
    files = event_files(event)
    removed = 0
    for path in sorted(files.iterdir()):
        if path.name == "final":
            continue
        removed += sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 1
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    deleted["generated files"] = removed
    forget_deleted_rows()
    return deleted


def forget_deleted_rows() -> None:
    """Make deleted rows unreadable from the files: SQLite keeps old pages in
    its write-ahead log and free pages until they are reused. Checkpoint the
    log into the database and truncate it, rewrite the database (VACUUM), and
    truncate the log again. PostgreSQL: VACUUM FULL is the host's job."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        return
    db.session.remove()
    with engine.connect() as connection:
        raw = connection.connection.dbapi_connection
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.execute("VACUUM")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def suggested_policy_url(event: Event) -> str | None:
    """The event's policy page under KEYPARTY_PUBLIC_URL, when that is a public address.

    Never the address a request happened to reach: a LAN address written into
    certifications would point nowhere after the event (C1).
    """
    public = (current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    if not public:
        return None
    url = f"{public}/e/{event.id}/policy"
    return None if check_policy_url(url) else url


def policy_url(event: Event) -> str | None:
    """The policy URL certifications of this event carry: the host's, the suggested one, or none."""
    return event.policy_url or suggested_policy_url(event)


def configure_certification(
    event: Event,
    expiry_days: int | None = None,
    cap_days: int | None = None,
    window_days: int | None = None,
    notation_domain: str | None = None,
    policy_url: str | None = None,
    commit: bool = True,
) -> Refusal | None:
    """Set expiry and cap (D1), signing window (D3), notation domain and policy URL (C1).

    None leaves a setting as it is; a policy_url of "" removes it. Only before
    the freeze; nothing changes if refused. With commit=False the caller
    commits (or rolls back, with other settings refused).
    """
    wanted = CertificationSettings(
        expiry_days if expiry_days is not None else event.cert_expiry_days,
        cap_days if cap_days is not None else event.cert_expiry_cap_days,
        window_days if window_days is not None else event.signing_window_days,
        (notation_domain if notation_domain is not None else event.notation_domain).strip(),
        (policy_url.strip() or None) if policy_url is not None else event.policy_url,
    )
    refusal = check_certification_settings(event.state, wanted)
    if refusal:
        return refusal
    event.cert_expiry_days = wanted.expiry_days
    event.cert_expiry_cap_days = wanted.cap_days
    event.signing_window_days = wanted.window_days
    event.notation_domain = wanted.notation_domain
    event.policy_url = wanted.policy_url
    if commit:
        db.session.commit()
    return None
