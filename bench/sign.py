"""Benchmark: `keyparty sign` (certify every verified user ID) against the raw gpg loop.

    .venv/bin/python bench/sign.py [--sizes 100 500] [--repeat 3] [--no-cli] [--profile]

Set-up, not timed (for each size N):

- test keys, made once and cached (bench/import.py's key parameters and
  helpers): N target keys with TWO user IDs each, `Bench User i
  <benchi@example.org>` from the --gen-key parameter file and `Bench User i
  <benchi@work.example.net>` added with `--quick-add-uid`
  (/tmp/keyparty-bench-2uid-keys-N.gpg, public keys), and signer keys with
  their secret parts (ed25519, no passphrase; /tmp/keyparty-bench-signer-keys-K.gpg);
- a real event in a fresh instance folder, in this process: `create_app()`,
  the N targets and the signer registered (`registration.register_keys`), the
  list frozen, every owner's entry confirmed (`verification.confirm_entry`),
  verifying started, the signer's verifications recorded through
  `verification.record` with an injected clock that keeps the default pace
  (P4: one key every 31 s; the second user ID of a key one second later), one
  per user ID (context `identity`, basis `photo-id`, level 3), cooling-off,
  signing; then `bundle.bundle_for(signer, BASE_URL)`: the signing bundle a
  phone page hands out;
- the signer's GnuPG home: only their secret key. Each run starts from a
  fresh copy of it (the target keys are imported in every measured run).

Measured, side by side, the measures taking turns, best of --repeat:

- keyparty: what `keyparty sign BUNDLE --no-upload --digest D` does after
  reading the file: `signing.check_bundle`, the digest check,
  `signing.choose_signers`, `signing.certify_all` (import the targets, one gpg
  run per key for both user IDs) and `signing.write_files` (one file per
  certification);
- raw: `gpg --import` of the target keys, then per key ONE `gpg
  --quick-sign-key FPR '=uid1' '=uid2'` with the same options (notations,
  policy URL, level 3, 365d expiry), then per user ID one `gpg --export
  --export-filter 'keep-uid=uid = UID' FPR > file`;
- cli (context, unless --no-cli): the real command as a subprocess,
  `keyparty sign FILE --homedir H --digest D --no-upload --out DIR`
  (Python start-up and imports included).

The last line printed is `ratio=<keyparty/raw>` for the largest N (target: at
most 1.2; caff is about 13x the raw loop, pius about 3x).

Every gpg call names a short --homedir under /tmp; HOME points at a scratch
folder (the run fails if a .gnupg appears there); every gpg-agent started in
our homes is stopped and every temporary folder deleted.
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
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import benchlib

BENCH = Path(__file__).resolve().parent
BASE_URL = "http://keyparty.bench:8000"
TARGET_RATIO = 1.2
TARGET_CACHE = "/tmp/keyparty-bench-2uid-keys-{n}.gpg"
SIGNER_CACHE = "/tmp/keyparty-bench-signer-keys-{n}.gpg"
SIGNER_BASE = 90000  # signers are "Bench User 90001 ..." (never a target's number)
QUIET = ["--pinentry-mode", "loopback", "--passphrase", "", "--trust-model", "always"]


bi = benchlib.load("import")
GPG = bi.GPG
short_tempdir = bi.short_tempdir
remove = bi.remove
best_interleaved = bi.best_interleaved


# -- test keys (two user IDs; signers with their secret keys) ------------------


def second_user_id(i: int) -> str:
    return f"Bench User {i} <bench{i}@work.example.net>"


def _generate_batch(first: int, last: int, secret: bool) -> bytes:
    """Keys first..last as bench/import.py makes them, each given a second user ID."""
    home = short_tempdir()
    try:
        (home / "params").write_text(bi._parameters(first, last))
        bi.gpg(home, *QUIET, "--gen-key", str(home / "params"))
        listing = bi.gpg(home, "--with-colons", "--list-keys").stdout.decode()
        fingerprints: dict[int, str] = {}
        fingerprint = None
        for line in listing.splitlines():
            fields = line.split(":")
            if fields[0] == "pub":
                fingerprint = None
            elif fields[0] == "fpr" and fingerprint is None:
                fingerprint = fields[9]
            elif fields[0] == "uid":
                number = int(fields[9].split("<bench")[1].split("@")[0])
                fingerprints[number] = fingerprint
        for i in range(first, last + 1):
            bi.gpg(home, *QUIET, "--quick-add-uid", fingerprints[i], second_user_id(i))
        export = "--export-secret-keys" if secret else "--export"
        return bi.gpg(
            home, *QUIET, export, *(fingerprints[i] for i in range(first, last + 1))
        ).stdout
    finally:
        remove(home)  # kills the agent first


def count_in(data: bytes) -> tuple[int, int]:
    """(keys, user IDs) in key data, public or secret, as gpg reads it."""
    home = short_tempdir()
    try:
        (home / "keys").write_bytes(data)
        out = bi.gpg(
            home, "--with-colons", "--import-options", "show-only", "--import", str(home / "keys")
        ).stdout.splitlines()
        keys = sum(line.startswith((b"pub:", b"sec:")) for line in out)
        return keys, sum(line.startswith(b"uid:") for line in out)
    finally:
        remove(home)


def cached_keys(n: int, signers: bool = False) -> Path:
    """n keys with two user IDs each (signers: with their secret keys), made now if missing."""
    path = Path((SIGNER_CACHE if signers else TARGET_CACHE).format(n=n))
    if path.exists() and count_in(path.read_bytes()) == (n, 2 * n):
        return path
    base = SIGNER_BASE if signers else 0
    workers = max(1, min(os.cpu_count() or 1, 8, n))
    bounds = [
        (base + n * w // workers + 1, base + n * (w + 1) // workers, signers)
        for w in range(workers)
    ]
    started = time.perf_counter()
    what = "signer keys (with secret keys)" if signers else "keys with two user IDs"
    print(f"Generating {n} {what} in {workers} gpg processes (not timed) ...", flush=True)
    with ThreadPoolExecutor(workers) as pool:
        data = b"".join(pool.map(lambda b: _generate_batch(*b), bounds))
    if count_in(data) != (n, 2 * n):
        raise SystemExit(f"key generation made {count_in(data)} (keys, user IDs), not {n, 2 * n}")
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    print(f"  wrote {path} ({len(data)} bytes) in {time.perf_counter() - started:.1f} s")
    return path


# -- signer homes ------------------------------------------------------------


def signer_home(secret_keys: Path) -> tuple[Path, list[str], bytes]:
    """A home holding the signers' secret keys: (path, fingerprints, public keys)."""
    from keyparty.gpg import GnuPGHome

    home = GnuPGHome(short_tempdir(), agent=True)
    outcome = home.import_keys(secret_keys.read_bytes(), options=None)
    fingerprints = [k.fingerprint for k in home.secret_keys()]
    assert outcome.counts.get("sec_imported") == len(fingerprints), outcome.counts
    public = home.export(fingerprints)
    stop_agent(home.path)
    return home.path, fingerprints, public


