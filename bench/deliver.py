"""Benchmark: `keyparty deliver` of per-user-ID mails against the raw gpg loop.

    .venv/bin/python bench/deliver.py [--keys 300] [--repeat 3] [--profile]

Set-up, not timed: one signer and --keys target keys with two user IDs each
(bench/sign.py's cached keys); a real event (bench/sign.py's build_event)
where the signer verified every user ID in the `email` context; the signer
certifies them all with `signing.certify_all` and intake accepts them:
2 x --keys email certifications waiting for delivery (C3).

Measured, side by side, the measures taking turns, best of --repeat, each
from a fresh copy of the instance folder:

- keyparty: `delivery.deliver(event, …, settings=None, outbox)`, what
  `keyparty deliver EVENT` does without an SMTP server: every mail composed
  (PGP/MIME, encrypted to the certified key) and written to the outbox.
- raw: for each of the same user IDs, `gpg --export --export-filter
  keep-uid=uid=…` of the certified key from the event's GnuPG home piped into
  `gpg --encrypt --armor -r FPR`, the output written to a file: the gpg work
  of caff or pius for one mail, without composing a mail.

The last line printed is `ratio=<keyparty/raw>` (target: at most 1.2).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import benchlib

TARGET_RATIO = 1.2
SENDER = "host@example.org"
PIUS = shutil.which("pius")

sb = benchlib.load("sign")
bi = sb.bi
ib = benchlib.load("intake")
GPG = sb.GPG
short_tempdir = sb.short_tempdir
remove = sb.remove


def copy_instance(pristine: Path) -> Path:
    instance = short_tempdir()
    shutil.rmtree(instance)
    shutil.copytree(pristine, instance, symlinks=True)
    return instance


def keyparty_deliver(
    pristine: Path,
    event_id: str,
    expected: int,
    profiler: cProfile.Profile | None = None,
    smtp: Mailbox | None = None,
) -> float:
    """`delivery.deliver` from a fresh copy of the instance: to the outbox, or
    over one SMTP connection to `smtp` (a server on loopback)."""
    from keyparty import create_app
    from keyparty import delivery
    from keyparty import events
    from keyparty.extensions import db

    instance = copy_instance(pristine)
    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    try:
        app = create_app()
        with app.app_context():
            event = events.get_event(event_id)
            outbox = instance / "outbox"
            settings = None
            if smtp:
                settings = delivery.SmtpSettings(
                    "127.0.0.1", smtp.port, security="none", sender=SENDER
                )
                received = smtp.count
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            report = delivery.deliver(event, sb.BASE_URL, settings, outbox, SENDER)
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
            assert not report.refused, report.refused[:3]
            done = report.sent if smtp else report.written
            assert len(done) == expected, (len(done), expected)
            if smtp:
                assert smtp.count - received == expected, (smtp.count - received, expected)
            db.session.remove()
            db.engine.dispose()
        return elapsed
    finally:
        os.environ.pop("KEYPARTY_INSTANCE", None)
        remove(instance)


def raw_deliver(pristine: Path, event_id: str, mails: list[tuple[str, str]]) -> float:
    """For each (fingerprint, user ID): export that user ID of the certified key
    from the event home, encrypt it to the key, write the file."""
    instance = copy_instance(pristine)
    home = instance / "gnupg" / event_id
    out = short_tempdir()
    base = [GPG, "--homedir", str(home), "--batch", "--no-autostart", "--trust-model", "always"]
    try:
        started = time.perf_counter()
        for n, (fingerprint, user_id) in enumerate(mails):
            exported = subprocess.run(
                [*base, "--export", "--export-filter", f"keep-uid=uid = {user_id}", fingerprint],
                capture_output=True,
                check=True,
            ).stdout
            encrypted = subprocess.run(
                [*base, "--encrypt", "--armor", "-r", fingerprint],
                input=exported,
                capture_output=True,
                check=True,
            ).stdout
            (out / f"{n}.asc").write_bytes(encrypted)
        elapsed = time.perf_counter() - started
        assert len(list(out.iterdir())) == len(mails)
        return elapsed
    finally:
        remove(out)
        remove(instance)


# The SMTP server, in its own process so that it takes no time from keyparty's
# (in-process) delivery: one line per mail received in the count file.
SMTP_SERVER = """
import sys, time
from aiosmtpd.controller import Controller

class Count:
    async def handle_DATA(self, server, session, envelope):
        with open(sys.argv[2], "a") as out:
            out.write("%d\\n" % len(envelope.content))
        return "250 Message accepted for delivery"

