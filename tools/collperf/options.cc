#include "collperf/options.h"

#include <charconv>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "perf/options.h"
#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::collperf {

using perf::UsageError;

std::string_view tool_name(Collective c) {
  switch (c) {
    case Collective::allreduce: return "rdmacoll-allreduce-perf";
    case Collective::reduce_scatter: return "rdmacoll-reduce-scatter-perf";
    case Collective::allgather: return "rdmacoll-allgather-perf";
    case Collective::broadcast: return "rdmacoll-broadcast-perf";
    case Collective::reduce: return "rdmacoll-reduce-perf";
  }
  return "?";
}

std::string_view collective_name(Collective c) {
  switch (c) {
    case Collective::allreduce: return "allreduce";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::allgather: return "allgather";
    case Collective::broadcast: return "broadcast";
    case Collective::reduce: return "reduce";
  }
  return "?";
}

bool has_op(Collective c) {
  return c == Collective::allreduce || c == Collective::reduce_scatter || c == Collective::reduce;
}
bool has_root(Collective c) { return c == Collective::broadcast || c == Collective::reduce; }

std::string_view scheme_name(collectives::Compression::Scheme s) {
  switch (s) {
    case collectives::Compression::Scheme::automatic: return "auto";
    case collectives::Compression::Scheme::two_phase: return "two_phase";
    case collectives::Compression::Scheme::allgather: return "allgather";
  }
  return "?";
}

std::string_view nccl_name(DataType t) {
  switch (t) {
    case DataType::f32: return "float";
    case DataType::f64: return "double";
    case DataType::f16: return "half";
    case DataType::bf16: return "bfloat16";
    case DataType::i8: return "int8";
    case DataType::u8: return "uint8";
    case DataType::i32: return "int32";
    case DataType::i64: return "int64";
  }
  return "?";
}

std::string usage(Collective c) {
  const std::string name(tool_name(c));
  std::ostringstream o;
  o << "usage: rdmacoll-run -n N " << name << " [options]     (or mpirun -np N / srun / RDMACOLL_* settings)\n"
    << "Times the " << collective_name(c)
    << " collective of a communicator over all launched ranks, nccl-tests style: for each\n"
       "size, out of place then in place, the mean time of --iters back-to-back calls, algbw and busbw;\n"
       "with --check, every rank verifies every element of one more call's result.\n"
       "\n"
       "  -b, --minbytes BYTES     smallest size; K, M, G suffixes, binary (default 8)\n"
       "  -e, --maxbytes BYTES     largest size (default 64M)\n"
       "  -f, --stepfactor F       multiply the size by F each step (default 2)\n"
       "  -i, --stepbytes BYTES    add BYTES each step instead of -f\n"
       "  -n, --iters N            timed calls per size and placement (default 20)\n"
       "  -w, --warmup_iters N     untimed calls first, per size and placement (default 5)\n"
       "  -c, --check 0|1          verify every element of the result (default 1); wrong => exit 1\n"
       "  -d, --datatype T         float|half|bfloat16|double|int8|uint8|int32|int64 (also f32, fp16,\n"
       "                           bf16, f64, i8, u8, i32, i64), or all (default float)\n";
  if (has_op(c)) o << "  -o, --op OP              sum|prod|min|max|avg, or all (default sum)\n";
  else o << "  -o, --op OP              accepted for nccl-tests compatibility; " << collective_name(c) << " has none\n";
  if (has_root(c)) o << "  -r, --root R             root rank (default 0)\n";
  else o << "  -r, --root R             accepted for nccl-tests compatibility; ignored (root -1)\n";
  o << "  -a, --average 0|1|2|3    time reported: rank 0's, mean, min or max over ranks (default 1)\n"
       "  -z, --blocking 0|1       1: wait for each call before the next; 0: issue all, then wait (default 0)\n";
  if (c == Collective::allreduce)
    o << "      --algo A             auto|ring|tree|halving_doubling|recursive_doubling (default RDMACOLL_ALGO, else auto)\n"
         "      --compress CODEC     compressed allreduce (-d float, -o sum or avg): int8, sign, qsgd:4, topk:0.01,\n"
         "                           fp16, bf16, terngrad, randk:F, none, ...; auto (= auto:int8) or auto:CODEC\n"
         "                           compress only where it is measured to be faster. Adds the wire bytes per\n"
         "                           rank, wire algbw/busbw, compression ratio and relerr against a plain\n"
         "                           allreduce; -c 1 then checks that every rank got the same bits and relerr\n"
         "                           is below a limit from the codec's error bound\n"
         "      --feedback           with --compress: error feedback carried across the calls of each size\n"
         "      --scheme S           with --compress: auto|two_phase|allgather (default auto)\n"
         "      --seed N             with --compress: seed of the stochastic codecs (default 0)\n";
  o << "      --deterministic      reproducible (ordered) reductions (RDMACOLL_DETERMINISTIC)\n"
       "      --transport T        ucx | verbs (default RDMACOLL_TRANSPORT, else ucx)\n"
       "      --timeout SEC        deadline of every call and of the setup (default RDMACOLL_TIMEOUT)\n"
       "  -J, --json               one JSON document on stdout instead of the table\n"
       "  -h, --help               this text\n"
       "Exit status: 0 success, 1 error or wrong data, 2 bad usage.\n";
  return o.str();
}

