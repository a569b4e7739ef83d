#!/usr/bin/env python3
"""bench/parse_perf_rows.py on made-up outputs, no network: rdmacoll-allreduce-perf's own row and
footer format.
usage: parser_test.py PATH/TO/parse_perf_rows.py"""
import importlib.util
import os
import sys
import tempfile
import unittest

spec = importlib.util.spec_from_file_location("parse_perf_rows", sys.argv.pop(1))
P = importlib.util.module_from_spec(spec)
spec.loader.exec_module(P)


def ours_text(ranks, size, time_us):
    """A run of rdmacoll-allreduce-perf as it prints: nccl-tests' %6.2f bandwidths, the time with
    fewer decimals as it grows, peak RSS in one MiB line."""
    alg = size / (time_us * 1e3)
    bus = alg * 2 * (ranks - 1) / ranks
    t = f"{time_us:7.0f}" if time_us >= 1e4 else f"{time_us:7.1f}" if time_us >= 100 else f"{time_us:7.2f}"
    place = f"  {t}  {alg:6.2f}  {bus:6.2f}      0"
    return (f"[rank 0] # rdmacoll-allreduce-perf: nRanks {ranks} minBytes {size} maxBytes {size}\n"
            "[rank 0] #       size         count      type   redop    root     time   algbw   busbw #wrong\n"
            f"[rank 0] {size:12d}  {size // 4:12d}     float     sum      -1{place}{place}\n"
            "[rank 0] # Out of bounds values : 0 OK\n"
            f"[rank 0] # Avg bus bandwidth    : {bus:g}\n"
            "[rank 0] # Peak RSS (MiB)       : " + ", ".join(f"rank {r} {20 + r}.5" for r in range(ranks)) + "\n")


def peer_text(ranks, size, time_us):
    """A run of a bench/peers binary: 3 decimals, peak RSS a line per rank in KiB."""
    alg = size / (time_us * 1e3)
    bus = alg * 2 * (ranks - 1) / ranks
    place = f" {time_us:9.2f} {alg:7.3f} {bus:7.3f} {0:>6}"
    return (f"# peer\n  {size:10d} {size // 4:12d} {'float':>8} {'sum':>6} {-1:6d}{place}{place}\n"
            f"# Avg bus bandwidth    : {bus:.4f}\n" +
            "".join(f"# Peak RSS rank {r} : {1000 + r} KiB\n" for r in range(ranks)))


PERFTEST = """ RDMA_Write BW Test
 #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]
 {size}    10             41.00              {avg}                 0.000002
---------------------------------------------------------------------------------------
"""


class Rows(unittest.TestCase):
    def test_our_format(self):
        # 65536 B in 1200 us is 0.0546 GB/s, printed 0.05: right within the printed precision.
        res = P.parse(ours_text(2, 65536, 1200.0))
        self.assertEqual(res["rows"][0]["out_of_place"]["time_us"], 1200.0)
        self.assertEqual(res["peak_rss_kib"], {0: 20.5 * 1024, 1: 21.5 * 1024})
        self.assertEqual(P.check(res, 2, [65536], "float", "sum"), [])

    def test_wrong_units_still_caught(self):
        # algbw in MB/s instead of GB/s is far outside the printed precision.
        line = "  65536  16384  float  sum  -1  1200.0  54.61  54.61  0  1200.0  54.61  54.61  0"
        with self.assertRaises(P.FormatError):
            P.parse(line)

    def test_bad_rss_item(self):
        with self.assertRaises(P.FormatError):
            P.parse("# Peak RSS (MiB)       : rank zero 12.0\n")

    def test_json_rss_bytes(self):
        doc = ('{"rows": [{"size": 8, "count": 2, "type": "float", "redop": "sum", "root": -1, '
               '"out_of_place": {"time_us": 10, "algbw_gbs": 0.0008, "busbw_gbs": 0.0008, "wrong": 0}, '
               '"in_place": {"time_us": 10, "algbw_gbs": 0.0008, "busbw_gbs": 0.0008, "wrong": 0}}], '
               '"avg_busbw_gbs": 0.0008, "peak_rss_bytes": [2097152, 3145728]}')
        self.assertEqual(P.parse(doc)["peak_rss_kib"], {0: 2048.0, 1: 3072.0})


if __name__ == "__main__":
    unittest.main()
