#!/usr/bin/env python3
"""Reads the output of an allreduce benchmark in nccl-tests rows: rdmacoll-allreduce-perf (rows or
--json) and the peers in bench/peers. Used by bench/allreduce_compare.sh and by the peers' tests,
so a change in the row format fails a test instead of a comparison table.

  parse_perf_rows.py rows FILE                 print what was parsed, one row a line
  parse_perf_rows.py check FILE --ranks N --sizes 8,512,...   [--type float --redop sum]
                                               exit 1 unless the output is complete and correct
  parse_perf_rows.py compare DIR [--sizes ...] [--ranks 2,4]  the comparison table of a compare run
                                               (DIR holds IMPL.RANKS.SIZE.out files)

Row: size count type redop root, then time algbw busbw #wrong out of place, the same in place.
Time in us per call, algbw and busbw in GB/s (1e9 B/s), busbw = algbw * 2(n-1)/n, #wrong an
integer or N/A (not checked). Lines may carry rdmacoll-run's "[rank i] " prefix; lines that do
not start with a number are log lines and are skipped, but a line that does and is not a whole
row is an error.
"""
import argparse
import json
import math
import os
import re
import sys

ELEMENT_SIZE = {"float": 4, "float32": 4, "double": 8, "float64": 8, "int32": 4, "half": 2, "float16": 2,
                "bfloat16": 2, "int8": 1, "uint8": 1, "int64": 8, "uint64": 8, "uint32": 4}
PREFIX = re.compile(r"^\[rank \d+\] ")
AVG = re.compile(r"^#\s*Avg bus bandwidth\s*:\s*(\S+)")
RSS = re.compile(r"^#\s*Peak RSS rank\s+(\d+)\s*:\s*(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB)\s*$")
# rdmacoll-allreduce-perf's form: "# Peak RSS (MiB)       : rank 0 12.3, rank 1 12.5"
RSS_LIST = re.compile(r"^#\s*Peak RSS \((KiB|MiB|GiB)\)\s*:\s*(.*)$")
RSS_ITEM = re.compile(r"^rank\s+(\d+)\s+(\d+(?:\.\d+)?)$")
UNIT_KIB = {"KiB": 1, "MiB": 1024, "GiB": 1024 * 1024}


class FormatError(Exception):
    pass


def _number(text, what, line):
    try:
        return float(text)
    except ValueError:
        raise FormatError(f"{what} '{text}' is not a number in: {line}") from None


def _wrong(text, line):
    if text == "N/A":
        return None
    if not text.isdigit():
        raise FormatError(f"#wrong '{text}' is neither an integer nor N/A in: {line}")
    return int(text)


def _placement(fields, line):
    time_us, algbw, busbw = (_number(f, w, line) for f, w in zip(fields, ("time", "algbw", "busbw")))
    return {"time_us": time_us, "algbw_gbs": algbw, "busbw_gbs": busbw, "wrong": _wrong(fields[3], line)}


def _half_ulp(text):
    """Half a unit in the last printed place of a number: '0.05' -> 0.005, '12345' -> 0.5."""
    return 0.5 * 10.0 ** -(len(text) - text.index(".") - 1) if "." in text else 0.5


def _parse_row(line):
    f = line.split()
    if len(f) != 13:
        raise FormatError(f"a row has 13 fields (size count type redop root, time algbw busbw #wrong twice), "
                          f"this one {len(f)}: {line}")
    if not f[0].isdigit() or not f[1].isdigit():
        raise FormatError(f"size and count must be integers: {line}")
    row = {"size": int(f[0]), "count": int(f[1]), "type": f[2], "redop": f[3],
           "root": int(_number(f[4], "root", line)),
           "out_of_place": _placement(f[5:9], line), "in_place": _placement(f[9:13], line)}
    esize = ELEMENT_SIZE.get(row["type"])
    if esize and row["size"] != row["count"] * esize:
        raise FormatError(f"size {row['size']} is not count {row['count']} x {esize} bytes ({row['type']}): {line}")
    for p in ("out_of_place", "in_place"):
        x = row[p]
        # algbw is bytes / time: a row in other units (MB/s, ms) fails here. Only where the
        # printed precision allows the check, and within it: rdmacoll-allreduce-perf prints algbw
        # with 2 decimals (nccl-tests' %6.2f), the peers with 3, and a time of 10 ms or more with none.
        if x["algbw_gbs"] >= 0.05 and x["time_us"] > 0:
            want = row["size"] / (x["time_us"] * 1e3)
            slack = _half_ulp(f[6 if p == "out_of_place" else 10]) + want * _half_ulp(
                f[5 if p == "out_of_place" else 9]) / x["time_us"]
            if not math.isclose(x["algbw_gbs"], want, rel_tol=0.05, abs_tol=max(0.002, slack)):
                raise FormatError(f"{p} algbw {x['algbw_gbs']} is not size/time = {want:.4f} GB/s: {line}")
    return row


