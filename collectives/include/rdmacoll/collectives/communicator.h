// A communicator: a group of ranks that run collectives together over one transport.
//
//   auto world = bootstrap::connect_world(*bootstrap::detect_launch(), bootstrap::default_deadline());
//   auto comm = collectives::Communicator::create(world);
//   comm->allreduce(in, out, count, DataType::f32, ReduceOp::sum);            // blocking
//   Work w = comm->allreduce_async(buf, buf, count, DataType::f32, ReduceOp::avg);  // in place
//   ... w.test() ... w.wait();
//
// Buffers. Every call takes an input and an output of `count` elements each; in == out is the
// in-place form. reduce_scatter leaves rank r's block (even_blocks: the first count % size
// blocks one element longer) at that block's offset in `out`; allgather reads block r of `in`
// on rank r and leaves every block in `out`; broadcast leaves root's `in` in every `out`
// (other ranks may pass in = nullptr); reduce leaves the result in root's `out`. Every rank's
// `out` serves as an accumulator, so it needs `count` elements everywhere, and what it holds
// afterwards outside the result (other blocks, non-root ranks) is unspecified. avg divides by
// size() once every contribution is in.
//
// Memory. A communicator owns a fixed pool of registered scratch (RDMACOLL_BUFFSIZE bytes),
// exchanged with every peer once at creation. Peers write into it with zero copy straight from
// the user's buffer; a call larger than the pool runs in segments, so scratch never grows.
//
// Ordering. Every call gets the next sequence number; all ranks must issue the same calls in
// the same order. Several calls may be in flight: they complete in order (a later one starts
// when the one before it is done), each progressed by test()/wait() of any of their Works.
//
// Failure. A call that failed or timed out may still have transfers in flight that read or
// write its buffers whenever the communicator is progressed (by any later call's test/wait).
// Destroying the communicator discards them without touching the buffers, so unwinding from the
// error (buffers freed, then the communicator) is safe; keep the buffers alive while the
// communicator is still used.
//
// Threading: one thread at a time per communicator, as for the transport. A Communicator must
// outlive its Works.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/collectives/datatype.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::collectives {

using bootstrap::Deadline;

// Allreduce algorithms a caller can ask for; automatic picks one from the cost model.
enum class AllreduceAlgorithm { automatic, ring, double_binary_tree, halving_doubling, recursive_doubling };
// "auto", "ring", "tree", "halving_doubling", "recursive_doubling" (also "double_binary_tree",
// "hd", "rabenseifner", "rd").
AllreduceAlgorithm parse_allreduce_algorithm(std::string_view name);
std::string_view to_string(AllreduceAlgorithm a) noexcept;

// How a run moves data to a peer: RDMA-style writes into the peer's pool with a notification,
// or tagged send/recv into buffers the receiver posts. automatic writes wherever the transport
// writes directly (verbs, UCX over RDMA or shared memory) and sends where it would only
// emulate writes with messages (UCX over tcp), which its native messages outrun.
enum class DataPath { automatic, write, send };
DataPath parse_data_path(std::string_view name);  // "auto", "write", "send"
std::string_view to_string(DataPath p) noexcept;

class Communicator;
class Codec;
struct Operation;

// What a call put on the wire, from the transport's own per-peer counters (payload and
// protocol headers, as the backend counts them), summed over peers: the counters' change
// between the call's start and its end. Calls run one after another, so what this rank sent
// in that time is the call's; what it received may include a peer's next call started early.
// A small allreduce through the shared-memory mailboxes (no transport message: see
// Communicator::allreduce) counts its input as sent to each of the n-1 peers that read it, and
// their inputs as received, one message each, as a shared-memory transport would.
struct WireStats {
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t messages_sent = 0, messages_received = 0;
};

// Error-feedback memory for compressed allreduces of one buffer, owned by the caller and
// passed to every call on that buffer (sized on first use; zero-filled then). `worker`: what
// this rank's codec did not send of its input, added to its next input. `server`: in the
// two-phase scheme, what this rank, as owner of a block, did not send of the reduced block
// when it re-encoded it (only its own blocks' entries are used). reset() forgets both.
struct ErrorFeedback {
  std::vector<float> worker, server;
  void reset() { worker.clear(), server.clear(); }
};

