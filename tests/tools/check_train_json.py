"""Checks rdmacoll-train's --json log.
usage: check_train_json.py FILE RANKS EPOCHS COMPRESS MIN_ACCURACY [MIN_RATIO MAX_RATIO]"""
import json
import math
import sys

from json_check import fail, need


def main():
    path, ranks, epochs, compress, min_acc = sys.argv[1:6]
    ratio_range = (float(sys.argv[6]), float(sys.argv[7])) if len(sys.argv) > 7 else None
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")
    if need(doc, "tool", str, "document") != "rdmacoll-train":
        fail("tool is not rdmacoll-train")
    run = need(doc, "run", dict, "document")
    if need(run, "ranks", int, "run") != int(ranks):
        fail(f"run.ranks is {run['ranks']}, expected {ranks}")
    if need(run, "compress", str, "run") != compress:
        fail(f"run.compress is {run['compress']!r}, expected {compress!r}")
    for key in ("epochs", "batch", "warmup_steps", "seed", "train_examples", "test_examples", "parameters"):
        need(run, key, int, "run")
    for key in ("lr", "momentum", "weight_decay", "clip", "input_mean", "input_std"):
        need(run, key, (int, float), "run")
    if abs(run["input_mean"] - 0.2860) > 1e-3 or abs(run["input_std"] - 0.3530) > 1e-3:
        fail(f"input statistics {run['input_mean']}, {run['input_std']} are not Fashion-MNIST's 0.2860, 0.3530")
    need(run, "overlap", bool, "run")
    if need(doc, "completed", bool, "document") is not True:
        fail("completed is not true")
    rows = need(doc, "epochs", list, "document")
    if len(rows) != int(epochs):
        fail(f"{len(rows)} epoch records, expected {epochs}")
    for i, r in enumerate(rows):
        where = f"epochs[{i}]"
        if need(r, "epoch", int, where) != i + 1:
            fail(f"{where}.epoch is {r['epoch']}")
        for key in ("train_loss", "test_accuracy", "lr", "compute_s", "comm_s", "wire_bytes", "plain_bytes"):
            v = need(r, key, (int, float), where)
            if not math.isfinite(v) or v < 0:
                fail(f"{where}.{key} is {v}")
        need(r, "peak_rss_bytes_max", int, where)
        need(r, "digest", str, where)
        if int(ranks) > 1:
            if r["wire_bytes"] <= 0:
                fail(f"{where}.wire_bytes is {r['wire_bytes']}")
            ratio = need(r, "compression_ratio", (int, float), where)
            if ratio_range and not ratio_range[0] <= ratio <= ratio_range[1]:
                fail(f"{where}.compression_ratio {ratio} is outside [{ratio_range[0]}, {ratio_range[1]}]")
    need(run, "error_feedback", bool, "run")
    variants = doc.get("post_training", "missing")
    if variants == "missing":
        fail("no post_training (null or a list)")
    for i, v in enumerate(variants or []):
        where = f"post_training[{i}]"
        for key in ("model", "format"):
            need(v, key, str, where)
        for key in ("sparsity", "test_accuracy"):
            x = need(v, key, (int, float), where)
            if not 0 <= x <= 1:
                fail(f"{where}.{key} is {x}")
        if need(v, "size_bytes", int, where) <= 0:
            fail(f"{where}.size_bytes is {v['size_bytes']}")
    acc = need(doc, "final_test_accuracy", (int, float), "document")
    if acc < float(min_acc):
        fail(f"final test accuracy {acc} is below {min_acc}")
    print(f"ok: {len(rows)} epoch(s), final test accuracy {acc}, ratio {rows[-1].get('compression_ratio')}")


main()
