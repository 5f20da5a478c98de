#!/usr/bin/env python3
"""Run `python -m cdc ...` with memory probes, for bench/memory.py. Not part of cdc.

    CDC_MEMHOOK_DIR=DIR [CDC_MEMHOOK_EVERY=30] [CDC_MEMHOOK_FRAMES=0] python memhook.py run --config cdc.yml

Every CDC_MEMHOOK_EVERY seconds it appends one JSON line to DIR/probes.jsonl:
RSS, glibc malloc's in-use and free bytes (mallinfo2), pymalloc's allocated
blocks, and the count of every type among gc-tracked objects. With
CDC_MEMHOOK_FRAMES > 0 it also traces allocations (tracemalloc, that many
frames) and dumps a snapshot DIR/snap-NNN.bin each time, to compare offline.
The probes live here rather than in cdc so that product code carries no
debugging switches; cdc is run from the current directory (the bench's copy).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo() -> dict:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    # uordblks: bytes malloc has handed out (in use); fordblks: free bytes it keeps in its heaps.
    return {"malloc_in_use": info.uordblks + info.hblkhd, "malloc_free": info.fordblks, "malloc_arena": info.arena}


def _pymalloc_arenas(out: Path) -> int | None:
    """pymalloc's arenas in use now (1 MiB each, mmapped: outside malloc's counts).

    sys._debugmallocstats() prints to the C stderr, so fd 2 is pointed at a
    file for the call; a log line that another thread writes meanwhile lands there too.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(out / "mallocstats.txt", "w+") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        for line in tmp:
            if line.startswith("# arenas allocated current"):
                return int(line.split("=")[1].replace(",", ""))
    return None


def _rss_kb() -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def _type_name(t: type) -> str:
    # A few builtin types have a descriptor, not a string, as __module__.
    module = t.__dict__.get("__module__", "builtins")
    return f"{module if isinstance(module, str) else 'builtins'}.{t.__qualname__}"


def _probe(out: Path, every: float, frames: int) -> None:
    t0 = time.time()
    n = 0
    while True:
        time.sleep(every)
        n += 1
        try:
            _record(out, n, t0, frames)
        except Exception as exc:  # a broken probe must be seen, and must not stop cdc
            with open(out / "probes.jsonl", "a") as fh:
                fh.write(json.dumps({"n": n, "error": repr(exc)}) + "\n")


def _record(out: Path, n: int, t0: float, frames: int) -> None:
    counts = collections.Counter(_type_name(type(o)) for o in gc.get_objects())
    record = {"n": n, "t": round(time.time() - t0, 1), "rss_kb": _rss_kb(),
              "pymalloc_blocks": sys.getallocatedblocks(), "pymalloc_arenas": _pymalloc_arenas(out), **_mallinfo(),
              "gc_objects": sum(counts.values()), "types": dict(counts.most_common(60))}
    if frames:
        snap = tracemalloc.take_snapshot()
        snap.dump(str(out / f"snap-{n:03d}.bin"))
        record["traced_bytes"] = tracemalloc.get_traced_memory()[0]
    del counts
    with open(out / "probes.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


def main() -> None:
    out = Path(os.environ["CDC_MEMHOOK_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    frames = int(os.environ.get("CDC_MEMHOOK_FRAMES", "0"))
    if frames:
        tracemalloc.start(frames)
    threading.Thread(target=_probe, args=(out, float(os.environ.get("CDC_MEMHOOK_EVERY", "30")), frames),
                     name="memhook", daemon=True).start()
    sys.path.insert(0, os.getcwd())
    sys.argv = ["cdc", *sys.argv[1:]]
    runpy.run_module("cdc", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
