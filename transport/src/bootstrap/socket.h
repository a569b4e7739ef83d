// Private: small blocking-with-deadline TCP helpers for the bootstrap. Data never flows here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::bootstrap::net {

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  ~Fd();
  int get() const { return fd_; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Listens on exactly host:port (port 0: any free port). Returns the socket and the bound port.
Fd listen_tcp(const std::string& host, uint16_t port, uint16_t* bound_port);
// Connects, retrying refused/unreachable attempts until the deadline.
Fd connect_tcp(const std::string& host, uint16_t port, Deadline deadline);

// Frames are a u32 little-endian length then the payload; frames above kMaxFrame are refused.
constexpr size_t kMaxFrame = size_t{256} << 20;
void send_frame(int fd, const std::vector<uint8_t>& payload, Deadline deadline, const std::string& peer);
// Frames longer than `max` are refused before their payload is read.
std::vector<uint8_t> recv_frame(int fd, Deadline deadline, const std::string& peer, size_t max = kMaxFrame);

std::string errno_string(int err);

}  // namespace rdmacoll::bootstrap::net