def stop_agent(home: Path) -> None:
    subprocess.run([bi.GPGCONF, "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True)


def copy_home(template: Path) -> Path:
    """A fresh copy of a GnuPG home (no sockets, no lock files)."""
    fresh = short_tempdir()
    shutil.copytree(
        template,
        fresh,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("S.*", "*.lock", ".#*", "keyparty.lock"),
    )
    return fresh


# -- the event ---------------------------------------------------------------


@dataclass
class Party:
    instance: Path
    event_id: str
    sha256: str
    # signer fingerprint -> their bundle (bundle_for)
    bundles: dict[str, dict]


def verification_clock(day, number: int, second: bool) -> datetime:
    """P4 kept: a new key every 31 s (default: 20 s apart, at most 10 in 5 min);
    a further user ID of the same key is never rushed."""
    start = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=8)
    return start + timedelta(seconds=31 * number + (1 if second else 0))


def build_event(
    instance: Path,
    name: str,
    target_keys: bytes,
    signer_keys: bytes,
    signers: list[str],
    context: str = "identity",
    verified: int | None = None,
) -> Party:
    """A real event up to signing: registered, frozen, confirmed, verified, bundles made.

    Every signer verifies every user ID of every target (`context`, photo-id),
    or of the first `verified` targets only.
    """
    from keyparty import create_app
    from keyparty import events
    from keyparty import registration
    from keyparty import verification
    from keyparty.bundle import bundle_for
    from keyparty.extensions import db

    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    app = create_app()
    with app.app_context():
        today = datetime.now(UTC).date()
        event = events.create_event(name, today)
        result = registration.register_keys(
            event,
            [("targets.gpg", target_keys), ("signers.gpg", signer_keys)],
            events.event_home(event),
        )
        assert not result.rejected, result.rejected[:3]
        assert events.take_step(event, "freeze") is None
        confirmed = datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=7)
        for attendee in event.attendees:
            assert verification.confirm_entry(attendee, confirmed) is None
        assert events.take_step(event, "start-verifying") is None
        owner = {key.fingerprint: key.attendee for key in event.keys}
        targets = [key for key in event.keys if key.fingerprint not in signers][:verified]
        # verification.record reads every earlier verification of the signer and
        # its user ID and key (verification.py, `earlier=`); after each commit
        # those are expired and reloaded one query each, so recording 2N of them
        # costs O(N^2) queries (121 s for N = 500). Keep them loaded while setting
        # up: the rows written are the same.
        session = db.session()
        session.expire_on_commit = False
        for signer_fpr in signers:
            signer = owner[signer_fpr]
            for number, key in enumerate(targets):
                assert len(key.user_ids) == 2, key.user_ids
                for position, user_id in enumerate(key.user_ids):
                    now = verification_clock(today, number, position > 0)
                    made, refusal = verification.record(
                        signer, signer, user_id, context, "photo-id", now
                    )
                    assert refusal is None, refusal
        session.expire_on_commit = True
        assert events.take_step(event, "cool-off") is None
        assert events.take_step(event, "start-signing") is None
        bundles = {fpr: bundle_for(owner[fpr], BASE_URL) for fpr in signers}
        party = Party(instance, event.id, event.partylist_sha256, bundles)
        db.session.remove()
        db.engine.dispose()
    os.environ.pop("KEYPARTY_INSTANCE", None)
    return party


