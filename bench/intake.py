"""Benchmark: `keyparty intake` of uploaded certifications against the raw gpg check.

    .venv/bin/python bench/intake.py [--count 1000] [--signers 10] [--repeat 3] [--profile]

Set-up, not timed: --signers signer keys (with secret keys) and COUNT / (2 x
signers) target keys with two user IDs each (bench/sign.py's cached keys);
a real event in a fresh instance folder, built as bench/sign.py builds it
(registered, frozen, every entry confirmed, every signer verifying every user
ID of every target through `verification.record` with an injected clock that
keeps the pace, identity / photo-id / level 3, cooling-off, signing); then
each signer's bundle (`bundle_for`) certified in the signers' own GnuPG home
with `signing.certify_all` and written with `signing.write_files`: one
armored file per certification, COUNT files in all (10 signers x 50 keys x 2
user IDs by default).

Measured, side by side, the measures taking turns, best of --repeat, each
from the same starting state (a fresh copy of the instance folder: database
and event GnuPG home as they were before any intake):

- keyparty: `intake.take_in(event, uploads)` with all COUNT files in one
  call, what `keyparty intake EVENT FILES...` does after reading the files.
  Every one must be accepted.
- raw: in a scratch home holding the event's keys (a copy of the event
  keyring, not timed), `gpg --import FILES...` of all the uploads, then one
  `gpg --with-colons --check-sigs TARGETS...`; it must show COUNT good
  certifications by the signers.

The last line printed is `ratio=<keyparty/raw>` (target: at most 2, and
keyparty under 60 s).

Every gpg call names a short --homedir under /tmp; HOME points at a scratch
folder (the run fails if a .gnupg appears there); every gpg-agent started in
our homes is stopped and every temporary folder deleted.
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
from collections import Counter
from pathlib import Path

import benchlib

BENCH = Path(__file__).resolve().parent
TARGET_RATIO = 2.0
TARGET_SECONDS = 60.0


sb = benchlib.load("sign")
bi = sb.bi
GPG = sb.GPG
short_tempdir = sb.short_tempdir
remove = sb.remove

# best raw run's parts, for the report
raw_parts: list[tuple[float, float, float]] = []


def make_uploads(party, template: Path, signers: list[str]) -> Path:
    """Each signer certifies what they verified, as `keyparty sign` does; one file each."""
    from keyparty import signing
    from keyparty.gpg import GnuPGHome

    home = GnuPGHome(sb.copy_home(template), create=False, agent=True)
    out = short_tempdir()
    try:
        for fingerprint in signers:
            bundle = party.bundles[fingerprint]
            report = signing.certify_all(home, bundle, [fingerprint])
            assert not report.failed and len(report.made) == len(bundle["verifications"])
            files = signing.write_files(home, bundle, [fingerprint], out)
            assert len(files) == len(bundle["verifications"])
    finally:
        remove(home.path)
    return out


def keyparty_intake(
    pristine: Path,
    event_id: str,
    uploads: list[tuple[str, bytes]],
    profiler: cProfile.Profile | None = None,
) -> float:
    """`intake.take_in(event, uploads)` on a fresh copy of the instance folder."""
    from keyparty import create_app
    from keyparty import events
    from keyparty import intake
    from keyparty.extensions import db
    from keyparty.models import Certification

    instance = short_tempdir()
    shutil.copytree(pristine, instance, dirs_exist_ok=True)
    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    try:
        app = create_app()
        with app.app_context():
            event = events.get_event(event_id)
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            outcomes = intake.take_in(event, uploads)
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
            statuses = Counter(o.status for o in outcomes)
            refused = [(o.source, o.rule, o.message) for o in outcomes if o.status != "accepted"]
            assert statuses == {"accepted": len(uploads)}, (statuses, refused[:3])
            stored = db.session.scalar(
                db.select(db.func.count())
                .select_from(Certification)
                .where(Certification.status == "accepted")
            )
            assert stored == len(uploads), stored
            db.session.remove()
            db.engine.dispose()
        return elapsed
    finally:
        os.environ.pop("KEYPARTY_INSTANCE", None)
        remove(instance)


def raw_intake(event_home: Path, files: list[Path], targets: list[str], signers: set[str]) -> float:
    """In a scratch home holding the event's keys: one import of every upload, one check-sigs."""
    home = short_tempdir()
    try:
        for name in ("pubring.kbx", "trustdb.gpg"):
            if (event_home / name).exists():
                shutil.copy2(event_home / name, home / name)
        base = [GPG, "--homedir", str(home), "--batch", "--no-tty", "--no-autostart"]
        base += ["--trust-model", "always"]
        started = time.perf_counter()
        subprocess.run([*base, "--import", *map(str, files)], capture_output=True, check=True)
        imported = time.perf_counter()
        listing = subprocess.run(
            [*base, "--with-colons", "--check-sigs", *targets], capture_output=True, check=True
        ).stdout
        finished = time.perf_counter()
        good = [
            line
            for line in listing.decode().splitlines()
            if line.startswith("sig:!:") and line.split(":")[12] in signers
        ]
        assert len(good) == len(files), (len(good), len(files))
        raw_parts.append((finished - started, imported - started, finished - imported))
        return finished - started
    finally:
        remove(home)


