"""The `keyparty` command line. Each host command does what its button does."""

from __future__ import annotations

import sys
from collections import Counter
from functools import partial
from pathlib import Path

import click
from flask import current_app
from flask import render_template
from flask.cli import FlaskGroup
from flask.cli import with_appcontext

from keyparty import consistency
from keyparty import create_app
from keyparty import delivery
from keyparty import events
from keyparty import exports
from keyparty import graphviz
from keyparty import intake
from keyparty import migrations
from keyparty import proof
from keyparty import registration
from keyparty import report
from keyparty import serving
from keyparty import signing
from keyparty import verification
from keyparty.badges import badges_for
from keyparty.config import DEFAULT_PORT
from keyparty.escaping import for_terminal
from keyparty.extensions import db
from keyparty.gpg import GnuPGError
from keyparty.gpg import GnuPGHome
from keyparty.gpg import default_gnupg_home
from keyparty.migrations import SchemaMismatch
from keyparty.network import exposure_warning
from keyparty.network import lan_addresses
from keyparty.network import public_base_url
from keyparty.partylist import group_digest
from keyparty.rules import STEPS
from keyparty.storage import connection_shortfall
from keyparty.storage import is_disk_full


def _event(event_id: str):
    try:
        return events.get_event(event_id)
    except events.EventNotFound as missing:
        raise click.ClickException(str(missing)) from None


def _base_url() -> str:
    return public_base_url(None, DEFAULT_PORT)


def _print_digests(event) -> None:
    for algorithm, value in (
        ("SHA256", event.partylist_sha256),
        ("SHA512", event.partylist_sha512),
    ):
        click.echo(f"{algorithm}: {value}")
    click.echo("Read aloud: SHA256 " + " ".join(group_digest(event.partylist_sha256)))


@click.group("event", help="Create and list events.")
def event_group() -> None:
    pass


@event_group.command("create")
@click.argument("name")
@click.option("--date", "event_date", type=click.DateTime(["%Y-%m-%d"]), help="YYYY-MM-DD")
@click.option(
    "--draft", is_flag=True, help="Keep registration closed until `keyparty step EVENT open`."
)
@with_appcontext
def event_create(name: str, event_date, draft: bool) -> None:
    """Create an event; the last line printed is its id (EVENT in other commands)."""
    try:
        event = events.create_event(name, event_date.date() if event_date else None, draft)
    except ValueError as problem:
        raise click.ClickException(str(problem)) from None
    _say(f"Created {event.name!r} ({event.state}).")
    click.echo(f"Registration page: {_base_url()}/e/{event.id}/register")
    click.echo(event.id)


@event_group.command("list")
@with_appcontext
def event_list() -> None:
    """List the events on this instance."""
    from keyparty.extensions import db
    from keyparty.models import Event

    for event in db.session.scalars(db.select(Event).order_by(Event.created_at)):
        fields = (event.id, event.state, str(event.date or "-"), event.name)
        click.echo("\t".join(for_terminal(f) for f in fields))


@event_group.command("set")
@click.argument("event_id", metavar="EVENT")
@click.option(
    "--contexts",
    help="C1: comma-separated contexts, e.g. identity,email,pseudonym (fixed at the freeze)",
)
@click.option("--pace-gap", type=int, help="P4: shortest gap between two people, seconds")
@click.option("--pace-window", type=int, help="P4: the pace window, seconds")
@click.option("--pace-max", type=int, help="P4: most people verified in one window")
@click.option("--expiry-days", type=int, help="D1: certifications expire after N days")
@click.option("--expiry-cap-days", type=int, help="D1: the longest expiry accepted, days")
@click.option("--signing-window-days", type=int, help="D3: days after the event to certify in")
@click.option("--notation-domain", help="C1: notations are written as context@DOMAIN")
@click.option(
    "--policy-url",
    help="C1: a public address written into every certification ('' for none)",
)
@click.option(
    "--publish-list/--no-publish-list",
    default=None,
    help="Offer the frozen party list on the public event page /e/EVENT.",
)
@with_appcontext
def event_set(
    event_id: str,
    contexts,
    pace_gap,
    pace_window,
    pace_max,
    expiry_days,
    expiry_cap_days,
    signing_window_days,
    notation_domain,
    policy_url,
    publish_list,
) -> None:
    """Change an event's contexts (C1), pace (P4), whether its list is public and,
    until the freeze, its certification settings: expiry and cap (D1), signing
    window (D3), notation domain and policy URL (C1). Nothing changes when anything
    is refused."""
    event = _event(event_id)
    certification = (expiry_days, expiry_cap_days, signing_window_days, notation_domain, policy_url)
    refusal = None
    if any(value is not None for value in certification):
        refusal = events.configure_certification(event, *certification, commit=False)
    if refusal is None and any(v is not None for v in (contexts, pace_gap, pace_window, pace_max)):
        refusal = events.configure(event, contexts, pace_gap, pace_window, pace_max)
    if refusal:
        db.session.rollback()  # nothing changes, not even a setting that passed
        raise click.ClickException(str(refusal))
    db.session.commit()
    if publish_list is not None:
        events.set_publish_list(event, publish_list)
        click.echo(
            f"{event.id}: the party list is published at {_base_url()}/e/{event.id} once frozen"
            if publish_list
            else f"{event.id}: the party list is not on the public event page"
        )
    click.echo(
        f"{event.id}: contexts {event.contexts}; pace: {event.pace_min_gap_seconds} s apart, "
        f"at most {event.pace_max_in_window} in {event.pace_window_seconds} s"
    )
    click.echo(
        f"certifications: expire after {event.cert_expiry_days} days "
        f"(at most {event.cert_expiry_cap_days}); made within {event.signing_window_days} days "
        f"after the event; notations context@{event.notation_domain}; policy URL "
        f"{events.policy_url(event) or 'none'}"
    )


