// Private: what every backend shares: request state, the Memory/RemoteWindow bases the
// backends derive from, and the backend factories.
#pragma once

#include <exception>
#include <memory>
#include <string>

#include "rdmacoll/transport/transport.h"

namespace rdmacoll::transport {

struct Request::State {
  enum class Status { Pending, Done, Failed };
  Transport* transport = nullptr;  // drives progress while a caller waits
  Status status = Status::Pending;
  std::exception_ptr error;
  size_t bytes = 0;
  uint32_t imm = 0;
  int peer = -1;
  std::string what;  // "send of 1048579 bytes to rank 1 (tag 7)", for timeouts

  State(Transport* t, int p, std::string w) : transport(t), peer(p), what(std::move(w)) {}
  virtual ~State() = default;
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

inline std::shared_ptr<Request::State> make_state(Transport* t, int peer, std::string what) {
  return std::make_shared<Request::State>(t, peer, std::move(what));
}

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
  virtual ~Impl() = default;
};

// The argument checks every backend's write() makes before anything moves: a valid peer, a
// window of that peer, [offset, offset+length) inside it (std::out_of_range naming both), and a
// source unless the length is 0 (std::invalid_argument).
void check_write(const Transport& t, int peer, const void* src, size_t length, const RemoteWindow& dst,
                 size_t offset);
// Checks 0 <= peer < size and peer != self where required; throws std::invalid_argument.
void check_peer(const Transport& t, int peer, const char* op);

std::unique_ptr<Transport> make_verbs_transport(bootstrap::World& world, const Options& options);
std::unique_ptr<Transport> make_ucx_transport(bootstrap::World& world, const Options& options);

}  // namespace rdmacoll::transport