Controller(Count(), hostname="127.0.0.1", port=int(sys.argv[1])).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


class Mailbox:
    """An SMTP server on 127.0.0.1 (aiosmtpd, a child process) that counts what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.counted = short_tempdir() / "received"
        self.counted.touch()
        command = [sys.executable, "-c", SMTP_SERVER, str(self.port), str(self.counted)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def count(self) -> int:
        return len(self.counted.read_text().splitlines())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- sign + deliver together ---------------------------------------------------


def keyparty_sign_deliver(template: Path, bundle: dict, pristine: Path, event_id: str) -> float:
    """What the signer's `keyparty sign` does (bench/sign.py's measure) plus what
    the host's `keyparty deliver` does with the same number of certifications."""
    signing = sb.keyparty_sign(template, bundle)
    return signing + keyparty_deliver(pristine, event_id, len(bundle["verifications"]))


def raw_sign_deliver(template: Path, bundle: dict, keyfile: Path) -> float:
    """The raw gpg loop of bench/sign.py (import, one --quick-sign-key per key,
    one --export keep-uid per user ID), then each exported user ID encrypted
    to its key (`gpg --encrypt --armor -r FPR`) and written."""
    home = sb.copy_home(template)
    out = short_tempdir()
    try:
        commands = sb.raw_commands(bundle, home, out, keyfile)
        base = [GPG, "--homedir", str(home), "--batch", "--no-tty", *sb.QUIET]
        started = time.perf_counter()
        sb.run_raw_commands(commands)
        for exported in sorted(out.glob("*.gpg")):
            fingerprint = exported.name.split("-")[0]
            subprocess.run(
                [
                    *base,
                    "--encrypt",
                    "--armor",
                    "-r",
                    fingerprint,
                    "--output",
                    str(exported.with_suffix(".asc")),
                    str(exported),
                ],
                capture_output=True,
                check=True,
            )
        elapsed = time.perf_counter() - started
        assert len(list(out.glob("*.asc"))) == len(bundle["verifications"])
        return elapsed
    finally:
        remove(out)
        remove(home)


# -- pius (Debian's pius 3.0.0), on the same keys --------------------------------

# pius's own code for what it does after signing a user ID (libpius, run by
# Debian's python3): export the signed key, then PiusMailer.send_sig_mail
# (PGP/MIME: the key and a text, signed and encrypted to the key and the
# signer with one `gpg -aes`, one SMTP connection per mail).
PIUS_DELIVER = """
import json, sys
from libpius import mailer, signer
spec = json.load(open(sys.argv[1]))
m = mailer.PiusMailer(spec["from"], None, "127.0.0.1", spec["port"], None, False, False,
                      None, None, spec["tmp"])
s = signer.PiusSigner(spec["signer"], None, spec["keyring"], spec["gpg"], spec["tmp"],
                      spec["out"], False, spec["from"], m, False, True, None, "127.0.0.1")
for n, (key, email, keyring) in enumerate(spec["mails"]):
    s.tmp_keyring = keyring
    uid = {"email": email, "file": "%s/%d.asc" % (spec["out"], n), "id": email, "index": 1}
    s.export_signed_uid(key, uid["file"])
    m.send_sig_mail(s.signer, key, uid, s)
"""


def pius_template(template: Path) -> Path:
    """A copy of the signer's home whose key gains a signing subkey: the
    bench signer's primary key only certifies, and pius signs every mail."""
    home = sb.copy_home(template)
    signer = signer_of(home)
    bi.gpg(home, *sb.QUIET, "--quick-add-key", signer, "ed25519", "sign", "1y")
    sb.stop_agent(home)
    return home