@click.command("relink")
@click.argument("event_id", metavar="EVENT")
@click.argument("fingerprint")
@with_appcontext
def relink_command(event_id: str, fingerprint: str) -> None:
    """Issue a new join link for the attendee of FINGERPRINT, to hand over in person.

    For an attendee who lost the phone their link was opened on. Their old
    link, every session and their signing token end. Whoever opens the new
    link acts for the key: give it to its holder alone (or let them re-join
    at /e/EVENT/rejoin by proving they hold the key).
    """
    event = _event(event_id)
    try:
        token = events.new_join_link(event, fingerprint)
    except LookupError as missing:
        raise click.ClickException(str(missing)) from None
    click.echo(f"join link (give it to this attendee only): {_base_url()}/join/{token}")


@click.command("import")
@click.argument("event_id", metavar="EVENT")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--hand-out",
    is_flag=True,
    help="Print plain join links to give each person face to face, instead of sending "
    "them encrypted to their keys.",
)
@with_appcontext
def import_command(event_id: str, files: tuple[str, ...], hand_out: bool) -> None:
    """Register keys from keyring files (armored or binary) and CSV sign-up sheets.

    A CSV (columns name, email, fingerprint) names the attendee of each key
    given in the other files. Each new key's join link goes out encrypted to
    that key (O2): mailed to its email user IDs when SMTP is configured,
    else written into the event's outbox (.eml files and one armored
    message per key). --hand-out prints the links instead.
    """
    event = _event(event_id)
    try:
        inputs, signups = registration.sort_files([(n, Path(n).read_bytes()) for n in files])
    except ValueError as problem:
        raise click.ClickException(for_terminal(str(problem))) from None
    result = registration.register_keys(event, inputs, events.event_home(event), signups=signups)
    base = _base_url()
    links = proof.import_links(result)
    linked = {key.fingerprint: token for key, token in links}
    for accepted in result.accepted:
        key = accepted.key
        name = key.attendee.name
        _say(f"{'updated ' if accepted.updated else 'accepted'} {key.fingerprint}  {name}")
        if key.fingerprint in linked:
            if hand_out:
                link = proof.join_url(base, linked[key.fingerprint])
                click.echo(f"         join link (hand it to this person only): {link}")
            elif accepted.updated:
                click.echo("         not proven yet: a new join link goes to the key's holder")
        elif not accepted.updated:
            click.echo("         another key of this attendee: their join link stays the same")
        for warning in accepted.warnings:
            _say(f"         warning: {warning.message}")
    failed = bool(result.rejected)
    if hand_out and links:
        click.echo(
            "Hand each join link to its person face to face: whoever opens a link acts for "
            "that key, so it proves nothing unless you know who got it (O2)."
        )
    elif links:
        failed |= _send_join_links(event, links, base)
    for rejected in result.rejected:
        _say(f"refused  {rejected.source}: {rejected.message}", err=True)
    registered = {a.key.fingerprint for a in result.accepted}
    for fingerprint, signup in signups.items():
        if fingerprint not in registered:
            _say(
                f"missing  {signup.name} ({fingerprint}): no key with this fingerprint was "
                "given; add the key file to the command.",
                err=True,
            )
    click.echo(f"{len(result.accepted)} accepted, {len(result.rejected)} refused")
    if failed:
        sys.exit(1)


