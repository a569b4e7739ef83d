// TCP store: rank 0 serves a map of keys to byte strings; clients set, add, and wait for keys.
// A wait is held by the server until the keys exist or the client's deadline passes, so a
// client never polls and a timeout reply can name the keys still missing.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "bootstrap/socket.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "wire.h"

namespace rdmacoll::bootstrap {
namespace {

enum Op : uint16_t { kSet = 1, kGet = 2, kWait = 3, kAdd = 4 };
enum Reply : uint16_t { kOk = 100, kValue = 101, kTimedOut = 102, kInt = 103 };
constexpr size_t kMaxKey = 4096;
constexpr size_t kMaxValue = net::kMaxFrame - kMaxKey - 64;
constexpr size_t kMaxKeys = 1 << 16;

int64_t decode_int(const Bytes& b) {
  if (b.size() != 8) return 0;
  int64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<int64_t>(b[static_cast<size_t>(i)]) << (8 * i);
  return v;
}

Bytes encode_int(int64_t v) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
  return b;
}

}  // namespace

struct TcpStoreServer::Impl {
  struct Conn {
    net::Fd fd;
    std::string peer;
    Bytes in;
  };
  struct Pending {
    int fd;
    Op op;
    std::vector<std::string> keys;
    Deadline deadline;
  };

  std::string host;
  uint16_t port = 0;
  net::Fd listener;
  int wake[2] = {-1, -1};
  std::map<int, Conn> conns;
  std::vector<Pending> pending;
  std::map<std::string, Bytes> data;
  std::thread thread;

