// TCP store: rank 0 serves a map of keys to byte strings; clients set, add, and wait for keys.
// A wait is held by the server until the keys exist or the client's deadline passes, so a
// client never polls and a timeout reply can name the keys still missing.
//
// Every connection first proves it knows the job token (store_proto.h has the handshake and
// the message layout); a connection that fails to is refused, logged with its address, and
// closed, and the server goes on serving the job's ranks.
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <thread>

#include "bootstrap/auth.h"
#include "bootstrap/socket.h"
#include "bootstrap/store_proto.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"
#include "wire.h"

namespace rdmacoll::bootstrap {
namespace {

using namespace proto;

// A connection that has not authenticated within the job's timeout (RDMACOLL_TIMEOUT, which
// also bounds the client's side of the handshake), or this floor if that is shorter, is closed.
// Not a short fixed time: a rank starting under a sanitizer in an emulated guest can take over
// 10 s from its connect to its hello.
constexpr double kMinHandshakeSeconds = 1.0;

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

std::string seconds_text(std::chrono::milliseconds t) {
  char s[32];
  std::snprintf(s, sizeof s, "%g s", static_cast<double>(t.count()) / 1000);
  return s;
}

}  // namespace

struct TcpStoreServer::Impl {
  struct Conn {
    net::Fd fd;
    std::string peer;
    Bytes in;
    auth::Nonce server_nonce{};
    std::optional<auth::Context> ctx;  // set once the client's hello checked out
    uint64_t recv_seq = 0, send_seq = 0;
    Deadline handshake_deadline;
  };
  struct Pending {
    int fd;
    Type op;
    std::vector<std::string> keys;
    Deadline deadline;
  };

  std::string host;
  uint16_t port = 0;
  std::chrono::milliseconds handshake_time{0};
  auth::Key key;
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
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // replies are small and awaited
    Conn& c = conns[fd];
    c.fd = net::Fd(fd);
    c.peer = std::string(host_s) + ":" + serv;
    c.handshake_deadline = Clock::now() + handshake_time;
    try {
      c.server_nonce = auth::random_nonce();
      send(fd, server_hello(c.server_nonce));
    } catch (const Error& e) {
      RDMACOLL_WARN(kBoot, "TCP store: dropping %s: %s", c.peer.c_str(), e.what());
      drop(fd);
    }
  }

  void drop(int fd) {
    conns.erase(fd);
    std::erase_if(pending, [fd](const Pending& p) { return p.fd == fd; });
  }