def _send_join_links(event, links: list, base: str) -> bool:
    """Send the links encrypted; say where each went. True if any failed."""
    outbox = events.event_files(event) / "outbox"
    try:
        sent = delivery.send_join_links(
            event, links, base, delivery.smtp_settings(current_app.config), outbox
        )
    except delivery.DeliveryError as problem:
        raise click.ClickException(
            f"{problem} The keys are registered; send their links with "
            f"`keyparty relink {event.id} FINGERPRINT` or run the import again with --hand-out."
        ) from None
    for fingerprint in sent.sent:
        click.echo(f"mailed   {fingerprint}: its join link, encrypted to the key")
    for path in sent.written:
        click.echo(f"wrote    {path}: its join link, encrypted (send it: sendmail -t < FILE)")
    for fingerprint in sent.no_address:
        click.echo(
            f"no mail  {fingerprint}: no email user ID; give its person "
            f"{outbox / f'join-{fingerprint}.asc'} (encrypted to the key)"
        )
    for fingerprint in sent.sign_only:
        click.echo(
            f"no link  {fingerprint}: nothing can be encrypted to this key; its holder proves "
            f"possession by signing on {base}/e/{event.id}/rejoin (or hand the link over with "
            f"`keyparty relink {event.id} {fingerprint}`)"
        )
    for fingerprint, reason in sent.refused:
        click.echo(f"not sent {fingerprint}: {for_terminal(reason)}", err=True)
    click.echo(
        f"Join links left encrypted to their keys: {len(sent.armored)} armored message(s) in "
        f"{outbox}. Whoever decrypts one and opens its link proves they hold the key (O2)."
    )
    return bool(sent.refused)


@click.command("step")
@click.argument("event_id", metavar="EVENT")
@click.argument("step", type=click.Choice(list(STEPS)))
@click.option("--yes", is_flag=True, help="Do not ask (freeze with unproven entries).")
@with_appcontext
def step_command(event_id: str, step: str, yes: bool = False) -> None:
    """Move EVENT one step along: open, freeze, start-verifying, cool-off, start-signing, close."""
    event = _event(event_id)
    if step == "freeze" and event.state == "registration":
        _confirm_unproven(event, yes)
    refusal = events.take_step(event, step)
    if refusal:
        raise click.ClickException(refusal.message)
    click.echo(f"{event.id} is now {event.state}.")
    if step == "freeze":
        click.echo(f"Party list: {events.event_files(event) / 'partylist.txt'}")
        _print_digests(event)
        click.echo(
            f"Every attendee downloads it on their phone page; to mail it to each of them: "
            f"keyparty mail-list {event.id}"
        )


def _confirm_unproven(event, yes: bool) -> None:
    """O2: the freeze names the entries whose holder has not proven possession."""
    waiting = proof.unproven(event)
    if not waiting:
        return
    click.echo(f"{len(waiting)} entries are not proven yet (O2): nobody has shown they hold")
    click.echo("these keys. Their owners can still prove it at the event (re-join page);")
    click.echo("until they do, nobody can verify them (T4).")
    for attendee in waiting:
        for key in attendee.keys:
            click.echo(f"  {for_terminal(attendee.name)}  {key.fingerprint}")
    if yes:
        return
    if not click.confirm("Freeze the list with them on it?", default=False):
        raise click.ClickException(
            f"Not frozen. Remove an entry with `keyparty remove {event.id} FINGERPRINT`, "
            "or freeze anyway with --yes."
        )


@click.command("freeze")
@click.argument("event_id", metavar="EVENT")
@click.option("--yes", is_flag=True, help="Do not ask (freeze with unproven entries).")
@with_appcontext
def freeze_command(event_id: str, yes: bool) -> None:
    """Freeze the party list and print its SHA256 and SHA512 digests.

    Entries whose holder has not proven possession are named first, and
    the host is asked (--yes for scripts).
    """
    step_command.callback(event_id, "freeze", yes)


@click.command("remove")
@click.argument("event_id", metavar="EVENT")
@click.argument("fingerprint")
@with_appcontext
def remove_command(event_id: str, fingerprint: str) -> None:
    """Remove a key before the freeze (and its attendee, if it was their last)."""
    event = _event(event_id)
    try:
        removed, name, attendee_gone = events.remove_key(event, fingerprint)
    except (LookupError, ValueError) as problem:
        raise click.ClickException(str(problem).strip("'\"")) from None
    click.echo(f"removed  {removed}  {for_terminal(name)}")
    if attendee_gone:
        click.echo("         it was their only key: the attendee is removed too")


