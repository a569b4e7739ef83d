// The parts of the peer allreduce benchmarks (MPI, Gloo) that do not depend on the library being
// measured: nccl-tests style flags, input patterns and their check, timing and the report.
// Each peer supplies a Collective (one allreduce, prepared once per buffer) and a Comm (barrier
// and an elementwise sum over ranks for the statistics); run_benchmark() does the rest, so the
// rows of every peer are made by the same code as the comparison script expects them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace peers {

enum class DType { Float, Double, Int32 };
enum class RedOp { Sum, Prod, Max, Min };

const char* name(DType t);
const char* name(RedOp op);
size_t size_of(DType t);

struct Options {
  size_t min_bytes = 8;
  size_t max_bytes = 64 << 20;
  size_t factor = 2;
  int iters = 20;
  int warmup = 5;
  bool check = true;
  DType dtype = DType::Float;
  RedOp op = RedOp::Sum;
  std::string algo;       // peer-specific; empty: the library's default
  std::string store_dir;  // Gloo only: where the FileStore rendezvous lives
};

// Parses argv into `o`. Returns false after printing usage (to stdout for --help, to stderr
// for a bad flag with the reason); `exit_code` is then 0 or 2. `peer_flags` documents the
// peer's own options (--algo, --store-dir), which are accepted only when listed there.
bool parse_options(int argc, char** argv, Options& o, const std::string& program,
                   const std::string& peer_flags, int& exit_code);

// What the report needs from the library under test.
struct Comm {
  int rank = 0;
  int size = 1;
  std::function<void()> barrier;
  std::function<void(std::vector<double>&)> sum_all;  // elementwise, in place, on every rank
};

// One allreduce on fixed buffers. prepare() is outside the timed loop (Gloo's legacy algorithms
// register their buffers there); in == out means in place.
class Collective {
 public:
  virtual ~Collective() = default;
  virtual void prepare(void* in, void* out, size_t count) = 0;
  virtual void run() = 0;
};

// Runs every size from min_bytes to max_bytes, out-of-place then in-place, and prints (on rank
// 0) the nccl-tests rows, "# Avg bus bandwidth : X" and each rank's peak RSS. `title` goes in the
// header. Returns the process exit status: 0, or 1 when a check found wrong elements.
int run_benchmark(const Options& o, const Comm& comm, Collective& coll, const std::string& title);

}  // namespace peers
