#!/usr/bin/env python3
"""Reads the output of an allreduce benchmark in nccl-tests rows: rdmacoll-allreduce-perf (rows or
--json) and the peers in bench/peers. Used by bench/allreduce_compare.sh and by the peers' tests,
so a change in the row format fails a test instead of a comparison table.

  parse_perf_rows.py rows FILE                 print what was parsed, one row a line
  parse_perf_rows.py check FILE --ranks N --sizes 8,512,...   [--type float --redop sum]
                                               exit 1 unless the output is complete and correct
  parse_perf_rows.py compare DIR [--sizes ...] [--ranks 2,4] [--guest-dir GDIR [--guest-sizes ...]]
                                               the comparison tables of a compare run, its ratios and
                                               the issue's goals judged on it (DIR holds
                                               IMPL.RANKS.SIZE.out files and, from later
                                               alternating rounds, IMPL.RANKS.SIZE.rK.out: a
                                               point's time is the median of its runs; GDIR the
                                               guest's, and ib_write_bw.SIZE.out)

Row: size count type redop root, then time algbw busbw #wrong out of place, the same in place.
Time in us per call, algbw and busbw in GB/s (1e9 B/s), busbw = algbw * 2(n-1)/n, #wrong an
integer or N/A (not checked). Lines may carry rdmacoll-run's "[rank i] " prefix; lines that do
not start with a number are log lines and are skipped, but a line that does and is not a whole
row is an error.
"""
import argparse
import glob
import json
import math
import os
import re
import statistics
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


# ---- the comparison tables of bench/allreduce_compare.sh -------------------------------------
# A compare run's directory holds IMPL.RANKS.SIZE.out (our tool or a peer) and, from the guest,
# ib_write_bw.SIZE.out. Each transport class pits ours against the peers on the same transport.
GLOO = [("gloo_ring", "Gloo ring"), ("gloo_ring_chunked", "Gloo r_chunk"), ("gloo_halving_doubling", "Gloo h_d")]
HOST_CLASSES = [  # (key, title, ours, Open MPI, Gloo)
    ("sm", "shared memory", "ours_sm", "mpi_sm", []),
    ("tcp", "TCP loopback", "ours_tcp", "mpi_tcp", GLOO),
]
GUEST = {"ours": "ours_verbs", "mpi": "mpi_tcp", "gloo": [("gloo_ring", "Gloo ring")]}
GOAL_BUSBW_FROM = 4 << 20  # the bandwidth goals hold from 4 MiB up
GOAL_LAT_SIZE = 8
PERFTEST_MB = 1 << 20  # perftest's MB/sec is 2^20 bytes per second


def human(size):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def busbw(size, ranks, time_us):
    return size / (time_us * 1e3) * 2 * (ranks - 1) / ranks


class Run:
    """The out-of-place time per call of each run in a compare directory, and what failed."""

    def __init__(self, directory):
        self.dir, self.failed = directory, []
        self.rss = {}  # (impl, ranks, size): {rank: KiB}, from the first round's run
        self.rounds_at = {}  # size: the most runs any point of that size had

    def time_us(self, impl, ranks, size):
        """The median over the point's runs: IMPL.RANKS.SIZE.out and, from later alternating
        rounds, IMPL.RANKS.SIZE.rK.out. A run that failed is reported (and left out)."""
        base = os.path.join(self.dir, f"{impl}.{ranks}.{size}")
        paths = [base + ".out"] + sorted(glob.glob(glob.escape(base) + ".r*.out"))
        times = [t for t in (self._time_us(p, impl, ranks, size) for p in paths) if t is not None]
        self.rounds_at[size] = max(self.rounds_at.get(size, 1), len(paths))
        return statistics.median(times) if times else None

    def _time_us(self, path, impl, ranks, size):
        why = None
        if not os.path.exists(path):
            why = "missing"
        else:
            try:
                res = parse_file(path)
            except FormatError as e:
                res, why = None, f"unparsable: {e}"
            row = next((r for r in res["rows"] if r["size"] == size), None) if res else None
            if res and path.endswith(f".{size}.out"):
                self.rss[impl, ranks, size] = res["peak_rss_kib"]
            if res and row is None:
                why = "no row"  # the run failed; its output is in the file
            elif row and row["out_of_place"]["wrong"] not in (0, None):
                why = f"{row['out_of_place']['wrong']} wrong"
            elif row and not row["out_of_place"]["time_us"] > 0:
                why = "no time"
            elif row:
                return row["out_of_place"]["time_us"]
        self.failed.append(f"{impl} {ranks} ranks {size} B{self._round_of(path)}: {why}")
        return None

    @staticmethod
    def _round_of(path):
        m = re.search(r"\.r(\d+)\.out$", path)
        return f" (round {m.group(1)})" if m else ""

    def perftest_gbs(self, size):
        """ib_write_bw's BW average at SIZE in GB/s (1e9 B/s), the median over its rounds
        (ib_write_bw.SIZE.out and ib_write_bw.SIZE.rK.out), or None."""
        base = os.path.join(self.dir, f"ib_write_bw.{size}")
        paths = [base + ".out"] + sorted(glob.glob(glob.escape(base) + ".r*.out"))
        got = [g for g in (self._perftest_gbs(p, size) for p in paths) if g is not None]
        return statistics.median(got) if got else None

    def _perftest_gbs(self, path, size):
        if not os.path.exists(path):
            self.failed.append(f"ib_write_bw {size} B{self._round_of(path)}: missing")
            return None
        with open(path, errors="replace") as f:
            text = f.read()
        gbits = "[Gb/sec]" in text
        for line in text.splitlines():
            x = line.split()
            if len(x) >= 5 and x[0] == str(size):
                try:
                    avg = float(x[3])
                except ValueError:
                    break
                return avg / 8 if gbits else avg * PERFTEST_MB / 1e9
        self.failed.append(f"ib_write_bw {size} B{self._round_of(path)}: no result row")
        return None