def _parse_json(text):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise FormatError("JSON output has no 'rows' list")
    rows = []
    for r in doc["rows"]:
        try:
            row = {k: r[k] for k in ("size", "count", "type", "redop", "root")}
            for p in ("out_of_place", "in_place"):
                row[p] = {k: r[p][k] for k in ("time_us", "algbw_gbs", "busbw_gbs", "wrong")}
        except (KeyError, TypeError) as e:
            raise FormatError(f"JSON row without {e}: {r}") from None
        rows.append(row)
    rss = {}
    for key, scale in (("peak_rss_kib", 1), ("peak_rss_kib_per_rank", 1), ("peak_rss_bytes", 1 / 1024)):
        v = doc.get(key)  # per rank: a list, or {rank: value}
        if isinstance(v, list):
            rss = {i: float(x) * scale for i, x in enumerate(v)}
        elif isinstance(v, dict):
            rss = {int(k): float(x) * scale for k, x in v.items()}
    return {"rows": rows, "avg_busbw_gbs": doc.get("avg_busbw_gbs"), "peak_rss_kib": rss, "busbw_slack": 0.0}


def parse(text):
    """{'rows': [...], 'avg_busbw_gbs': float or None, 'peak_rss_kib': {rank: KiB}, 'busbw_slack': float}."""
    lines = [PREFIX.sub("", l.rstrip("\n")) for l in text.splitlines()]
    start = next((i for i, l in enumerate(lines) if l.strip()), None)
    if start is not None and lines[start].lstrip().startswith("{"):
        return _parse_json("\n".join(lines[start:]))
    # busbw_slack: half a unit in the last printed place of the rows' busbw (their rounding)
    out = {"rows": [], "avg_busbw_gbs": None, "peak_rss_kib": {}, "busbw_slack": 0.0}
    for line in lines:
        s = line.strip()
        if s.startswith("#"):
            if m := AVG.match(s):
                out["avg_busbw_gbs"] = _number(m.group(1), "average bus bandwidth", s)
            elif m := RSS.match(s):
                out["peak_rss_kib"][int(m.group(1))] = float(m.group(2)) * UNIT_KIB[m.group(3)]
            elif m := RSS_LIST.match(s):
                for item in filter(None, (i.strip() for i in m.group(2).split(","))):
                    if not (r := RSS_ITEM.match(item)):
                        raise FormatError(f"peak RSS item '{item}' is not 'rank N VALUE' in: {s}")
                    out["peak_rss_kib"][int(r.group(1))] = float(r.group(2)) * UNIT_KIB[m.group(1)]
        elif s[:1].isdigit():
            out["rows"].append(_parse_row(s))
            out["busbw_slack"] = max([out["busbw_slack"]] + [_half_ulp(x) for x in s.split()[7:12:4]])
    return out


def parse_file(path):
    with open(path, errors="replace") as f:
        return parse(f.read())


def check(result, ranks, sizes, dtype, redop):
    """The problems with a run that should have passed -c 1; an empty list when there are none."""
    problems = []
    got = [r["size"] for r in result["rows"]]
    if got != sizes:
        problems.append(f"row sizes {got}, expected {sizes}")
    factor = 2 * (ranks - 1) / ranks
    for r in result["rows"]:
        if (r["type"], r["redop"]) != (dtype, redop):
            problems.append(f"row {r['size']}: type/redop {r['type']}/{r['redop']}, expected {dtype}/{redop}")
        for p in ("out_of_place", "in_place"):
            x = r[p]
            if x["wrong"] != 0:
                problems.append(f"row {r['size']} {p}: #wrong {x['wrong']}, expected 0 (run with -c 1)")
            if not x["time_us"] > 0:
                problems.append(f"row {r['size']} {p}: time {x['time_us']} us")
            if x["algbw_gbs"] >= 0.05 and not math.isclose(x["busbw_gbs"], x["algbw_gbs"] * factor,
                                                           rel_tol=0.02, abs_tol=0.002):
                problems.append(f"row {r['size']} {p}: busbw {x['busbw_gbs']} is not algbw*2(n-1)/n for n={ranks}")
    if result["avg_busbw_gbs"] is None:
        problems.append("no '# Avg bus bandwidth : X' line")
    elif result["rows"]:
        mean = sum(r[p]["busbw_gbs"] for r in result["rows"] for p in ("out_of_place", "in_place")) / (
            2 * len(result["rows"]))
        if not math.isclose(result["avg_busbw_gbs"], mean, rel_tol=0.02,
                            abs_tol=max(0.002, result.get("busbw_slack", 0.0))):
            problems.append(f"average bus bandwidth {result['avg_busbw_gbs']} is not the mean of the rows' {mean:.4f}")
    if sorted(result["peak_rss_kib"]) != list(range(ranks)):
        problems.append(f"peak RSS for ranks {sorted(result['peak_rss_kib'])}, expected 0..{ranks - 1}")
    return problems