  // Tells the peer why (best effort, unsigned), logs it with the peer's address, closes.
  void refuse(int fd, const std::string& why) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    Conn& c = it->second;
    RDMACOLL_WARN(kBoot, "TCP store: refusing %s: %s", c.peer.c_str(), why.c_str());
    Bytes msg = refusal(why);
    Bytes frame(4);
    for (size_t i = 0; i < 4; ++i) frame[i] = static_cast<uint8_t>(msg.size() >> (8 * i));
    frame.insert(frame.end(), msg.begin(), msg.end());
    // Non-blocking and once: a peer that does not read does not hold up the server.
    (void)!::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    drop(fd);
  }

  void read_from(int fd) {
    Conn& c = conns.at(fd);
    uint8_t buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return drop(fd);
    if (n < 0) return;
    c.in.insert(c.in.end(), buf, buf + n);
    try {
      for (;;) {
        const size_t max = c.ctx ? net::kMaxFrame : kMaxHandshakeFrame;
        auto len = complete_frame(c.in, max, "TCP store message from " + c.peer);
        if (!len) return;
        Bytes frame(c.in.begin() + 4, c.in.begin() + 4 + static_cast<ptrdiff_t>(*len));
        c.in.erase(c.in.begin(), c.in.begin() + 4 + static_cast<ptrdiff_t>(*len));
        handle(fd, frame);
        if (!conns.count(fd)) return;
      }
    } catch (const Error& e) {
      refuse(fd, e.what());
    }
  }

  void handle(int fd, const Bytes& frame) {
    Conn& c = conns.at(fd);
    const std::string what = "TCP store message from " + c.peer;
    if (!c.ctx) {
      c.ctx = accept_client_hello(frame, key, c.server_nonce, what);
      c.recv_seq = 1;
      RDMACOLL_DEBUG(kBoot, "TCP store: %s authenticated%s", c.peer.c_str(), key.from_token ? "" : " (no job token)");
      reply(fd, wire::Writer().header(kOk));
      return;
    }
    Request q = parse_request(auth::open(frame, key, auth::Direction::ClientToServer, *c.ctx, c.recv_seq++, what), what);
    switch (q.op) {
      case kSet:
        data[q.keys[0]] = std::move(q.value);
        reply(fd, wire::Writer().header(kOk));
        serve_pending();
        return;
      case kAdd: {
        int64_t v = static_cast<int64_t>(static_cast<uint64_t>(decode_int(data[q.keys[0]])) + static_cast<uint64_t>(q.delta));
        data[q.keys[0]] = encode_int(v);
        reply(fd, wire::Writer().header(kInt).i64(v));
        serve_pending();
        return;
      }
      case kGet:
      case kWait:
        pending.push_back({fd, q.op, std::move(q.keys), Clock::now() + std::chrono::milliseconds(q.timeout_ms)});
        serve_pending();
        return;
      default:
        throw ProtocolError(what + ": unknown operation");
    }
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
    std::vector<int> late;
    for (const auto& [fd, c] : conns)
      if (!c.ctx && c.handshake_deadline <= now) late.push_back(fd);
    for (int fd : late)
      refuse(fd, "no authenticated hello within " + seconds_text(handshake_time) + " (RDMACOLL_TIMEOUT) of connecting");
  }

  void send(int fd, const Bytes& msg) {
    net::send_frame(fd, msg, Clock::now() + std::chrono::seconds(10), conns.at(fd).peer);
  }

  void reply(int fd, wire::Writer& w) {
    auto it = conns.find(fd);
    if (it == conns.end()) return;
    try {
      auth::seal(w.data(), key, auth::Direction::ServerToClient, *it->second.ctx, it->second.send_seq++);
      send(fd, w.data());
    } catch (const Error& e) {
      RDMACOLL_WARN(kBoot, "TCP store: dropping %s: %s", it->second.peer.c_str(), e.what());
      drop(fd);
    }
  }
  void reply(int fd, wire::Writer&& w) { reply(fd, w); }
};

TcpStoreServer::TcpStoreServer(const std::string& host, uint16_t port, const std::string& token)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = host;
  impl_->handshake_time = std::chrono::milliseconds(
      static_cast<long long>(1000 * std::max(kMinHandshakeSeconds, settings::get_seconds("RDMACOLL_TIMEOUT"))));
  impl_->key = auth::key_of(token);
  impl_->listener = net::listen_tcp(host, port, &impl_->port);
  if (pipe2(impl_->wake, O_CLOEXEC) != 0) throw TransportError("pipe2 failed: " + net::errno_string(errno));
  RDMACOLL_INFO(kBoot, "TCP store serving on %s:%u (%s)", host.c_str(), impl_->port,
                impl_->key.from_token ? "job token required" : "no job token: unauthenticated");
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
  auth::Key key;
  auth::Context ctx;
  uint64_t send_seq = 0, recv_seq = 0;
  net::Fd fd;
  std::mutex mu;  // one request at a time on the connection

  void send(Bytes msg, Deadline deadline) {
    auth::seal(msg, key, auth::Direction::ClientToServer, ctx, send_seq++);
    net::send_frame(fd.get(), msg, deadline, peer);
  }
  Reply receive(Deadline deadline) {
    Bytes frame = net::recv_frame(fd.get(), deadline, peer);
    throw_if_refused(frame, peer);
    return parse_reply(auth::open(frame, key, auth::Direction::ServerToClient, ctx, recv_seq++, peer), peer);
  }
  Reply call(wire::Writer& w, Deadline reply_deadline) {
    send(std::move(w.data()), reply_deadline);
    return receive(reply_deadline);
  }
};