@click.command("partylist")
@click.argument("event_id", metavar="EVENT")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@with_appcontext
def partylist_command(event_id: str, output: str) -> None:
    """Write the frozen party list; `sha256sum FILE` prints the published digest."""
    event = _event(event_id)
    try:
        events.write_party_list(event, Path(output))
    except ValueError as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(f"Wrote {output}")
    _print_digests(event)


@click.command("badges")
@click.argument("event_id", metavar="EVENT")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
@with_appcontext
def badges_command(event_id: str, output: str) -> None:
    """Write the printable badge sheet (HTML, A4) with both QR codes per key."""
    event = _event(event_id)
    page = render_template("badges.html", event=event, badges=badges_for(event, _base_url()))
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"Wrote {output}: {len(event.keys)} badges. Open it in a browser and print.")


@click.command("status")
@click.argument("event_id", metavar="EVENT")
@with_appcontext
def status_command(event_id: str) -> None:
    """Show an event's state, totals and digests."""
    event = _event(event_id)
    _say(f"{event.name} ({event.id})")
    click.echo(f"state: {event.state}")
    click.echo(f"date: {event.date or 'not set'}")
    # The same totals, in the same order, as the host page (events.summary).
    for name, value in events.summary(event).items():
        click.echo(f"{name}: {value}")
    refusals = verification.totals(event)["refusals"]
    if refusals:
        click.echo("refusals by rule: " + ", ".join(f"{r} {n}" for r, n in refusals.items()))
    # By name, a status of each entry (no count per attendee, P5).
    for label, attendees in (
        ("not proven yet (O2)", proof.unproven(event)),
        ("not confirmed yet (T4)", events.unconfirmed_attendees(event) if event.frozen_at else []),
    ):
        if attendees:
            names = ", ".join(for_terminal(a.name) for a in attendees)
            click.echo(f"{label}: {names}")
    if event.partylist_sha256:
        _print_digests(event)


def _events_named(event_id: str | None) -> list:
    return [_event(event_id)] if event_id else consistency.all_events()


@click.command("rebuild-home")
@click.argument("event_id", metavar="[EVENT]", required=False)
@with_appcontext
def rebuild_home_command(event_id: str | None) -> None:
    """Rebuild both GnuPG homes of EVENT (or of every event) from the database.

    The working home gets every key and every accepted certification, the
    published home every key and the certifications their owners accepted.
    Folders a crash left behind (.stage-*, .scratch-*) are removed.
    """
    removed = consistency.clear_leftovers(older_than_seconds=600)
    if removed:
        click.echo(f"Removed {removed} folders left by an interrupted change.")
    for event in _events_named(event_id):
        held = consistency.rebuild(event)
        click.echo(
            f"Rebuilt the GnuPG homes of {event.id}: {held['keys']} keys, "
            f"{held['accepted certifications']} accepted certifications, "
            f"{held['published certifications']} published."
        )


@click.command("check")
@click.argument("event_id", metavar="[EVENT]", required=False)
@with_appcontext
def check_command(event_id: str | None) -> None:
    """Compare the GnuPG homes of EVENT (or of every event) with the database.

    Says every key, user ID and certification that differs; exits 1 when
    anything does (`keyparty rebuild-home EVENT` repairs it).
    """
    differing = 0
    for event in _events_named(event_id):
        differences = consistency.check(event)
        for difference in differences:
            click.echo(f"{event.id}: {difference}")
        if differences:
            differing += 1
        else:
            click.echo(f"{event.id}: both GnuPG homes match the database.")
    if differing:
        click.echo(
            f"{differing} event(s) differ from the database: `keyparty rebuild-home EVENT`.",
            err=True,
        )
        sys.exit(1)


def _check_and_repair_homes() -> None:
    """At start: clear crash leftovers, rebuild every home that differs, say so."""
    removed = consistency.clear_leftovers()
    if removed:
        click.echo(f"Removed {removed} folders left by an interrupted change.", err=True)
    for event in consistency.all_events():
        differences = consistency.check(event)
        if differences:
            click.echo(
                f"{event.id}: the GnuPG homes differ from the database in "
                f"{len(differences)} place(s) (first: {differences[0]}); rebuilding.",
                err=True,
            )
            consistency.rebuild(event)
            left = consistency.check(event)
            if left:
                raise click.ClickException(f"{event.id}: rebuilt, but still differs: {left[0]}")
            click.echo(f"{event.id}: rebuilt; the homes now match the database.", err=True)