// A compressed allreduce (allreduce_async with a Compression): float32 in and out, sum or avg.
//   two_phase: compressed reduce-scatter (each rank encodes its share of every block for the
//     block's owner, with its worker residual), then compressed allgather of the reduced
//     blocks, re-encoded by their owners with the server residual (the DeepSpeed 1-bit
//     design). Wire bytes per rank: about 2 (n-1)/n of the encoded buffer.
//   allgather: every rank encodes its whole buffer (worker residual) and every rank decodes
//     and sums all of them, in rank order. For sparse codecs (topk, randk), whose selection a
//     second encoding would lose. Wire bytes per rank: (n-1) encoded buffers.
//   automatic: allgather for sparse codecs, two_phase otherwise.
// Every rank ends with the same bits (each element is decoded from the same wire bytes and
// summed in the same order everywhere). Non-finite input is counted (Work::nonfinite()) and
// encoded as the codec documents; it never fails the call on one rank only.
//
// only_if_faster ("--compress auto"): compress only where it pays on this link and CPU, as
// compression_pays() measures it (once per codec and size class). Over shared memory, where the
// link outruns the codec, it declines; on a slow link it accepts. All ranks decide alike. A
// declined call is a plain float allreduce of the input; the residuals are left as they are.
struct Compression {
  enum class Scheme { automatic, two_phase, allgather };
  const Codec* codec = nullptr;  // required; outlives the call
  ErrorFeedback* feedback = nullptr;  // nullptr: no error feedback
  uint64_t seed = 0;  // stochastic codecs: mixed with the call's sequence number, rank and block
  Scheme scheme = Scheme::automatic;
  bool only_if_faster = false;
};

// A collective in flight. test() progresses the communicator and says whether this call is
// complete; wait() progresses until it is, or throws TimeoutError naming the collective, its
// sequence number and the ranks it still waits for. An error is rethrown by test()/wait().
//
// Failure. wait() (the communicator's timeout, RDMACOLL_TIMEOUT) and any error in a call fail
// the communicator: the call and every later one throw that error, and (abort_on_error) every
// peer is told, whose calls then throw PeerFailedError with this rank's reason. wait(deadline)
// with a deadline of the caller's only throws TimeoutError: the call stays in flight and may be
// waited for again. Ranks that disagree on a call's arguments all throw ArgumentMismatchError.
class Work {
 public:
  Work() = default;
  Work(Communicator* comm, std::shared_ptr<Operation> op) : comm_(comm), op_(std::move(op)) {}
  bool test();
  void wait(Deadline deadline);
  void wait();  // deadline: the communicator's timeout (RDMACOLL_TIMEOUT) from now
  uint64_t sequence() const;
  bool valid() const { return op_ != nullptr; }
  // Once complete: what the call put on the wire (see WireStats), and for a compressed
  // allreduce the non-finite inputs this rank's encoder met (0 otherwise).
  WireStats wire() const;
  uint64_t nonfinite() const;
  // Whether the call compressed (false for plain calls and declined only_if_faster ones).
  bool compressed() const;
  // The algorithm the call runs, as argument lines and messages name it ("ring_allreduce",
  // "shared_memory_allreduce", "binomial_broadcast", ...): what the automatic choice picked.
  std::string_view algorithm() const;

 private:
  // nullopt: the communicator's timeout from the wait's first clock reading.
  void wait_until(std::optional<Deadline> deadline, bool fatal);
  Communicator* comm_ = nullptr;
  std::shared_ptr<Operation> op_;
};

// The latency/bandwidth model automatic choices (allreduce algorithm, pipelining depth,
// broadcast algorithm) are made with: a step costs alpha, each byte sent beta, each byte reduced
// gamma. Measured when a communicator is created (a few barriers, allgathers and a local
// reduction; every rank then holds the largest value any rank measured, so all choose alike),
// or given by RDMACOLL_COST_MODEL.
struct CostModel {
  double alpha_s = 5e-6;                // seconds per step (latency and software overhead)
  double beta_s_per_byte = 1.0 / 10e9;  // seconds per byte on the link
  double gamma_s_per_byte = 1.0 / 10e9; // seconds per byte reduced
  const char* source = "default";       // "measured", "RDMACOLL_COST_MODEL", "default" (static text)
};
// RDMACOLL_COST_MODEL: "measure" (or empty) to measure, or "ALPHA_US,LINK_GBPS,REDUCE_GBPS" in
// microseconds and gigabytes (1e9) per second, e.g. "5,12.5,8". Throws ConfigError otherwise.
std::optional<CostModel> parse_cost_model(std::string_view text);

// Per-call choices; the defaults follow the communicator's settings.
struct CallOptions {
  std::optional<AllreduceAlgorithm> algorithm;  // allreduce only; default RDMACOLL_ALGO
  std::optional<bool> deterministic;            // default RDMACOLL_DETERMINISTIC
};