TcpStore::TcpStore(const std::string& host, uint16_t port, Deadline connect_deadline, const std::string& token)
    : impl_(std::make_unique<Impl>()) {
  impl_->host = host;
  impl_->port = port;
  impl_->peer = "rendezvous store " + host + ":" + std::to_string(port);
  impl_->key = auth::key_of(token);
  impl_->fd = net::connect_tcp(host, port, connect_deadline);
  // The handshake (store_proto.h): take the server's nonce, answer with ours, signed.
  Deadline d = std::max(connect_deadline, default_deadline());
  impl_->ctx.server_nonce =
      parse_server_hello(net::recv_frame(impl_->fd.get(), d, impl_->peer, kMaxHandshakeFrame), impl_->peer);
  impl_->ctx.client_nonce = auth::random_nonce();
  net::send_frame(impl_->fd.get(), client_hello(impl_->key, impl_->ctx.server_nonce, impl_->ctx.client_nonce), d,
                  impl_->peer);
  impl_->send_seq = 1;
  if (impl_->receive(d).type != kOk) throw ProtocolError(impl_->peer + ": unexpected reply to hello");
}

TcpStore::~TcpStore() = default;

std::string TcpStore::describe() const { return "tcp://" + impl_->host + ":" + std::to_string(impl_->port); }

void TcpStore::set(const std::string& key, std::span<const uint8_t> value) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kSet).str(key).bytes(value);
  if (impl_->call(w, default_deadline()).type != kOk) throw ProtocolError(impl_->peer + ": unexpected reply to set");
}

int64_t TcpStore::add(const std::string& key, int64_t delta) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kAdd).str(key).i64(delta);
  Reply reply = impl_->call(w, default_deadline());
  if (reply.type != kInt) throw ProtocolError(impl_->peer + ": unexpected reply to add");
  return reply.number;
}

namespace {
uint64_t ms_left(Deadline d) {
  return static_cast<uint64_t>(
      std::max<long long>(0, std::chrono::duration_cast<std::chrono::milliseconds>(d - Clock::now()).count()));
}
[[noreturn]] void timed_out(const Reply& r, const std::string& store) {
  std::string missing;
  for (size_t i = 0; i < r.missing.size() && i < 64; ++i) missing += (i ? ", " : "") + r.missing[i];
  throw TimeoutError("timed out waiting for key(s) " + missing + " in " + store);
}
}  // namespace

Bytes TcpStore::get(const std::string& key, Deadline deadline) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kGet).str(key).u64(ms_left(deadline));
  // The server answers at the deadline at the latest; allow it a margin to do so.
  Reply reply = impl_->call(w, deadline + std::chrono::seconds(5));
  if (reply.type == kTimedOut) timed_out(reply, describe());
  if (reply.type != kValue) throw ProtocolError(impl_->peer + ": unexpected reply to get");
  return std::move(reply.value);
}

void TcpStore::wait(const std::vector<std::string>& keys, Deadline deadline) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kWait).u64(keys.size());
  for (const auto& k : keys) w.str(k);
  w.u64(ms_left(deadline));
  Reply reply = impl_->call(w, deadline + std::chrono::seconds(5));
  if (reply.type == kTimedOut) timed_out(reply, describe());
  if (reply.type != kOk) throw ProtocolError(impl_->peer + ": unexpected reply to wait");
}

std::vector<std::string> TcpStore::missing(const std::vector<std::string>& keys) {
  std::lock_guard lock(impl_->mu);
  wire::Writer w;
  w.header(kWait).u64(keys.size());
  for (const auto& k : keys) w.str(k);
  w.u64(0);  // answered at once: OK, or the list of missing keys
  Reply reply = impl_->call(w, default_deadline());
  if (reply.type == kOk) return {};
  if (reply.type != kTimedOut) throw ProtocolError(impl_->peer + ": unexpected reply to wait");
  return std::move(reply.missing);
}

}  // namespace rdmacoll::bootstrap