def _cell(v, width, fmt):
    return f" {'FAILED' if v is None else format(v, fmt):>{width}}"


def _ratio(a, b, width=9):
    return f" {a / b:>{width}.2f}" if a is not None and b else f" {'n/a':>{width}}"


class Goals:
    """The issue's goals, each judged on every point this run measured for it."""

    def __init__(self):
        self.lines = []

    def judge(self, text, points, limit, at_least):
        """points: [(where, ratio or None)]. A goal is met when every point is measured and on
        the right side of the limit."""
        if not points:
            return
        good = [r is not None and (r >= limit if at_least else r <= limit) for _, r in points]
        measured = [r for _, r in points if r is not None]
        if all(good):
            verdict = "met"
        elif len(measured) < len(points) and all(g for g, (_, r) in zip(good, points) if r is not None):
            verdict = "NOT MEASURED (a run failed)"
        else:
            verdict = f"NOT MET ({sum(good)} of {len(points)} points met)"
        # Three decimals below 1 (0.104x is not 0.10x against a limit of 0.1).
        detail = ", ".join(f"{w} {'failed' if r is None else format(r, '.3f' if r < 1 else '.2f') + 'x'}"
                           for w, r in points)
        self.lines.append(f"{text}: {verdict}\n    {detail}")


def _rounds(run, sizes):
    """How many alternating runs the points of these sizes are the median of."""
    got = sorted({run.rounds_at.get(s, 1) for s in sizes})
    if got == [1]:
        return ""
    if len(got) == 1:
        return f"; each point the median of {got[0]} alternating runs"
    return f"; each point the median of {got[0]}-{got[-1]} alternating runs (by size: see the script's header)"


