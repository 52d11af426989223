"""Sampling profiles of a server's gunicorn workers under load, with py-spy.

``py-spy record --subprocesses`` on the master we started samples both workers; the raw
(collapsed-stack) output is summarised as the functions with the most samples *on* the
stack (inclusive) and *at the top* of it (self), as a share of all worker samples.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# One request's frame: gunicorn's sync worker, or its thread worker (authserver serve's
# BufferingThreadWorker calls ThreadWorker.handle).
HANDLER_FRAMES = ("SyncWorker.handle (", "ThreadWorker.handle (")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    """The py-spy binary (``pip install py-spy``; a development tool, not a dependency)."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(master_pid: int, out: Path, duration: float, rate: int = 250) -> subprocess.Popen:
    """Begin sampling the master's worker processes for ``duration`` seconds.

    ``--gil``: only the thread holding the GIL is sampled, so the profile is where the CPU
    goes; a thread worker's other threads waiting for the GIL (after a socket write or a
    getrandom call released it) would otherwise pile up on those frames."""
    command = [py_spy(), "record", "--pid", str(master_pid), "--subprocesses", "--gil",
               "--rate", str(rate), "--nonblocking", "--format", "raw", "--output", str(out),
               "--duration", str(max(1, round(duration)))]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # let it attach before the load starts
    return process


def _short(frame: str, root: Path) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", str(root) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = Path(path).name
    return f"{match['func']} ({path})"


def summarise(raw: Path, root: Path, top: int = 25) -> str:
    """Top inclusive and self entries of a raw py-spy profile, as text.

    Only request-handling stacks (below gunicorn's ``handle``) are ranked; the share of
    samples in other threads (timers, feed followers) is given on its own line.
    """
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = handling = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f, root) for f in stack.split(";")]
        starts = [i for i, f in enumerate(frames) if f.startswith(HANDLER_FRAMES)]
        if not starts:
            continue
        frames = frames[starts[0] + 1:] or frames[-1:]
        handling += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples in the workers; {100 * handling / total:.1f} % handling requests "
             f"(percentages below are of all {total})", "", "inclusive (on the stack):"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self (top of the stack):"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)
