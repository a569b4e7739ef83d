// The transport interface: how a rank moves registered memory to its peers. The collectives
// run on it unchanged over libibverbs or UCX; no verbs or UCX type appears here.
//
//   auto world = bootstrap::connect_world(*bootstrap::detect_launch(), bootstrap::default_deadline());
//   auto t = transport::Transport::create(world);            // full mesh, all peers connected
//   Request r = t->send(peer, /*tag=*/7, buf, len);           // two-sided, tagged
//   r.wait();                                                 // or r.test() in a loop
//
//   Memory win = t->register_memory(p, n, transport::kRemoteWrite);   // cached
//   std::vector<uint8_t> desc = t->pack_window(win);         // send desc to the peers
//   RemoteWindow dst = t->unpack_window(peer, desc_from_peer);
//   t->write(peer, src, len, dst, offset, /*imm=*/42).wait(); // zero-copy RDMA WRITE (+ notify)
//   uint32_t imm = t->notification(peer).wait_value();        // the peer's side
//   t->read(peer, dst_buf, len, src_win, offset).wait();      // zero-copy RDMA READ (kRemoteRead window)
//
// Threading: a Transport and its Requests are used from one thread at a time (the backends'
// own helper threads, such as the verbs async-event thread, never touch user state).
// Progress is explicit: Request::test()/wait() drive it; nothing moves between calls.
// Lifetime: a Transport must outlive its Requests and Memory handles.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::transport {

using bootstrap::Deadline;

enum class Backend { Verbs, Ucx };
std::string_view to_string(Backend b);
Backend parse_backend(std::string_view s);  // "verbs" | "ucx"; ConfigError otherwise

// How a waiting caller gets completions: spin on the completion queue (lowest latency, burns a
// core), sleep on the completion channel / ucp_worker_wait (frees the core), or spin for a
// short while and then sleep (the default; behaves when ranks outnumber cores).
enum class ProgressMode { Poll, Block, Adaptive };
std::string_view to_string(ProgressMode m);
ProgressMode parse_progress_mode(std::string_view s);  // "poll" | "block" | "adaptive"

// Whether this node's ranks outnumber the cores this process may run on: the ranks per node
// from the launcher (LOCAL_WORLD_SIZE, as rdmacoll-run and torchrun set it;
// OMPI_COMM_WORLD_LOCAL_SIZE; MPI_LOCALNRANKS; SLURM_NTASKS_PER_NODE), the cores from the
// affinity mask. True where the launcher does not say.
bool cores_oversubscribed();

// Access a registration grants to peers. Local access is always granted.
enum Access : unsigned { kLocalOnly = 0, kRemoteWrite = 1u << 0, kRemoteRead = 1u << 1 };

struct Options {
  Backend backend = Backend::Ucx;
  ProgressMode progress = ProgressMode::Adaptive;
  double adaptive_spin_us = 50;  // Adaptive: how long to spin before sleeping
  // Poll and Adaptive: give up the core (sched_yield) on idle turns of a wait, so a rank that
  // shares its core with the peer it waits for lets that peer run. from_settings() turns it off
  // where the launcher says how many ranks share this node and they fit its usable cores
  // (cores_oversubscribed): there a yield is only a system call per turn.
  bool yield_when_idle = true;
  // RDMACOLL_TRANSPORT, RDMACOLL_PROGRESS, RDMACOLL_SPIN_US; yield_when_idle as above.
  static Options from_settings();
};

// A registered range of memory (shared: copies refer to the same registration). Obtained from
// Transport::register_memory, which caches: registering the same range again is free.
// addr()/length() are the range the caller asked for; the registration behind it (impl()) may
// cover more (the cache registers whole pages and merges neighbours).
class Memory {
 public:
  struct Impl;
  Memory() = default;
  explicit Memory(std::shared_ptr<Impl> impl);  // the whole registration
  Memory(std::shared_ptr<Impl> impl, void* addr, size_t length);
  void* addr() const { return addr_; }
  size_t length() const { return length_; }
  unsigned access() const;
  explicit operator bool() const { return impl_ != nullptr; }
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
  void* addr_ = nullptr;
  size_t length_ = 0;
};