  void run() {
    while (true) {
      std::vector<pollfd> fds{{wake[0], POLLIN, 0}, {listener.get(), POLLIN, 0}};
      for (auto& [fd, c] : conns) fds.push_back({fd, POLLIN, 0});
      int timeout = 1000;
      for (const Pending& p : pending)
        timeout = std::min<int>(
            timeout, static_cast<int>(std::max<long long>(
                         0, std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - Clock::now()).count() + 1)));
      int rc = poll(fds.data(), fds.size(), timeout);
      if (rc < 0 && errno != EINTR) {
        RDMACOLL_LOG(Error, kBoot, "TCP store: poll failed: %s", net::errno_string(errno).c_str());
        return;
      }
      if (fds[0].revents) return;  // shutdown
      if (fds[1].revents & POLLIN) accept_one();
      for (size_t i = 2; i < fds.size(); ++i)
        if (fds[i].revents) read_from(fds[i].fd);
      expire();
    }
  }

  void accept_one() {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(listener.get(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    char host_s[NI_MAXHOST] = "?", serv[NI_MAXSERV] = "?";
    getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host_s, sizeof host_s, serv, sizeof serv,
                NI_NUMERICHOST | NI_NUMERICSERV);
    conns[fd] = Conn{net::Fd(fd), std::string(host_s) + ":" + serv, {}};
  }

  void drop(int fd) {
    conns.erase(fd);
    std::erase_if(pending, [fd](const Pending& p) { return p.fd == fd; });
  }

  void read_from(int fd) {
    Conn& c = conns.at(fd);
    uint8_t buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop(fd);
    if (n < 0) return;
    c.in.insert(c.in.end(), buf, buf + n);
    while (c.in.size() >= 4) {
      size_t len = c.in[0] | (size_t{c.in[1]} << 8) | (size_t{c.in[2]} << 16) | (size_t{c.in[3]} << 24);
      if (len > net::kMaxFrame) {
        RDMACOLL_WARN(kBoot, "TCP store: refusing %s: frame of %zu bytes exceeds the limit", c.peer.c_str(), len);
        return drop(fd);
      }
      if (c.in.size() < 4 + len) break;
      Bytes frame(c.in.begin() + 4, c.in.begin() + 4 + static_cast<ptrdiff_t>(len));
      c.in.erase(c.in.begin(), c.in.begin() + 4 + static_cast<ptrdiff_t>(len));
      try {
        handle(fd, frame);
      } catch (const Error& e) {
        RDMACOLL_WARN(kBoot, "TCP store: dropping %s: %s", c.peer.c_str(), e.what());
        return drop(fd);
      }
      if (!conns.count(fd)) return;
    }
  }

  void handle(int fd, const Bytes& frame) {
    wire::Reader r(frame, "TCP store request from " + conns.at(fd).peer);
    auto op = static_cast<Op>(r.header());
    switch (op) {
      case kSet: {
        std::string key = r.str(kMaxKey);
        auto v = r.bytes(kMaxValue);
        r.expect_end();
        data[key] = Bytes(v.begin(), v.end());
        reply(fd, wire::Writer().header(kOk));
        serve_pending();
        return;
      }
      case kAdd: {
        std::string key = r.str(kMaxKey);
        int64_t delta = r.i64();
        r.expect_end();
        int64_t v = decode_int(data[key]) + delta;
        data[key] = encode_int(v);
        reply(fd, wire::Writer().header(kInt).i64(v));
        serve_pending();
        return;
      }
      case kGet:
      case kWait: {
        uint64_t nkeys = op == kGet ? 1 : r.u64();
        if (nkeys > kMaxKeys) throw ProtocolError("too many keys in one wait");
        std::vector<std::string> keys;
        for (uint64_t i = 0; i < nkeys; ++i) keys.push_back(r.str(kMaxKey));
        uint64_t timeout_ms = r.u64();
        r.expect_end();
        pending.push_back({fd, op, std::move(keys),
                           Clock::now() + std::chrono::milliseconds(std::min<uint64_t>(timeout_ms, 86400000))});
        serve_pending();
        return;
      }
    }
    throw ProtocolError("unknown operation " + std::to_string(op));
  }

  bool ready(const Pending& p) const {
    return std::all_of(p.keys.begin(), p.keys.end(), [&](const std::string& k) { return data.count(k) != 0; });
  }

  void serve_pending() {
    for (size_t i = 0; i < pending.size();) {
      if (!ready(pending[i])) {
        ++i;
        continue;
      }
      Pending p = std::move(pending[i]);
      pending.erase(pending.begin() + static_cast<ptrdiff_t>(i));
      if (p.op == kGet)
        reply(p.fd, wire::Writer().header(kValue).bytes(data[p.keys[0]]));
      else
        reply(p.fd, wire::Writer().header(kOk));
    }
  }

  void expire() {
    auto now = Clock::now();
    for (size_t i = 0; i < pending.size();) {
      if (pending[i].deadline > now) {
        ++i;
        continue;
      }
      Pending p = std::move(pending[i]);
      pending.erase(pending.begin() + static_cast<ptrdiff_t>(i));
      wire::Writer w;
      w.header(kTimedOut);
      std::vector<std::string> missing;
      for (const auto& k : p.keys)
        if (!data.count(k)) missing.push_back(k);
      w.u64(missing.size());
      for (const auto& k : missing) w.str(k);
      reply(p.fd, w);
    }
  }

  void reply(int fd, wire::Writer& w) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    try {
      net::send_frame(fd, w.data(), Clock::now() + std::chrono::seconds(10), it->second.peer);
    } catch (const Error& e) {
      RDMACOLL_WARN(kBoot, "TCP store: dropping %s: %s", it->second.peer.c_str(), e.what());
      drop(fd);
    }
  }
  void reply(int fd, wire::Writer&& w) { reply(fd, w); }
};

TcpStoreServer::TcpStoreServer(const std::string& host, uint16_t port) : impl_(std::make_unique<Impl>()) {
  impl_->host = host;
  impl_->listener = net::listen_tcp(host, port, &impl_->port);
  if (pipe2(impl_->wake, O_CLOEXEC) != 0) throw TransportError("pipe2 failed: " + net::errno_string(errno));
  RDMACOLL_INFO(kBoot, "TCP store serving on %s:%u", host.c_str(), impl_->port);
  impl_->thread = std::thread([this] { impl_->run(); });
}