# -- the measured runs ---------------------------------------------------------


def keyparty_sign(template: Path, bundle: dict, profiler: cProfile.Profile | None = None) -> float:
    """In process, what `keyparty sign BUNDLE --no-upload --digest D` does after loading it."""
    from keyparty import signing
    from keyparty.gpg import GnuPGHome

    expected = len(bundle["verifications"])
    home_path = copy_home(template)
    out = short_tempdir()
    try:
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        signing.check_bundle(bundle)
        assert signing.check_digest(bundle, bundle["party_list_sha256"])
        home = GnuPGHome(home_path, create=False, agent=True)
        signers = signing.choose_signers(home, bundle, [])
        report = signing.certify_all(home, bundle, signers)
        files = signing.write_files(home, bundle, signers, out)
        elapsed = time.perf_counter() - started
        if profiler:
            profiler.disable()
        assert not report.failed, report.failed[:3]
        assert len(report.made) == expected and not report.skipped, (len(report.made), expected)
        assert len(files) == expected, (len(files), expected)
        return elapsed
    finally:
        remove(out)
        remove(home_path)


def run_raw_commands(commands: list[list[str]]) -> None:
    """Run raw_commands' gpg lines in order; `… > FILE` writes stdout to FILE."""
    for command in commands:
        if command[-2] == ">":
            with open(command[-1], "wb") as target:
                subprocess.run(command[:-2], stdout=target, stderr=subprocess.PIPE, check=True)
        else:
            subprocess.run(command, capture_output=True, check=True)