def _schema_line() -> str:
    """What starting this app did to the database's schema, in one line."""
    done = current_app.extensions.get("keyparty.schema")
    return done or f"The database is at schema revision {migrations.HEAD}: nothing to upgrade."


@click.command("init")
@with_appcontext
def init_command() -> None:
    """Create the instance folder (database, secret key) if needed."""
    click.echo(f"Instance folder: {current_app.instance_path}")
    click.echo(_schema_line())


@click.group("db", help="The database's schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade")
@with_appcontext
def db_upgrade_command() -> None:
    """Bring the database to this keyparty's schema (create, adopt or upgrade it).

    keyparty also does this whenever it starts; this command says what it did.
    """
    click.echo(_schema_line())


@click.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes."
)
@click.option(
    "--threads",
    default=serving.THREADS,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Threads per process.",
)
@click.option(
    "--per-address",
    default=serving.PER_ADDRESS,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="Most connections one client address holds open (per process).",
)
@click.option(
    "--read-timeout",
    default=serving.READ_TIMEOUT,
    show_default=True,
    type=click.FloatRange(0.5, 600),
    help="Seconds a client may stay silent in the middle of a request.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key")
@with_appcontext
def serve_command(
    host: str,
    port: int,
    workers: int,
    threads: int,
    per_address: int,
    read_timeout: float,
    tls_cert,
    tls_key,
) -> None:
    """Serve keyparty with gunicorn (threaded workers), sized for a room of phones.

    With --tls-cert and --tls-key it serves HTTPS, which phones need before
    they give the in-page scanner their camera. At start it checks every
    event's GnuPG homes against the database and rebuilds what differs.
    """
    if bool(tls_cert) != bool(tls_key):
        raise click.ClickException("HTTPS needs both --tls-cert FILE and --tls-key FILE.")
    _check_and_repair_homes()
    scheme = "https" if tls_cert else "http"
    click.echo(_schema_line())
    warning = exposure_warning(host, bool(tls_cert))
    if warning:
        click.echo(warning, err=True)
    shortfall = connection_shortfall(db.engine, workers, threads)
    if shortfall:
        click.echo(f"Warning: {shortfall}", err=True)
    click.echo(f"Host pages (on this laptop only): {scheme}://localhost:{port}/host/")
    for address in lan_addresses() if host in ("0.0.0.0", "::") else [host]:
        click.echo(f"Phones on the local network:      {scheme}://{address}:{port}/")
    click.echo(
        f"gunicorn: {workers} process(es) x {threads} threads; at most {per_address} "
        f"connections per client address; {read_timeout:g} s read timeout.",
        err=True,
    )
    # Each worker process makes its own app (its own database connections):
    # this process lets go of its transaction and connections first.
    db.session.commit()
    db.session.remove()
    db.engine.dispose()
    # Over HTTPS the session cookie is marked Secure: never sent in clear.
    make_app = partial(create_app, {"SESSION_COOKIE_SECURE": True}) if tls_cert else create_app
    serving.run(
        make_app,
        host,
        port,
        workers=workers,
        threads=threads,
        per_address=per_address,
        read_timeout=read_timeout,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )


@click.command("intake")
@click.argument("event_id", metavar="EVENT")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def intake_command(event_id: str, files: tuple[str, ...]) -> None:
    """Check certifications that came by mail or USB stick, and keep what passes.

    Exits non-zero when any certification was refused.
    """
    event = _event(event_id)
    uploads = [(Path(name).name, Path(name).read_bytes()) for name in files]
    outcomes = intake.take_in(event, uploads)
    for o in outcomes:
        what = f"{o.target or '?'} {o.user_id or ''} [{o.context or '-'}] by {o.issuer or '?'}"
        if o.status == "refused":
            _say(f"refused   {o.source}: {what}: {o.rule}: {o.message}", err=True)
        elif o.status == intake.ALREADY_ACCEPTED:
            _say(f"{o.status} {o.source}: {what}: nothing changed")
        else:
            _say(f"{o.status:9} {o.source}: {what}")
    tally = Counter(o.status for o in outcomes)
    click.echo(
        f"{tally['accepted']} accepted, {tally['refused']} refused, "
        f"{tally[intake.ALREADY_ACCEPTED]} already accepted"
    )
    refused = tally["refused"]
    if refused:
        sys.exit(1)