// A peer's registered window that this rank may write into or read from (from unpack_window),
// as far as the owner's registration allows: access() is what the owner granted (kRemoteWrite,
// kRemoteRead or both).
class RemoteWindow {
 public:
  struct Impl;
  RemoteWindow() = default;
  explicit RemoteWindow(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  int rank() const;
  uint64_t addr() const;
  size_t length() const;
  unsigned access() const;
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

// An operation in flight. test() progresses the transport once and says whether the operation
// is complete; wait() progresses until it is, or throws TimeoutError at the deadline naming the
// operation and the peer. A failed operation rethrows its error (TransportError with the
// completion status, the opcode and the peer rank) from test() or wait().
class Request {
 public:
  struct State;
  Request() = default;
  explicit Request(std::shared_ptr<State> s) : s_(std::move(s)) {}
  bool test();
  void wait(Deadline deadline);
  void wait();  // deadline from RDMACOLL_TIMEOUT
  // For notification(): waits, then returns the immediate value.
  uint32_t wait_value(Deadline deadline);
  uint32_t wait_value();
  size_t bytes() const;  // bytes received (recv) or moved (send, write, read)
  bool valid() const { return s_ != nullptr; }

 private:
  std::shared_ptr<State> s_;
};

// Bytes this rank put on the wire to / took off the wire from one peer (payload and protocol
// headers alike), counted by the transport itself.
struct PeerCounters {
  uint64_t bytes_sent = 0, bytes_received = 0;
  uint64_t messages_sent = 0, messages_received = 0;
};

struct CacheStats {
  uint64_t hits = 0, misses = 0, invalidations = 0;
  size_t entries = 0;
};

// What a transport runs on, for tool headers and logs. Fields a backend cannot know are left
// at their "n/a" values.
struct TransportInfo {
  Backend backend = Backend::Ucx;
  std::string device;      // verbs: "rxe0"; UCX: the devices in use ("rxe0:1", "lo", "memory")
  int port = 0;            // verbs port number (UCX: the port of an RDMA device it uses); 0 if n/a
  int gid_index = -1;      // verbs GID index in use; -1 if n/a
  std::string gid;         // text form ("fe80:0000:...:0001"); "" if n/a
  int mtu = 0;             // active MTU in bytes (verbs); 0 if unknown (UCX)
  std::string qp_type;     // "RC" for verbs; UCX: the transports used ("rc_verbs", "tcp", "sysv,cma")
  size_t max_inline = 0;   // inline bytes (verbs); 0 if unknown (UCX)
  std::string link_layer;  // "Ethernet" / "InfiniBand" / "" (n/a, e.g. UCX over tcp or shared memory)
};

class Transport {
 public:
  // Connects to every other rank of `world` and returns once all connections are up. The
  // store is used only here (connection data in a versioned binary format).
  static std::unique_ptr<Transport> create(bootstrap::World& world, const Options& options = Options::from_settings());
  virtual ~Transport() = default;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const Options& options() const { return options_; }
  // The device, port, GID, MTU and transports in use, as fields.
  virtual TransportInfo info() const = 0;
  // One line for headers and logs: info() plus backend settings (eager size, wire-up, progress).
  virtual std::string describe() const = 0;

  // Registration (cached; the cache drops entries whose memory was freed or remapped).
  virtual Memory register_memory(void* addr, size_t length, unsigned access = kLocalOnly) = 0;
  virtual CacheStats cache_stats() const = 0;
  // Allocates `length` bytes (page-aligned, contents unspecified: nothing touches the pages, so
  // they cost no memory until used) registered with `access`; they live as
  // long as the returned Memory or a copy of it does, which may outlive the transport (the
  // exception to the lifetime rule above). Writes from inside it need no other registration.
  // Windows peers write into should come from
  // here: on UCX shared memory the segment is one peers map, so a write into it is a single copy
  // made by the writer, while memory the program allocated itself can only be written there by
  // messages the owner's worker copies in (two copies, and the owner must be progressing).
  // Throws std::invalid_argument for length 0, TransportError (with the `ulimit -l` hint where
  // pinning is the problem) when the memory cannot be had.
  virtual Memory allocate_memory(size_t length, unsigned access) = 0;

  // Tagged two-sided messages. A receive matches the oldest message from `peer` with `tag`;
  // its buffer must be at least as long as the message (shorter is an error naming both sizes).
  virtual Request send(int peer, uint64_t tag, const void* buf, size_t length) = 0;
  virtual Request recv(int peer, uint64_t tag, void* buf, size_t length) = 0;

  // One-sided. A window is memory registered with kRemoteWrite and/or kRemoteRead; its
  // description (which carries that access) goes to the peers however the caller likes (the
  // collectives exchange it once at setup). On RDMA (verbs, UCX rc_verbs) and UCX shared
  // memory the peer's CPU takes no part; UCX over tcp emulates one-sided operations with
  // messages the peer's worker answers, so there the peer must be progressing its transport
  // (waiting on any request) until they complete.
  virtual std::vector<uint8_t> pack_window(const Memory& window) = 0;
  virtual RemoteWindow unpack_window(int peer, std::span<const uint8_t> packed) = 0;
  // Zero-copy write of [src, src+length) to dst.addr()+offset. The peer must have registered the
  // window with kRemoteWrite. With `imm`, the peer's notification(rank()) completes with that
  // value once the data has landed.
  virtual Request write(int peer, const void* src, size_t length, const RemoteWindow& dst, size_t offset,
                        std::optional<uint32_t> imm = std::nullopt) = 0;
  // Zero-copy read of src.addr()+offset .. +length on `peer` into [dst, dst+length). The peer must have
  // registered the window with kRemoteRead (reading a window without it is an error before anything moves).
  // The peer is not notified.
  virtual Request read(int peer, void* dst, size_t length, const RemoteWindow& src, size_t offset) = 0;
  // Completes when the next write-with-immediate from `peer` has landed.
  virtual Request notification(int peer) = 0;
  // Whether a write to `peer` lands without the peer's CPU (RDMA, or a shared-memory segment
  // from allocate_memory). false where the backend emulates it with messages the peer's worker
  // copies in (UCX over tcp): callers that control both sides move data faster there with
  // send/recv, which those backends do natively.
  virtual bool direct_writes(int peer) const = 0;
  // Where this process can load and store a peer's window itself: the window's base address
  // here, where the backend maps the peer's memory into this process (UCX shared memory, for a
  // window from the peer's allocate_memory); nullptr anywhere else (verbs, UCX over a network,
  // memory the peer registered rather than allocated). The mapping lives as long as the window.
  virtual void* map_window(const RemoteWindow& window) {
    (void)window;
    return nullptr;
  }

  // Progress once without blocking; returns true if anything happened.
  virtual bool progress() = 0;
  // Sleeps until the backend has an event or the deadline passes (Block/Adaptive modes).
  virtual void wait_for_event(Deadline deadline) = 0;

  virtual PeerCounters counters(int peer) const = 0;

  // For timeout messages: the backend's view of its connections to `peers` (verbs: each QP's
  // state, the work requests the device holds and those queued behind them, and the device's
  // nonzero retry and error counters), so that a wait that ran out can be told apart as a peer
  // that sent nothing or a connection that stopped moving. Empty where the backend has nothing
  // to add. Reads only; safe to call at any time.
  virtual std::string connection_report(const std::vector<int>& peers) const {
    (void)peers;
    return "";
  }

  // The caller gives up on everything in flight (a collective failed) and may free its buffers
  // before destroying the transport: from now on the transport must not read or write them,
  // so teardown discards what is still queued instead of delivering it. Nothing else changes
  // until destruction; operations posted afterwards are the caller's to wait for.
  virtual void abandon() {}

 protected:
  Transport(int rank, int size, Options options) : rank_(rank), size_(size), options_(options) {}

 private:
  int rank_, size_;
  Options options_;
};

}  // namespace rdmacoll::transport
