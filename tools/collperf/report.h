// What the collective benchmarks compute and print: nccl-tests' table (rank 0 only), or one
// JSON document. The arithmetic (busbw factors, -a, averages) lives here so it is unit tested.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "collperf/options.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::collperf {

// busbw = algbw x factor, as nccl-tests (PERFORMANCE.md) defines it for n ranks: the bandwidth
// each rank's busiest link would need if the algorithm were optimal, comparable to a link rate.
//   allreduce 2(n-1)/n;  reduce_scatter, allgather (n-1)/n;  broadcast, reduce 1.
double busbw_factor(Collective c, int nranks);

// The time reported for a size from every rank's mean time per call (-a).
double combine(Average a, const std::vector<double>& per_rank_us);

// What a compressed allreduce (--compress) put on the wire, and how close its result was.
struct Wire {
  double bytes = 0;      // per rank per call (Work::wire().bytes_sent), mean over the timed calls and the ranks
  double busbw_gbs = 0;  // bytes / time: what each rank's link carried
  double algbw_gbs = 0;  // busbw / the allreduce's busbw factor, as the plain algbw and busbw relate
  double ratio = 0;      // the plain fp32 ring's bytes per rank, 2(n-1)/n size, over `bytes` (0 if none)
  double relerr = 0;     // ||out - exact|| / ||exact|| of one call, max over ranks
  double relerr_limit = -1;    // what -c 1 holds relerr to; -1: not checked
  bool compressed = true;      // the timed calls compressed (false: only_if_faster declined)
  bool only_if_faster = false; // --compress auto: the table shows `compressed`
};

struct Placement {
  double time_us = 0;
  double algbw_gbs = 0;  // bytes / time, 1e9 bytes per second
  double busbw_gbs = 0;
  int64_t wrong = -1;    // elements that differ from the reference, summed over ranks; -1: not checked
                         // (--compress: ranks whose result is not rank 0's bits or whose relerr fails)
  std::optional<Wire> wire;  // --compress only
  // What the timed calls ran (Work::algorithm() of rank 0's last one: "ring_allreduce",
  // "shared_memory_allreduce", ...), where --algo auto leaves the choice to the communicator;
  // empty: not recorded (compressed rows).
  std::string algorithm;
};
// algbw and busbw of `bytes` moved in `time_us` (0 when the time is not positive).
Placement placement(Collective c, int nranks, size_t bytes, double time_us, int64_t wrong);

// The plain ring allreduce's bytes sent per rank for `bytes` of fp32: 2(n-1)/n bytes.
double ring_bytes_per_rank(int nranks, size_t bytes);
// Wire's bandwidths and ratio for an allreduce of `bytes` (fp32) that sent `wire_bytes` per rank
// in `time_us` (0 where the time, the busbw factor or the wire bytes are 0).
Wire wire_columns(int nranks, size_t bytes, double time_us, double wire_bytes);

struct Row {
  size_t bytes = 0;
  size_t count = 0;
  DataType type = DataType::f32;
  std::string redop;  // "sum", ...; "none" for allgather and broadcast
  int root = -1;      // -1 where the collective has none
  Placement out_of_place, in_place;
};

// Mean busbw over every row and both placements (nccl-tests' "Avg bus bandwidth").
double avg_busbw(const std::vector<Row>& rows);
int64_t total_wrong(const std::vector<Row>& rows);  // unchecked placements count 0

struct RankLine {
  int rank = 0;
  long pid = 0;
  std::string host;
  std::string device;   // TransportInfo::device of that rank
  std::string qp_type;  // TransportInfo::qp_type (UCX: the transports in use)
};

// Everything the header and the footer name.
struct RunInfo {
  Options options;
  int ranks = 1;
  transport::TransportInfo transport;
  std::string transport_line;  // Transport::describe()
  std::string algorithm;       // the allreduce algorithm asked for ("auto", ...)
  std::string clock;           // where the times come from
  std::string link;            // RDMACOLL_LINK: the rate of the link rdmacoll-run --link made, if any
  std::vector<RankLine> rank_lines;
  // Footer: per rank peak resident memory and peak scratch use; the pool's (fixed) size.
  std::vector<int64_t> peak_rss_bytes;
  std::vector<int64_t> peak_scratch_bytes;
  int64_t scratch_bytes = 0;
};

void print_header(std::ostream& out, const RunInfo& info);
void print_row(std::ostream& out, const Row& r);
void print_footer(std::ostream& out, const RunInfo& info, const std::vector<Row>& rows);
std::string to_json(const RunInfo& info, const std::vector<Row>& rows);

}  // namespace rdmacoll::collperf