def raw_commands(bundle: dict, home: Path, out: Path, keyfile: Path) -> list[list[str]]:
    """The raw gpg loop: import, one --quick-sign-key per key, one export per user ID."""
    event = bundle["event"]
    signer = bundle["signer"]["fingerprints"][0]
    base = [GPG, "--homedir", str(home), "--batch", "--no-tty", *QUIET]
    options = ["--local-user", signer]
    options += ["--cert-notation", f"{event['context_notation']}=identity"]
    options += ["--cert-notation", f"{event['event_notation']}={event['id']}"]
    if event["policy_url"]:  # none unless the event has a public address
        options += ["--cert-policy-url", event["policy_url"]]
    options += ["--default-cert-level", "3", "--default-cert-expire", "365d"]
    options += ["--no-ask-cert-level", "--no-ask-cert-expire"]
    user_ids: dict[str, list[str]] = {}
    for v in bundle["verifications"]:
        user_ids.setdefault(v["fingerprint"], []).append(v["user_id"])
    commands = [[*base, "--import", str(keyfile)]]
    for fingerprint, uids in user_ids.items():
        commands.append(
            [*base, *options, "--quick-sign-key", fingerprint, *(f"={u}" for u in uids)]
        )
    for fingerprint, uids in user_ids.items():
        for n, uid in enumerate(uids):
            export = ["--export", "--export-filter", f"keep-uid=uid = {uid}", fingerprint]
            commands.append([*base, *export, ">", str(out / f"{fingerprint}-{n}.gpg")])
    return commands


def raw_sign(template: Path, bundle: dict, keyfile: Path) -> float:
    home = copy_home(template)
    out = short_tempdir()
    try:
        commands = raw_commands(bundle, home, out, keyfile)
        started = time.perf_counter()
        run_raw_commands(commands)
        elapsed = time.perf_counter() - started
        check_raw_result(bundle, home, out)
        return elapsed
    finally:
        remove(out)
        remove(home)


def check_raw_result(bundle: dict, home: Path, out: Path) -> None:
    """Every user ID certified once by the signer, with both notations; one file each."""
    expected = len(bundle["verifications"])
    signer = bundle["signer"]["fingerprints"][0]
    listing = bi.gpg(
        home,
        "--with-colons",
        "--list-options",
        "show-sig-subpackets=20",
        "--check-sigs",
        *bundle["keys"],
    ).stdout.decode()
    good = [
        line
        for line in listing.splitlines()
        if line.startswith("sig:!:") and line.split(":")[12] == signer
    ]
    assert len(good) == expected, (len(good), expected)
    assert all(line.split(":")[10] == "13x" for line in good)
    assert listing.count(bundle["event"]["id"]) >= expected
    files = list(out.iterdir())
    assert len(files) == expected and all(f.stat().st_size > 0 for f in files)


