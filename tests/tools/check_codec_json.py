#!/usr/bin/env python3
"""Validates the --json output of rdmacoll-codec-bench.
usage: check_codec_json.py FILE SIZE_BYTES CODECS
  CODECS: the comma-separated canonical names expected, in order.
Exit 0 when valid; prints what is wrong and exits 1 otherwise."""
import json
import sys

from json_check import fail, need


def main():
    path, size, codecs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    try:
        with open(path) as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        fail(f"does not parse: {e}")
    if need(doc, "tool", str, "top") != "rdmacoll-codec-bench":
        fail(f"tool is {doc['tool']!r}")
    if need(doc, "size_bytes", int, "top") != size or need(doc, "elements", int, "top") != size // 4:
        fail(f"size_bytes/elements are {doc['size_bytes']}/{doc['elements']}, expected {size}/{size // 4}")
    if need(doc, "simd", str, "top") not in ("avx2", "portable"):
        fail(f"simd is {doc['simd']!r}")
    if need(doc, "memcpy_gbps", (int, float), "top") <= 0:
        fail("memcpy_gbps is not positive")
    rows = need(doc, "codecs", list, "top")
    if [r.get("name") for r in rows] != codecs:
        fail(f"codecs are {[r.get('name') for r in rows]}, expected {codecs}")
    for r in rows:
        where = f"codecs[{r['name']}]"
        wire = need(r, "wire_bytes", int, where)
        if not 0 < wire:
            fail(f"{where}.wire_bytes is {wire}")
        if abs(need(r, "compression", (int, float), where) - size / wire) > 1e-3 * size / wire:
            fail(f"{where}.compression is not size / wire_bytes")
        for k in ("encode_gbps", "decode_gbps", "gbps", "best_gbps", "vs_memcpy"):
            if need(r, k, (int, float), where) <= 0:
                fail(f"{where}.{k} is not positive")
        if r["best_gbps"] < r["gbps"] * 0.999:
            fail(f"{where}: best_gbps below the median")
        need(r, "goal_vs_memcpy", (int, float), where)
        if need(r, "nonfinite", int, where) != 0:
            fail(f"{where}.nonfinite is {r['nonfinite']} on finite input")
    print("ok")


if __name__ == "__main__":
    main()
