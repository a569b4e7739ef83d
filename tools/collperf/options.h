// Command line of the collective benchmarks (rdmacoll-allreduce-perf and its siblings): the
// flags of NVIDIA's nccl-tests, with their defaults, plus our transport and algorithm choices.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/collectives/datatype.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::collperf {

using collectives::AllreduceAlgorithm;
using collectives::DataType;
using collectives::ReduceOp;

enum class Collective { allreduce, reduce_scatter, allgather, broadcast, reduce };
std::string_view tool_name(Collective c);        // "rdmacoll-allreduce-perf", ...
std::string_view collective_name(Collective c);  // "allreduce", "reduce_scatter", ...
bool has_op(Collective c);    // reduces (allreduce, reduce_scatter, reduce)
bool has_root(Collective c);  // broadcast, reduce

// How the per-rank times of a size become the one reported (-a, as nccl-tests).
enum class Average { rank0 = 0, mean = 1, min = 2, max = 3 };

struct Options {
  Collective collective = Collective::allreduce;
  size_t minbytes = 8;
  size_t maxbytes = size_t{64} << 20;
  size_t stepfactor = 2;  // multiplicative sweep, unless stepbytes > 0
  size_t stepbytes = 0;   // additive sweep (-i)
  size_t iters = 20;
  size_t warmup = 5;
  bool check = true;
  std::vector<DataType> types{DataType::f32};
  std::vector<ReduceOp> ops{ReduceOp::sum};  // ignored (no op) by allgather and broadcast
  int root = 0;
  Average average = Average::mean;
  bool blocking = false;
  std::optional<AllreduceAlgorithm> algorithm;  // allreduce only; default RDMACOLL_ALGO
  bool deterministic = false;
  std::optional<transport::Backend> backend;    // default RDMACOLL_TRANSPORT
  double timeout = 0;                           // seconds; 0 = RDMACOLL_TIMEOUT
  // --compress (allreduce, float, sum or avg only): the codec's canonical name ("int8:256");
  // empty: plain allreduces. compress_auto: "auto" or "auto:CODEC", Compression::only_if_faster.
  std::string compress;
  bool compress_auto = false;
  bool feedback = false;  // one ErrorFeedback per size, carried across its calls
  collectives::Compression::Scheme scheme = collectives::Compression::Scheme::automatic;
  uint64_t seed = 0;      // Compression::seed
  bool json = false;
  bool help = false;
};

// Parses argv without argv[0]. Throws perf::UsageError naming the flag.
Options parse(Collective c, const std::vector<std::string>& args);
std::string usage(Collective c);

// The message sizes in bytes: minbytes, then times stepfactor (or plus stepbytes), up to and
// including maxbytes.
std::vector<size_t> sizes(const Options& o);

// "auto", "two_phase", "allgather" (what --scheme takes).
std::string_view scheme_name(collectives::Compression::Scheme s);

// nccl-tests' type names ("float", "half", "bfloat16", "int8", ...), used in the table and JSON.
std::string_view nccl_name(DataType t);

}  // namespace rdmacoll::collperf
