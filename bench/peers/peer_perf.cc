#include "peer_perf.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string_view>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace peers {

const char* name(DType t) {
  switch (t) {
    case DType::Float: return "float";
    case DType::Double: return "double";
    case DType::Int32: return "int32";
  }
  return "?";
}

const char* name(RedOp op) {
  switch (op) {
    case RedOp::Sum: return "sum";
    case RedOp::Prod: return "prod";
    case RedOp::Max: return "max";
    case RedOp::Min: return "min";
  }
  return "?";
}

size_t size_of(DType t) { return t == DType::Double ? 8 : 4; }

namespace {

// "8", "4K", "64M", "1G": powers of 1024, as nccl-tests reads -b and -e (the library's parser,
// so the peers read sizes exactly as rdmacoll-allreduce-perf does).
size_t parse_bytes(std::string_view flag, std::string_view v) {
  try {
    return static_cast<size_t>(rdmacoll::settings::parse_bytes(flag, v));
  } catch (const rdmacoll::ConfigError&) {
    throw std::invalid_argument(std::string(flag) + " needs a byte count such as 8, 4K or 64M");
  }
}

long parse_long(std::string_view flag, std::string_view v, long lo, long hi) {
  if (v.empty() || v.find_first_not_of("0123456789") != std::string_view::npos || v.size() > 9)
    throw std::invalid_argument(std::string(flag) + " needs a whole number");
  long n = std::stol(std::string(v));
  if (n < lo || n > hi)
    throw std::invalid_argument(std::string(flag) + " must be between " + std::to_string(lo) + " and " +
                                std::to_string(hi));
  return n;
}

void usage(std::ostream& out, const std::string& program, const std::string& peer_flags) {
  out << "usage: " << program << " [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-c 0|1]\n"
      << "       [-d float|double|int32] [-o sum|prod|max|min]" << (peer_flags.empty() ? "" : " [peer options]")
      << "\n"
         "  -b, -e   smallest and largest message in bytes (K, M, G = 2^10, 2^20, 2^30); default 8, 64M\n"
         "  -f       multiply the size by this each step (at least 2); default 2\n"
         "  -n, -w   timed and warm-up calls per size and placement; default 20, 5\n"
         "  -c       check the result of one more call per size and placement (column #wrong); default 1\n"
         "  -d, -o   element type and reduction; default float, sum\n"
      << peer_flags
      << "Rows as nccl-tests: size count type redop root, then time (us per call, the average over ranks of\n"
         "each rank's mean), algbw and busbw (GB/s, 1e9 B/s; busbw = algbw * 2(n-1)/n) and #wrong, out of place\n"
         "then in place. '# Avg bus bandwidth' is the mean busbw of all rows, both placements.\n";
}

// Input element i of `rank`: small integers, so float sums are exact in any order and every
// reduction has one right answer. Products use 2, -1 and 1, which stay exact for ~100 ranks.
template <typename T>
T input(RedOp op, int rank, size_t i) {
  size_t k = i + static_cast<size_t>(rank) * 13;
  if (op == RedOp::Prod) {
    switch ((i + static_cast<size_t>(rank)) % 4) {
      case 0: return T(2);
      case 1: return T(-1);
      default: return T(1);
    }
  }
  return static_cast<T>(static_cast<int>((k * 7) % 17) - 8);
}

template <typename T>
T combine(RedOp op, T a, T b) {
  switch (op) {
    case RedOp::Sum: return a + b;
    case RedOp::Prod: return a * b;
    case RedOp::Max: return std::max(a, b);
    case RedOp::Min: return std::min(a, b);
  }
  return a;
}

template <typename T>
void fill_typed(void* buf, size_t count, RedOp op, int rank) {
  T* p = static_cast<T*>(buf);
  for (size_t i = 0; i < count; ++i) p[i] = input<T>(op, rank, i);
}

template <typename T>
size_t count_wrong_typed(const void* buf, size_t count, RedOp op, int nranks) {
  const T* p = static_cast<const T*>(buf);
  size_t wrong = 0;
  for (size_t i = 0; i < count; ++i) {
    T want = input<T>(op, 0, i);
    for (int r = 1; r < nranks; ++r) want = combine(op, want, input<T>(op, r, i));
    if (std::memcmp(&p[i], &want, sizeof(T)) != 0) ++wrong;
  }
  return wrong;
}

void fill(DType t, void* buf, size_t count, RedOp op, int rank) {
  switch (t) {
    case DType::Float: return fill_typed<float>(buf, count, op, rank);
    case DType::Double: return fill_typed<double>(buf, count, op, rank);
    case DType::Int32: return fill_typed<int32_t>(buf, count, op, rank);
  }
}

size_t count_wrong(DType t, const void* buf, size_t count, RedOp op, int nranks) {
  switch (t) {
    case DType::Float: return count_wrong_typed<float>(buf, count, op, nranks);
    case DType::Double: return count_wrong_typed<double>(buf, count, op, nranks);
    case DType::Int32: return count_wrong_typed<int32_t>(buf, count, op, nranks);
  }
  return count;
}

struct Result {
  double time_us = 0;  // average over ranks of each rank's mean per call
  double wrong = 0;    // summed over ranks; negative: not checked
};

// One placement at one size: warm-up, a barrier, `iters` timed calls, then (with -c 1) the
// inputs again, one more call and the check.
Result measure(const Options& o, const Comm& comm, Collective& coll, void* in, void* out, size_t count) {
  const size_t bytes = count * size_of(o.dtype);
  fill(o.dtype, in, count, o.op, comm.rank);
  if (in != out) std::memset(out, 0xa5, bytes);
  coll.prepare(in, out, count);
  for (int i = 0; i < o.warmup; ++i) coll.run();
  comm.barrier();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < o.iters; ++i) coll.run();
  std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - t0;
  double wrong = -1;
  if (o.check) {
    fill(o.dtype, in, count, o.op, comm.rank);
    if (in != out) std::memset(out, 0xa5, bytes);
    comm.barrier();
    coll.run();
    wrong = static_cast<double>(count_wrong(o.dtype, out, count, o.op, comm.size));
  }
  std::vector<double> v{elapsed.count() / o.iters, wrong};
  comm.sum_all(v);
  return {v[0] / comm.size, o.check ? v[1] : -1};
}

