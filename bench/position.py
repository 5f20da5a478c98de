"""Micro-benchmark of BinlogPosition ordering and document versions (per event, per row).

    .venv/bin/python bench/position.py <checkout>      # e.g. a `git worktree` of an older commit

Run it on two checkouts one after the other to compare them; each figure is the
best of 5 repeats over 100,000 positions.
"""
import sys, timeit
sys.path.insert(0, sys.argv[1])
from cdc.model import BinlogPosition as P
from cdc.rules import document_version
end = P("binlog.000123", 900000000)
ps = [P("binlog.000123", 4 + i) for i in range(100000)]
def past_end():  # the replay bound, per event
    return sum(p >= end for p in ps)
def versions():  # per action: the same position for every row of an event
    return [document_version(p) for p in ps]
def fresh(): return sum(P("binlog.000123", 4 + i) >= end for i in range(100000))
for name, f in (("compare, positions reused", past_end), ("document_version", versions), ("compare, new positions", fresh)):
    print(f"{name}: {min(timeit.repeat(f, number=1, repeat=5))*1e3:.1f} ms per 100k")
