"""Benchmark: proof of possession (O2) against the raw gpg commands doing the same work.

    .venv/bin/python bench/proof.py [--rounds 5]

Set-up, not timed: a fresh instance folder (a short folder under /tmp), an
event, the fixture keys that have secret keys without a passphrase
(gnupg-home-fixtures/attendees) registered as a host import would; one
signing challenge per key, clearsigned in each key's own secret home.

Measured, side by side, the measures taking turns, best of --rounds, each
round over every key:

- challenge: `proof.start(key, "rejoin", …)` (one-time code, link token,
  the letter encrypted to the key in the event home, the row stored) against
  raw `gpg --armor --encrypt --recipient FPR` of the same letter in a copy of
  the event home;
- signature: `proof.answer_signature(challenge, clearsigned)` (a scratch
  home beside the event home, the key imported from the database, the
  clearsigned text checked and compared) against raw: a new home, `gpg
  --import` of the key, `gpg --decrypt` of the clearsigned text, the home
  removed.

The last line is `challenge_ratio=<keyparty/raw> signature_ratio=<keyparty/raw>`.
Every gpg call names a short --homedir under /tmp; every folder made is removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from datetime import date
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ATTENDEES = ROOT / "gnupg-home-fixtures" / "attendees"
# Fixture keys whose secret key has no passphrase.
NAMES = ("alice", "bob", "carol", "dalia", "hanako", "rsa", "signer1", "signer2", "zoe")
GPG = ["gpg", "--batch", "--no-tty", "--no-options", "--trust-model", "always"]


def raw_encrypt(home: Path, fingerprint: str, data: bytes) -> None:
    done = subprocess.run(
        [*GPG, "--homedir", str(home), "--no-autostart", "--armor", "--encrypt"]
        + ["--recipient", fingerprint],
        input=data,
        capture_output=True,
    )
    assert done.returncode == 0 and done.stdout.startswith(b"-----BEGIN PGP MESSAGE")


def raw_verify(key: bytes, signed: bytes) -> None:
    home = Path(tempfile.mkdtemp(prefix="kpr", dir="/tmp"))
    try:
        gpg = [*GPG, "--homedir", str(home), "--no-autostart"]
        subprocess.run([*gpg, "--import"], input=key, capture_output=True, check=True)
        done = subprocess.run(
            [*gpg, "--status-fd", "1", "--decrypt"], input=signed, capture_output=True
        )
        assert b"VALIDSIG" in done.stdout, done.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="kpb", dir="/tmp"))
    scratch_home = Path(tempfile.mkdtemp(prefix="kph", dir="/tmp"))
    os.environ["KEYPARTY_INSTANCE"] = str(instance)
    os.environ["HOME"] = str(scratch_home)
    secret_homes: list[Path] = []
    try:
        from keyparty import create_app
        from keyparty import events
        from keyparty import proof
        from keyparty import registration
        from keyparty.extensions import db
        from keyparty.openpgp import dearmor

        app = create_app()
        with app.app_context():
            event = events.create_event("Proof bench", date.today())
            inputs = [(name, (ATTENDEES / f"{name}.asc").read_bytes()) for name in NAMES]
            result = registration.register_keys(event, inputs, events.event_home(event))
            assert not result.rejected, result.rejected
            keys = {a.key.fingerprint: a.key for a in result.accepted}
            home = events.event_home(event)
            raw_home = Path(tempfile.mkdtemp(prefix="kpe", dir="/tmp"))
            for name in ("pubring.kbx", "trustdb.gpg"):
                if (home.path / name).exists():
                    shutil.copy2(home.path / name, raw_home / name)
            secret_homes.append(raw_home)

            # Answers made on each holder's own machine (not timed).
            answers = []
            for name, key in zip(NAMES, keys.values(), strict=True):
                started = proof.start(key, "rejoin", "http://bench.test")
                own = Path(tempfile.mkdtemp(prefix="kps", dir="/tmp"))
                secret_homes.append(own)
                gpg = [*GPG, "--homedir", str(own)]
                subprocess.run(
                    [*gpg, "--import", str(ATTENDEES / f"{name}.secret.asc")],
                    capture_output=True,
                    check=True,
                )
                signed = subprocess.run(
                    [*gpg, "--clearsign"],
                    input=started.challenge.text.encode(),
                    capture_output=True,
                    check=True,
                ).stdout.decode()
                answers.append((started.challenge, signed))
            letter = proof.challenge_letter(
                next(iter(keys.values())),
                "ABCDEFGH",
                "http://bench.test/join/x" * 2,
                datetime.now(),
            ).encode()

            best = {"challenge": [], "raw challenge": [], "signature": [], "raw signature": []}
            for _ in range(options.rounds):
                began = time.perf_counter()
                for key in keys.values():
                    proof.start(key, "rejoin", "http://bench.test")
                best["challenge"].append(time.perf_counter() - began)

                began = time.perf_counter()
                for fingerprint in keys:
                    raw_encrypt(raw_home, fingerprint, letter)
                best["raw challenge"].append(time.perf_counter() - began)

                began = time.perf_counter()
                for challenge, signed in answers:
                    assert proof.answer_signature(challenge, signed) is None
                best["signature"].append(time.perf_counter() - began)

                began = time.perf_counter()
                for challenge, signed in answers:
                    raw_verify(dearmor(challenge.key.armored.encode()), signed.encode())
                best["raw signature"].append(time.perf_counter() - began)
            db.session.remove()

        n = len(keys)
        print(f"{n} keys, best of {options.rounds} rounds (ms per key):")
        for name, times in best.items():
            print(f"  {name:<16}{min(times) / n * 1000:8.1f}")
        challenge_ratio = min(best["challenge"]) / min(best["raw challenge"])
        signature_ratio = min(best["signature"]) / min(best["raw signature"])
        print(f"challenge_ratio={challenge_ratio:.2f} signature_ratio={signature_ratio:.2f}")
    finally:
        for folder in secret_homes:
            subprocess.run(["gpgconf", "--homedir", str(folder), "--kill", "gpg-agent"])
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(instance, ignore_errors=True)
        assert not (scratch_home / ".gnupg").exists(), "a gpg call ran without its home"
        shutil.rmtree(scratch_home, ignore_errors=True)


if __name__ == "__main__":
    main()
