#!/usr/bin/env python3
"""Validates the --json output of rdmacoll-bw / rdmacoll-lat against the documented schema.
usage: check_perf_json.py bw|lat FILE [EXPECTED_SIZES]   (EXPECTED_SIZES: comma-separated)
Exit 0 when valid; prints what is wrong and exits 1 otherwise."""
import json
import sys

from json_check import fail, need


def main():
    tool, path = sys.argv[1], sys.argv[2]
    sizes = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else None
    try:
        doc = json.load(open(path))
    except json.JSONDecodeError as e:
        fail(f"does not parse: {e}")
    num = (int, float)
    need(doc, "tool", str, "top")
    if doc["tool"] != ("rdmacoll-bw" if tool == "bw" else "rdmacoll-lat"):
        fail(f"tool is {doc['tool']}")
    need(doc, "test", str, "top")
    if need(doc, "op", str, "top") not in ("write", "write_imm", "send", "read"):
        fail("bad op " + doc["op"])
    if need(doc, "mode", str, "top") not in ("server", "client", "launched"):
        fail("bad mode " + doc["mode"])
    need(doc, "world_size", int, "top")
    need(doc, "pairs", int, "top")
    need(doc, "iterations", int, "top")
    need(doc, "warmup", int, "top")
    need(doc, "clock", str, "top")
    check = need(doc, "check", bool, "top")
    t = need(doc, "transport", dict, "top")
    if need(t, "backend", str, "transport") not in ("verbs", "ucx"):
        fail("bad backend")
    for k in ("device", "gid", "link_layer", "qp_type", "progress"):
        need(t, k, str, "transport")
    for k in ("port", "gid_index", "mtu", "max_inline"):
        need(t, k, int, "transport")
    if t["backend"] == "verbs" and (not t["device"] or t["mtu"] <= 0 or t["qp_type"] != "RC"):
        fail(f"verbs transport fields incomplete: {t}")
    need(doc, "units", dict, "top")
    results = need(doc, "results", list, "top")
    if sizes is not None and [r.get("bytes") for r in results] != sizes:
        fail(f"sizes {[r.get('bytes') for r in results]}, expected {sizes}")
    if not results:
        fail("no results")
    for i, r in enumerate(results):
        w = f"results[{i}]"
        if need(r, "bytes", int, w) <= 0 or need(r, "iterations", int, w) != doc["iterations"]:
            fail(f"{w}: bytes/iterations wrong: {r}")
        if check and need(r, "wrong_bytes", int, w) != 0:
            fail(f"{w}: {r['wrong_bytes']} wrong bytes")
        if tool == "bw":
            need(doc, "tx_depth", int, "top")
            peak, avg, rate = (need(r, k, num, w) for k in ("bw_peak", "bw_average", "msg_rate_mpps"))
            if not (0 < avg <= peak * 1.000001 and rate > 0):
                fail(f"{w}: inconsistent bandwidth {r}")
        else:
            v = [need(r, k, num, w) for k in ("t_min", "t_typical", "t_avg", "t_max", "p99", "p99_9", "t_stdev")]
            tmin, typ, avg, tmax, p99, p999, sd = v
            if not (0 < tmin <= typ <= tmax and tmin <= avg <= tmax and tmin <= p99 <= p999 <= tmax and sd >= 0):
                fail(f"{w}: inconsistent latency statistics {r}")
    print(f"valid: {len(results)} result(s)")


main()