def pius_env(gnupghome: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPARTY_")}
    env["GNUPGHOME"] = str(gnupghome)
    return env


def pius_deliver(
    template: Path, pristine: Path, event_id: str, mails: list[tuple[str, str]], smtp: Mailbox
) -> float:
    """pius's mailing step (libpius) for the same certified user IDs: from a
    keyring holding the event's certified keys, with the signer's secret key."""
    from keyparty.addresses import email_of

    home = sb.copy_home(template)
    work = short_tempdir()
    instance = copy_instance(pristine)
    try:
        # pius mails from a working keyring holding only the signed key and the
        # signer (it makes one per user ID while signing): one per key here,
        # made before the clock starts.
        event_home = instance / "gnupg" / event_id
        signer = signer_of(home)
        signer_key = bi.gpg(home, "--export", signer).stdout
        (work / "tmp").mkdir()
        (work / "out").mkdir()
        keyrings = {}
        for fingerprint in sorted({fpr for fpr, _ in mails}):
            keyrings[fingerprint] = str(work / f"{fingerprint}.gpg")
            exported = bi.gpg(event_home, "--export", fingerprint).stdout
            Path(keyrings[fingerprint]).write_bytes(exported + signer_key)
        spec = {
            "from": SENDER,
            "port": smtp.port,
            "tmp": str(work / "tmp"),
            "out": str(work / "out"),
            "keyring": keyrings[mails[0][0]],
            "gpg": GPG,
            "signer": signer,
            "mails": [(fpr, email_of(uid), keyrings[fpr]) for fpr, uid in mails],
        }
        (work / "spec.json").write_text(json.dumps(spec))
        command = ["/usr/bin/python3", "-c", PIUS_DELIVER, str(work / "spec.json")]
        received = smtp.count
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=pius_env(home))
        elapsed = time.perf_counter() - started
        assert result.returncode == 0, result.stderr[-2000:]
        assert smtp.count - received == len(mails), (smtp.count - received, len(mails))
        return elapsed
    finally:
        remove(instance)
        remove(work)
        remove(home)


def pius_sign_deliver(template: Path, bundle: dict, keyfile: Path, smtp: Mailbox) -> float:
    """The pius command itself on the same keys: for each key it shows the
    fingerprint and reads a level (answered 3 on its standard input), then per
    user ID imports the key into a fresh keyring, certifies with `--edit-key`,
    exports, and mails it signed and encrypted (PGP/MIME) over SMTP."""
    home = sb.copy_home(template)
    work = short_tempdir()
    try:
        signer = bundle["signer"]["fingerprints"][0]
        keyring = work / "keyring.gpg"
        keyring.write_bytes(
            bi.gpg(home, "--export", signer).stdout + openpgp_dearmor_all(keyfile.read_text())
        )
        (work / "tmp").mkdir()
        (work / "out").mkdir()
        keys = sorted(bundle["keys"])
        command = [PIUS, "-b", GPG, "-s", signer, "-r", str(keyring), "-t", str(work / "tmp")]
        command += ["-o", str(work / "out"), "-m", SENDER, "-H", "127.0.0.1"]
        command += ["-P", str(smtp.port), "-S"]
        if bundle["event"]["policy_url"]:
            command += ["-U", bundle["event"]["policy_url"]]
        command += keys
        received = smtp.count
        started = time.perf_counter()
        result = subprocess.run(
            command, input="3\n" * len(keys), capture_output=True, text=True, env=pius_env(home)
        )
        elapsed = time.perf_counter() - started
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        sent = smtp.count - received
        # pius blind-copies each mail to the signer: one mail, two recipients.
        assert sent == len(bundle["verifications"]), (sent, result.stdout[-2000:])
        return elapsed
    finally:
        remove(work)
        remove(home)


def openpgp_dearmor_all(text: str) -> bytes:
    from keyparty import openpgp

    return openpgp.dearmor(text.encode())


