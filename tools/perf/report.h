// What rdmacoll-bw and rdmacoll-lat compute and print: perftest's columns as a table, or one
// JSON document (--json). The arithmetic lives here so tests can check it without a network.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "options.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::perf {

// Bandwidth of one pair at one size. Times are seconds on a steady clock.
struct BwResult {
  size_t bytes = 0;
  size_t iters = 0;
  double peak_Bps = 0;  // best rate over any tx-depth consecutive operations
  double avg_Bps = 0;   // bytes*iters / (last completion - first post)
  double msg_rate = 0;  // operations per second
  uint64_t wrong = 0;   // --check: bytes that differ from what was sent
};
// posted[i]/completed[i]: when operation i was posted and seen complete.
BwResult bw_result(size_t bytes, const std::vector<double>& posted, const std::vector<double>& completed,
                   size_t window);
// Pairs running at once add up.
BwResult sum(const std::vector<BwResult>& pairs);

// The bandwidth loop's schedule, apart from the transport: `warmup` + `iters` operations with up
// to `depth` in flight, post(i) starting operation i and complete(i) waiting for it (in order).
// The measured operations start only once every warm-up operation has completed, so the measured
// time holds no warm-up transfer: perftest's clock starts at its first post with nothing ahead of
// it. (Posting them behind a full window of warm-up operations charged the measurement for up to
// depth - 1 warm-up transfers: 10 x 16 MiB at a depth of 16 read 0.4x the rate.)
template <class Post, class Complete>
void windowed_loop(size_t warmup, size_t iters, size_t depth, Post&& post, Complete&& complete) {
  const size_t total = warmup + iters;
  if (depth == 0) depth = 1;
  size_t next = 0, done = 0;
  while (done < total) {
    while (next < total && next - done < depth && (next != warmup || done == warmup)) post(next++);
    complete(done++);
  }
}

// Latency statistics in microseconds; typical is the median, percentiles are nearest-rank.
struct LatStats {
  size_t bytes = 0;
  size_t iters = 0;
  double min = 0, max = 0, typical = 0, avg = 0, stdev = 0, p99 = 0, p999 = 0;
  uint64_t wrong = 0;
};
LatStats lat_stats(size_t bytes, std::vector<double> samples_us);

// Everything the header names.
struct RunInfo {
  Options options;
  transport::TransportInfo transport;
  std::string mode;  // "server" | "client" | "launched"
  int pairs = 1;
  int world_size = 2;
  std::string clock;  // what the timestamps come from (Timer::source())
};

// Streams the table as rows arrive, or collects them and prints one JSON document at the end.
class Report {
 public:
  Report(std::ostream& out, RunInfo info);
  void begin();
  void row(const BwResult& r);
  void row(const LatStats& r);
  void end();

 private:
  std::ostream& out_;
  RunInfo info_;
  std::vector<std::string> json_rows_;
};

// JSON string literal with escaping.
std::string json_quote(std::string_view s);

}  // namespace rdmacoll::perf
