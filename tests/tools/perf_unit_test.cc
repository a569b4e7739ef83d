// rdmacoll-bw / rdmacoll-lat without a network: flags, size sweeps, the measurement key both
// sides compare, the statistics, and the JSON document.
#include <gtest/gtest.h>

#include <sstream>

#include "perf/options.h"
#include "perf/report.h"

namespace rdmacoll::perf {
namespace {

Options parse_args(Tool t, std::initializer_list<const char*> a) { return parse(t, std::vector<std::string>(a.begin(), a.end())); }

TEST(PerfOptions, DefaultsFollowPerftest) {
  Options b = parse_args(Tool::Bw, {});
  EXPECT_EQ(b.sizes, std::vector<size_t>{65536});
  EXPECT_EQ(b.iters, 5000u);
  EXPECT_EQ(b.tx_depth, 128u);
  EXPECT_EQ(b.warmup, 256u);
  EXPECT_EQ(b.op, Op::Write);
  EXPECT_EQ(b.port, 18515);
  EXPECT_EQ(b.progress, transport::ProgressMode::Poll);
  EXPECT_TRUE(b.server.empty());
  Options l = parse_args(Tool::Lat, {});
  EXPECT_EQ(l.sizes, std::vector<size_t>{2});
  EXPECT_EQ(l.iters, 1000u);
  EXPECT_EQ(l.warmup, 100u);
}

TEST(PerfOptions, ShortLongAndInlineForms) {
  Options o = parse_args(Tool::Bw, {"-s", "64K", "--iters=10", "-t", "4", "--op", "read", "--transport=verbs", "-d",
                                    "rxe0", "-i", "1", "-x", "3", "-p", "9999", "-c", "-J", "--report-gbits", "node7"});
  EXPECT_EQ(o.sizes, std::vector<size_t>{65536});
  EXPECT_EQ(o.iters, 10u);
  EXPECT_EQ(o.tx_depth, 4u);
  EXPECT_EQ(o.op, Op::Read);
  EXPECT_EQ(o.backend, transport::Backend::Verbs);
  EXPECT_EQ(o.device, "rxe0");
  EXPECT_EQ(o.ib_port, 1);
  EXPECT_EQ(o.gid_index, 3);
  EXPECT_EQ(o.port, 9999);
  EXPECT_TRUE(o.check && o.json && o.gbits);
  EXPECT_EQ(o.server, "node7");
  EXPECT_EQ(o.explicit_flags, (std::set<std::string>{"sizes", "iters", "tx-depth", "op", "transport", "check"}));
}

TEST(PerfOptions, Sweeps) {
  EXPECT_EQ(parse_args(Tool::Lat, {"-a"}).sizes.size(), 23u);  // 2 B .. 8 MiB
  EXPECT_EQ(parse_args(Tool::Lat, {"-a"}).sizes.back(), size_t{8} << 20);
  EXPECT_EQ(parse_args(Tool::Bw, {"-b", "8", "-e", "1M", "-f", "128"}).sizes, (std::vector<size_t>{8, 1024, 131072}));
  EXPECT_EQ(parse_args(Tool::Bw, {"-b", "1K", "-e", "1K"}).sizes, std::vector<size_t>{1024});
  EXPECT_EQ(size_sweep(3, 100, 3), (std::vector<size_t>{3, 9, 27, 81}));
  EXPECT_EQ(parse_size("-s", "1G"), size_t{1} << 30);
  EXPECT_EQ(parse_size("-s", "7B"), 7u);
  EXPECT_EQ(parse_size("-s", "4KiB"), 4096u);  // the syntax of the byte-size settings
  EXPECT_EQ(parse_size("-s", "64kb"), size_t{64} << 10);
  EXPECT_THROW(parse_size("-s", "2048G"), UsageError);  // above 1 TiB
  EXPECT_THROW(parse_size("-s", "-1"), UsageError);
}

TEST(PerfOptions, BadFlagsNameTheProblem) {
  auto msg = [](Tool t, std::initializer_list<const char*> a) {
    try {
      parse_args(t, a);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(msg(Tool::Bw, {"--bogus"}), "unknown option '--bogus'");
  EXPECT_EQ(msg(Tool::Bw, {"-n"}), "--iters needs a value");
  EXPECT_EQ(msg(Tool::Bw, {"-n", "0"}), "--iters 0 is out of range [1, 4294967296]");
  EXPECT_EQ(msg(Tool::Bw, {"-s", "3X"}), "--size '3X' is not a size in bytes (e.g. 4096, 64K, 1M, 1G)");
  EXPECT_EQ(msg(Tool::Bw, {"-s", "0"}), "--size must be at least 1 byte");
  EXPECT_EQ(msg(Tool::Bw, {"-s", "2G"}), "sizes above 1 GiB are not supported");
  EXPECT_EQ(msg(Tool::Bw, {"-a", "-s", "8"}), "give one of -s, -a, or -b/-e/-f");
  EXPECT_EQ(msg(Tool::Bw, {"-b", "64", "-e", "8"}), "--maxbytes 8 is below --minbytes 64");
  EXPECT_EQ(msg(Tool::Bw, {"--op", "jump"}), "--op 'jump' is not one of write, write_imm, send, read");
  EXPECT_EQ(msg(Tool::Bw, {"--transport", "tcp"}), "--transport 'tcp' is not one of verbs, ucx");
  EXPECT_EQ(msg(Tool::Lat, {"-t", "4"}), "--tx-depth applies to rdmacoll-bw only");
  EXPECT_EQ(msg(Tool::Bw, {"-c=1"}), "unknown option '-c=1'");
  EXPECT_EQ(msg(Tool::Bw, {"--check=1"}), "--check takes no value");
  EXPECT_EQ(msg(Tool::Bw, {"a", "b"}), "one server host at most, got 'b' as well");
  EXPECT_EQ(msg(Tool::Bw, {"--timeout", "0"}), "--timeout must be positive");
  EXPECT_FALSE(usage(Tool::Bw).empty());
}

TEST(PerfOptions, MeasurementKeyRoundTrips) {
  Options a = parse_args(Tool::Bw, {"-b", "8", "-e", "64", "-n", "7", "-t", "3", "--op", "send", "-c"});
  Options b = parse_args(Tool::Bw, {});
  apply_measurement_key(b, measurement_key(a));
  EXPECT_EQ(measurement_key(a), measurement_key(b));
  EXPECT_EQ(b.sizes, (std::vector<size_t>{8, 16, 32, 64}));
  EXPECT_EQ(b.op, Op::Send);
  EXPECT_EQ(measurement_key(a),
            "transport=" + std::string(transport::to_string(a.backend)) +
                " op=send sizes=8,16,32,64 iters=7 warmup=6 tx-depth=3 check=1");
}

TEST(PerfStats, LatencyColumns) {
  std::vector<double> v;
  for (int i = 1000; i >= 1; --i) v.push_back(i);  // 1..1000 in reverse
  LatStats s = lat_stats(8, v);
  EXPECT_EQ(s.iters, 1000u);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 1000);
  EXPECT_DOUBLE_EQ(s.typical, 500.5);  // median of an even count
  EXPECT_DOUBLE_EQ(s.avg, 500.5);
  EXPECT_DOUBLE_EQ(s.p99, 990);  // nearest rank
  EXPECT_DOUBLE_EQ(s.p999, 999);
  EXPECT_NEAR(s.stdev, 288.6749, 1e-3);
  LatStats one = lat_stats(2, {3.5});
  EXPECT_DOUBLE_EQ(one.typical, 3.5);
  EXPECT_DOUBLE_EQ(one.p999, 3.5);
  EXPECT_DOUBLE_EQ(one.stdev, 0);
}

TEST(PerfStats, BandwidthAverageAndPeak) {
  // 4 operations of 1000 bytes: posted at 0,0,1,1; completed at 1,2,3,10.
  BwResult r = bw_result(1000, {0, 0, 1, 1}, {1, 2, 3, 10}, 2);
  EXPECT_DOUBLE_EQ(r.avg_Bps, 4000.0 / 10);
  EXPECT_DOUBLE_EQ(r.msg_rate, 0.4);
  EXPECT_DOUBLE_EQ(r.peak_Bps, 2000.0 / 2);  // ops 0..1 or 1..2: 2 ops in 2 s
  BwResult s = sum({r, r});
  EXPECT_DOUBLE_EQ(s.avg_Bps, 800);
  EXPECT_DOUBLE_EQ(s.peak_Bps, 2000);
}

TEST(PerfStats, WindowedLoopStartsTheMeasuredOperationsBehindNoWarmUp) {
  // Records the schedule: which operation each post and each completion was, in order.
  for (size_t depth : {1, 3, 16}) {
    for (size_t warmup : {0, 2, 5, 32}) {
      const size_t iters = 10;
      std::vector<size_t> posts, completes;
      std::vector<std::pair<char, size_t>> events;
      windowed_loop(
          warmup, iters, depth,
          [&](size_t i) {
            posts.push_back(i);
            events.push_back({'p', i});
          },
          [&](size_t i) {
            completes.push_back(i);
            events.push_back({'c', i});
          });
      SCOPED_TRACE("depth " + std::to_string(depth) + " warmup " + std::to_string(warmup));
      std::vector<size_t> all(warmup + iters);
      for (size_t i = 0; i < all.size(); ++i) all[i] = i;
      EXPECT_EQ(posts, all);
      EXPECT_EQ(completes, all);
      size_t in_flight = 0, max_in_flight = 0, completed = 0;
      for (auto [kind, i] : events) {
        if (kind == 'p') {
          ++in_flight;
          // Measured operations are posted with every warm-up operation already complete.
          if (i >= warmup) {
            EXPECT_GE(completed, warmup) << "operation " << i;
          }
        } else {
          --in_flight;
          ++completed;
        }
        max_in_flight = std::max(max_in_flight, in_flight);
      }
      EXPECT_EQ(max_in_flight, std::min(depth, std::max(warmup, iters)));  // the window is used
    }
  }
}

TEST(PerfReport, JsonDocument) {
  RunInfo info;
  info.options = parse_args(Tool::Lat, {"-s", "8", "-c", "-J"});
  info.transport.backend = transport::Backend::Verbs;
  info.transport.device = "rxe\"0";
  info.mode = "launched";
  std::ostringstream out;
  Report r(out, info);
  r.begin();
  r.row(lat_stats(8, {1, 2, 3}));
  r.end();
  std::string s = out.str();
  EXPECT_EQ(s.front(), '{');
  EXPECT_NE(s.find("\"device\": \"rxe\\\"0\""), std::string::npos) << s;
  EXPECT_NE(s.find("{\"bytes\": 8, \"iterations\": 3, \"t_min\": 1, \"t_max\": 3, \"t_typical\": 2"), std::string::npos)
      << s;
  EXPECT_NE(s.find("\"wrong_bytes\": 0"), std::string::npos);
  EXPECT_EQ(json_quote("a\nb\x01"), "\"a\\nb\\u0001\"");
}

TEST(PerfReport, TableHasPerftestColumns) {
  RunInfo info;
  info.options = parse_args(Tool::Bw, {"-s", "8"});
  info.mode = "client";
  std::ostringstream out;
  Report r(out, info);
  r.begin();
  r.row(bw_result(8, {0, 0}, {1, 2}, 2));
  r.end();
  EXPECT_NE(out.str().find(" #bytes     #iterations    BW peak[MiB/sec]    BW average[MiB/sec]   MsgRate[Mpps]"),
            std::string::npos)
      << out.str();
}

}  // namespace
}  // namespace rdmacoll::perf