def host_tables(run, sizes, ranks_list, goals):
    out = []
    for key, title, ours, mpi, gloo in HOST_CLASSES:
        peers = [(mpi, "Open MPI")] + gloo
        t = {(impl, n, s): run.time_us(impl, n, s) for impl in [ours] + [i for i, _ in peers]
             for n in ranks_list for s in sizes}

        def best_gloo(n, s):  # the fastest of Gloo's algorithms at this point, and which
            got = [(t[g, n, s], label) for g, label in gloo if t[g, n, s] is not None]
            return min(got) if got else (None, "")

        def bw(impl, n, s):
            return None if t[impl, n, s] is None else busbw(s, n, t[impl, n, s])

        out += ["", f"## host, {title}: busbw in GB/s (1e9 B/s, out of place, from the mean time per call"
                f"{_rounds(run, sizes)}); ratio = ours / theirs, higher is better"]
        head = f"{'bytes':>10} {'ranks':>5} {'ours':>10}" + "".join(f" {label:>12}" for _, label in peers)
        head += f" {'ours/MPI':>9}" + (f" {'ours/Gloo':>9}  best Gloo" if gloo else "")
        out.append(head)
        for s in sizes:
            for n in ranks_list:
                line = f"{s:>10} {n:>5}" + _cell(bw(ours, n, s), 10, ".4g")
                line += "".join(_cell(bw(impl, n, s), 12, ".4g") for impl, _ in peers)
                line += _ratio(bw(ours, n, s), bw(mpi, n, s))
                if gloo:
                    bt, blabel = best_gloo(n, s)
                    line += _ratio(bw(ours, n, s), bt and busbw(s, n, bt)) + f"  {blabel}"
                out.append(line)
        if GOAL_LAT_SIZE in sizes:
            s = GOAL_LAT_SIZE
            out += ["", f"## host, {title}: {s}-byte latency, us per call (out of place{_rounds(run, [s])}); ratio = ours / theirs, "
                    "lower is better"]
            head = f"{'ranks':>5} {'ours':>10}" + "".join(f" {label:>12}" for _, label in peers)
            out.append(head + f" {'ours/MPI':>9}" + (f" {'ours/Gloo':>9}  best Gloo" if gloo else ""))
            for n in ranks_list:
                line = f"{n:>5}" + _cell(t[ours, n, s], 10, ".2f")
                line += "".join(_cell(t[impl, n, s], 12, ".2f") for impl, _ in peers)
                line += _ratio(t[ours, n, s], t[mpi, n, s])
                if gloo:
                    bt, blabel = best_gloo(n, s)
                    line += _ratio(t[ours, n, s], bt) + f"  {blabel}"
                out.append(line)

        big = [s for s in sizes if s >= GOAL_BUSBW_FROM]

        def bw_points(theirs):
            pts = []
            for n in ranks_list:
                for s in big:
                    b = theirs(n, s)
                    pts.append((f"{n}r {human(s)}", None if b is None or bw(ours, n, s) is None
                                else bw(ours, n, s) / b))
            return pts

        def lat_points(theirs):
            pts = []
            for n in ranks_list:
                x = theirs(n, GOAL_LAT_SIZE)
                o = t[ours, n, GOAL_LAT_SIZE]
                pts.append((f"{n}r", None if x is None or o is None else o / x))
            return pts

        goals.judge(f"host {title}: busbw at >= 4 MiB at least 1.0x Open MPI", bw_points(lambda n, s: bw(mpi, n, s)),
                    1.0, True)
        if gloo:
            goals.judge(f"host {title}: busbw at >= 4 MiB at least 2x Gloo (its best algorithm at each point)",
                        bw_points(lambda n, s: (lambda bt: bt and busbw(s, n, bt))(best_gloo(n, s)[0])), 2.0, True)
        if GOAL_LAT_SIZE in sizes:
            goals.judge(f"host {title}: 8-byte latency at most 2x Open MPI", lat_points(lambda n, s: t[mpi, n, s]),
                        2.0, False)
            if gloo:
                goals.judge(f"host {title}: 8-byte latency at most 0.1x Gloo (its best algorithm)",
                            lat_points(lambda n, s: best_gloo(n, s)[0]), 0.1, False)
    largest = max(sizes)
    out += ["", f"## host: peak RSS per rank at {human(largest)} (MiB, getrusage ru_maxrss: the process's peak over "
            "its run, including the benchmark's own send and receive buffers)"]
    for n in ranks_list:
        for _, title, ours, mpi, gloo in HOST_CLASSES:
            for impl, label in [(ours, "ours"), (mpi, "Open MPI")] + gloo:
                rss = run.rss.get((impl, n, largest), {})
                text = " ".join(f"{rss[r] / 1024:.1f}" for r in sorted(rss)) if rss else "n/a"
                out.append(f"{n:>2} ranks {title + ', ' + label:<30} {text}")
    return out


