"""A sampling profiler for `keyparty serve`'s worker processes (py-spy's
poor cousin, standard library only).

    .venv/bin/python bench/sampler.py OUT.txt serve --host 127.0.0.1 --port 8000 --workers 2

runs `keyparty ARGS...` in this interpreter. In every process forked from it
(gunicorn's workers) a thread looks at every other thread's Python stack
every 5 ms (sys._current_frames) and counts each stack; every two seconds,
and when the process ends, it writes the counts as collapsed stacks
("frame;frame;frame COUNT" lines, the input of flamegraph.pl and speedscope)
to OUT.txt.<pid>. Threads waiting for work (the gunicorn pool's idle threads,
the worker's poll loop) are counted too: `bench/sampler.py --top OUT.txt.*`
prints the busiest functions with the idle stacks left out.

bench/phones.py --profile OUT.txt starts its server this way.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

INTERVAL = 0.005
WRITE_EVERY = 2.0
# Frames that mean "this thread is waiting for work", not serving a request.
IDLE = (
    "threading.py:wait",
    "selectors.py:select",
    "queue.py:get",
    "thread.py:_worker",  # concurrent.futures idle worker (its own frame is the last)
)


def _stack(frame) -> str:
    parts = []
    while frame is not None:
        code = frame.f_code
        parts.append(f"{Path(code.co_filename).name}:{code.co_name}")
        frame = frame.f_back
    return ";".join(reversed(parts))


def _sample_forever(output: Path) -> None:
    counts: Counter[str] = Counter()
    me = threading.get_ident()
    written = time.monotonic()

    def write() -> None:
        text = "".join(f"{stack} {n}\n" for stack, n in counts.most_common())
        output.write_text(text)

    atexit.register(write)
    while True:
        time.sleep(INTERVAL)
        for ident, frame in sys._current_frames().items():
            if ident != me:
                counts[_stack(frame)] += 1
        if time.monotonic() - written > WRITE_EVERY:
            written = time.monotonic()
            write()


def _start_in_child(base: str) -> None:
    output = Path(f"{base}.{os.getpid()}")
    threading.Thread(target=_sample_forever, args=(output,), daemon=True).start()


def top(files: list[str], count: int = 40) -> None:
    """Print the functions seen most often (self and total) in busy stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    busy = 0
    for name in files:
        for line in Path(name).read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            frames = stack.split(";")
            if any(frames[-1].endswith(idle) or frames[-1] == idle for idle in IDLE):
                continue
            n = int(n)
            busy += n
            own[frames[-1]] += n
            for frame in set(frames):
                total[frame] += n
    print(f"{busy} busy samples")
    print("self:")
    for frame, n in own.most_common(count):
        print(f"  {n / busy:6.1%}  {frame}")
    print("total:")
    for frame, n in total.most_common(count):
        print(f"  {n / busy:6.1%}  {frame}")


def main() -> None:
    if sys.argv[1] == "--top":
        top(sys.argv[2:])
        return
    base = sys.argv[1]
    os.register_at_fork(after_in_child=lambda: _start_in_child(base))
    from keyparty.cli import main as keyparty

    sys.argv = ["keyparty", *sys.argv[2:]]
    keyparty()


if __name__ == "__main__":
    main()