# ---- the comparison table of bench/allreduce_compare.sh ---------------------------------------
IMPLS = [("ours_sm", "ours UCX sm"), ("ours_tcp", "ours UCX tcp"), ("mpi", "Open MPI"), ("gloo", "Gloo ring")]
RATIOS = [("ours_sm", "mpi", "sm/MPI"), ("ours_tcp", "gloo", "tcp/Gloo"), ("ours_sm", "gloo", "sm/Gloo")]


def _load(directory, impl, ranks, size):
    path = os.path.join(directory, f"{impl}.{ranks}.{size}.out")
    if not os.path.exists(path):
        return None, "missing"
    try:
        res = parse_file(path)
    except FormatError as e:
        return None, f"unparsable: {e}"
    row = next((r for r in res["rows"] if r["size"] == size), None)
    if row is None:
        return None, "no row"  # the run failed; its output is in the file
    if row["out_of_place"]["wrong"] not in (0, None):
        return None, f"{row['out_of_place']['wrong']} wrong"
    return {"row": row, "rss": res["peak_rss_kib"]}, None


def compare(directory, sizes, ranks_list):
    # busbw and the ratios come from the time column, which keeps its precision where the printed
    # busbw is 0.000 (8 bytes); for the same size and ranks busbw ratio = time ratio.
    lines, failed = [], []
    head = f"{'bytes':>10} {'ranks':>5}" + "".join(f" {label:>13}" for _, label in IMPLS) + \
        "".join(f" {label:>9}" for _, _, label in RATIOS)
    lines += ["busbw in GB/s (1e9 B/s) from the mean time per call, out of place; ratio = ours / theirs "
              "(higher is better)", head]
    for size in sizes:
        for ranks in ranks_list:
            bw = {}
            cells = []
            for impl, _ in IMPLS:
                got, why = _load(directory, impl, ranks, size)
                t = got["row"]["out_of_place"]["time_us"] if got else 0
                if got is None or not t > 0:
                    failed.append(f"{impl} {ranks} ranks {size} B: {why or 'no time'}")
                    cells.append(f" {'FAILED':>13}")
                else:
                    bw[impl] = size / (t * 1e3) * 2 * (ranks - 1) / ranks
                    cells.append(f" {bw[impl]:>13.4g}")
            for a, b, _ in RATIOS:
                ok = a in bw and b in bw and bw[b] > 0
                cells.append(f" {bw[a] / bw[b]:>9.2f}" if ok else f" {'n/a':>9}")
            lines.append(f"{size:>10} {ranks:>5}" + "".join(cells))
    largest = max(sizes)
    lines += ["", f"peak RSS per rank at {largest} B (MiB, getrusage ru_maxrss: the process's peak over its run, "
              f"including the benchmark's own send and receive buffers)"]
    for ranks in ranks_list:
        for impl, label in IMPLS:
            got, _ = _load(directory, impl, ranks, largest)
            rss = got["rss"] if got else {}
            text = " ".join(f"{rss[r] / 1024:.1f}" for r in sorted(rss)) if rss else "n/a"
            lines.append(f"{ranks:>2} ranks {label:<13} {text}")
    if failed:
        lines += ["", "failed or missing runs (each run's output follows the table in the results file):"] + [f"  {f}" for f in failed]
    return "\n".join(lines), not failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("rows")
    p.add_argument("file")
    p = sub.add_parser("check")
    p.add_argument("file")
    p.add_argument("--ranks", type=int, required=True)
    p.add_argument("--sizes", required=True, help="comma-separated row sizes in bytes")
    p.add_argument("--type", default="float")
    p.add_argument("--redop", default="sum")
    p = sub.add_parser("compare")
    p.add_argument("dir")
    p.add_argument("--sizes", default="8,4096,65536,1048576,16777216,67108864")
    p.add_argument("--ranks", default="2,4")
    a = ap.parse_args()
    try:
        if a.cmd == "rows":
            res = parse_file(a.file)
            for r in res["rows"]:
                print(json.dumps(r))
            print(f"avg_busbw_gbs {res['avg_busbw_gbs']}")
            for rank, kib in sorted(res["peak_rss_kib"].items()):
                print(f"peak_rss_kib {rank} {kib:.0f}")
            return 0 if res["rows"] else 1
        if a.cmd == "check":
            problems = check(parse_file(a.file), a.ranks, [int(s) for s in a.sizes.split(",")], a.type, a.redop)
            for pr in problems:
                print(f"{a.file}: {pr}", file=sys.stderr)
            return 1 if problems else 0
        text, ok = compare(a.dir, [int(s) for s in a.sizes.split(",")], [int(r) for r in a.ranks.split(",")])
        print(text)
        return 0 if ok else 1
    except FormatError as e:
        print(f"parse_perf_rows: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
