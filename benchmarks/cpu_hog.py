"""Run a command while CPU hogs keep every core busy: `make test-under-load` (docs/testing.md).

    python -m benchmarks.cpu_hog [--per-core N] -- COMMAND [ARGS...]

Starts N busy-looping processes per core (default 2, so the machine's load stays above twice
its core count), at the same priority as the command, runs the command, stops the hogs and
exits with the command's status. It shows that nothing in the tests, the host tools or the
demo fails because the machine is slow: a user's laptop or a CI runner is often that busy.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys


def _spin(parent: int) -> None:
    # Busy, but check now and then that the runner is still there: a killed runner must not
    # leave hogs behind.
    n = 0
    while True:
        n += 1
        if n % 5_000_000 == 0 and os.getppid() != parent:
            return


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cpu_hog", description=__doc__)
    ap.add_argument("--per-core", type=int, default=2, help="hog processes per core (2)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = ap.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        ap.error("give the command to run after --")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(1, args.per_core * (cores or 1))
    ctx = mp.get_context("fork")
    hogs = [ctx.Process(target=_spin, args=(os.getpid(),), daemon=True) for _ in range(n)]
    for h in hogs:
        h.start()
    print(f"cpu_hog: {n} busy processes on {cores} core(s) while running: {' '.join(cmd)}",
          flush=True)  # fmt: skip
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130
    finally:
        for h in hogs:
            h.terminate()
        for h in hogs:
            h.join()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