class Communicator {
 public:
  struct Options {
    transport::Options transport = transport::Options::from_settings();
    size_t buffsize = 64u << 20;  // RDMACOLL_BUFFSIZE: scratch pool bytes
    AllreduceAlgorithm algorithm = AllreduceAlgorithm::automatic;  // RDMACOLL_ALGO
    bool deterministic = false;   // RDMACOLL_DETERMINISTIC: reproducible (ordered) reductions
    double timeout_s = 60;        // RDMACOLL_TIMEOUT: a collective's deadline from its start
    std::optional<CostModel> cost_model;  // RDMACOLL_COST_MODEL; nullopt: measure at creation
    DataPath data_path = DataPath::automatic;  // RDMACOLL_DATA_PATH
    // RDMACOLL_CHECK_ARGS: every call's arguments are compared around the ranks before its data
    // is used (ArgumentMismatchError on every rank, naming each rank's value). Same on all ranks.
    bool check_args = true;
    // RDMACOLL_ABORT_ON_ERROR: a failed call tells every peer, which fail at once (PeerFailedError).
    bool abort_on_error = true;
    static Options from_settings();
  };

  // Collective over `world`: connects the transport and exchanges the scratch windows.
  // `world` must outlive the communicator and every communicator split from it.
  static std::unique_ptr<Communicator> create(bootstrap::World& world, const Options& options = Options::from_settings());
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const;
  int size() const;
  const Options& options() const;
  transport::Transport& transport();
  // The pool's size (fixed), and the most of it any run has used so far.
  size_t scratch_bytes() const;
  size_t peak_scratch_bytes() const;
  // The model automatic choices use (measured at creation unless Options::cost_model is set).
  const CostModel& cost_model() const;
  // Whether a compressed allreduce of `count` floats with `codec` beats the plain one here
  // (what only_if_faster asks). Measured: the first time for a codec, scheme and size class
  // (counts within a power of two), it times plain and compressed calls of `count` floats
  // (the fastest of three each, alternating), the slowest rank's times deciding for all; a
  // collective call then, cached after.
  bool compression_pays(const Codec& codec, size_t count, Compression::Scheme scheme = Compression::Scheme::automatic);
  // The sequence number the next call gets (calls are numbered from 0).
  uint64_t next_sequence() const;

  Work allreduce_async(const void* in, void* out, size_t count, DataType type, ReduceOp op, const CallOptions& o = {});
  // Compressed (see Compression): op sum or avg; in == out allowed.
  Work allreduce_async(const float* in, float* out, size_t count, ReduceOp op, const Compression& compression);
  void allreduce(const float* in, float* out, size_t count, ReduceOp op, const Compression& compression) {
    allreduce_async(in, out, count, op, compression).wait();
  }
  Work reduce_scatter_async(const void* in, void* out, size_t count, DataType type, ReduceOp op,
                            const CallOptions& o = {});
  Work allgather_async(const void* in, void* out, size_t count, DataType type);
  Work broadcast_async(const void* in, void* out, size_t count, DataType type, int root);
  Work reduce_async(const void* in, void* out, size_t count, DataType type, ReduceOp op, int root,
                    const CallOptions& o = {});
  Work barrier_async();

  void allreduce(const void* in, void* out, size_t count, DataType type, ReduceOp op, const CallOptions& o = {}) {
    allreduce_async(in, out, count, type, op, o).wait();
  }
  void reduce_scatter(const void* in, void* out, size_t count, DataType type, ReduceOp op, const CallOptions& o = {}) {
    reduce_scatter_async(in, out, count, type, op, o).wait();
  }
  void allgather(const void* in, void* out, size_t count, DataType type) { allgather_async(in, out, count, type).wait(); }
  void broadcast(const void* in, void* out, size_t count, DataType type, int root) {
    broadcast_async(in, out, count, type, root).wait();
  }
  void reduce(const void* in, void* out, size_t count, DataType type, ReduceOp op, int root, const CallOptions& o = {}) {
    reduce_async(in, out, count, type, op, root, o).wait();
  }
  void barrier() { barrier_async().wait(); }

  // Collective: ranks that pass the same color >= 0 form a new communicator, ranked by (key,
  // rank in this one); a negative color joins no group and gets nullptr. The sub-communicator
  // has a transport and a scratch pool of its own (same options), wired up through this
  // communicator's store under a key prefix unique to this split: the per-peer notification
  // streams the executor relies on cannot be shared between communicators.
  // This communicator's calls in flight complete first.
  std::unique_ptr<Communicator> split(int color, int key);

  struct Impl;

 private:
  friend class Work;
  explicit Communicator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rdmacoll::collectives
