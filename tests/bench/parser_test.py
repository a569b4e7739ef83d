#!/usr/bin/env python3
"""bench/parse_perf_rows.py on made-up outputs, no network: rdmacoll-allreduce-perf's own row and
footer format, perftest's, and the comparison tables with the issue's goals judged right.
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


class Compare(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def put(self, impl, ranks, size, time_us, ours=False, where=None, round_=1):
        name = f"{impl}.{ranks}.{size}" + (f".r{round_}" if round_ > 1 else "") + ".out"
        with open(os.path.join(where or self.dir, name), "w") as f:
            f.write((ours_text if ours else peer_text)(ranks, size, time_us))

    def host_run(self, skip=()):
        # Times in us: ours beats MPI everywhere, Gloo's best is ring_chunked; at 4 MiB with 4
        # ranks ours is only 1.5x the best Gloo.
        for n in (2, 4):
            for s, base in ((8, 10.0), (4 << 20, 1000.0)):
                slow = 1.5 if (n, s) == (4, 4 << 20) else 3.0
                for impl, t in (("ours_sm", base), ("mpi_sm", base * 1.2), ("ours_tcp", base),
                                ("mpi_tcp", base * 1.1), ("gloo_ring", base * 40),
                                ("gloo_ring_chunked", base * (20 if s == 8 else slow)),
                                ("gloo_halving_doubling", base * 50)):
                    if (impl, n, s) not in skip:
                        self.put(impl, n, s, t, ours=impl.startswith("ours"))

    def goal(self, text, start):
        """A goal's verdict line and the line of its points."""
        lines = text.splitlines()
        i = next(i for i, l in enumerate(lines) if l.startswith("- " + start))
        return lines[i] + "\n" + lines[i + 1]

    def test_host_goals(self):
        self.host_run()
        text, ok = P.compare(self.dir, [8, 4 << 20], [2, 4])
        self.assertTrue(ok, text)
        self.assertIn("met", self.goal(text, "host shared memory: busbw at >= 4 MiB at least 1.0x Open MPI"))
        self.assertIn("1.20x", text)
        self.assertIn("NOT MET (1 of 2 points met)", self.goal(text, "host TCP loopback: busbw at >= 4 MiB at least 2x"))
        self.assertIn("4r 4 MiB 1.50x", text)
        # 8-byte latency: ours 10 us, best Gloo (ring_chunked) 200 us: 0.05x.
        self.assertIn(": met\n", self.goal(text, "host TCP loopback: 8-byte latency at most 0.1x Gloo"))
        self.assertIn("0.050x", text)
        row = next(l for l in text.splitlines() if l.split()[:2] == ["4194304", "2"] and "Gloo r_chunk" in l)
        self.assertTrue(row.rstrip().endswith("3.00  Gloo r_chunk"), row)
        # Peak RSS at the largest size: ours in MiB lines, the peers in KiB lines, both in MiB.
        rss = [l.split() for l in text.split("## host: peak RSS")[1].split("## ")[0].splitlines()]
        self.assertIn(["4", "ranks", "TCP", "loopback,", "ours", "20.5", "21.5", "22.5", "23.5"], rss)
        self.assertIn(["2", "ranks", "shared", "memory,", "Open", "MPI", "1.0", "1.0"], rss)

    def test_failed_run(self):
        self.host_run(skip={("mpi_sm", 4, 8)})
        text, ok = P.compare(self.dir, [8, 4 << 20], [2, 4])
        self.assertFalse(ok)
        self.assertIn("NOT MEASURED", self.goal(text, "host shared memory: 8-byte latency at most 2x Open MPI"))
        self.assertIn("mpi_sm 4 ranks 8 B: missing", text)

    def test_rounds_give_the_median(self):
        self.host_run()
        # Later rounds of ours over TCP with 2 ranks at 8 B: 10 (round 1), 30, 20 us: median 20;
        # MPI's stays 11 us: ours/MPI 1.82x. A failed round is reported, the others still count.
        self.put("ours_tcp", 2, 8, 30.0, ours=True, round_=2)
        self.put("ours_tcp", 2, 8, 20.0, ours=True, round_=3)
        text, ok = P.compare(self.dir, [8, 4 << 20], [2, 4])
        self.assertTrue(ok, text)
        self.assertIn("each point the median of 3 alternating runs", text)  # the 8 B latency table
        # The busbw table holds 8 B (3 rounds) and 4 MiB (1): it says the range.
        self.assertIn("each point the median of 1-3 alternating runs", text)
        self.assertIn("2r 1.82x", self.goal(text, "host TCP loopback: 8-byte latency at most 2x Open MPI"))
        with open(os.path.join(self.dir, "mpi_tcp.2.8.r2.out"), "w") as f:
            f.write("mpirun: a rank died\n")
        text, ok = P.compare(self.dir, [8, 4 << 20], [2, 4])
        self.assertFalse(ok)
        self.assertIn("mpi_tcp 2 ranks 8 B (round 2): no row", text)
        self.assertIn("2r 1.82x", self.goal(text, "host TCP loopback: 8-byte latency at most 2x Open MPI"))

    def test_guest(self):
        g = os.path.join(self.dir, "guest")
        os.mkdir(g)
        big = 16 << 20
        # ours: 16 MiB in 0.5 s = 0.0336 GB/s; ib_write_bw 40 MiB/s = 0.0419 GB/s: 0.80x.
        self.put("ours_verbs", 2, big, 5e5, ours=True, where=g)
        self.put("ours_verbs", 2, 8, 100.0, ours=True, where=g)
        for impl, t8 in (("mpi_tcp", 250.0), ("gloo_ring", 900.0)):
            self.put(impl, 2, 8, t8, where=g)
            self.put(impl, 2, big, 1e6, where=g)
        with open(os.path.join(g, f"ib_write_bw.{big}.out"), "w") as f:
            f.write(PERFTEST.format(size=big, avg="40.00"))
        text, ok = P.compare(self.dir, [], [], g, [8, big])
        self.assertTrue(ok, text)
        self.assertIn(": met\n", self.goal(text, "guest verbs: 2-rank busbw at 16 MiB"))
        self.assertIn("16 MiB vs 16 MiB 0.800x", text)
        self.assertIn("0.400x", self.goal(text, "guest: 8-byte allreduce latency"))
        # Rounds at 16 MiB: ours 0.5 s, 1.0 s, 0.4 s (median 0.5 s); ib_write_bw 40, 20, 60 MiB/s
        # (median 40): still 0.800x, and a failed ib_write_bw round is named and left out.
        self.put("ours_verbs", 2, big, 1e6, ours=True, where=g, round_=2)
        self.put("ours_verbs", 2, big, 4e5, ours=True, where=g, round_=3)
        for k, avg in ((2, "20.00"), (3, "60.00")):
            with open(os.path.join(g, f"ib_write_bw.{big}.r{k}.out"), "w") as f:
                f.write(PERFTEST.format(size=big, avg=avg))
        text, ok = P.compare(self.dir, [], [], g, [8, big])
        self.assertTrue(ok, text)
        self.assertIn("16 MiB vs 16 MiB 0.800x", text)
        self.assertIn("ib_write_bw: its BW average on rxe0 in GB/s; each point the median of 3 alternating runs", text)
        with open(os.path.join(g, f"ib_write_bw.{big}.r3.out"), "w") as f:
            f.write("ib_write_bw: couldn't connect\n")
        text, ok = P.compare(self.dir, [], [], g, [8, big])
        self.assertFalse(ok)
        self.assertIn(f"ib_write_bw {big} B (round 3): no result row", text)
        for k in (2, 3):
            os.remove(os.path.join(g, f"ib_write_bw.{big}.r{k}.out"))
            os.remove(os.path.join(g, f"ours_verbs.2.{big}.r{k}.out"))
        # Without a 16 MiB ib_write_bw, its largest size below is the reference.
        os.rename(os.path.join(g, f"ib_write_bw.{big}.out"), os.path.join(g, "ib_write_bw.1048576.out"))
        with open(os.path.join(g, "ib_write_bw.1048576.out"), "w") as f:
            f.write(PERFTEST.format(size=1048576, avg="80.00"))
        text, _ = P.compare(self.dir, [], [], g, [8, 1048576, big])
        self.assertIn("NOT MET", self.goal(text, "guest verbs: 2-rank busbw at 16 MiB at least 0.8x ib_write_bw at 1 MiB"))


if __name__ == "__main__":
    unittest.main()
