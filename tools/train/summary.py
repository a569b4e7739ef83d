#!/usr/bin/env python3
"""rdmacoll-train-summary: compares rdmacoll-train runs (their --json logs) side by side.

usage: rdmacoll-train-summary [--target ACC] [--plots DIR] [--title TEXT] RUN.json...

Prints one row per run: codec, final test accuracy and its difference from the fp32 run
(--compress none), wire bytes per rank and epoch (the transport's counters, as logged), how many
times fewer than fp32's, the mean epoch time and time in communication, and the training time
until the test accuracy first reached --target (default 0.87). Runs given --prune or
--quantize-weights get a second table: accuracy and size of each shrunk model.

--plots DIR also writes, with gnuplot, DIR/accuracy_vs_bytes.png (cumulative wire bytes per rank,
log scale) and DIR/accuracy_vs_time.png (cumulative training time), one curve per run, with the
data files and the gnuplot script beside them (DIR/plots.gp) to redraw them.

Times are the epochs' training time (compute + communication, mean over ranks), without the
test-set evaluation. Exit status: 0 success, 1 an unreadable log or a failed plot, 2 bad usage.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys

PROG = "rdmacoll-train-summary"


# Matplotlib's tab10 and a black: eleven curves that can be told apart (gnuplot's default
# cycle has a pale yellow).
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#000000"]


class SummaryError(Exception):
    pass


def load(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise SummaryError(f"{path}: {e}")
    # pytorch-ddp: bench/peers/ddp_train.py's logs, in the same layout (comm_s is null: DDP
    # overlaps it; wire_bytes is null where they were not counted).
    if not isinstance(doc, dict) or doc.get("tool") not in ("rdmacoll-train", "pytorch-ddp"):
        raise SummaryError(f"{path}: not an rdmacoll-train --json log (no \"tool\": \"rdmacoll-train\")")
    epochs = doc.get("epochs")
    if not isinstance(epochs, list) or not epochs:
        raise SummaryError(f"{path}: no epochs logged")
    return doc


class Run:
    """One log, reduced to what the table and the plots need."""

    def __init__(self, path, doc, target):
        self.path = path
        run = doc["run"]
        self.compress = run.get("compress", "?")
        self.feedback = run.get("error_feedback", True)
        self.label = self.compress + ("" if self.feedback else " no-EF")
        self.link = run.get("link") or "-"
        # --link names each run's devices after its launcher's pid: one line for all of them.
        self.transport = re.sub(r"\brc\d+r(\d+)\b", r"rc<pid>r\1", run.get("transport", "?"))
        self.ranks = run.get("ranks", 0)
        self.completed = bool(doc.get("completed"))
        ep = doc["epochs"]
        self.epochs = len(ep)
        self.acc = [e["test_accuracy"] for e in ep]
        self.final = self.acc[-1]
        self.epoch_s = [e["compute_s"] + (e["comm_s"] or 0) for e in ep]
        self.comm_s = None if any(e["comm_s"] is None for e in ep) else [e["comm_s"] for e in ep]
        self.counted = all(e["wire_bytes"] is not None for e in ep)
        self.wire = [e["wire_bytes"] or 0 for e in ep]
        self.plain = [e["plain_bytes"] for e in ep]
        self.cum_s = list(accumulate(self.epoch_s))
        self.cum_wire = list(accumulate(self.wire))
        self.to_target = next((self.cum_s[i] for i, a in enumerate(self.acc) if a >= target), None)
        self.epoch_to_target = next((i + 1 for i, a in enumerate(self.acc) if a >= target), None)
        self.variants = doc.get("post_training") or []

    def is_fp32(self):
        return self.compress == "none"

    def wire_per_epoch(self):
        return sum(self.wire) / self.epochs


def accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


def fmt(v, spec, missing="-"):
    return missing if v is None else format(v, spec)


def table(runs, target):
    base = next((r for r in runs if r.is_fp32()), None)
    lines = []
    head = (f"{'codec':<16} {'link':>8} {'ep':>3} {'test_acc':>8} {'vs fp32':>9} {'wire MB/ep':>10} "
            f"{'fewer B':>8} {'epoch s':>8} {'comm s':>7} {'to ' + format(target, '.3g') + ' (s)':>12} "
            f"{'speed-up':>8}")
    lines.append(head)
    for r in runs:
        delta = None if base is None else 100.0 * (r.final - base.final)
        if not r.counted:
            ratio = "-"
        elif base is not None and r.wire_per_epoch() > 0:
            ratio = fmt(base.wire_per_epoch() / r.wire_per_epoch(), ".1f") + "x"
        elif r.wire_per_epoch() > 0:  # no fp32 run given: what a plain ring would send (computed)
            ratio = fmt(sum(r.plain) / sum(r.wire), ".1f") + "x*"
        else:
            ratio = "-"
        if r.to_target is not None:
            to_target = f"{r.to_target:.1f} (e{r.epoch_to_target})"
        else:
            to_target = "never"
        speedup = "-"
        if base is not None and base.to_target is not None and r.to_target is not None:
            speedup = f"{base.to_target / r.to_target:.1f}x"
        label = r.label + ("" if r.completed else " (incomplete)")
        lines.append(f"{label:<16} {r.link:>8} {r.epochs:>3} {r.final:>8.4f} "
                     f"{fmt(delta, '+.2f') + ' pt' if delta is not None else '-':>9} "
                     f"{fmt(r.wire_per_epoch() / 1e6 if r.counted else None, '.2f'):>10} {ratio:>8} "
                     f"{sum(r.epoch_s) / r.epochs:>8.2f} "
                     f"{fmt(sum(r.comm_s) / r.epochs if r.comm_s else None, '.2f'):>7} {to_target:>12} {speedup:>8}")
    notes = [
        "# test_acc: after the last epoch; vs fp32: percentage points against the --compress none run",
        "# wire MB/ep: bytes sent per rank and epoch (transport counters, 10^6 B); fewer B: fp32's wire bytes / "
        "the run's" + ("" if base else " (* no fp32 run given: a plain fp32 ring allreduce's, computed)"),
        "# epoch s, comm s: mean per epoch (compute + communication, mean over ranks; evaluation excluded); "
        f"to {target:.3g}: training time until the test accuracy first reached it (eN: after epoch N); "
        "speed-up: fp32's time to it / the run's",
    ]
    for t in sorted({r.transport for r in runs}):
        notes.append(f"# transport: {t} ({', '.join(r.label for r in runs if r.transport == t)})")
    shrunk = [r for r in runs if r.variants]
    if shrunk:
        lines.append("")
        lines.append(f"{'after training':<16} {'model':<8} {'format':<13} {'sparsity':>8} {'test_acc':>8} "
                     f"{'vs fp32':>8} {'size (B)':>10} {'smaller':>8}")
        for r in shrunk:
            dense = next((v for v in r.variants if v["model"] == "fp32"), r.variants[0])
            for v in r.variants:
                d = 100.0 * (v["test_accuracy"] - dense["test_accuracy"])
                smaller = dense["size_bytes"] / v["size_bytes"] if v["size_bytes"] else 0
                lines.append(f"{r.label:<16} {v['model']:<8} {v['format']:<13} {v['sparsity']:>8.2f} "
                             f"{v['test_accuracy']:>8.4f} {d:>+6.2f} pt {v['size_bytes']:>10} {smaller:>7.2f}x")
        notes.append("# after training: the trained model evaluated on the whole test set as it is (fp32), "
                     "magnitude-pruned (--prune) and with int8 weights (--quantize-weights); vs fp32: against "
                     "the unshrunk model")
    return "\n".join(lines + notes)


def gp_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plot(runs, target, outdir, title):
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        raise SummaryError("gnuplot not found: install Debian's gnuplot-nox (scripts/install-deps.sh does)")
    os.makedirs(outdir, exist_ok=True)
    # The range that tells the codecs apart: from a little under the lowest final accuracy within
    # 0.1 of the best (or the target) to the top. A run that ended below it (one that diverged)
    # would squash the others into a line; it keeps its legend entry, marked off the scale.
    best = max(r.final for r in runs)
    lo = min(r.final for r in runs if r.final >= best - 0.1)
    ymin = max(0.0, math.floor((min(lo, target) - 0.05) * 20) / 20)
    curves = []
    for i, r in enumerate(runs):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{i:02d}-{r.label}-{r.link}") + ".dat"
        with open(os.path.join(outdir, name), "w") as f:
            f.write(f"# {r.path}\n# epoch  wire_bytes_cumulative  train_seconds_cumulative  test_accuracy\n")
            for e in range(r.epochs):
                f.write(f"{e + 1} {r.cum_wire[e]:.0f} {r.cum_s[e]:.3f} {r.acc[e]:.4f}\n")
        off = ", off the scale" if r.final < ymin else ""
        curves.append((name, f"{r.label} ({r.final:.4f}{off})", r.counted))
    links = sorted({r.link for r in runs})
    ranks = sorted({r.ranks for r in runs})
    if title is None:
        title = (f"Fashion-MNIST MLP, {'/'.join(map(str, ranks))} ranks"
                 + ("" if links == ["-"] else ", link " + ", ".join(links)))
    common = [
        "set terminal pngcairo size 1200,720 enhanced font 'DejaVu Sans,12' linewidth 2",
        "set grid lc rgb '#dddddd'",
        "set key outside right center box opaque font ',10' title 'codec (final acc)'",
        f"set yrange [{ymin}:*]",
        "set ylabel 'test accuracy'",
        "set style data linespoints",
        f"set arrow from graph 0, first {target} to graph 1, first {target} nohead dt 2 lc rgb '#888888'",
        f"set label 'target {target:g}' at graph 0.01, first {target} left offset 0,0.7 tc rgb '#666666'",
    ] + [f"set linetype {i + 1} lc rgb '{c}'" for i, c in enumerate(PALETTE)]
    def plots(col):  # the same colour and point for a run in both plots; bytes only where counted
        return "plot " + ", \\\n     ".join(
            f"{gp_quote(name)} using {col}:4 title {gp_quote(label)} lt {i % len(PALETTE) + 1} lw 2 "
            f"pt {(5, 7, 9, 11, 13, 15)[i % 6]} ps 1.2"
            for i, (name, label, counted) in enumerate(curves) if counted or col != 2)
    script = "\n".join(common + [
        "set output 'accuracy_vs_bytes.png'",
        f"set title {gp_quote(title + ': test accuracy vs bytes sent per rank')}",
        "set xlabel 'bytes sent per rank, cumulative (transport counters, log scale)'",
        "set logscale x",
        "set format x '10^{%L}'",
        plots(2),
        "unset logscale x",
        "set format x '%g'",
        "set output 'accuracy_vs_time.png'",
        f"set title {gp_quote(title + ': test accuracy vs training time')}",
        "set xlabel 'training time, cumulative (s; compute + communication, evaluation excluded)'",
        "set xrange [0:*]",
        plots(3),
        "",
    ])
    with open(os.path.join(outdir, "plots.gp"), "w") as f:
        f.write(script)
    p = subprocess.run([gnuplot, "plots.gp"], cwd=outdir, capture_output=True, text=True)
    if p.returncode != 0:
        raise SummaryError(f"gnuplot failed (exit {p.returncode}) on {outdir}/plots.gp: {p.stderr.strip()}")
    return [os.path.join(outdir, n) for n in ("accuracy_vs_bytes.png", "accuracy_vs_time.png")]


def main():
    ap = argparse.ArgumentParser(prog=PROG, description="Compares rdmacoll-train runs from their --json logs.")
    ap.add_argument("logs", nargs="+", metavar="RUN.json")
    ap.add_argument("--target", type=float, default=0.87, help="test accuracy to time (default 0.87)")
    ap.add_argument("--plots", metavar="DIR", help="write accuracy_vs_bytes.png and accuracy_vs_time.png there")
    ap.add_argument("--title", help="plot title (default: model, ranks and link)")
    a = ap.parse_args()
    if not 0 < a.target <= 1:
        ap.error(f"--target {a.target} is not in (0, 1]")
    try:
        runs = [Run(p, load(p), a.target) for p in a.logs]
        print(table(runs, a.target))
        if a.plots:
            for png in plot(runs, a.target, a.plots, a.title):
                print(f"# plot: {png}")
    except SummaryError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
