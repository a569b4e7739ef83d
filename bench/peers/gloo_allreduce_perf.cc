// gloo_allreduce_perf: Gloo's allreduce over its TCP transport on 127.0.0.1, measured the way
// rdmacoll-allreduce-perf measures ours, for bench/allreduce_compare.sh. Launch with
// tools/rdmacoll-run (RDMACOLL_RANK/RDMACOLL_WORLD_SIZE) or mpirun (OMPI_COMM_WORLD_RANK/SIZE);
// the ranks meet through a Gloo FileStore in a directory of their own under --store-dir.
//
// --algo ring and bcube run gloo::allreduce(AllreduceOptions), which takes separate input and
// output buffers. ring_chunked and halving_doubling are Gloo's older algorithm classes
// (AllreduceRingChunked, AllreduceHalvingDoubling), which only reduce in place and take an int
// count: their out-of-place time includes the copy of the input into the output buffer, which is
// what a caller of those classes has to do. AllreduceOptions has no ring_chunked choice.
#include <gloo/allreduce.h>
#include <gloo/allreduce_halving_doubling.h>
#include <gloo/allreduce_ring_chunked.h>
#include <gloo/barrier.h>
#include <gloo/config.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/transport/tcp/device.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "peer_perf.h"

namespace {

constexpr auto kTimeout = std::chrono::seconds(120);  // every Gloo wait, rendezvous included
constexpr uint32_t kTagAllreduce = 1, kTagStats = 2, kTagBarrier = 3;

enum class Algo { Ring, RingChunked, Bcube, HalvingDoubling };

const char* kPeerFlags =
    "  --algo A         ring | ring_chunked | halving_doubling | bcube; ring_chunked and halving_doubling are\n"
    "                   Gloo's AllreduceRingChunked and AllreduceHalvingDoubling (in place only); default ring\n"
    "  --store-dir DIR  where the FileStore rendezvous directory is made (default RDMACOLL_STORE_DIR, else "
    "/tmp)\n";

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, const std::string& value) {
  char* end = nullptr;
  long v = std::strtol(value.c_str(), &end, 10);
  if (end == value.c_str() || *end != '\0' || v < 0 || v > INT_MAX)
    throw std::runtime_error(std::string(name) + "='" + value + "' is not a rank number");
  return static_cast<int>(v);
}

struct Launch {
  int rank = 0, size = 0;
  std::string job;  // names the rendezvous directory, unique per job
};

Launch detect_launch() {
  Launch l;
  if (auto r = env("RDMACOLL_RANK"), s = env("RDMACOLL_WORLD_SIZE"); r && s) {
    l.rank = env_int("RDMACOLL_RANK", *r), l.size = env_int("RDMACOLL_WORLD_SIZE", *s);
    l.job = "run-" + env("RDMACOLL_ADDR").value_or("noaddr");  // rdmacoll-run picks a free port per job
  } else if (auto ro = env("OMPI_COMM_WORLD_RANK"), so = env("OMPI_COMM_WORLD_SIZE"); ro && so) {
    l.rank = env_int("OMPI_COMM_WORLD_RANK", *ro), l.size = env_int("OMPI_COMM_WORLD_SIZE", *so);
    l.job = "ompi-" + env("OMPI_MCA_ess_base_jobid").value_or("nojob");
  } else {
    throw std::runtime_error(
        "not started by a launcher: run under tools/rdmacoll-run -n N or mpirun -np N "
        "(it reads RDMACOLL_RANK/RDMACOLL_WORLD_SIZE or OMPI_COMM_WORLD_RANK/SIZE)");
  }
  if (l.size < 1 || l.rank >= l.size)
    throw std::runtime_error("rank " + std::to_string(l.rank) + " is not below world size " + std::to_string(l.size));
  for (char& c : l.job)
    if (c == ':' || c == '/' || c == '.') c = '_';
  return l;
}

template <typename T>
const gloo::ReductionFunction<T>* legacy_fn(peers::RedOp op) {
  switch (op) {
    case peers::RedOp::Sum: return gloo::ReductionFunction<T>::sum;
    case peers::RedOp::Prod: return gloo::ReductionFunction<T>::product;
    case peers::RedOp::Max: return gloo::ReductionFunction<T>::max;
    case peers::RedOp::Min: return gloo::ReductionFunction<T>::min;
  }
  return nullptr;
}

// gloo/math.h overloads each function (in-place T* and three-pointer void*); pick the latter.
template <typename T>
gloo::AllreduceOptions::Func options_fn(peers::RedOp op) {
  using Fn = void (*)(void*, const void*, const void*, size_t);
  switch (op) {
    case peers::RedOp::Sum: return static_cast<Fn>(&gloo::sum<T>);
    case peers::RedOp::Prod: return static_cast<Fn>(&gloo::product<T>);
    case peers::RedOp::Max: return static_cast<Fn>(&gloo::max<T>);
    case peers::RedOp::Min: return static_cast<Fn>(&gloo::min<T>);
  }
  return nullptr;
}

template <typename T>
class GlooAllreduce : public peers::Collective {
 public:
  GlooAllreduce(std::shared_ptr<gloo::Context> ctx, Algo algo, peers::RedOp op)
      : ctx_(std::move(ctx)), algo_(algo), op_(op) {}