namespace {

int64_t parse_int(const std::string& flag, std::string_view value, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || ec != std::errc() || p != value.data() + value.size())
    throw UsageError(flag + " '" + std::string(value) + "' is not an integer");
  if (v < lo || v > hi)
    throw UsageError(flag + " " + std::string(value) + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return v;
}

constexpr perf::Flag kFlags[] = {
    {'b', "minbytes", true}, {'e', "maxbytes", true},  {'f', "stepfactor", true}, {'i', "stepbytes", true},
    {'n', "iters", true},    {'w', "warmup_iters", true}, {'c', "check", true},   {'d', "datatype", true},
    {'o', "op", true},       {'r', "root", true},      {'a', "average", true},    {'z', "blocking", true},
    {0, "algo", true},       {0, "deterministic", false}, {0, "transport", true}, {0, "timeout", true},
    {'J', "json", false},    {'h', "help", false},     {0, "compress", true},     {0, "feedback", false},
    {0, "scheme", true},     {0, "seed", true},
};

// --compress VALUE: "CODEC", "auto" (int8) or "auto:CODEC", checked as a codec name here.
void parse_compress(Options& o, const std::string& value) {
  std::string name = value;
  o.compress_auto = value == "auto" || value.starts_with("auto:");
  if (value == "auto") name = "int8";
  else if (o.compress_auto) name = value.substr(5);
  collectives::CodecSpec spec;
  try {
    spec = collectives::parse_codec(name);
  } catch (const std::invalid_argument& e) {
    throw UsageError(std::string("--compress: ") + e.what() + "; or auto, auto:CODEC");
  }
  if (spec.kind == collectives::CodecKind::powersgd)
    throw UsageError("--compress " + name + ": PowerSGD runs above the collectives, it is not an element codec");
  o.compress = spec.name();
}

// --compress works on the compressed allreduce's terms (communicator.h: float32, sum or avg).
void check_compress(Collective c, const Options& o, bool compress_flags) {
  if (o.compress.empty()) {
    if (compress_flags) throw UsageError("--feedback, --scheme and --seed apply with --compress only");
    return;
  }
  if (c != Collective::allreduce) throw UsageError("--compress applies to rdmacoll-allreduce-perf only");
  if (o.types != std::vector<DataType>{DataType::f32})
    throw UsageError("--compress needs -d float: the compressed allreduce is float32 only");
  for (ReduceOp op : o.ops)
    if (op != ReduceOp::sum && op != ReduceOp::avg)
      throw UsageError("--compress needs -o sum or -o avg, not " + std::string(collectives::to_string(op)) +
                       ": the compressed allreduce sums");
  if (o.algorithm) throw UsageError("--algo does not apply to --compress (the compressed allreduce's is --scheme)");
  if (o.deterministic)
    throw UsageError("--deterministic does not apply to --compress (every rank already ends with the same bits)");
}

constexpr size_t kMaxSizes = 10000;  // a sweep longer than this is a typo (-i 1 -e 1G)

}  // namespace