@click.command("export")
@click.argument("event_id", metavar="EVENT")
@click.option("--keyring", type=click.Path(dir_okay=False), help="One keyring file.")
@click.option("--binary", is_flag=True, help="Binary instead of armored (--keyring).")
@click.option("--per-key", type=click.Path(file_okay=False), help="One file per key.")
@click.option("--per-uid", type=click.Path(file_okay=False), help="One file per user ID.")
@click.option("--wkd", type=click.Path(file_okay=False), help="A Web Key Directory tree.")
@with_appcontext
def export_command(event_id, keyring, binary, per_key, per_uid, wkd) -> None:
    """Export signed keys: only certifications their owners accepted (O1)."""
    event = _event(event_id)
    if not any((keyring, per_key, per_uid, wkd)):
        raise click.ClickException(
            "Say what to write: --keyring FILE, --per-key DIR, --per-uid DIR or --wkd DIR."
        )
    if keyring:
        exports.write_keyring(event, Path(keyring), binary)
        click.echo(f"Wrote {keyring}")
    unplaced: list[tuple[str, str]] = []
    for option, folder, write in (
        ("--per-key", per_key, exports.write_per_key),
        ("--per-uid", per_uid, exports.write_per_user_id),
        ("--wkd", wkd, lambda event, folder: exports.write_wkd(event, folder, unplaced)),
    ):
        if folder:
            written = write(event, Path(folder))
            _say(f"Wrote {len(written)} files into {folder} ({option})")
    for address, why in unplaced:
        _say(f"not in the WKD: {address}: {why}", err=True)
    if unplaced:
        sys.exit(1)


@click.command("report")
@click.argument("event_id", metavar="EVENT")
@click.option("--expiring-days", default=60, show_default=True, help="D4: expiring within N days.")
@click.option(
    "--graph", type=click.Path(dir_okay=False), help="Write the certification graph (SVG)."
)
@click.option(
    "--png", type=click.Path(dir_okay=False), help="Write the certification graph (PNG, to print)."
)
@with_appcontext
def report_command(event_id: str, expiring_days: int, graph, png) -> None:
    """Event-wide totals (never per attendee, P5), the graph, what expires soon."""
    event = _event(event_id)
    for name, value in report.totals(event).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
        click.echo(f"{name}: {value}")
    soon = report.expiring_count(event, expiring_days)
    click.echo(f"published certifications expiring within {expiring_days} days: {soon}")
    published = report.certification_graph(event)
    figures = report.figures_of(event, published)
    distance = figures["mean shortest distance in it"]
    click.echo(f"largest strongly connected set: {figures['largest strongly connected set']} keys")
    click.echo(
        "mean shortest distance in it: " + (f"{distance:.2f}" if distance is not None else "-")
    )
    for path, fmt in ((graph, "svg"), (png, "png")):
        if not path:
            continue
        try:
            Path(path).write_bytes(report.draw_graph(event, fmt, published))
        except graphviz.GraphvizError as problem:
            raise click.ClickException(str(problem)) from None
        click.echo(f"Wrote {path}")


@click.command("deliver")
@click.argument("event_id", metavar="EVENT")
@click.option(
    "--outbox", type=click.Path(file_okay=False), help="Where .eml files go without SMTP."
)
@with_appcontext
def deliver_command(event_id: str, outbox) -> None:
    """C3: send each email certification, encrypted, to its address.

    Without SMTP configured (KEYPARTY_SMTP_HOST …) the mails are written as
    .eml files for the host to send. Exits 1 when any mail could not be sent:
    each is named once with why; one that never can be is marked failed and not
    tried again.
    """
    event = _event(event_id)
    folder = Path(outbox) if outbox else events.event_files(event) / "outbox"
    try:
        result = delivery.deliver(
            event, _base_url(), delivery.smtp_settings(current_app.config), folder
        )
    except delivery.DeliveryError as problem:
        raise click.ClickException(for_terminal(str(problem))) from None
    for line in result.lines:
        _say(line, err=line.startswith(("Failed", "Not sent")))
    if not result.ok:
        sys.exit(1)


