#!/usr/bin/env python3
"""Validates the --json output of rdmacoll-allreduce-perf and its siblings.
usage: check_coll_json.py TOOL RANKS FILE SIZES ROWS_PER_SIZE [--wire-fraction LO:HI]
                          [--compressed true|false] [--max-relerr X]
  SIZES: comma-separated sizes in bytes, in sweep order; ROWS_PER_SIZE: rows (type x op) each.
  With --compress output ("compression" present) the wire columns are checked against each
  other and, if asked: wire bytes per rank within LO..HI times the fp32 ring's 2(n-1)/n size,
  every placement's "compressed" as given, relerr at most X.
Exit 0 when valid; prints what is wrong and exits 1 otherwise."""
import json
import math
import sys

FACTORS = {
    "allreduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "allgather": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1,
    "reduce": lambda n: 1,
}
TYPES = {"float": 4, "double": 8, "half": 2, "bfloat16": 2, "int8": 1, "uint8": 1, "int32": 4, "int64": 8}

from json_check import fail, need

NUM = (int, float)


def expectations(args):
    """The optional flags after the positional arguments."""
    want = {}
    while args:
        if len(args) < 2:
            fail(f"bad checker arguments {args}")
        flag, value, args = args[0], args[1], args[2:]
        if flag == "--wire-fraction":
            lo, hi = value.split(":")
            want["wire"] = (float(lo), float(hi))
        elif flag == "--compressed":
            want["compressed"] = value == "true"
        elif flag == "--max-relerr":
            want["relerr"] = float(value)
        else:
            fail(f"unknown checker flag {flag}")
    return want


def check_compression(doc, rows, ranks, check, want):
    """--compress output: the wire columns, relerr and the "compressed" flag of every placement."""
    c = need(doc, "compression", dict, "top")
    need(c, "codec", str, "compression")
    need(c, "auto", bool, "compression")
    need(c, "feedback", bool, "compression")
    need(c, "seed", int, "compression")
    if need(c, "scheme", str, "compression") not in ("auto", "two_phase", "allgather"):
        fail(f"compression.scheme {c['scheme']}")
    factor = FACTORS["allreduce"](ranks)
    for i, r in enumerate(rows):
        w = f"rows[{i}]"
        if r["type"] != "float" or r["redop"] not in ("sum", "avg"):
            fail(f"{w}: --compress with {r['type']} {r['redop']}")
        ring = factor * r["size"]
        for p in ("out_of_place", "in_place"):
            pl, wp = r[p], f"{w}.{p}"
            wire, walg, wbus, ratio = (need(pl, k, NUM, wp) for k in
                                       ("wire_bytes", "wire_algbw_gbs", "wire_busbw_gbs", "compression_ratio"))
            if not math.isclose(wbus, wire / (pl["time_us"] * 1e-6) / 1e9, rel_tol=1e-4, abs_tol=1e-6):
                fail(f"{wp}: wire_busbw {wbus} is not wire_bytes/time")
            if factor > 0 and not math.isclose(walg, wbus / factor, rel_tol=1e-4, abs_tol=1e-6):
                fail(f"{wp}: wire_algbw {walg} is not wire_busbw / {factor}")
            if wire > 0 and not math.isclose(ratio, ring / wire, rel_tol=1e-4):
                fail(f"{wp}: compression_ratio {ratio} is not 2(n-1)/n size / wire_bytes")
            relerr = pl.get("relerr")
            if not isinstance(relerr, NUM) or isinstance(relerr, bool) or not relerr >= 0:
                fail(f"{wp}: relerr {relerr!r} is not a finite non-negative number")
            limit = pl.get("relerr_limit", "missing")
            if check:
                if not isinstance(limit, NUM) or not relerr <= limit:
                    fail(f"{wp}: relerr {relerr} over its limit {limit}")
            elif limit is not None:
                fail(f"{wp}: relerr_limit should be null without --check")
            compressed = need(pl, "compressed", bool, wp)
            if "wire" in want and r["size"] > 0:
                lo, hi = want["wire"]
                if not lo * ring <= wire <= hi * ring:
                    fail(f"{wp}: {wire} wire bytes per rank is {wire / ring:.3f} of the fp32 ring's {ring:.0f}, "
                         f"not within {lo}..{hi}")
            if "compressed" in want and compressed != want["compressed"]:
                fail(f"{wp}: compressed is {compressed}, expected {want['compressed']}")
            if "relerr" in want and relerr > want["relerr"]:
                fail(f"{wp}: relerr {relerr} above {want['relerr']}")


