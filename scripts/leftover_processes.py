"""Processes left running by a test run: those whose environment holds MARKER (NAME=VALUE,
exported before the run, so everything the run starts inherits it), this one aside.

    python scripts/leftover_processes.py POZYTYWKA_TEST_RUN=ci-123

Prints each one (pid and command line) and exits 1 if there are any, else says so and exits 0.
"""

import os
import sys
import time
from pathlib import Path


def holding(marker: bytes) -> list[tuple[int, str]]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        try:
            if pid == os.getpid() or marker not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found.append((pid, command.strip()))
    return found


def main(marker: str) -> int:
    left = holding(marker.encode())
    if left:  # a process group just sent SIGKILL may take a moment to go
        time.sleep(2)
        left = holding(marker.encode())
    for pid, command in left:
        print(f"left running: pid {pid}: {command[:300]}")
    print(f"{len(left)} processes left by the test run" if left else "no process left running")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
