"""What the tools' JSON checkers (check_perf_json.py, check_coll_json.py) share: failing with a
message, and reading a field of a required type."""
import sys


def fail(msg):
    print("invalid JSON output: " + msg)
    sys.exit(1)


def need(obj, key, types, where):
    """obj[key], which must exist and be one of `types` (a bool counts only where bool is named)."""
    if key not in obj:
        fail(f"{where} has no '{key}'")
    v = obj[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        fail(f"{where}.{key} is {v!r}, expected {types}")
    if not isinstance(v, types):
        fail(f"{where}.{key} is {v!r}, expected {types}")
    return v