@click.command("mail-list")
@click.argument("event_id", metavar="EVENT")
@click.option("--again", is_flag=True, help="Mail attendees who were mailed the list already too.")
@click.option(
    "--outbox", type=click.Path(file_okay=False), help="Where .eml files go without SMTP."
)
@with_appcontext
def mail_list_command(event_id: str, again: bool, outbox) -> None:
    """Mail the frozen party list to every attendee, its digests in the body.

    Each attendee is mailed once (--again mails everyone again). Without SMTP
    configured the mails are written as .eml files. Exits non-zero when a mail
    could not be sent.
    """
    event = _event(event_id)
    folder = Path(outbox) if outbox else events.event_files(event) / "outbox"
    try:
        result = delivery.mail_party_list(
            event, delivery.smtp_settings(current_app.config), folder, again=again
        )
    except delivery.DeliveryError as problem:
        raise click.ClickException(str(problem)) from None
    click.echo(result.summary)
    if result.refused:
        sys.exit(1)


@click.command("purge")
@click.argument("event_id", metavar="EVENT")
@click.option("--yes", is_flag=True, help="Do not ask.")
@with_appcontext
def purge_command(event_id: str, yes: bool) -> None:
    """Delete a closed event's personal data; keep its exports and totals."""
    event = _event(event_id)
    if event.state != "closed":
        raise click.ClickException(
            f"Purge only a closed event; {event.id} is {event.state}: `keyparty step {event.id} close` first."
        )
    if not yes:
        click.confirm(
            f"Delete the names, emails, tokens, user IDs, verifications and GnuPG homes of "
            f"{event.name}? The exports and totals stay in {events.event_files(event) / 'final'}",
            abort=True,
        )
    for name, count in events.purge(event).items():
        click.echo(f"deleted {count} {name}")
    click.echo(f"Kept: {events.event_files(event) / 'final'} (keyring, per-key files, totals)")


@click.command("sign")
@click.argument("source")
@click.option(
    "--token", envvar="KEYPARTY_SIGNING_TOKEN", help="Signing token from your phone page."
)
@click.option(
    "--server",
    help="The event address to upload to (http(s)://HOST/e/EVENT) when SOURCE is a bundle file.",
)
@click.option(
    "--homedir", type=click.Path(file_okay=False), help="Your GnuPG home (default: GnuPG's)."
)
@click.option("--local-user", "local_users", multiple=True, help="Sign with this key (repeatable).")
@click.option(
    "--out", type=click.Path(file_okay=False), default="keyparty-certifications", show_default=True
)
@click.option("--no-upload", is_flag=True, help="Only write the files (offline signing).")
@click.option("--digest", help="The party list digest read aloud (skips the question).")
@click.option("--passphrase-fd", type=int, help="Read the passphrase from this file descriptor.")
def sign_command(
    source, token, server, homedir, local_users, out, no_upload, digest, passphrase_fd
) -> None:
    """Certify what you verified at the event, with your own key and GnuPG.

    SOURCE is the event address shown on your phone, or a signing bundle file
    downloaded from your phone page (then --server names where to upload).
    With an address and no --token, keyparty shows a short code and waits
    until you allow it on your phone. The token goes only to the server named
    here.

    Exit status: 0 when every verified user ID is certified (now or before)
    and, unless --no-upload, every upload was taken; 1 when anything failed
    or nothing was certified.
    """
    try:
        _sign(
            source,
            token,
            server,
            homedir,
            list(local_users),
            Path(out),
            no_upload,
            digest,
            passphrase_fd,
        )
    except signing.SigningError as problem:
        raise click.ClickException(str(problem)) from None


def _say(line: str, err: bool = False) -> None:
    """One line that holds text from outside (user IDs, names, server replies):
    control characters shown visibly, never sent to the terminal."""
    click.echo(for_terminal(line), err=err)


