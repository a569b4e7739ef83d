// rdmacoll-allreduce-perf, -reduce-scatter-perf, -allgather-perf, -broadcast-perf, -reduce-perf:
// the collectives of a communicator timed the way NVIDIA's nccl-tests time NCCL's. One source;
// CMake builds it once per collective with RDMACOLL_COLLPERF_COLLECTIVE naming it.
//   rdmacoll-run -n 4 rdmacoll-allreduce-perf -b 8 -e 64M -f 2
//   mpirun -np 4 -x RDMACOLL_ADDR=host0:29500 rdmacoll-allreduce-perf ...
// For each datatype, op and size: out of place then in place, warmup calls, a barrier, then
// --iters calls back to back (all issued, then waited, unless -z 1), timed on every rank; with
// --check one more call on fresh inputs, every element verified on every rank.
// --compress (allreduce only): the compressed allreduce on gradient-like inputs, with the wire
// bytes the transport counted and the relative error against a plain allreduce (see README).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "collperf/compress.h"
#include "collperf/data.h"
#include "collperf/options.h"
#include "collperf/report.h"
#include "perf/options.h"
#include "perf/runner.h"
#include "perf/session.h"
#include "perf/timer.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

#ifndef RDMACOLL_COLLPERF_COLLECTIVE
#error "build with -DRDMACOLL_COLLPERF_COLLECTIVE=allreduce (or reduce_scatter, allgather, broadcast, reduce)"
#endif

namespace {

using namespace rdmacoll::collperf;
using rdmacoll::collectives::CallOptions;
using rdmacoll::collectives::Communicator;
using rdmacoll::collectives::Compression;
using rdmacoll::collectives::Work;
namespace bs = rdmacoll::bootstrap;

constexpr Collective kCollective = Collective::RDMACOLL_COLLPERF_COLLECTIVE;

// What a run of calls put on the wire (compressed allreduces: Work::wire(), Work::compressed()).
struct Tally {
  uint64_t bytes_sent = 0;
  size_t calls = 0, compressed = 0;
  void add(const Work& w) {
    bytes_sent += w.wire().bytes_sent;
    ++calls;
    compressed += w.compressed() ? 1 : 0;
  }
};

// One call of the collective under test. Inputs are `count` elements everywhere (allgather
// reads only block `rank` of them; broadcast only the root's).
struct Call {
  Communicator& comm;
  const Options& o;
  CallOptions copts;
  const Compression* compression = nullptr;  // --compress: the float allreduce overload

  Work issue(const void* in, void* out, size_t count, DataType type, ReduceOp op) const {
    if (compression)
      return comm.allreduce_async(static_cast<const float*>(in), static_cast<float*>(out), count, op, *compression);
    switch (kCollective) {
      case Collective::allreduce: return comm.allreduce_async(in, out, count, type, op, copts);
      case Collective::reduce_scatter: return comm.reduce_scatter_async(in, out, count, type, op, copts);
      case Collective::allgather: return comm.allgather_async(in, out, count, type);
      case Collective::broadcast: return comm.broadcast_async(in, out, count, type, o.root);
      case Collective::reduce: return comm.reduce_async(in, out, count, type, op, o.root, copts);
    }
    return {};
  }

  // Mean microseconds per call over o.iters calls, after o.warmup untimed ones and a barrier;
  // `tally`, if given, gets the timed calls' wire bytes, and `algorithm` what the last one ran.
  double time(const rdmacoll::perf::Timer& timer, const void* in, void* out, size_t count, DataType type,
              ReduceOp op, Tally* tally = nullptr, std::string* algorithm = nullptr) const {
    run(o.warmup, in, out, count, type, op, nullptr);
    comm.barrier();
    const uint64_t t0 = timer.now();
    run(o.iters, in, out, count, type, op, tally, algorithm);
    return timer.micros(timer.now() - t0) / static_cast<double>(o.iters);
  }

  void run(size_t calls, const void* in, void* out, size_t count, DataType type, ReduceOp op, Tally* tally,
           std::string* algorithm = nullptr) const {
    if (o.blocking) {
      for (size_t i = 0; i < calls; ++i) {
        Work w = issue(in, out, count, type, op);
        w.wait();
        if (tally) tally->add(w);
        if (algorithm && i + 1 == calls) *algorithm = w.algorithm();
      }
      return;
    }
    std::vector<Work> works;
    works.reserve(calls);
    for (size_t i = 0; i < calls; ++i) works.push_back(issue(in, out, count, type, op));
    for (Work& w : works) w.wait();
    if (tally)
      for (const Work& w : works) tally->add(w);
    if (algorithm && !works.empty()) *algorithm = works.back().algorithm();
  }