std::string format_wrong(double w) {
  if (w < 0) return "N/A";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", w);
  return buf;
}

}  // namespace

bool parse_options(int argc, char** argv, Options& o, const std::string& program, const std::string& peer_flags,
                   int& exit_code) {
  try {
    for (int i = 1; i < argc; ++i) {
      std::string_view a = argv[i];
      auto value = [&]() -> std::string_view {
        if (i + 1 >= argc) throw std::invalid_argument(std::string(a) + " needs a value");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") {
        usage(std::cout, program, peer_flags);
        exit_code = 0;
        return false;
      } else if (a == "-b") {
        o.min_bytes = parse_bytes(a, value());
      } else if (a == "-e") {
        o.max_bytes = parse_bytes(a, value());
      } else if (a == "-f") {
        o.factor = static_cast<size_t>(parse_long(a, value(), 2, 1024));
      } else if (a == "-n") {
        o.iters = static_cast<int>(parse_long(a, value(), 1, 100000000));
      } else if (a == "-w") {
        o.warmup = static_cast<int>(parse_long(a, value(), 0, 100000000));
      } else if (a == "-c") {
        o.check = parse_long(a, value(), 0, 1) == 1;
      } else if (a == "-d") {
        std::string_view v = value();
        if (v == "float") o.dtype = DType::Float;
        else if (v == "double") o.dtype = DType::Double;
        else if (v == "int32") o.dtype = DType::Int32;
        else throw std::invalid_argument("-d must be float, double or int32");
      } else if (a == "-o") {
        std::string_view v = value();
        if (v == "sum") o.op = RedOp::Sum;
        else if (v == "prod") o.op = RedOp::Prod;
        else if (v == "max") o.op = RedOp::Max;
        else if (v == "min") o.op = RedOp::Min;
        else throw std::invalid_argument("-o must be sum, prod, max or min");
      } else if (a == "--algo" && peer_flags.find("--algo") != std::string::npos) {
        o.algo = value();
      } else if (a == "--store-dir" && peer_flags.find("--store-dir") != std::string::npos) {
        o.store_dir = value();
      } else {
        throw std::invalid_argument("unknown option '" + std::string(a) + "'");
      }
    }
    if (o.min_bytes < size_of(o.dtype) || o.max_bytes < o.min_bytes)
      throw std::invalid_argument("need " + std::to_string(size_of(o.dtype)) + " <= -b <= -e (one " +
                                  name(o.dtype) + " at least)");
    return true;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    usage(std::cerr, program, peer_flags);
    exit_code = 2;
    return false;
  }
}