def guest_tables(run, sizes, goals):
    n, ours, mpi = 2, GUEST["ours"], GUEST["mpi"]
    gloo = GUEST["gloo"]
    t = {(impl, s): run.time_us(impl, n, s) for impl in [ours, mpi] + [g for g, _ in gloo] for s in sizes}
    perftest_sizes = [s for s in sizes if os.path.exists(os.path.join(run.dir, f"ib_write_bw.{s}.out"))]
    wbw = {s: run.perftest_gbs(s) for s in perftest_sizes}

    def bw(impl, s):
        return None if t[impl, s] is None else busbw(s, n, t[impl, s])

    out = ["", "## one soft-RoCE guest, 2 ranks: busbw in GB/s (ours over verbs on rxe0, Open MPI and Gloo over TCP); "
           f"ib_write_bw: its BW average on rxe0 in GB/s{_rounds(run, [x for x in sizes if x != GOAL_LAT_SIZE])}; "
           "ratio = ours / theirs, higher is better"]
    out.append(f"{'bytes':>10} {'ours verbs':>11} {'ib_write_bw':>11} {'MPI tcp':>10}" +
               "".join(f" {label:>10}" for _, label in gloo) +
               f" {'ours/ib_write_bw':>16} {'ours/MPI':>9}" + "".join(f" {'ours/' + label:>15}" for _, label in gloo))
    for s in sizes:
        line = f"{s:>10}" + _cell(bw(ours, s), 11, ".4g")
        line += _cell(wbw[s], 11, ".4g") if s in wbw else f" {'-':>11}"
        line += _cell(bw(mpi, s), 10, ".4g") + "".join(_cell(bw(g, s), 10, ".4g") for g, _ in gloo)
        line += _ratio(bw(ours, s), wbw.get(s), 16) + _ratio(bw(ours, s), bw(mpi, s))
        line += "".join(_ratio(bw(ours, s), bw(g, s), 15) for g, _ in gloo)
        out.append(line)
    if GOAL_LAT_SIZE in sizes:
        s = GOAL_LAT_SIZE
        out += ["", f"## one soft-RoCE guest, 2 ranks: {s}-byte latency, us per call (out of place{_rounds(run, [s])}); "
                "ratio = ours / theirs, lower is better"]
        out.append(f"{'ours verbs':>11} {'MPI tcp':>10}" + "".join(f" {label:>10}" for _, label in gloo) +
                   f" {'ours/MPI':>9}" + "".join(f" {'ours/' + label:>15}" for _, label in gloo))
        out.append(_cell(t[ours, s], 10, ".2f") + _cell(t[mpi, s], 10, ".2f") +
                   "".join(_cell(t[g, s], 10, ".2f") for g, _ in gloo) + _ratio(t[ours, s], t[mpi, s]) +
                   "".join(_ratio(t[ours, s], t[g, s], 15) for g, _ in gloo))

    # busbw at 16 MiB (or our largest size) against ib_write_bw at 16 MiB or the largest size it ran.
    big = 16 << 20 if (16 << 20) in sizes else max(sizes)
    ref = max((x for x in perftest_sizes if x <= big), default=None)
    if ref is not None:
        goals.judge(f"guest verbs: 2-rank busbw at {human(big)} at least 0.8x ib_write_bw at {human(ref)} "
                    "(same boot, same rxe0)",
                    [(f"{human(big)} vs {human(ref)}", None if bw(ours, big) is None or not wbw[ref]
                      else bw(ours, big) / wbw[ref])], 0.8, True)
    if GOAL_LAT_SIZE in sizes:
        o, m = t[ours, GOAL_LAT_SIZE], t[mpi, GOAL_LAT_SIZE]
        goals.judge("guest: 8-byte allreduce latency over verbs at most 0.5x Open MPI over TCP in the same guest",
                    [("2r", None if o is None or m is None else o / m)], 0.5, False)
    return out


def compare(directory, sizes, ranks_list, guest_dir=None, guest_sizes=None):
    """The tables, the goals and the failed runs; ok is False when a run failed or is missing."""
    run, goals = Run(directory), Goals()
    lines = host_tables(run, sizes, ranks_list, goals) if ranks_list else []
    if guest_dir:
        grun = Run(guest_dir)
        lines += guest_tables(grun, guest_sizes, goals)
        run.failed += [f"guest: {f}" for f in grun.failed]
    lines += ["", "## the issue's goals, judged on this run (each point: ranks and size, ours / theirs)"] + \
        [f"- {g}" for g in goals.lines]
    if run.failed:
        lines += ["", "failed or missing runs (each run's output follows the tables in the results file):"] + \
            [f"  {f}" for f in run.failed]
    return "\n".join(lines).lstrip("\n"), not run.failed


def _ints(text):
    return [int(x) for x in text.split(",") if x]


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
    p.add_argument("dir", help="the host runs (IMPL.RANKS.SIZE.out)")
    p.add_argument("--sizes", default="8,4096,65536,1048576,4194304,16777216,67108864")
    p.add_argument("--ranks", default="2,4", help="host rank counts; empty: no host tables")
    p.add_argument("--guest-dir", help="the guest's runs (IMPL.2.SIZE.out, ib_write_bw.SIZE.out)")
    p.add_argument("--guest-sizes", default="8,65536,1048576,16777216")
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
        text, ok = compare(a.dir, _ints(a.sizes), _ints(a.ranks), a.guest_dir, _ints(a.guest_sizes))
        print(text)
        return 0 if ok else 1
    except FormatError as e:
        print(f"parse_perf_rows: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