  // Wrong elements of this rank's part of the result of one call on fresh inputs.
  uint64_t check(void* in, void* out, bool in_place, size_t count, DataType type, ReduceOp op) const {
    const int rank = comm.rank(), n = comm.size();
    const std::optional<ReduceOp> pattern_op = has_op(kCollective) ? std::optional(op) : std::nullopt;
    void* src = in_place ? out : in;
    fill_input(type, pattern_op, rank, src, 0, count);
    if (!in_place) std::memset(out, 0xFF, count * rdmacoll::collectives::dtype_size(type));  // NaN / -1 / 255
    issue(src, out, count, type, op).wait();
    switch (kCollective) {
      case Collective::allreduce: return count_wrong_reduced(type, op, n, out, 0, count);
      case Collective::reduce_scatter: {
        auto [off, len] = block(count, n, rank);
        return count_wrong_reduced(type, op, n, out, off, off + len);
      }
      case Collective::allgather: {
        uint64_t wrong = 0;
        for (int q = 0; q < n; ++q) {
          auto [off, len] = block(count, n, q);
          wrong += count_wrong_copied(type, q, out, off, off + len);
        }
        return wrong;
      }
      case Collective::broadcast: return count_wrong_copied(type, o.root, out, 0, count);
      case Collective::reduce: return rank == o.root ? count_wrong_reduced(type, op, n, out, 0, count) : 0;
    }
    return 0;
  }
};

// --compress: one size of the sweep on this rank. Per placement, a record of kCompressedFields
// doubles that every rank gathers: [time us, wire bytes per timed call, relerr, relerr limit
// (-1: unchecked), 1 if the timed calls compressed, result hash (high, low 32 bits)].
constexpr size_t kCompressedFields = 7;

struct CompressedSize {
  const Call& call;
  Communicator& comm;
  const rdmacoll::collectives::Codec& codec;
  const Compression& compression;  // call's; its feedback (if any) is this size's own
  float* in;
  float* out;
  float* exact;
  size_t count;
  ReduceOp op;

  // Order: out-of-place timing; the exact result (a plain allreduce of the same inputs); one
  // out-of-place and one in-place call on those inputs for relerr and the check; in-place timing
  // (last, as in-place sums grow the buffer call after call). Error feedback, if on, is carried
  // through all of them.
  std::vector<double> measure(const rdmacoll::perf::Timer& timer) {
    std::vector<double> rec(2 * kCompressedFields, -1.0);
    fill_gradient(comm.rank(), in, count);
    std::memcpy(out, in, count * 4);
    if (compression.only_if_faster) comm.compression_pays(codec, count, compression.scheme);  // not in the timing
    Tally oop;
    rec[0] = call.time(timer, in, out, count, DataType::f32, op, &oop);
    tally_into(oop, rec.data());
    comm.allreduce(in, exact, count, DataType::f32, op);
    one_call(false, rec.data());
    one_call(true, rec.data() + kCompressedFields);
    std::memcpy(out, in, count * 4);
    Tally ip;
    rec[kCompressedFields] = call.time(timer, out, out, count, DataType::f32, op, &ip);
    tally_into(ip, rec.data() + kCompressedFields);
    return rec;
  }

  static void tally_into(const Tally& t, double* rec) {
    rec[1] = t.calls ? static_cast<double>(t.bytes_sent) / static_cast<double>(t.calls) : 0;
    rec[4] = t.calls && t.compressed == t.calls ? 1 : 0;
  }