int run_benchmark(const Options& o, const Comm& comm, Collective& coll, const std::string& title) {
  const size_t elem = size_of(o.dtype);
  // One pair of buffers at the largest size, reused by every size, as nccl-tests allocates.
  std::vector<char> in_buf(o.max_bytes / elem * elem), out_buf(in_buf.size());
  const bool root = comm.rank == 0;
  if (root) {
    std::printf("# %s\n# %d ranks, -b %zu -e %zu -f %zu -n %d -w %d -c %d -d %s -o %s\n", title.c_str(),
                comm.size, o.min_bytes, o.max_bytes, o.factor, o.iters, o.warmup, o.check ? 1 : 0, name(o.dtype),
                name(o.op));
    std::printf("# time: us per call, the average over ranks of each rank's mean over -n calls after a barrier\n#\n");
    std::printf("# %56s %31s %31s\n", "", "out-of-place", "in-place");
    std::printf("# %10s %12s %8s %6s %6s %9s %7s %7s %6s %9s %7s %7s %6s\n", "size", "count", "type", "redop",
                "root", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong");
    std::printf("# %10s %12s %8s %6s %6s %9s %7s %7s %6s %9s %7s %7s %6s\n", "(B)", "(elements)", "", "", "",
                "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "");
    std::fflush(stdout);
  }
  const double bus_factor = comm.size > 1 ? 2.0 * (comm.size - 1) / comm.size : 0.0;
  double busbw_sum = 0, wrong_total = 0;
  int rows = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.factor) {
    const size_t count = bytes / elem;
    Result r[2] = {measure(o, comm, coll, in_buf.data(), out_buf.data(), count),
                   measure(o, comm, coll, out_buf.data(), out_buf.data(), count)};
    if (root) {
      std::printf("  %10zu %12zu %8s %6s %6d", count * elem, count, name(o.dtype), name(o.op), -1);
      for (const Result& x : r) {
        double algbw = static_cast<double>(count * elem) / (x.time_us * 1e3);  // GB/s = 1e9 B/s
        busbw_sum += algbw * bus_factor;
        std::printf(" %9.2f %7.3f %7.3f %6s", x.time_us, algbw, algbw * bus_factor, format_wrong(x.wrong).c_str());
      }
      std::printf("\n");
      std::fflush(stdout);
    }
    for (const Result& x : r) wrong_total += std::max(0.0, x.wrong);
    ++rows;
    if (bytes > o.max_bytes / o.factor) break;  // the next step would pass -e (or overflow)
  }

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::vector<double> rss(static_cast<size_t>(comm.size), 0.0);
  rss[static_cast<size_t>(comm.rank)] = static_cast<double>(ru.ru_maxrss);  // KiB on Linux
  comm.sum_all(rss);
  if (root) {
    std::printf("# Out of bounds values : %.0f %s\n", wrong_total, wrong_total == 0 ? "OK" : "FAILED");
    std::printf("# Avg bus bandwidth    : %.4f\n", rows ? busbw_sum / (2 * rows) : 0.0);
    std::printf("#\n");
    for (int i = 0; i < comm.size; ++i)
      std::printf("# Peak RSS rank %d : %.0f KiB\n", i, rss[static_cast<size_t>(i)]);
    std::fflush(stdout);
  }
  return wrong_total == 0 ? 0 : 1;
}

}  // namespace peers