Options parse(Collective c, const std::vector<std::string>& args) {
  Options o;
  o.collective = c;
  bool factor_given = false, compress_flags = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::optional<perf::FlagValue> fv = perf::read_flag(kFlags, args, i);
    if (!fv) throw UsageError("unexpected argument '" + args[i] + "' (the tools take no positional arguments)");
    const perf::Flag* f = fv->flag;
    const std::string flag = "--" + std::string(f->long_name);
    const std::string& value = fv->value;
    const std::string_view n = f->long_name;
    if (n == "minbytes") o.minbytes = perf::parse_size(flag, value);
    else if (n == "maxbytes") o.maxbytes = perf::parse_size(flag, value);
    else if (n == "stepfactor") {
      o.stepfactor = static_cast<size_t>(parse_int(flag, value, 2, 1024));
      factor_given = true;
    } else if (n == "stepbytes") {
      o.stepbytes = perf::parse_size(flag, value);
      if (o.stepbytes == 0) throw UsageError("--stepbytes must be at least 1");
    } else if (n == "iters") o.iters = static_cast<size_t>(parse_int(flag, value, 1, int64_t{1} << 32));
    else if (n == "warmup_iters") o.warmup = static_cast<size_t>(parse_int(flag, value, 0, int64_t{1} << 32));
    else if (n == "check") o.check = parse_int(flag, value, 0, 1) == 1;
    else if (n == "datatype") {
      if (value == "all") {
        o.types.assign(std::begin(collectives::kAllDataTypes), std::end(collectives::kAllDataTypes));
      } else {
        try {
          o.types = {collectives::parse_datatype(value)};
        } catch (const std::invalid_argument& e) {
          throw UsageError(std::string("--datatype: ") + e.what() + ", or all");
        }
      }
    } else if (n == "op") {
      if (value == "all") {
        o.ops.assign(std::begin(collectives::kAllReduceOps), std::end(collectives::kAllReduceOps));
      } else {
        try {
          o.ops = {collectives::parse_reduce_op(value)};
        } catch (const std::invalid_argument& e) {
          throw UsageError(std::string("--op: ") + e.what() + ", or all");
        }
      }
    } else if (n == "root") o.root = static_cast<int>(parse_int(flag, value, 0, 1 << 20));
    else if (n == "average") o.average = static_cast<Average>(parse_int(flag, value, 0, 3));
    else if (n == "blocking") o.blocking = parse_int(flag, value, 0, 1) == 1;
    else if (n == "algo") {
      if (c != Collective::allreduce) throw UsageError("--algo applies to rdmacoll-allreduce-perf only");
      try {
        o.algorithm = collectives::parse_allreduce_algorithm(value);
      } catch (const std::exception&) {
        throw UsageError("--algo '" + value + "' is not one of auto, ring, tree, halving_doubling, recursive_doubling");
      }
    } else if (n == "deterministic") o.deterministic = true;
    else if (n == "transport") {
      try {
        o.backend = transport::parse_backend(value);
      } catch (const ConfigError&) {
        throw UsageError("--transport '" + value + "' is not one of ucx, verbs");
      }
    } else if (n == "timeout") o.timeout = perf::parse_timeout(value);
    else if (n == "compress") parse_compress(o, value);
    else if (n == "feedback") o.feedback = compress_flags = true;
    else if (n == "scheme") {
      compress_flags = true;
      if (value == "auto") o.scheme = collectives::Compression::Scheme::automatic;
      else if (value == "two_phase") o.scheme = collectives::Compression::Scheme::two_phase;
      else if (value == "allgather") o.scheme = collectives::Compression::Scheme::allgather;
      else throw UsageError("--scheme '" + value + "' is not one of auto, two_phase, allgather");
    } else if (n == "seed") {
      o.seed = static_cast<uint64_t>(parse_int(flag, value, 0, std::numeric_limits<int64_t>::max()));
      compress_flags = true;
    } else if (n == "json") o.json = true;
    else if (n == "help") o.help = true;
  }
  if (o.help) return o;
  if (factor_given && o.stepbytes > 0) throw UsageError("give -f (--stepfactor) or -i (--stepbytes), not both");
  if (o.minbytes == 0) throw UsageError("--minbytes must be at least 1");
  if (o.maxbytes < o.minbytes)
    throw UsageError("--maxbytes " + std::to_string(o.maxbytes) + " is below --minbytes " + std::to_string(o.minbytes));
  if (o.stepbytes > 0 && (o.maxbytes - o.minbytes) / o.stepbytes >= kMaxSizes)
    throw UsageError("--stepbytes " + std::to_string(o.stepbytes) + " makes more than " + std::to_string(kMaxSizes) +
                     " sizes between --minbytes and --maxbytes");
  check_compress(c, o, compress_flags);
  if (!has_op(c)) o.ops = {ReduceOp::sum};  // carried along, never used or printed
  if (!has_root(c)) o.root = 0;
  return o;
}

std::vector<size_t> sizes(const Options& o) {
  if (o.stepbytes == 0) return perf::size_sweep(o.minbytes, o.maxbytes, o.stepfactor);
  std::vector<size_t> out;
  for (size_t s = o.minbytes; s <= o.maxbytes; s += o.stepbytes) {
    out.push_back(s);
    if (s > o.maxbytes - o.stepbytes) break;
  }
  return out;
}

}  // namespace rdmacoll::collperf
