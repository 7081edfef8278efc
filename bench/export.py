"""Benchmark: exporting the published keyring with keyparty against the raw gpg command.

    .venv/bin/python bench/export.py [--keys 1000] [--certifications 5000] [--repeat 3] [--profile]

Set-up, not timed, made once and cached as /tmp/keyparty-bench-export-N-C/
(an instance folder and meta.json; delete the folder to rebuild it):

- KEYS target keys (bench/import.py's cached keys: ed25519 + cv25519, one
  user ID each) and S = ceil(CERTIFICATIONS / KEYS) signer keys with their
  secret keys (bench/sign.py's cached signer keys, two user IDs each);
- a real event in a fresh instance folder: `create_app()`, all keys
  registered (`registration.register_keys`), then frozen, verifying,
  cooling-off, signing (`events.take_step`);
- the certifications made by gpg: each signer, in its own GnuPG home (a copy
  of the signers' home, the signers running in parallel), certifies its share
  of the targets with one `gpg --quick-sign-key FPR '=UID'` per key, with
  keyparty's options (bench/sign.py's `raw_commands`: the context and event
  notations, the policy URL, level 3, 365 days); then `gpg --export` of them;
- the Certification rows INSERTED DIRECTLY (no verifications, no intake):
  for each certification, what intake would store, status "accepted",
  owner_decision "accepted", `armored` the minimal key
  (`openpgp.minimal_key`: primary key, the user ID, its self-signature, the
  certification); the minimal keys merged into the event home as intake
  does; then `publishing.rebuild_published(event)` builds the published home.

Measured, side by side, the measures taking turns, best of --repeat, on a
fresh copy of the cached instance folder (one `create_app()`, not timed;
each keyparty run in a new app context, so the event and its keys are read
from the database inside the timing, as `keyparty export` does):

- keyparty: `exports.write_keyring(event, path)` (armored) and
  `write_keyring(event, path, binary=True)`;
- raw: `gpg --homedir PUBLISHED --batch --export --armor > file` and without
  --armor (binary), the same home;
- context: raw naming every fingerprint as keyparty does, and keyparty's
  `write_per_key`, `write_per_user_id` and `write_wkd` (information only).

Every output is checked: KEYS + S keys and exactly CERTIFICATIONS third-party
certifications (counted with keyparty.openpgp), and keyparty's keyring is the
same bytes as gpg's.

The last line printed is `ratio=<keyparty/raw>` for the armored keyring
(target: at most 1.3).

Every gpg call names a short --homedir under /tmp; HOME points at a scratch
folder (the run fails if a .gnupg appears there); every gpg-agent started in
our homes is stopped and every temporary folder deleted.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import math
import os
import pstats
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import benchlib

BENCH = Path(__file__).resolve().parent
CACHE = "/tmp/keyparty-bench-export-{n}-{c}"
EVENT_NAME = "Export bench"
TARGET_RATIO = 1.3


sb = benchlib.load("sign")
bi = sb.bi
GPG = sb.GPG
short_tempdir = sb.short_tempdir
remove = sb.remove


# -- set-up: the event, its certifications, the published home ----------------


def shares(n: int, c: int) -> list[int]:
    """How many targets each signer certifies: all of them, the last signer the rest."""
    return [min(n, c - s * n) for s in range(math.ceil(c / n))]


def certify(template: Path, signer: str, settings: dict, targets: dict[str, str], keyfile: Path):
    """One signer, in its own copy of the signers' home: one quick-sign-key per target.

    Returns the targets as gpg exports them afterwards (with the certifications).
    """
    home = sb.copy_home(template)
    try:
        bundle = {
            "event": settings,
            "signer": {"fingerprints": [signer]},
            "verifications": [{"fingerprint": f, "user_id": u} for f, u in targets.items()],
        }
        # import + one --quick-sign-key per key; its per-user-ID exports are left out
        for command in sb.raw_commands(bundle, home, home, keyfile):
            if ">" not in command:
                subprocess.run(command, capture_output=True, check=True)
        return bi.gpg(home, "--export", *targets).stdout
    finally:
        remove(home)  # kills the agent first


def build_instance(instance: Path, n: int, c: int) -> dict:
    """The event of the benchmark, in `instance`; returns what meta.json records."""
    from keyparty import create_app
    from keyparty import events
    from keyparty import openpgp
    from keyparty import publishing
    from keyparty import registration
    from keyparty.events import policy_url
    from keyparty.extensions import db
    from keyparty.intake import notation_names
    from keyparty.models import Certification

    counts = shares(n, c)
    targets_file = bi.test_keys(n)
    template, signers, signer_public = sb.signer_home(sb.cached_keys(len(counts), signers=True))
    started = time.perf_counter()
    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    app = create_app()
    with app.app_context():
        today = datetime.now(UTC).date()
        event = events.create_event(EVENT_NAME, today)
        result = registration.register_keys(
            event,
            [("targets.gpg", targets_file.read_bytes()), ("signers.gpg", signer_public)],
            events.event_home(event),
        )
        assert not result.rejected, result.rejected[:3]
        assert len(event.keys) == n + len(signers), len(event.keys)
        for step in ("freeze", "start-verifying", "cool-off", "start-signing"):
            assert events.take_step(event, step) is None, step
        registered = time.perf_counter()

        context_name, event_name = notation_names(event)
        settings = {
            "id": event.id,
            "context_notation": context_name,
            "event_notation": event_name,
            "policy_url": policy_url(event),
        }
        keys = {key.fingerprint: key for key in event.keys}
        targets = [key for key in event.keys if key.fingerprint not in signers]
        keyfile = short_tempdir() / "targets.gpg"
        keyfile.write_bytes(targets_file.read_bytes())
        jobs = [
            (signer, {k.fingerprint: k.user_ids[0].text for k in targets[:count]})
            for signer, count in zip(signers, counts, strict=True)
        ]
        print(
            f"Certifying: {len(signers)} signers x up to {n} keys, one gpg --quick-sign-key "
            f"each, signers in parallel (not timed) ...",
            flush=True,
        )
        with ThreadPoolExecutor(len(jobs)) as pool:
            exported = list(
                pool.map(lambda job: certify(template, job[0], settings, job[1], keyfile), jobs)
            )
        remove(keyfile.parent)
        certified = time.perf_counter()

        now = datetime.now(UTC).replace(tzinfo=None)
        rows, minimals = [], []
        for signer, data in zip(signers, exported, strict=True):
            for block in openpgp.read_keys(data):
                target = keys[block.fingerprint]
                for entry in openpgp.user_id_signatures(block):
                    text = entry.user_id.decode("utf-8", "replace")
                    user_id = next(u for u in target.user_ids if u.text == text)
                    for signature in entry.signatures:
                        if signature.issuer_fingerprint != signer:
                            continue
                        minimal = openpgp.minimal_key(block, entry.user_id, [signature])
                        minimals.append(minimal)
                        created = datetime.fromtimestamp(signature.created, UTC)
                        expires = created + timedelta(seconds=signature.expires_after or 0)
                        rows.append(
                            Certification(
                                event_id=event.id,
                                signer_id=keys[signer].attendee_id,
                                key_id=target.id,
                                user_id_id=user_id.id,
                                issuer_fingerprint=signer,
                                target_fingerprint=block.fingerprint,
                                user_id_text=text,
                                context=signature.notation(context_name).decode(),
                                level=signature.level,
                                created=created.replace(tzinfo=None),
                                expires=expires.replace(tzinfo=None),
                                signature_sha256=hashlib.sha256(signature.raw).hexdigest(),
                                status="accepted",
                                armored=openpgp.armor(minimal),
                                received_at=now,
                                owner_decision="accepted",
                                decided_at=now,
                            )
                        )
        assert len(rows) == c, (len(rows), c)
        db.session.add_all(rows)
        db.session.commit()
        # Intake merges what it accepted into the event home: so here.
        with events.event_home(event).staged() as stage:
            stage.import_keys(b"".join(minimals), options=None)
            stage.commit()
        stored = time.perf_counter()
        publishing.rebuild_published(event)
        published = time.perf_counter()
        assert len(publishing.owner_accepted(event)) == c
        meta = {
            "event_id": event.id,
            "keys": len(event.keys),
            "targets": n,
            "signers": signers,
            "certifications": c,
            "user_ids": sum(len(key.user_ids) for key in event.keys),
        }
        db.session.remove()
        db.engine.dispose()
    os.environ.pop("KEYPARTY_INSTANCE", None)
    remove(template)
    print(
        f"  event {meta['event_id']}: registered and stepped to signing in "
        f"{registered - started:.1f} s, {c} certifications made in {certified - registered:.1f} s, "
        f"rows stored and merged into the event home in {stored - certified:.1f} s, "
        f"rebuild_published in "
        f"{published - stored:.1f} s"
    )
    return meta


def cached_event(n: int, c: int) -> tuple[Path, dict]:
    """The cached instance folder with the event (made now if missing), and its meta.json."""
    cache = Path(CACHE.format(n=n, c=c))
    meta_file = cache / "meta.json"
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        published = cache / "instance" / "gnupg" / f"{meta['event_id']}.published"
        if (
            meta.get("targets") == n
            and meta.get("certifications") == c
            and (published / "pubring.kbx").exists()
        ):
            return cache / "instance", meta
    shutil.rmtree(cache, ignore_errors=True)
    instance = short_tempdir()
    meta = build_instance(instance, n, c)
    bi.kill_agents(instance)
    partial = cache.with_name(cache.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(instance, partial / "instance", ignore=shutil.ignore_patterns("S.*"))
    (partial / "meta.json").write_text(json.dumps(meta, indent=2))
    os.replace(partial, cache)
    remove(instance)
    print(f"  cached in {cache}")
    return cache / "instance", meta


# -- the measured exports ------------------------------------------------------


def certifications_in(data: bytes) -> tuple[int, int]:
    """(keys, third-party certifications on user IDs) in key data, armored or binary."""
    from keyparty import openpgp

    if openpgp.is_armored(data):
        data = openpgp.dearmor(data)
    blocks = openpgp.read_keys(data) if data else []
    certs = sum(
        1
        for block in blocks
        for entry in openpgp.user_id_signatures(block)
        for signature in entry.signatures
        if signature.issuer_fingerprint and signature.issuer_fingerprint != block.fingerprint
    )
    return len(blocks), certs


class Bench:
    """A fresh copy of the cached instance, one app; the runs write into `out`."""

    def __init__(self, pristine: Path, meta: dict) -> None:
        from keyparty import create_app

        self.meta = meta
        self.event_id = meta["event_id"]
        self.instance = short_tempdir()
        shutil.copytree(pristine, self.instance, dirs_exist_ok=True)
        os.environ["KEYPARTY_INSTANCE"] = str(self.instance)
        self.app = create_app()
        self.published = self.instance / "gnupg" / f"{self.event_id}.published"
        self.out = short_tempdir()
        with self.app.app_context():
            from keyparty import events

            event = events.get_event(self.event_id)
            self.fingerprints = [key.fingerprint for key in event.keys]

    def close(self) -> None:
        from keyparty.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()
        os.environ.pop("KEYPARTY_INSTANCE", None)
        remove(self.out)
        remove(self.instance)

    def file(self, name: str) -> Path:
        path = self.out / name
        if path.is_dir():
            shutil.rmtree(path)
        path.unlink(missing_ok=True)
        return path

    def keyparty(self, write: str, name: str, profiler: cProfile.Profile | None = None, **kw):
        """`exports.<write>(event, path)` in a new app context (a new database session)."""
        from keyparty import events
        from keyparty import exports

        path = self.file(name)
        with self.app.app_context():
            if profiler:
                profiler.enable()
            started = time.perf_counter()
            event = events.get_event(self.event_id)
            getattr(exports, write)(event, path, **kw)
            elapsed = time.perf_counter() - started
            if profiler:
                profiler.disable()
        return elapsed

    def raw(self, name: str, armor: bool, named: bool = False) -> float:
        """`gpg --homedir PUBLISHED --batch --export [--armor] [FPR...] > file`."""
        command = [GPG, "--homedir", str(self.published), "--batch", "--no-tty", "--export"]
        command += ["--armor"] if armor else []
        command += self.fingerprints if named else []
        with open(self.file(name), "wb") as out:
            started = time.perf_counter()
            subprocess.run(command, stdout=out, stderr=subprocess.PIPE, check=True)
            return time.perf_counter() - started

    def keyparty_argv(self, name: str) -> float:
        """The gpg command keyparty runs (python-gnupg's arguments, --status-fd 2, every
        fingerprint named), as a plain subprocess: gpg's share of keyparty's time."""
        from keyparty.gpg import GnuPGHome

        home = GnuPGHome(self.published, create=False)
        command = home.gpg.make_args(["--export", "--armor", *self.fingerprints], False)
        with open(self.file(name), "wb") as out:
            started = time.perf_counter()
            subprocess.run(command, stdout=out, stderr=subprocess.PIPE, check=True)
            return time.perf_counter() - started

    def check(self) -> list[str]:
        """Every output holds all keys and exactly the certifications; returns report lines."""
        keys, c = self.meta["keys"], self.meta["certifications"]
        lines = []
        for name in ("raw.asc", "keyparty.asc", "raw.gpg", "keyparty.gpg", "named.asc", "argv.asc"):
            data = (self.out / name).read_bytes()
            found = certifications_in(data)
            assert found == (keys, c), (name, found, (keys, c))
        same = (self.out / "raw.asc").read_bytes() == (self.out / "keyparty.asc").read_bytes()
        same_binary = (self.out / "raw.gpg").read_bytes() == (
            self.out / "keyparty.gpg"
        ).read_bytes()
        assert same_binary, "keyparty's binary keyring differs from gpg's"
        size = (self.out / "keyparty.asc").stat().st_size
        lines.append(
            f"keyrings: {keys} keys and {c} third-party certifications in each (keyparty.openpgp); "
            f"armored {size / 1e6:.2f} MB; keyparty = raw bytes: "
            f"armored {'yes' if same else 'NO'}, binary yes"
        )
        for name, files, expected in (
            ("per-key", "*.asc", keys),
            ("per-uid", "*.asc", self.meta["user_ids"]),
            ("wkd", "hu/*", None),
        ):
            paths = sorted((self.out / name).rglob(files))
            total = sum(certifications_in(p.read_bytes())[1] for p in paths)
            if name == "wkd":
                total //= 2  # both layouts (direct and advanced) hold the same files
            assert expected is None or len(paths) == expected, (name, len(paths), expected)
            assert total == c, (name, total, c)
            lines.append(f"{name}: {len(paths)} files, {total} certifications in all")
        return lines


def profile(bench: Bench, limit: int = 30) -> str:
    """cProfile of one armored keyring export: keyparty's functions, gnupg, the database."""
    profiler = cProfile.Profile()
    bench.keyparty("write_keyring", "profile.asc", profiler)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(
        r"/keyparty/[a-z_/]+\.py|gnupg\.py|session\.py.*\((execute|scalar|get)\)|loading\.py"
        r"|subprocess\.py.*\(__init__\)|threading\.py.*\(join\)",
        limit,
    )
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000, help="target keys on the list")
    parser.add_argument(
        "--certifications", type=int, default=5000, help="owner-accepted certifications"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure; best is kept")
    parser.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one keyparty export"
    )
    options = parser.parse_args()
    n, c = options.keys, options.certifications
    if n < 1 or c < 1:
        parser.error("--keys and --certifications must be positive")

    scratch = sb.scratch_home()
    profiled = ""
    bench = None
    try:
        pristine, meta = cached_event(n, c)
        bench = Bench(pristine, meta)
        runs = {
            "raw": lambda: bench.raw("raw.asc", armor=True),
            "keyparty": lambda: bench.keyparty("write_keyring", "keyparty.asc"),
            "raw binary": lambda: bench.raw("raw.gpg", armor=False),
            "keyparty binary": lambda: bench.keyparty("write_keyring", "keyparty.gpg", binary=True),
            "raw named": lambda: bench.raw("named.asc", armor=True, named=True),
            "keyparty argv": lambda: bench.keyparty_argv("argv.asc"),
            "per-key": lambda: bench.keyparty("write_per_key", "per-key"),
            "per-uid": lambda: bench.keyparty("write_per_user_id", "per-uid"),
            "wkd": lambda: bench.keyparty("write_wkd", "wkd"),
        }
        for run in runs.values():  # warm up imports, caches and the page cache; not counted
            run()
        best = bi.best_interleaved(runs, options.repeat)
        checks = bench.check()
        if options.profile:
            profiled = profile(bench)
        bench.close()
        bench = None
        assert not (scratch / ".gnupg").exists(), "a gpg call ran without naming its home"
    finally:
        if bench is not None:
            os.environ.pop("KEYPARTY_INSTANCE", None)
        for path in list(bi._temp_dirs):
            remove(path)

    if profiled:
        print(profiled)
    keys, signers = meta["keys"], len(meta["signers"])
    ratio = best["keyparty"] / best["raw"]
    ratio_binary = best["keyparty binary"] / best["raw binary"]
    print(f"\ngpg: {GPG} ({sb.gpg_version()})")
    print(
        f"event {meta['event_id']} ({pristine.parent}): {keys} keys ({n} targets + {signers} "
        f"signers), {c} owner-accepted certifications (rows inserted directly, not through intake)"
    )
    print(f"best of {options.repeat}, seconds; PUBLISHED = the event's published GnuPG home")
    rows = [
        ("raw gpg --export --armor > file", best["raw"], ""),
        ("keyparty write_keyring (armored)", best["keyparty"], f"x{ratio:.2f}"),
        ("raw gpg --export > file (binary)", best["raw binary"], ""),
        ("keyparty write_keyring(binary=True)", best["keyparty binary"], f"x{ratio_binary:.2f}"),
        (
            f"raw gpg --export --armor FPR x {keys} (context)",
            best["raw named"],
            f"x{best['raw named'] / best['raw']:.2f}",
        ),
        (
            "keyparty's gpg command line alone (context)",
            best["keyparty argv"],
            f"x{best['keyparty argv'] / best['raw']:.2f}",
        ),
        (f"keyparty write_per_key ({keys} files)", best["per-key"], "information"),
        (
            f"keyparty write_per_user_id ({meta['user_ids']} files)",
            best["per-uid"],
            "information",
        ),
        ("keyparty write_wkd (both layouts)", best["wkd"], "information"),
    ]
    for label, seconds, note in rows:
        print(f"  {label:<46}{seconds:8.3f}   {note}")
    print(f"  {'ratio keyparty/raw, armored':<46}{ratio:8.2f}   (target <= {TARGET_RATIO})")
    print(f"  {'ratio keyparty/raw, binary':<46}{ratio_binary:8.2f}")
    print("checked:")
    for line in checks:
        print(f"  {line}")
    command = [".venv/bin/python", "bench/export.py"]
    if n != 1000:
        command += ["--keys", str(n)]
    if c != 5000:
        command += ["--certifications", str(c)]
    if options.repeat != 3:
        command += ["--repeat", str(options.repeat)]
    print(f"\nreproduce: {shlex.join(command)}")
    print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    sys.exit(main())