TcpStoreServer::~TcpStoreServer() {
  char c = 1;
  if (::write(impl_->wake[1], &c, 1) != 1) RDMACOLL_WARN(kBoot, "TCP store: cannot wake server thread");
  impl_->thread.join();
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

uint16_t TcpStoreServer::port() const { return impl_->port; }
std::string TcpStoreServer::host() const { return impl_->host; }

// ---- client ------------------------------------------------------------------------------

struct TcpStore::Impl {
  std::string host;
  uint16_t port;
  std::string peer;
  net::Fd fd;
  std::mutex mu;  // one request at a time on the connection

  Bytes call(wire::Writer& w, Deadline reply_deadline) {
    net::send_frame(fd.get(), w.data(), reply_deadline, peer);
    return net::recv_frame(fd.get(), reply_deadline, peer);
  }
};

TcpStore::TcpStore(const std::string& host, uint16_t port, Deadline connect_deadline)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = host;
  impl_->port = port;
  impl_->peer = "rendezvous store " + host + ":" + std::to_string(port);
  impl_->fd = net::connect_tcp(host, port, connect_deadline);
}

TcpStore::~TcpStore() = default;

std::string TcpStore::describe() const { return "tcp://" + impl_->host + ":" + std::to_string(impl_->port); }

void TcpStore::set(const std::string& key, std::span<const uint8_t> value) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kSet).str(key).bytes(value);
  Bytes reply = impl_->call(w, default_deadline());
  wire::Reader r(reply, impl_->peer);
  if (r.header() != kOk) throw ProtocolError(impl_->peer + ": unexpected reply to set");
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kAdd).str(key).i64(delta);
  Bytes reply = impl_->call(w, default_deadline());
  wire::Reader r(reply, impl_->peer);
  if (r.header() != kInt) throw ProtocolError(impl_->peer + ": unexpected reply to add");
  return r.i64();
}

namespace {
uint64_t ms_left(Deadline d) {
  return static_cast<uint64_t>(
      std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count()));
}
[[noreturn]] void timed_out(wire::Reader& r, const std::string& store) {
  uint64_t n = r.u64();
  std::string missing;
  for (uint64_t i = 0; i < n && i < 64; ++i) missing += (i ? ", " : "") + r.str(kMaxKey);
  throw TimeoutError("timed out waiting for key(s) " + missing + " in " + store);
}
}  // namespace

Bytes TcpStore::get(const std::string& key, Deadline deadline) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kGet).str(key).u64(ms_left(deadline));
  // The server answers at the deadline at the latest; allow it a margin to do so.
  Bytes reply = impl_->call(w, deadline + std::chrono::seconds(5));
  wire::Reader r(reply, impl_->peer);
  uint16_t type = r.header();
  if (type == kTimedOut) timed_out(r, describe());
  if (type != kValue) throw ProtocolError(impl_->peer + ": unexpected reply to get");
  auto v = r.bytes(kMaxValue);
  return Bytes(v.begin(), v.end());
}

void TcpStore::wait(const std::vector<std::string>& keys, Deadline deadline) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kWait).u64(keys.size());
  for (const auto& k : keys) w.str(k);
  w.u64(ms_left(deadline));
  Bytes reply = impl_->call(w, deadline + std::chrono::seconds(5));
  wire::Reader r(reply, impl_->peer);
  uint16_t type = r.header();
  if (type == kTimedOut) timed_out(r, describe());
  if (type != kOk) throw ProtocolError(impl_->peer + ": unexpected reply to wait");
}

}  // namespace rdmacoll::bootstrap

namespace rdmacoll::bootstrap {

std::vector<std::string> TcpStore::missing(const std::vector<std::string>& keys) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kWait).u64(keys.size());
  for (const auto& k : keys) w.str(k);
  w.u64(0);  // answered at once: OK, or the list of missing keys
  Bytes reply = impl_->call(w, default_deadline());
  wire::Reader r(reply, impl_->peer);
  uint16_t type = r.header();
  std::vector<std::string> out;
  if (type == kOk) return out;
  if (type != kTimedOut) throw ProtocolError(impl_->peer + ": unexpected reply to wait");
  uint64_t n = r.u64();
  for (uint64_t i = 0; i < n; ++i) out.push_back(r.str(kMaxKey));
  return out;
}

}  // namespace rdmacoll::bootstrap