  void one_call(bool in_place, double* rec) {
    std::vector<float> budget;
    if (call.o.check) {
      budget.resize(count);
      local_error_budget(codec, in, count, compression.feedback, budget.data());
    }
    if (in_place) std::memcpy(out, in, count * 4);
    else std::memset(out, 0xFF, count * 4);  // NaN: an unwritten element cannot pass
    call.issue(in_place ? out : in, out, count, DataType::f32, op).wait();
    rec[2] = relative_error(out, exact, count);
    const uint64_t h = result_hash(out, count);
    rec[5] = static_cast<double>(h >> 32), rec[6] = static_cast<double>(h & 0xFFFFFFFFu);
    if (call.o.check) {
      // avg divides the sum, and so its error, by n.
      comm.allreduce(budget.data(), budget.data(), count, DataType::f32, op);
      rec[3] = relerr_limit(codec, uses_two_phase(codec, compression.scheme), exact, budget.data(), count);
    }
  }
};

// A placement's columns from every rank's record (see CompressedSize); `own_wrong` gets 1 if
// this rank's result fails the check.
Placement compressed_placement(const Options& o, int n, int rank, size_t bytes, const std::vector<double>& all,
                               size_t at, uint64_t& own_wrong) {
  std::vector<double> times;
  double wire = 0, relerr = 0, limit = -1;
  int64_t wrong = o.check ? 0 : -1;
  const double* first = all.data() + at;
  for (int r = 0; r < n; ++r) {
    const double* rec = all.data() + static_cast<size_t>(r) * 2 * kCompressedFields + at;
    times.push_back(rec[0]);
    wire += rec[1] / n;
    relerr = std::isnan(rec[2]) || std::isnan(relerr) ? std::nan("") : std::max(relerr, rec[2]);
    limit = std::max(limit, rec[3]);
    // Bitwise rank 0's result, and relerr finite and within the limit.
    const bool bad = rec[5] != first[5] || rec[6] != first[6] || !std::isfinite(rec[2]) || !(rec[2] <= rec[3]);
    if (o.check && bad) {
      ++wrong;
      if (r == rank) ++own_wrong;
    }
  }
  Placement p = placement(Collective::allreduce, n, bytes, combine(o.average, times), wrong);
  Wire w = wire_columns(n, bytes, p.time_us, wire);
  w.relerr = relerr;
  w.relerr_limit = o.check ? limit : -1;
  w.compressed = first[4] == 1;
  w.only_if_faster = o.compress_auto;
  p.wire = w;
  return p;
}

int g_rank = -1;  // for error messages, once known

// Runs the sweep; returns the exit status.
int run(const Options& o, const std::vector<std::string>& args, int json_fd) {
  const std::string name(tool_name(kCollective));
  const double timeout = o.timeout > 0 ? o.timeout : rdmacoll::settings::get_seconds("RDMACOLL_TIMEOUT");
  std::optional<bs::LaunchInfo> launch = bs::detect_launch();
  if (!launch) {
    std::cerr << name << ": not launched: run every rank under rdmacoll-run -n N, mpirun -np N or srun, or set "
                 "RDMACOLL_RANK, RDMACOLL_WORLD_SIZE and RDMACOLL_ADDR\n\n"
              << usage(kCollective);
    return 2;
  }
  if (has_root(kCollective) && o.root >= launch->world_size) {
    std::cerr << name << ": --root " << o.root << " is not a rank of the " << launch->world_size << " launched\n\n"
              << usage(kCollective);
    return 2;
  }
  const int rank = launch->rank;
  g_rank = rank;
  bs::World world = bs::connect_world(*launch, bs::deadline_in(timeout));

  // Every rank must run the same sweep, or the calls do not match up: compare the flags first.
  rdmacoll::perf::require_same_args(*world.store, "collperf/args", rank, launch->world_size, args,
                                    bs::deadline_in(timeout));

  // The buffers outlive the communicator: when a call fails (a timeout), the communicator is
  // destroyed with that call in flight, and its transport may still touch them while it shuts down.
  const std::vector<size_t> sweep = sizes(o);
  rdmacoll::perf::Buffer in(sweep.back()), outbuf(sweep.back());
  std::unique_ptr<rdmacoll::collectives::Codec> codec;
  std::optional<rdmacoll::perf::Buffer> exact;  // --compress: the plain allreduce's result
  if (!o.compress.empty()) {
    codec = rdmacoll::collectives::make_codec(o.compress);
    exact.emplace(sweep.back());
  }

  Communicator::Options copt = Communicator::Options::from_settings();
  if (o.backend) copt.transport.backend = *o.backend;
  if (o.timeout > 0) copt.timeout_s = o.timeout;
  std::unique_ptr<Communicator> comm = Communicator::create(world, copt);
  const int n = comm->size();

  RunInfo info;
  info.options = o;
  info.ranks = n;
  info.transport = comm->transport().info();
  info.transport_line = comm->transport().describe();
  info.algorithm = std::string(rdmacoll::collectives::to_string(o.algorithm.value_or(comm->options().algorithm)));
  rdmacoll::perf::Timer timer;
  info.clock = timer.source();
  info.link = rdmacoll::settings::get_string("RDMACOLL_LINK");
  {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    // Each rank's own line: ranks on other hosts may use other devices.
    const std::string mine = std::to_string(getpid()) + "\n" + host + "\n" + info.transport.device + "\n" +
                             info.transport.qp_type;
    auto lines = bs::all_gather(*world.store, "collperf/ranks", rank, n, bs::Bytes(mine.begin(), mine.end()),
                                bs::deadline_in(timeout));
    for (int r = 0; r < n; ++r) {
      std::istringstream fields(std::string(lines[static_cast<size_t>(r)].begin(), lines[static_cast<size_t>(r)].end()));
      RankLine line;
      line.rank = r;
      std::string pid;
      std::getline(fields, pid);
      line.pid = std::stol(pid);
      std::getline(fields, line.host);
      std::getline(fields, line.device);
      std::getline(fields, line.qp_type);
      info.rank_lines.push_back(line);
    }
  }
  const bool printer = rank == 0;
  std::ostringstream json;
  std::ostream& out = json_fd >= 0 ? static_cast<std::ostream&>(json) : std::cout;
  if (printer && json_fd < 0) print_header(out, info);

  CallOptions copts;
  copts.algorithm = o.algorithm;
  if (o.deterministic) copts.deterministic = true;
  const Call call{*comm, o, copts};
  Compression compression;
  rdmacoll::collectives::ErrorFeedback feedback;  // --feedback: reset for each size
  if (codec) {
    compression.codec = codec.get();
    compression.seed = o.seed;
    compression.scheme = o.scheme;
    compression.only_if_faster = o.compress_auto;
    if (o.feedback) compression.feedback = &feedback;
  }
  const Call compressed_call{*comm, o, {}, &compression};

  std::vector<Row> rows;
  uint64_t own_wrong = 0;
  for (DataType type : o.types) {
    const size_t es = rdmacoll::collectives::dtype_size(type);
    for (ReduceOp op : o.ops) {
      for (size_t bytes : sweep) {
        const size_t count = bytes / es;
        if (codec) {
          feedback.reset();
          CompressedSize one{compressed_call, *comm, *codec, compression, reinterpret_cast<float*>(in.data()),
                             reinterpret_cast<float*>(outbuf.data()), reinterpret_cast<float*>(exact->data()), count, op};
          std::vector<double> mine = one.measure(timer);
          std::vector<double> all(mine.size() * static_cast<size_t>(n));
          std::copy(mine.begin(), mine.end(), all.begin() + static_cast<ptrdiff_t>(mine.size()) * rank);
          comm->allgather(all.data(), all.data(), all.size(), DataType::f64);
          Row row;
          row.bytes = count * es;
          row.count = count;
          row.type = type;
          row.redop = std::string(rdmacoll::collectives::to_string(op));
          row.out_of_place = compressed_placement(o, n, rank, row.bytes, all, 0, own_wrong);
          row.in_place = compressed_placement(o, n, rank, row.bytes, all, kCompressedFields, own_wrong);
          if (printer && json_fd < 0) print_row(out, row);
          rows.push_back(row);
          continue;
        }
        // Mine: [out-of-place us, in-place us, out-of-place wrong, in-place wrong]; -1: unchecked.
        std::vector<double> mine(4, -1.0);
        fill_input(type, has_op(kCollective) ? std::optional(op) : std::nullopt, rank, in.data(), 0, count);
        std::memcpy(outbuf.data(), in.data(), count * es);
        std::string algorithm_oop, algorithm_ip;  // this rank's; rank 0 prints its own
        mine[0] = call.time(timer, in.data(), outbuf.data(), count, type, op, nullptr, &algorithm_oop);
        if (o.check) mine[2] = static_cast<double>(call.check(in.data(), outbuf.data(), false, count, type, op));
        std::memcpy(outbuf.data(), in.data(), count * es);
        mine[1] = call.time(timer, outbuf.data(), outbuf.data(), count, type, op, nullptr, &algorithm_ip);
        if (o.check) mine[3] = static_cast<double>(call.check(in.data(), outbuf.data(), true, count, type, op));
        own_wrong += static_cast<uint64_t>(std::max(0.0, mine[2]) + std::max(0.0, mine[3]));

        // Every rank's record reaches every rank through the communicator: block r is rank r's.
        std::vector<double> all(4 * static_cast<size_t>(n));
        std::copy(mine.begin(), mine.end(), all.begin() + 4 * rank);
        comm->allgather(all.data(), all.data(), all.size(), DataType::f64);
        std::vector<double> t_oop, t_ip;
        int64_t w_oop = o.check ? 0 : -1, w_ip = o.check ? 0 : -1;
        for (int r = 0; r < n; ++r) {
          const double* rec = all.data() + 4 * r;
          t_oop.push_back(rec[0]);
          t_ip.push_back(rec[1]);
          if (o.check) {
            w_oop += static_cast<int64_t>(rec[2]);
            w_ip += static_cast<int64_t>(rec[3]);
          }
        }
        Row row;
        row.bytes = count * es;
        row.count = count;
        row.type = type;
        row.redop = has_op(kCollective) ? std::string(rdmacoll::collectives::to_string(op)) : "none";
        row.root = has_root(kCollective) ? o.root : -1;
        row.out_of_place = placement(kCollective, n, row.bytes, combine(o.average, t_oop), w_oop);
        row.in_place = placement(kCollective, n, row.bytes, combine(o.average, t_ip), w_ip);
        row.out_of_place.algorithm = algorithm_oop, row.in_place.algorithm = algorithm_ip;
        if (printer && json_fd < 0) print_row(out, row);
        rows.push_back(row);
      }
    }
  }

  // The footer's memory figures, gathered through the communicator as well.
  std::vector<int64_t> mem(2 * static_cast<size_t>(n));
  mem[2 * static_cast<size_t>(rank)] = rdmacoll::perf::peak_rss_bytes();
  mem[2 * static_cast<size_t>(rank) + 1] = static_cast<int64_t>(comm->peak_scratch_bytes());
  comm->allgather(mem.data(), mem.data(), mem.size(), DataType::i64);
  for (int r = 0; r < n; ++r) {
    info.peak_rss_bytes.push_back(mem[2 * static_cast<size_t>(r)]);
    info.peak_scratch_bytes.push_back(mem[2 * static_cast<size_t>(r) + 1]);
  }
  info.scratch_bytes = static_cast<int64_t>(comm->scratch_bytes());
  if (printer) {
    if (json_fd >= 0) rdmacoll::perf::write_json(json_fd, to_json(info, rows));
    else print_footer(out, info, rows);
  }
  comm.reset();
  bs::finalize(world, bs::deadline_in(timeout));
  const int64_t wrong = total_wrong(rows);
  if (wrong > 0 || own_wrong > 0) {
    const char* what = codec ? " wrong result(s) (bits unlike rank 0's, or relerr over its limit)" : " wrong element(s)";
    std::cerr << name << ": rank " << rank << ": the check found " << own_wrong << what << " here"
              << (printer ? ", " + std::to_string(wrong) + " on all ranks" : "") << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string name(tool_name(kCollective));
  const std::vector<std::string> args(argv + 1, argv + argc);
  Options o;
  try {
    o = parse(kCollective, args);
  } catch (const rdmacoll::ConfigError& e) {  // UsageError, or a bad RDMACOLL_* default
    std::cerr << name << ": " << e.what() << "\n\n" << usage(kCollective);
    return 2;
  }
  if (o.help) {
    std::cout << usage(kCollective);
    return 0;
  }
  const int json_fd = o.json ? rdmacoll::perf::stdout_for_json() : -1;
  if (o.json && json_fd < 0) {
    std::cerr << name << ": cannot set up stdout for --json: " << std::strerror(errno) << "\n";
    return 1;
  }
  try {
    return run(o, args, json_fd);
  } catch (const std::exception& e) {  // rdmacoll::Error (timeouts, transport failures), bad_alloc, ...
    std::string who = g_rank >= 0 ? "rank " + std::to_string(g_rank) + ": " : "";
    if (std::string_view(e.what()).starts_with("rank ")) who.clear();
    std::cerr << name << ": " << who << e.what() << "\n";
    return 1;
  }
}