def main():
    tool, ranks, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sizes = [int(s) for s in sys.argv[4].split(",")]
    per_size = int(sys.argv[5])
    want = expectations(sys.argv[6:])
    try:
        with open(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        fail(f"does not parse: {e}")
    num = NUM
    if need(doc, "tool", str, "top") != tool:
        fail(f"tool is {doc['tool']}, expected {tool}")
    coll = need(doc, "collective", str, "top")
    if coll not in FACTORS or tool != "rdmacoll-" + coll.replace("_", "-") + "-perf":
        fail(f"collective {coll} does not match {tool}")
    if need(doc, "ranks", int, "top") != ranks:
        fail(f"ranks {doc['ranks']}, expected {ranks}")
    t = need(doc, "transport", dict, "top")
    if need(t, "backend", str, "transport") not in ("ucx", "verbs"):
        fail("bad backend")
    for k in ("device", "qp_type", "description"):
        need(t, k, str, "transport")
    s = need(doc, "settings", dict, "top")
    for k in ("minbytes", "maxbytes", "iters", "warmup_iters", "average"):
        need(s, k, int, "settings")
    check = need(s, "check", bool, "settings")
    need(s, "blocking", bool, "settings")
    hosts = need(doc, "hosts", list, "top")
    if [h.get("rank") for h in hosts] != list(range(ranks)):
        fail(f"hosts are not one per rank: {hosts}")
    rows = need(doc, "rows", list, "top")
    if len(rows) != len(sizes) * per_size:
        fail(f"{len(rows)} rows, expected {len(sizes)} sizes x {per_size}")
    # Rows come type-major, then op, then size (as nccl-tests).
    got_sizes = [r.get("size") for r in rows]
    if got_sizes != sizes * per_size:
        fail(f"sizes {got_sizes}, expected {sizes} x {per_size}")
    busbws = []
    for i, r in enumerate(rows):
        w = f"rows[{i}]"
        ty = need(r, "type", str, w)
        if ty not in TYPES:
            fail(f"{w}: unknown type {ty}")
        if need(r, "count", int, w) != r["size"] // TYPES[ty]:
            fail(f"{w}: count {r['count']} is not size / {TYPES[ty]}")
        redop = need(r, "redop", str, w)
        if (redop == "none") != (coll in ("allgather", "broadcast")):
            fail(f"{w}: redop {redop} for {coll}")
        root = need(r, "root", int, w)
        if (root == -1) != (coll not in ("broadcast", "reduce")):
            fail(f"{w}: root {root} for {coll}")
        for p in ("out_of_place", "in_place"):
            pl = need(r, p, dict, w)
            tu, alg, bus = (need(pl, k, num, f"{w}.{p}") for k in ("time_us", "algbw_gbs", "busbw_gbs"))
            if not tu > 0:
                fail(f"{w}.{p}: time {tu}")
            if not math.isclose(alg, r["size"] / (tu * 1e-6) / 1e9, rel_tol=1e-4, abs_tol=1e-6):
                fail(f"{w}.{p}: algbw {alg} is not size/time")
            if not math.isclose(bus, alg * FACTORS[coll](ranks), rel_tol=1e-4, abs_tol=1e-6):
                fail(f"{w}.{p}: busbw {bus} is not algbw x the {coll} factor")
            if check:
                if need(pl, "wrong", int, f"{w}.{p}") != 0:
                    fail(f"{w}.{p}: {pl['wrong']} wrong elements")
            elif pl.get("wrong", 0) is not None:
                fail(f"{w}.{p}: wrong should be null without --check")
            # What the timed calls ran: every plain row says (compressed rows may not).
            if "algorithm" in pl or "compression" not in doc:
                a = need(pl, "algorithm", str, f"{w}.{p}")
                if not a or (coll != "allreduce" and "allreduce" in a):
                    fail(f"{w}.{p}: algorithm {a!r} for {coll}")
            busbws.append(bus)
    avg = need(doc, "avg_busbw_gbs", num, "top")
    if not math.isclose(avg, sum(busbws) / len(busbws), rel_tol=1e-3, abs_tol=1e-6):
        fail(f"avg_busbw_gbs {avg} is not the mean of the rows' busbw")
    rss = need(doc, "peak_rss_bytes", list, "top")
    if len(rss) != ranks or not all(isinstance(x, int) and x > 0 for x in rss):
        fail(f"peak_rss_bytes {rss}")
    if need(doc, "scratch_bytes", int, "top") <= 0:
        fail("scratch_bytes")
    if len(need(doc, "peak_scratch_bytes", list, "top")) != ranks:
        fail("peak_scratch_bytes")
    if "compression" in doc:
        check_compression(doc, rows, ranks, check, want)
    elif want:
        fail("no 'compression' to check (run with --compress)")
    print(f"valid: {len(rows)} row(s)" + (", compressed" if "compression" in doc else ""))


main()
