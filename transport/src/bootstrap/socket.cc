#include "bootstrap/socket.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "rdmacoll/error.h"

namespace rdmacoll::bootstrap::net {
namespace {

int ms_until(Deadline d) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, 1000 * 1000));
}

struct AddrInfo {
  addrinfo* ai = nullptr;
  ~AddrInfo() {
    if (ai) freeaddrinfo(ai);
  }
};

void resolve(const std::string& host, uint16_t port, bool passive, AddrInfo& out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &out.ai);
  if (rc != 0)
    throw TransportError("cannot resolve rendezvous host '" + host + "': " + gai_strerror(rc) +
                         "; check RDMACOLL_ADDR / MASTER_ADDR");
}

// Waits for `events` on fd until the deadline; false on timeout.
bool wait_fd(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, ms_until(deadline));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) throw TransportError("poll() failed: " + errno_string(errno));
  }
}

}  // namespace

std::string errno_string(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd listen_tcp(const std::string& host, uint16_t port, uint16_t* bound_port) {
  AddrInfo ai;
  resolve(host, port, true, ai);
  int last = 0;
  for (addrinfo* a = ai.ai; a != nullptr; a = a->ai_next) {
    Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd) {
      last = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0 || listen(fd.get(), 1024) != 0) {
      last = errno;
      continue;
    }
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                                 : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    return fd;
  }
  std::string hint = last == EADDRINUSE       ? "another process uses this port; pick another (RDMACOLL_ADDR=HOST:PORT)"
                     : last == EADDRNOTAVAIL ? "this host does not own that address; rank 0 must run on it"
                                             : "";
  throw TransportError("cannot listen on " + host + ":" + std::to_string(port) + ": " + errno_string(last) +
                       (hint.empty() ? "" : "; " + hint));
}

Fd connect_tcp(const std::string& host, uint16_t port, Deadline deadline) {
  int last = 0;
  auto backoff = std::chrono::milliseconds(5);
  do {
    AddrInfo ai;
    resolve(host, port, false, ai);
    for (addrinfo* a = ai.ai; a != nullptr; a = a->ai_next) {
      Fd fd(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
      if (!fd) {
        last = errno;
        continue;
      }
      int rc = connect(fd.get(), a->ai_addr, a->ai_addrlen);
      if (rc != 0 && errno == EINPROGRESS) {
        Deadline attempt = std::min(deadline, Clock::now() + std::chrono::seconds(5));
        if (!wait_fd(fd.get(), POLLOUT, attempt)) {
          last = ETIMEDOUT;
          continue;
        }
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      }
      if (rc != 0) {
        last = errno;
        continue;
      }
      int flags = fcntl(fd.get(), F_GETFL);
      fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
      int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, std::max<Clock::duration>(deadline - Clock::now(), {})));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(200));
  } while (Clock::now() < deadline);
  throw TimeoutError("could not connect to the rendezvous store at " + host + ":" + std::to_string(port) +
                     " before the deadline (last error: " + errno_string(last) +
                     "); is rank 0 running, and do RDMACOLL_ADDR/MASTER_ADDR point at it? (RDMACOLL_TIMEOUT sets the wait)");
}

static void io_all(int fd, uint8_t* p, size_t n, bool sending, Deadline deadline, const std::string& peer) {
  while (n > 0) {
    if (!wait_fd(fd, sending ? POLLOUT : POLLIN, deadline))
      throw TimeoutError(std::string(sending ? "sending to " : "waiting for a reply from ") + peer +
                         " timed out (RDMACOLL_TIMEOUT)");
    ssize_t r = sending ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r < 0) throw TransportError(std::string(sending ? "send to " : "recv from ") + peer + ": " + errno_string(errno));
    if (r == 0) throw TransportError("connection closed by " + peer + " (did that process exit?)");
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void send_frame(int fd, const std::vector<uint8_t>& payload, Deadline deadline, const std::string& peer) {
  if (payload.size() > kMaxFrame) throw TransportError("frame of " + std::to_string(payload.size()) + " bytes is too large");
  uint8_t len[4];
  for (int i = 0; i < 4; ++i) len[i] = static_cast<uint8_t>(payload.size() >> (8 * i));
  if (payload.size() <= 4096) {
    // One segment: a length sent on its own would wait for the peer's delayed ACK.
    std::vector<uint8_t> frame(len, len + 4);
    frame.insert(frame.end(), payload.begin(), payload.end());
    io_all(fd, frame.data(), frame.size(), true, deadline, peer);
    return;
  }
  io_all(fd, len, 4, true, deadline, peer);
  io_all(fd, const_cast<uint8_t*>(payload.data()), payload.size(), true, deadline, peer);
}

std::vector<uint8_t> recv_frame(int fd, Deadline deadline, const std::string& peer, size_t max) {
  uint8_t len[4];
  io_all(fd, len, 4, false, deadline, peer);
  size_t n = len[0] | (size_t{len[1]} << 8) | (size_t{len[2]} << 16) | (size_t{len[3]} << 24);
  if (n > max)
    throw ProtocolError("frame of " + std::to_string(n) + " bytes from " + peer + " exceeds the limit of " +
                        std::to_string(max) + " bytes");
  std::vector<uint8_t> buf(n);
  io_all(fd, buf.data(), n, false, deadline, peer);
  return buf;
}

}  // namespace rdmacoll::bootstrap::net