def cli_sign(template: Path, bundle_file: Path, sha256: str, expected: int) -> float:
    """The real command, as a subprocess."""
    home = copy_home(template)
    out = short_tempdir()
    try:
        command = [keyparty_command(), "sign", str(bundle_file), "--homedir", str(home)]
        command += ["--digest", sha256, "--no-upload", "--out", str(out)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYPARTY_")}
        started = time.perf_counter()
        result = subprocess.run(
            command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL
        )
        elapsed = time.perf_counter() - started
        assert result.returncode == 0, result.stderr
        assert f"made {expected}, skipped 0, failed 0" in result.stdout, result.stdout
        assert len(list(out.glob("*.asc"))) == expected
        return elapsed
    finally:
        remove(out)
        remove(home)


def keyparty_command() -> str:
    beside = Path(sys.executable).with_name("keyparty")
    return str(beside) if beside.exists() else (shutil.which("keyparty") or "keyparty")


# -- report ------------------------------------------------------------------


def profile(run: Callable[[cProfile.Profile], float], limit: int = 30) -> str:
    """cProfile of one keyparty run: keyparty's own functions (gpg time under GnuPGHome._run)."""
    profiler = cProfile.Profile()
    run(profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"/keyparty/[a-z_/]+\.py|gnupg\.py", limit)
    return out.getvalue()


def scratch_home() -> Path:
    """HOME for this process and its children: a scratch folder, so ~/.gnupg is never touched."""
    scratch = short_tempdir()
    os.environ["HOME"] = str(scratch)
    os.environ.pop("GNUPGHOME", None)
    for name in (
        "KEYPARTY_DATABASE_URL",
        "KEYPARTY_SECRET_KEY",
        "KEYPARTY_HOST_PASSWORD",
        "KEYPARTY_PUBLIC_URL",
        "KEYPARTY_INSTANCE",
    ):
        os.environ.pop(name, None)
    return scratch


def gpg_version() -> str:
    return subprocess.run([GPG, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


@dataclass
class Row:
    n: int
    raw: float
    keyparty: float
    cli: float | None

    @property
    def ratio(self) -> float:
        return self.keyparty / self.raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500], metavar="N")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is kept")
    parser.add_argument("--no-cli", action="store_true", help="skip the `keyparty sign` subprocess")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of keyparty at the largest N"
    )
    options = parser.parse_args()
    sizes = sorted(set(options.sizes))

    scratch = scratch_home()
    rows = []
    profiled = ""
    try:
        signer_keys = cached_keys(1, signers=True)
        template, (signer,), signer_public = signer_home(signer_keys)
        for n in sizes:
            targets = cached_keys(n).read_bytes()
            started = time.perf_counter()
            party = build_event(
                short_tempdir(), f"Sign bench {n}", targets, signer_public, [signer]
            )
            bundle = party.bundles[signer]
            assert len(bundle["keys"]) == n and len(bundle["verifications"]) == 2 * n
            print(f"N = {n}: event {party.event_id} built in {time.perf_counter() - started:.1f} s")
            files = short_tempdir()
            keyfile = files / "targets.asc"
            keyfile.write_text("".join(bundle["keys"].values()))
            bundle_file = files / "bundle.json"
            bundle_file.write_text(json.dumps(bundle))
            runs = {
                "raw": lambda b=bundle, k=keyfile: raw_sign(template, b, k),
                "keyparty": lambda b=bundle: keyparty_sign(template, b),
            }
            if not options.no_cli:
                runs["cli"] = lambda f=bundle_file, s=party.sha256, e=2 * n: cli_sign(
                    template, f, s, e
                )
            best = best_interleaved(runs, options.repeat)
            rows.append(Row(n, best["raw"], best["keyparty"], best.get("cli")))
            if options.profile and n == sizes[-1]:
                profiled = profile(lambda p, b=bundle: keyparty_sign(template, b, p))
            remove(files)
            remove(party.instance)
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        for path in list(bi._temp_dirs):
            remove(path)

    if profiled:
        print(profiled)
    print(f"\ngpg: {GPG} ({gpg_version()})")
    print(f"best of {options.repeat}, seconds; each run in a fresh copy of the signer's home")
    for row in rows:
        print(f"\nN = {row.n} keys, {2 * row.n} user IDs")
        print(f"  {'raw gpg loop (import, sign per key, export per uid)':<54}{row.raw:8.3f}")
        print(f"  {'keyparty (check, choose, certify_all, write_files)':<54}{row.keyparty:8.3f}")
        if row.cli is not None:
            print(f"  {'keyparty sign CLI subprocess (context)':<54}{row.cli:8.3f}")
            print(f"  {'ratio CLI/raw':<54}{row.cli / row.raw:8.2f}")
        print(f"  {'ratio keyparty/raw':<54}{row.ratio:8.2f}   (target <= {TARGET_RATIO})")
    command = [".venv/bin/python", "bench/sign.py", "--sizes", *map(str, sizes)]
    if options.repeat != 3:
        command += ["--repeat", str(options.repeat)]
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"ratio={rows[-1].ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
