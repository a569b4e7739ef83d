#include "exec/control.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "rdmacoll/error.h"
#include "rdmacoll/log.h"

namespace rdmacoll::collectives::exec {
namespace {

// Tags beside the data's (run.cc: bit 38 and a 32-bit immediate) and the communicator's setup
// tag (below 2^32).
constexpr uint64_t kCheckTag = uint64_t{1} << 37;  // | the run's tag (16 bits)
constexpr uint64_t kRingCheckTag = kCheckTag | (uint64_t{1} << 35);  // | the call's sequence number, low 32 bits
constexpr uint64_t kControlTag = uint64_t{1} << 36;
uint64_t check_tag(uint16_t run_tag) { return kCheckTag | run_tag; }
uint64_t ring_tag(uint64_t seq) { return kRingCheckTag | (seq & 0xffff'ffffu); }

// Whether a send is over: completed, or failed (a dead peer; the data path reports that).
bool over(transport::Request& r) {
  try {
    return r.test();
  } catch (const std::exception&) {
    return true;
  }
}

}  // namespace

void Control::start(transport::Transport& t) {
  t_ = &t;
  const auto n = static_cast<std::size_t>(t.size());
  buffers_.assign(n, std::vector<uint8_t>(kMaxControl));
  recvs_.assign(n, transport::Request());
  for (int p = 0; p < t.size(); ++p)
    if (p != t.rank()) post(p);
}

void Control::post(int peer) {
  auto& b = buffers_[static_cast<std::size_t>(peer)];
  recvs_[static_cast<std::size_t>(peer)] = t_->recv(peer, kControlTag, b.data(), b.size());
}

namespace {
bool power_of_two(int n) { return n > 0 && (n & (n - 1)) == 0; }
int gray(int i) { return i ^ (i >> 1); }
int gray_index(int g) {  // the i with gray(i) == g
  int i = 0;
  for (; g != 0; g >>= 1) i ^= g;
  return i;
}
}  // namespace

int ring_next(int rank, int n) {
  if (!power_of_two(n)) return (rank + 1) % n;
  return gray((gray_index(rank) + 1) % n);
}

int ring_prev(int rank, int n) {
  if (!power_of_two(n)) return (rank + n - 1) % n;
  return gray((gray_index(rank) + n - 1) % n);
}

std::shared_ptr<Control::Pending> Control::post_ring(uint64_t seq, uint64_t digest) {
  // Room for a framed chunk behind it (send_ring), whatever this rank expects.
  auto p = post_check_recv(ring_prev(t_->rank(), t_->size()), ring_tag(seq), seq, digest, kCheckBytes + kFramedMax);
  p->ring = true;
  late_.push_back(p);
  return p;
}

transport::Request Control::send_ring(uint64_t seq, uint64_t digest, const void* data, std::size_t bytes) {
  return send_tagged(ring_next(t_->rank(), t_->size()), ring_tag(seq), seq, digest, data, bytes);
}

void Control::send_check(int peer, uint16_t tag, uint64_t seq, uint64_t digest) {
  send_check_tagged(peer, check_tag(tag), seq, digest);
}

std::shared_ptr<Control::Pending> Control::expect_check(int from, uint16_t tag, uint64_t seq, uint64_t digest) {
  prune_expected();
  expected_.push_back(post_check_recv(from, check_tag(tag), seq, digest));
  return expected_.back();
}

std::shared_ptr<Control::Pending> Control::expect_framed(int from, uint64_t tag, uint64_t seq, uint64_t digest,
                                                         std::size_t bytes) {
  prune_expected();
  // Room for any framed message, so one of another size (a peer that disagrees on the count)
  // arrives whole and is reported as the mismatch it is, not as a truncated receive.
  expected_.push_back(post_check_recv(from, framed_tag(tag), seq, digest, kCheckBytes + kFramedMax));
  expected_.back()->framed = true;
  expected_.back()->data_bytes = bytes;
  return expected_.back();
}

// Receives whose run is gone (use_count 1) and that are complete can go; one that never
// completes (a failed call) stays until the transport is gone.
void Control::prune_expected() {
  while (!expected_.empty() && expected_.front().use_count() == 1 && over(expected_.front()->recv)) {
    recycle(std::move(expected_.front()));
    expected_.pop_front();
  }
}

void Control::recycle(std::shared_ptr<Pending>&& p) {
  if (p && p.use_count() == 1 && spare_pending_.size() < kSpares) spare_pending_.push_back(std::move(p));
  p.reset();
}

void Control::send_check_tagged(int peer, uint64_t tag, uint64_t seq, uint64_t digest) {
  send_tagged(peer, tag, seq, digest, nullptr, 0);
}

transport::Request Control::send_framed(int peer, uint64_t tag, uint64_t seq, uint64_t digest, const void* data,
                                        std::size_t bytes) {
  return send_tagged(peer, framed_tag(tag), seq, digest, data, bytes);
}

transport::Request Control::send_tagged(int peer, uint64_t tag, uint64_t seq, uint64_t digest, const void* data,
                                        std::size_t bytes) {
  while (!sent_.empty() && over(sent_.front().req)) {
    if (spare_bytes_.size() < kSpares) spare_bytes_.push_back(std::move(sent_.front().bytes));
    sent_.pop_front();
  }
  Sent s;
  if (!spare_bytes_.empty()) s.bytes = std::move(spare_bytes_.back()), spare_bytes_.pop_back();
  s.bytes.reserve(std::max<std::size_t>(kCheckBytes + bytes, 64));  // a recycled buffer fits the next check
  s.bytes.resize(kCheckBytes + bytes);
  encode_check({seq, digest}, s.bytes.data());
  if (bytes > 0) std::memcpy(s.bytes.data() + kCheckBytes, data, bytes);
  s.req = t_->send(peer, tag, s.bytes.data(), s.bytes.size());
  transport::Request r = s.req;
  sent_.push_back(std::move(s));
  return r;
}

std::shared_ptr<Control::Pending> Control::post_check_recv(int from, uint64_t tag, uint64_t seq, uint64_t digest,
                                                           std::size_t room) {
  std::shared_ptr<Pending> p;
  if (!spare_pending_.empty()) {
    p = std::move(spare_pending_.back());
    spare_pending_.pop_back();
    std::vector<uint8_t> buffer = std::move(p->buffer);
    *p = Pending{};
    p->buffer = std::move(buffer);
  } else {
    p = std::make_shared<Pending>();
  }
  p->seq = seq, p->digest = digest, p->from = from;
  p->buffer.resize(room);  // room to see a longer (malformed) message as such
  p->recv = t_->recv(from, tag, p->buffer.data(), p->buffer.size());
  return p;
}

std::optional<bool> Control::checked(Pending& p) {
  if (!p.recv.test()) return std::nullopt;
  std::string why;
  const std::size_t got = p.recv.bytes();
  // Framed: the check is the message's first kCheckBytes; the chunk follows.
  const std::size_t check = p.framed || p.ring ? std::min(got, kCheckBytes) : got;
  const auto m = parse_check(std::span<const uint8_t>(p.buffer.data(), check), &why);
  if (!m)
    throw ProtocolError("rdmacoll: rank " + std::to_string(t_->rank()) + ": bad argument check from rank " +
                        std::to_string(p.from) + " for call #" + std::to_string(p.seq) + ": " + why);
  const bool same = m->seq == p.seq && m->digest == p.digest;
  if (same && p.framed && got != kCheckBytes + p.data_bytes)
    throw ProtocolError("rdmacoll: rank " + std::to_string(t_->rank()) + ": the chunk from rank " +
                        std::to_string(p.from) + " behind its matching argument check for call #" +
                        std::to_string(p.seq) + " has " + std::to_string(got - kCheckBytes) + " bytes where " +
                        std::to_string(p.data_bytes) + " were expected (mismatched rdmacoll builds?)");
  return same;
}

std::shared_ptr<Control::Pending> Control::late_mismatch() {
  std::shared_ptr<Pending> bad;
  std::erase_if(late_, [&](std::shared_ptr<Pending>& p) {
    if (bad) return false;
    std::optional<bool> same;
    try {
      same = checked(*p);
    } catch (const std::exception&) {
      return true;  // the peer is gone or spoke nonsense: the data path reports that
    }
    if (!same) return false;
    if (!*same) bad = p;
    else recycle(std::move(p));
    return true;
  });
  return bad;
}

std::vector<std::pair<int, ControlMessage>> Control::poll() {
  std::vector<std::pair<int, ControlMessage>> out;
  if (!t_) return out;
  for (int p = 0; p < t_->size(); ++p) {
    auto& r = recvs_[static_cast<std::size_t>(p)];
    if (!r.valid()) continue;
    bool done = false;
    try {
      done = r.test();
    } catch (const std::exception& e) {
      // The peer is gone (its endpoint failed): the data path reports that where it matters.
      RDMACOLL_DEBUG(kColl, "control receive from rank %d failed: %s", p, e.what());
      r = transport::Request();
      continue;
    }
    if (!done) continue;
    std::string why;
    const auto& b = buffers_[static_cast<std::size_t>(p)];
    auto m = parse_control(std::span<const uint8_t>(b.data(), r.bytes()), &why);
    post(p);
    if (!m) {
      RDMACOLL_WARN(kColl, "rank %d: ignored a malformed control message from rank %d: %s", t_->rank(), p, why.c_str());
      continue;
    }
    out.emplace_back(p, std::move(*m));
  }
  return out;
}

void Control::listen(bootstrap::Deadline deadline, const std::function<bool(int, const ControlMessage&)>& take,
                     const std::function<bool()>& done) {
  while (!done() && bootstrap::Clock::now() < deadline) {
    bool wanted = false;
    for (auto& [from, m] : poll()) wanted = take(from, m) || wanted;
    if (!wanted) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::vector<transport::Request> Control::send_all(const ControlMessage& m) {
  std::vector<transport::Request> sends;
  if (!t_) return sends;
  const std::vector<uint8_t> bytes = encode_control(m);
  for (int p = 0; p < t_->size(); ++p) {
    if (p == t_->rank()) continue;
    Sent s{bytes, {}};
    try {
      s.req = t_->send(p, kControlTag, s.bytes.data(), s.bytes.size());
      sends.push_back(s.req);
      sent_.push_back(std::move(s));
    } catch (const std::exception& e) {
      RDMACOLL_DEBUG(kColl, "control message to rank %d not sent: %s", p, e.what());
    }
  }
  return sends;
}

void Control::flush(std::vector<transport::Request>& sends, bootstrap::Deadline deadline) {
  // Best effort: a dead peer's send fails or never completes; the live ones leave at once.
  // What is still in flight stays in sent_ (its bytes alive until the transport is gone). Tested,
  // not waited: a wait that runs out composes a timeout error with the connection's report
  // (sysfs reads, a tenth of a second in a TCG guest), which nobody here would read.
  while (!sends.empty()) {
    std::erase_if(sends, [](transport::Request& r) {
      try {
        return r.test();
      } catch (const std::exception& e) {
        RDMACOLL_DEBUG(kColl, "control message not delivered: %s", e.what());
        return true;
      }
    });
    if (sends.empty() || bootstrap::Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  if (!sends.empty()) RDMACOLL_DEBUG(kColl, "%zu control message(s) not delivered within the grace", sends.size());
}

void Control::broadcast(const ControlMessage& m, double grace) {
  auto sends = send_all(m);
  flush(sends, bootstrap::deadline_in(grace));
}

}  // namespace rdmacoll::collectives::exec