def signer_of(template: Path) -> str:
    listing = bi.gpg(template, "--with-colons", "--list-secret-keys").stdout.decode()
    return next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300, help="target keys (two user IDs each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is kept")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of keyparty")
    parser.add_argument(
        "--no-pius", action="store_true", help="skip pius even when it is installed"
    )
    parser.add_argument("--no-sign", action="store_true", help="skip the sign + deliver comparison")
    options = parser.parse_args()
    use_pius = bool(PIUS) and not options.no_pius

    scratch = sb.scratch_home()
    profiled = ""
    smtp = Mailbox()
    try:
        template, signers, signer_public = sb.signer_home(sb.cached_keys(1, signers=True))
        targets = sb.cached_keys(options.keys).read_bytes()
        started = time.perf_counter()
        party = sb.build_event(
            short_tempdir(), "Deliver bench", targets, signer_public, signers, context="email"
        )
        bundle = party.bundles[signers[0]]
        keyfile = short_tempdir() / "targets.asc"
        keyfile.write_text("".join(bundle["keys"].values()))
        out = ib.make_uploads(party, template, signers)
        uploads = [(path.name, path.read_bytes()) for path in sorted(out.glob("*.asc"))]
        mails = _take_in(party, uploads)
        print(
            f"event {party.event_id}: {len(mails)} email certifications waiting, set up in "
            f"{time.perf_counter() - started:.1f} s (not timed)",
            flush=True,
        )
        pristine, event_id = party.instance, party.event_id
        signing_home = pius_template(template) if use_pius else None
        runs = {
            "raw": lambda: raw_deliver(pristine, event_id, mails),
            "keyparty": lambda: keyparty_deliver(pristine, event_id, len(mails)),
        }
        if use_pius:
            runs["keyparty_smtp"] = lambda: keyparty_deliver(
                pristine, event_id, len(mails), smtp=smtp
            )
            runs["pius"] = lambda: pius_deliver(signing_home, pristine, event_id, mails, smtp)
        if not options.no_sign:
            runs["raw_sign"] = lambda: raw_sign_deliver(template, bundle, keyfile)
            runs["keyparty_sign"] = lambda: keyparty_sign_deliver(
                template, bundle, pristine, event_id
            )
            if use_pius:
                runs["pius_sign"] = lambda: pius_sign_deliver(signing_home, bundle, keyfile, smtp)
        best = bi.best_interleaved(runs, options.repeat)
        if options.profile:
            profiler = cProfile.Profile()
            keyparty_deliver(pristine, event_id, len(mails), profiler)
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
            profiled = text.getvalue()
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        smtp.stop()
        for path in list(bi._temp_dirs):
            remove(path)
    if profiled:
        print(profiled)
    ratio = best["keyparty"] / best["raw"]
    n = len(mails)
    print(f"\ngpg: {GPG} ({sb.gpg_version()})")
    if use_pius:
        print(f"pius: {PIUS} ({pius_version()})")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"best of {options.repeat}, seconds; each run from a fresh copy of the event")
    print(f"\ndeliver: {n} per-user-ID mails")
    rows = [
        ("raw gpg --export keep-uid | --encrypt, each", best["raw"]),
        ("keyparty delivery.deliver to the outbox", best["keyparty"]),
    ]
    if use_pius:
        rows += [
            ("keyparty delivery.deliver over SMTP (loopback)", best["keyparty_smtp"]),
            ("pius's mailing step (libpius) over SMTP", best["pius"]),
        ]
    for name, seconds in rows:
        print(f"  {name:<52}{seconds:8.3f}")
    if use_pius:
        print(
            f"  {'ratio pius/keyparty (both over SMTP)':<52}"
            f"{best['pius'] / best['keyparty_smtp']:8.2f}"
        )
    print(f"  {'ratio keyparty/raw':<52}{ratio:8.2f}   (target <= {TARGET_RATIO})")
    if not options.no_sign:
        print(f"\nsign + deliver: {options.keys} keys, {n} user IDs certified and delivered")
        rows = [
            ("raw gpg: import, sign per key, export + encrypt per uid", best["raw_sign"]),
            ("keyparty sign (certify, files) + keyparty deliver", best["keyparty_sign"]),
        ]
        if use_pius:
            rows.append(("pius (certify, export, mail per uid) over SMTP", best["pius_sign"]))
        for name, seconds in rows:
            print(f"  {name:<58}{seconds:8.3f}")
        print(
            f"  {'ratio keyparty/raw':<58}{best['keyparty_sign'] / best['raw_sign']:8.2f}"
            "   (target <= 1)"
        )
        if use_pius:
            print(f"  {'ratio pius/keyparty':<58}{best['pius_sign'] / best['keyparty_sign']:8.2f}")
    command = [".venv/bin/python", "bench/deliver.py", "--keys", str(options.keys)]
    if options.repeat != 3:
        command += ["--repeat", str(options.repeat)]
    for flag in ("no_pius", "no_sign"):
        if getattr(options, flag):
            command.append("--" + flag.replace("_", "-"))
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"ratio={ratio:.2f}")


def pius_version() -> str:
    result = subprocess.run([PIUS, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).strip().splitlines()[-1]


def _take_in(party, uploads) -> list[tuple[str, str]]:
    """Intake of every certification in the pristine instance; returns (key, user ID)
    of each email certification waiting for delivery."""
    from keyparty import create_app
    from keyparty import delivery
    from keyparty import events
    from keyparty import intake
    from keyparty.extensions import db

    os.environ["KEYPARTY_INSTANCE"] = str(party.instance)
    try:
        app = create_app()
        with app.app_context():
            event = events.get_event(party.event_id)
            outcomes = intake.take_in(event, uploads)
            assert all(o.status == "accepted" for o in outcomes), outcomes[:3]
            waiting = [(c.key.fingerprint, c.user_id_text) for c in delivery.pending(event)]
            assert len(waiting) == len(uploads), (len(waiting), len(uploads))
            db.session.remove()
            db.engine.dispose()
        return waiting
    finally:
        os.environ.pop("KEYPARTY_INSTANCE", None)


if __name__ == "__main__":
    sys.exit(main())