def profile(run, limit: int = 35) -> str:
    profiler = cProfile.Profile()
    run(profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(
        r"/keyparty/[a-z_/]+\.py|session\.py.*\((commit|execute|scalar)\)", limit
    )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="certifications uploaded")
    parser.add_argument("--signers", type=int, default=10, help="signers (each certifies all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is kept")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one keyparty intake"
    )
    options = parser.parse_args()
    n_targets, rest = divmod(options.count, 2 * options.signers)
    if rest or not n_targets:
        parser.error("--count must be a multiple of 2 x --signers (two user IDs per key)")

    scratch = sb.scratch_home()
    profiled = ""
    try:
        template, signers, signer_public = sb.signer_home(
            sb.cached_keys(options.signers, signers=True)
        )
        targets = sb.cached_keys(n_targets).read_bytes()
        started = time.perf_counter()
        party = sb.build_event(short_tempdir(), "Intake bench", targets, signer_public, signers)
        built = time.perf_counter()
        out = make_uploads(party, template, signers)
        files = sorted(out.glob("*.asc"))
        assert len(files) == options.count, len(files)
        uploads = [(path.name, path.read_bytes()) for path in files]
        print(
            f"event {party.event_id}: {options.signers} signers x {n_targets} keys x 2 user IDs; "
            f"built in {built - started:.1f} s, {len(files)} certifications made in "
            f"{time.perf_counter() - built:.1f} s (not timed)",
            flush=True,
        )
        target_fprs = sorted(set(party.bundles[signers[0]]["keys"]))
        event_home = party.instance / "gnupg" / party.event_id
        runs = {
            "raw": lambda: raw_intake(event_home, files, target_fprs, set(signers)),
            "keyparty": lambda: keyparty_intake(party.instance, party.event_id, uploads),
        }
        best = bi.best_interleaved(runs, options.repeat)
        if options.profile:
            profiled = profile(
                lambda p: keyparty_intake(party.instance, party.event_id, uploads, p)
            )
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        for path in list(bi._temp_dirs):
            remove(path)

    if profiled:
        print(profiled)
    ratio = best["keyparty"] / best["raw"]
    _, raw_import, raw_check = min(raw_parts)
    print(f"\ngpg: {GPG} ({sb.gpg_version()})")
    print(f"best of {options.repeat}, seconds; each run from a fresh copy of the event")
    print(f"\n{options.count} uploaded certifications (one file each)")
    print(f"  {'raw gpg --import of all + one --check-sigs':<46}{best['raw']:8.3f}")
    print(f"  {'  of which import / check-sigs':<46}{raw_import:8.3f} / {raw_check:.3f}")
    print(f"  {'keyparty intake.take_in (all in one call)':<46}{best['keyparty']:8.3f}")
    print(
        f"  {'ratio keyparty/raw':<46}{ratio:8.2f}   (target <= {TARGET_RATIO}, "
        f"keyparty under {TARGET_SECONDS:.0f} s)"
    )
    command = [".venv/bin/python", "bench/intake.py", "--count", str(options.count)]
    if options.signers != 10:
        command += ["--signers", str(options.signers)]
    if options.repeat != 3:
        command += ["--repeat", str(options.repeat)]
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