  void prepare(void* in, void* out, size_t count) override {
    in_ = in, out_ = out, bytes_ = count * sizeof(T);
    opts_.reset();
    legacy_.reset();  // deregisters the previous buffers before new ones are registered
    if (algo_ == Algo::HalvingDoubling || algo_ == Algo::RingChunked) {
      if (count > static_cast<size_t>(INT_MAX))
        throw std::runtime_error("Gloo's legacy allreduce classes take an int count; " + std::to_string(count) +
                                 " elements is too many");
      const std::vector<T*> ptrs{static_cast<T*>(out)};
      const int n = static_cast<int>(count);
      if (algo_ == Algo::HalvingDoubling)
        legacy_ = std::make_unique<gloo::AllreduceHalvingDoubling<T>>(ctx_, ptrs, n, legacy_fn<T>(op_));
      else
        legacy_ = std::make_unique<gloo::AllreduceRingChunked<T>>(ctx_, ptrs, n, legacy_fn<T>(op_));
      return;
    }
    opts_ = std::make_unique<gloo::AllreduceOptions>(ctx_);
    opts_->setAlgorithm(algo_ == Algo::Ring ? gloo::AllreduceOptions::Algorithm::RING
                                            : gloo::AllreduceOptions::Algorithm::BCUBE);
    if (in != out) opts_->setInput(static_cast<T*>(in), count);
    opts_->setOutput(static_cast<T*>(out), count);
    opts_->setReduceFunction(options_fn<T>(op_));
    opts_->setTag(kTagAllreduce);
    opts_->setTimeout(kTimeout);
  }

  void run() override {
    if (legacy_) {
      if (in_ != out_) std::memcpy(out_, in_, bytes_);
      legacy_->run();
    } else {
      gloo::allreduce(*opts_);
    }
  }

 private:
  std::shared_ptr<gloo::Context> ctx_;
  Algo algo_;
  peers::RedOp op_;
  void* in_ = nullptr;
  void* out_ = nullptr;
  size_t bytes_ = 0;
  std::unique_ptr<gloo::AllreduceOptions> opts_;
  std::unique_ptr<gloo::Algorithm> legacy_;  // ring_chunked, halving_doubling
};

std::unique_ptr<peers::Collective> make_collective(std::shared_ptr<gloo::Context> ctx, Algo algo,
                                                   const peers::Options& o) {
  switch (o.dtype) {
    case peers::DType::Float: return std::make_unique<GlooAllreduce<float>>(ctx, algo, o.op);
    case peers::DType::Double: return std::make_unique<GlooAllreduce<double>>(ctx, algo, o.op);
    case peers::DType::Int32: return std::make_unique<GlooAllreduce<int32_t>>(ctx, algo, o.op);
  }
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  peers::Options o;
  int code = 0;
  if (!peers::parse_options(argc, argv, o, "gloo_allreduce_perf", kPeerFlags, code)) return code;
  Algo algo = Algo::Ring;
  if (o.algo == "bcube") algo = Algo::Bcube;
  else if (o.algo == "ring_chunked") algo = Algo::RingChunked;
  else if (o.algo == "halving_doubling") algo = Algo::HalvingDoubling;
  else if (!o.algo.empty() && o.algo != "ring") {
    std::cerr << "gloo_allreduce_perf: --algo must be ring, ring_chunked, halving_doubling or bcube, not '" << o.algo << "'\n";
    return 2;
  }
  if (o.algo.empty()) o.algo = "ring";
  int rank = -1;
  try {
    Launch l = detect_launch();
    rank = l.rank;
    std::string base = !o.store_dir.empty() ? o.store_dir : env("RDMACOLL_STORE_DIR").value_or("/tmp");
    std::string dir = base + "/gloo_allreduce_perf." + l.job;
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
      throw std::runtime_error("cannot make the rendezvous directory " + dir + ": " + std::strerror(errno) +
                               " (--store-dir or RDMACOLL_STORE_DIR)");

    // Loopback only: the device binds 127.0.0.1 and every pair connects there.
    gloo::transport::tcp::attr attr("127.0.0.1");
    attr.ai_family = AF_INET;
    auto dev = gloo::transport::tcp::CreateDevice(attr);
    gloo::rendezvous::FileStore store(dir);
    auto ctx = std::make_shared<gloo::rendezvous::Context>(l.rank, l.size);
    ctx->setTimeout(kTimeout);
    ctx->connectFullMesh(store, dev);

    peers::Comm comm;
    comm.rank = l.rank;
    comm.size = l.size;
    comm.barrier = [&] {
      gloo::BarrierOptions b(ctx);
      b.setTag(kTagBarrier);
      gloo::barrier(b);
    };
    comm.sum_all = [&](std::vector<double>& v) {
      gloo::AllreduceOptions a(ctx);
      a.setOutput(v.data(), v.size());
      a.setReduceFunction(options_fn<double>(peers::RedOp::Sum));
      a.setTag(kTagStats);
      gloo::allreduce(a);
    };
    // Everyone is connected: the store's files are no longer needed. Each rank removes its own,
    // then rank 0 the directory.
    comm.barrier();
    for (const std::string& f : store.getAllKeyFilePaths()) unlink(f.c_str());
    comm.barrier();
    if (l.rank == 0) rmdir(dir.c_str());

    auto coll = make_collective(ctx, algo, o);
    code = peers::run_benchmark(o, comm, *coll,
                                "gloo_allreduce_perf: Gloo " + std::to_string(GLOO_VERSION_MAJOR) + "." +
                                    std::to_string(GLOO_VERSION_MINOR) + "." + std::to_string(GLOO_VERSION_PATCH) +
                                    ", --algo " + o.algo + ", TCP on 127.0.0.1");
    comm.barrier();  // nobody closes its connections while a peer still reads the statistics
  } catch (const std::exception& e) {
    std::cerr << "gloo_allreduce_perf: rank " << rank << ": " << e.what() << "\n";
    return 1;
  }
  return code;
}
