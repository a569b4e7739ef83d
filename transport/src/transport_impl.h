// Private: what every backend shares: request state, the Memory/RemoteWindow bases the
// backends derive from, and the backend factories.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "rdmacoll/transport/transport.h"

namespace rdmacoll::transport {

// What an operation is, kept as plain fields: the words ("send of 8 bytes to rank 1 (tag 7)")
// are made only when a message needs them (a timeout, an error). Formatting at post time cost
// several heap allocations per operation, which an 8-byte latency test pays on every message.
struct OpDesc {
  enum class Kind : uint8_t { Send, Recv, Write, Read, Notification, HelloSend, HelloRecv };
  Kind kind = Kind::Send;
  size_t length = 0;            // Recv: the buffer's size
  uint64_t tag = 0;             // Send, Recv
  std::optional<uint32_t> imm;  // Write

  static OpDesc send(size_t length, uint64_t tag) { return {Kind::Send, length, tag, std::nullopt}; }
  static OpDesc recv(size_t length, uint64_t tag) { return {Kind::Recv, length, tag, std::nullopt}; }
  static OpDesc write(size_t length, std::optional<uint32_t> imm) { return {Kind::Write, length, 0, imm}; }
  static OpDesc read(size_t length) { return {Kind::Read, length, 0, std::nullopt}; }
  static OpDesc of(Kind kind) { return {kind, 0, 0, std::nullopt}; }
};
// "send of 1048579 bytes to rank 1 (tag 7)", "read of 8 bytes from rank 2", ...
std::string describe_op(const OpDesc& d, int peer);

struct Request::State {
  enum class Status { Pending, Done, Failed };
  Transport* transport = nullptr;  // drives progress while a caller waits
  Status status = Status::Pending;
  std::exception_ptr error;
  size_t bytes = 0;
  uint32_t imm = 0;  // notification(): the value that arrived
  int peer = -1;
  OpDesc desc;

  State(Transport* t, int p, const OpDesc& d) : transport(t), peer(p), desc(d) {}
  virtual ~State() = default;
  // Makes a state nobody holds any more into a new operation's (StatePool).
  void rearm(int p, const OpDesc& d) {
    status = Status::Pending;
    error = nullptr;
    bytes = 0;
    imm = 0;
    peer = p;
    desc = d;
  }
  // For timeouts and errors; formats on every call.
  std::string what() const { return describe_op(desc, peer); }
  bool pending() const { return status == Status::Pending; }
  void complete(size_t n) {
    bytes = n;
    status = Status::Done;
  }
  void fail(std::exception_ptr e) {
    error = std::move(e);
    status = Status::Failed;
  }
  template <class E>
  void fail(const E& e) {
    fail(std::make_exception_ptr(e));
  }
};

inline std::shared_ptr<Request::State> make_state(Transport* t, int peer, const OpDesc& desc) {
  return std::make_shared<Request::State>(t, peer, desc);
}

// Request states kept for reuse. Allocating a state and releasing it cost about as much as
// rxe's whole post of an 8-byte write in a TCG guest (make_shared and destruction of the verbs
// backend's Op: 240 ns there, against 23 ns natively; measured), and a latency ping-pong or a
// small allreduce pays it on every operation. A state that the caller's Request and the
// backend's records have all let go of (use_count() == 1: only the pool holds it) is re-armed
// with T::rearm(peer, desc) instead. Looks at one pooled state per take(), round robin: with
// operations finishing in the order they started, that is the oldest. Used only by the thread
// driving the transport, as the backends are; the last holder may have let go on another
// thread, after its last use (its release pairs with the fence below).
template <class T>
class StatePool {
 public:
  static constexpr size_t kMax = 64;  // more in flight at once are allocated as before

  std::shared_ptr<T> take(Transport* t, int peer, const OpDesc& desc) {
    if (!pool_.empty()) {
      std::shared_ptr<T>& s = pool_[next_];
      if (++next_ == pool_.size()) next_ = 0;
      if (s.use_count() == 1) {
        std::atomic_thread_fence(std::memory_order_acquire);
        s->rearm(peer, desc);
        return s;
      }
    }
    auto s = std::make_shared<T>(t, peer, desc);
    if (pool_.size() < kMax) pool_.push_back(s);
    return s;
  }

 private:
  std::vector<std::shared_ptr<T>> pool_;
  size_t next_ = 0;
};

struct Memory::Impl {
  void* addr = nullptr;
  size_t length = 0;
  unsigned access = 0;
  virtual ~Impl() = default;
};

struct RemoteWindow::Impl {
  int rank = -1;
  uint64_t addr = 0;
  size_t length = 0;
  unsigned access = 0;  // what the owner granted: kRemoteWrite | kRemoteRead
  // The backend that unpacked it (the address of a tag of that backend's): checked on every
  // write and read (backend_window) instead of a dynamic_cast, which costs more than the rest
  // of a small write.
  const void* backend = nullptr;
  virtual ~Impl() = default;
};

// A backend's window type W (W::kTag, W::kBackend; its constructor sets `backend` to &W::kTag)
// behind `w`, for `op`; std::invalid_argument if another backend unpacked it.
template <class W>
const W& backend_window(const RemoteWindow& w, const char* op) {
  if (w.impl()->backend != &W::kTag)
    throw std::invalid_argument(std::string(op) + ": the window was not unpacked by this " + W::kBackend + " transport");
  return static_cast<const W&>(*w.impl());
}

// The argument checks every backend's write() and read() make before anything moves: a valid
// peer, a window of that peer whose owner granted kRemoteWrite (write) or kRemoteRead (read)
// (std::invalid_argument naming the peer), [offset, offset+length) inside it (std::out_of_range
// naming both), and a local buffer unless the length is 0 (std::invalid_argument).
// The test is inline (it runs on every small write, where a call per window field showed);
// only a failing one calls out, for the message.
[[noreturn]] void fail_one_sided(const Transport& t, bool is_read, int peer, const void* local, size_t length,
                                 const RemoteWindow& w, size_t offset);
inline void check_one_sided(const Transport& t, bool is_read, int peer, const void* local, size_t length,
                            const RemoteWindow& w, size_t offset) {
  const RemoteWindow::Impl* i = w.impl().get();
  if (peer >= 0 && peer < t.size() && i != nullptr && i->rank == peer &&
      (i->access & (is_read ? kRemoteRead : kRemoteWrite)) != 0 && offset <= i->length &&
      length <= i->length - offset && (local != nullptr || length == 0)) [[likely]]
    return;
  fail_one_sided(t, is_read, peer, local, length, w, offset);
}
inline void check_write(const Transport& t, int peer, const void* src, size_t length, const RemoteWindow& dst,
                        size_t offset) {
  check_one_sided(t, /*is_read=*/false, peer, src, length, dst, offset);
}
inline void check_read(const Transport& t, int peer, const void* dst, size_t length, const RemoteWindow& src,
                       size_t offset) {
  check_one_sided(t, /*is_read=*/true, peer, dst, length, src, offset);
}
// pack_window's check: a registration (non-empty) that grants some remote access.
void check_window(const Memory& window);
// Checks 0 <= peer < size and peer != self where required; throws std::invalid_argument.
void check_peer(const Transport& t, int peer, const char* op);

std::unique_ptr<Transport> make_verbs_transport(bootstrap::World& world, const Options& options);
std::unique_ptr<Transport> make_ucx_transport(bootstrap::World& world, const Options& options);

}  // namespace rdmacoll::transport