def _sign(
    source, token, server, homedir, local_users, out, no_upload, digest, passphrase_fd
) -> None:
    online = source.startswith(("http://", "https://"))
    if online and server and signing.server_of(server) != signing.server_of(source):
        raise signing.SigningError(
            "Give the server once: SOURCE is already an event address "
            f"({for_terminal(source)}); --server names another."
        )
    home = GnuPGHome(homedir or default_gnupg_home(), create=False, agent=True)
    if online and not token:
        token = signing.pair(source, _secret_fingerprints(home, local_users), click.echo)
    bundle = signing.load_bundle(source, token)
    server = source if online else server
    if server and not online:
        signing.check_server(bundle, server)
    signing.check_bundle(bundle)
    event = bundle["event"]
    _say(f"{event['name']} ({event['id']}): {len(bundle['verifications'])} verifications.")
    click.echo(f"Signing window (D3): until {signing.window_end_text(bundle)}.")
    sums = signing.party_list_digests(bundle)
    click.echo("Party list SHA256: " + " ".join(group_digest(sums["SHA256"])))
    if digest is not None:
        if not signing.check_digest(bundle, digest):
            raise signing.SigningError("That digest is not the party list's: nothing certified.")
    elif not click.confirm("Does it match the digest read aloud at the event?"):
        raise signing.SigningError("Digest not confirmed: nothing certified.")
    if not bundle["verifications"]:
        raise signing.SigningError(
            "Nothing to certify: this bundle holds no verification of yours. Nothing was certified."
        )
    signers = signing.choose_signers(home, bundle, local_users)
    passphrase = None
    if passphrase_fd is not None:
        with open(passphrase_fd, closefd=False) as stream:
            passphrase = stream.readline().rstrip("\n")
    tasks = signing.plan(bundle, signers, set())
    with click.progressbar(length=len(tasks), label="Certifying") as bar:
        report = signing.certify_all(home, bundle, signers, passphrase, lambda _task: bar.update(1))
    files = signing.write_files(home, bundle, signers, out)
    click.echo(
        f"made {len(report.made)}, skipped {len(report.skipped)}, failed {len(report.failed)}; "
        f"{len(files)} files in {for_terminal(str(out))}"
    )
    listing = signing.write_party_list(bundle, out)
    click.echo(f"Party list: {listing} (sha256sum prints the digest above)")
    for fingerprint, uid, context, why in report.failed:
        _say(f"failed   {fingerprint} {uid} [{context}]: {why}", err=True)
    problems = []
    if report.failed and not (report.made or report.skipped):
        problems.append(f"Nothing was certified: all {len(report.failed)} failed (see above).")
    elif report.failed:
        problems.append(
            f"{len(report.failed)} of {len(report.failed) + len(report.made)} certifications "
            "failed (see above); the others were made."
        )
    if files and not no_upload:
        if not token or not server:
            missing = "--token" if not token else "--server EVENT-ADDRESS"
            problems.append(
                f"Not uploaded ({missing} missing): run again with it, or give the files "
                "to the host."
            )
        else:
            outcomes = signing.upload(server, token, files)
            done = ("accepted", intake.ALREADY_ACCEPTED)
            for o in outcomes:
                line = (
                    f"{o['status']:9} {o.get('fingerprint') or ''} {o.get('user_id') or ''} "
                    f"[{o.get('context') or '-'}]"
                )
                if o["status"] == intake.ALREADY_ACCEPTED:
                    line += ": nothing changed"
                elif o["status"] not in done:
                    line += f": {o.get('rule') or ''} {o.get('message')}"
                _say(line)
            bad = sum(o["status"] not in done for o in outcomes)
            if bad:
                problems.append(f"{bad} of {len(outcomes)} uploads were not taken (see above).")
    for problem in problems:
        click.echo(f"Error: {problem}", err=True)
    if problems:
        sys.exit(1)


def _secret_fingerprints(home: GnuPGHome, local_users: list[str]) -> list[str]:
    """The keys this computer can sign with: --local-user, else every secret key in the home."""
    if local_users:
        return [u.replace(" ", "").upper() for u in local_users]
    try:
        found = [k.fingerprint for k in home.secret_keys() if not (k.revoked or k.expired)]
    except GnuPGError as problem:
        raise signing.SigningError(f"{problem}. Nothing was certified.") from None
    if not found:
        raise signing.SigningError(
            f"No secret key in {home.path}: run keyparty sign where your secret key is "
            "(--homedir DIR)."
        )
    return found


commands = [
    event_group,
    import_command,
    step_command,
    freeze_command,
    partylist_command,
    badges_command,
    status_command,
    rebuild_home_command,
    check_command,
    intake_command,
    export_command,
    report_command,
    deliver_command,
    mail_list_command,
    purge_command,
    relink_command,
    remove_command,
    init_command,
    db_group,
    serve_command,
]


def main() -> None:
    cli = FlaskGroup(
        create_app=lambda: create_app(),
        add_default_commands=False,
        add_version_option=False,
        load_dotenv=False,
        help="keyparty: run a PGP key-signing party.",
    )
    # keyparty makes its own app: Flask's --env-file, --app and --debug mean nothing here.
    cli.params = [p for p in cli.params if p.name not in ("env_file", "app", "debug")]
    # Runs on the signer's machine: needs no instance, database or app.
    cli.add_command(sign_command)
    try:
        cli.main(prog_name="keyparty")
    except SchemaMismatch as problem:
        raise SystemExit(f"Error: {problem}") from None
    except Exception as problem:
        if is_disk_full(problem):
            raise SystemExit(
                f"Error: the disk is full (or read-only); nothing was stored. ({problem})"
            ) from None
        raise
