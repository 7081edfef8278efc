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
import os
import pstats
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib

TARGET_RATIO = 1.2

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
    pristine: Path, event_id: str, expected: int, profiler: cProfile.Profile | None = None
) -> float:
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
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            report = delivery.deliver(event, sb.BASE_URL, None, outbox, "host@example.org")
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
            assert not report.refused, report.refused[:3]
            assert len(report.written) == expected, (len(report.written), expected)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=300, help="target keys (two user IDs each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is kept")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of keyparty")
    options = parser.parse_args()

    scratch = sb.scratch_home()
    profiled = ""
    try:
        template, signers, signer_public = sb.signer_home(sb.cached_keys(1, signers=True))
        targets = sb.cached_keys(options.keys).read_bytes()
        started = time.perf_counter()
        party = sb.build_event(
            short_tempdir(), "Deliver bench", targets, signer_public, signers, context="email"
        )
        out = ib.make_uploads(party, template, signers)
        uploads = [(path.name, path.read_bytes()) for path in sorted(out.glob("*.asc"))]
        mails = _take_in(party, uploads)
        print(
            f"event {party.event_id}: {len(mails)} email certifications waiting, set up in "
            f"{time.perf_counter() - started:.1f} s (not timed)",
            flush=True,
        )
        runs = {
            "raw": lambda: raw_deliver(party.instance, party.event_id, mails),
            "keyparty": lambda: keyparty_deliver(party.instance, party.event_id, len(mails)),
        }
        best = bi.best_interleaved(runs, options.repeat)
        if options.profile:
            profiler = cProfile.Profile()
            keyparty_deliver(party.instance, party.event_id, len(mails), profiler)
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(30)
            profiled = text.getvalue()
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        for path in list(bi._temp_dirs):
            remove(path)
    if profiled:
        print(profiled)
    ratio = best["keyparty"] / best["raw"]
    print(f"\ngpg: {GPG} ({sb.gpg_version()})")
    print(f"best of {options.repeat}, seconds; each run from a fresh copy of the event")
    print(f"\n{len(mails)} per-user-ID mails")
    print(f"  {'raw gpg --export keep-uid | --encrypt, each':<46}{best['raw']:8.3f}")
    print(f"  {'keyparty delivery.deliver to the outbox':<46}{best['keyparty']:8.3f}")
    print(f"  {'ratio keyparty/raw':<46}{ratio:8.2f}   (target <= {TARGET_RATIO})")
    command = [".venv/bin/python", "bench/deliver.py", "--keys", str(options.keys)]
    if options.repeat != 3:
        command += ["--repeat", str(options.repeat)]
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"ratio={ratio:.2f}")


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
