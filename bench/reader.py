"""Benchmark: strangers' key data, keyparty's judgement against raw gpg (issue 11).

    .venv/bin/python bench/reader.py [--repeat 3]

1. The worst inputs under the 2 MiB upload limit (the cases of tests/test_fuzz.py):
   CPU seconds and peak memory (tracemalloc) of `openpgp.read_keys` plus what
   registration and intake ask of each key (user IDs, signatures, minimal keys).
2. A key with 2000 self-signed user IDs (gnupg-home-fixtures/strange/many-uids.asc):
   keyparty's registration (refused before gpg: the user ID cap) against raw
   `gpg --import` of the same file into a fresh home, which is what registering it
   would otherwise cost; and the same key cut to 100 user IDs (the cap), accepted.

CPU time is this process's (gpg's own time is in the wall figures). Every gpg call
names a short --homedir under /tmp; HOME points at a scratch folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keyparty import openpgp  # noqa: E402
from tests.test_fuzz import _worst_cases  # noqa: E402
from tests.test_fuzz import judge  # noqa: E402


def best(repeat: int, run) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return min(times)


def worst_inputs(repeat: int) -> None:
    print(f"{'input (2 MiB or less)':<40}{'CPU s':>8}{'peak MB':>9}")
    for name, data in _worst_cases().items():
        cpu = []
        for _ in range(repeat):
            began = time.process_time()
            judge(data)
            cpu.append(time.process_time() - began)
        tracemalloc.start()
        judge(data)
        peak = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        print(f"{name:<40}{min(cpu):8.3f}{peak:9.1f}")


def many_user_ids(repeat: int) -> None:
    from keyparty import create_app
    from keyparty import events
    from keyparty import registration

    data = (ROOT / "gnupg-home-fixtures" / "strange" / "many-uids.asc").read_bytes()
    [block] = openpgp.read_keys(data)
    first_100 = set(block.user_ids[:100])
    capped = openpgp.keep_user_ids(block, lambda uid: uid in first_100)

    def raw(key: bytes) -> None:
        home = tempfile.mkdtemp(prefix="kpb", dir="/tmp")
        try:
            subprocess.run(
                ["gpg", "--homedir", home, "--batch", "--no-autostart", "--import-options"]
                + ["self-sigs-only,import-clean", "--import"],
                input=key,
                capture_output=True,
                check=True,
            )
        finally:
            shutil.rmtree(home, ignore_errors=True)

    instance = tempfile.mkdtemp(prefix="kpb", dir="/tmp")
    os.environ["KEYPARTY_INSTANCE"] = instance
    app = create_app({"TESTING": True})
    try:
        with app.app_context():

            def keyparty(key: bytes, expect_refused: bool) -> None:
                event = events.create_event(f"Bench {time.perf_counter_ns()}")
                result = registration.register_keys(
                    event, [("k.asc", key)], events.event_home(event)
                )
                assert bool(result.rejected) == expect_refused, result.rejected

            print(f"{'2000 user IDs':<40}{'seconds':>8}")
            refused = best(repeat, lambda: keyparty(data, True))
            gpg = best(repeat, lambda: raw(data))
            print(f"{'  keyparty (refused: cap 100)':<40}{refused:8.3f}")
            print(f"{'  raw gpg --import (what it would cost)':<40}{gpg:8.3f}")
            accepted = best(repeat, lambda: keyparty(capped, False))
            gpg100 = best(repeat, lambda: raw(capped))
            print(f"{'100 user IDs: keyparty (accepted)':<40}{accepted:8.3f}")
            print(f"{'100 user IDs: raw gpg --import':<40}{gpg100:8.3f}")
            print(f"ratio={accepted / gpg100:.2f}")
    finally:
        shutil.rmtree(instance, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="kph", dir="/tmp")
    os.environ["HOME"] = home
    os.environ.pop("GNUPGHOME", None)
    try:
        worst_inputs(args.repeat)
        many_user_ids(args.repeat)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
