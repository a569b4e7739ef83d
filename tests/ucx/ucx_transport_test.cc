// The UCX backend of Transport between processes: tagged messages of every size both ways,
// writes with and without immediate, truncation, counters, a dead peer, three ranks all-pairs;
// over tcp and shared memory, wired up by worker address and through listeners (sockaddr).
// The "env" variant leaves UCX_TLS / UCX_NET_DEVICES / RDMACOLL_UCX_WIREUP as the caller set
// them: that is how the soft-RoCE guest runs it over rc_verbs on rxe0.
#include "ucx/ucx_transport.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"
#include "support/env.h"
#include "support/multiproc.h"
#include "support/pattern.h"
#include "ucx/ucx_tags.h"

namespace rdmacoll::transport {
namespace {

using rdmacoll::testing::RankGroup;
using rdmacoll::testing::ScopedEnv;

struct Variant {
  std::string name;
  const char* tls;  // nullptr with `keep`: leave the environment alone
  const char* devices;
  const char* wireup;
  bool keep = false;
};

const Variant kVariants[] = {
    {"env", nullptr, nullptr, nullptr, true},
    {"tcp", "tcp,self", "lo", "address"},
    {"shm", "sm,self", nullptr, "address"},
    {"tcp_sockaddr", "tcp,self", "lo", "sockaddr"},
    // No shm_sockaddr: UCX 1.13 needs peer failure handling for client-server endpoints, which
    // its shared-memory transports lack (ucp_ep_create fails with "Destination is unreachable").
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.name; }

class UcxTransportMultiRank : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    const Variant& v = GetParam();
    env_.push_back(std::make_unique<ScopedEnv>("RDMACOLL_TRANSPORT", "ucx"));
    if (v.keep) return;
    env_.push_back(std::make_unique<ScopedEnv>("UCX_TLS", v.tls));
    env_.push_back(std::make_unique<ScopedEnv>("UCX_NET_DEVICES", v.devices));
    env_.push_back(std::make_unique<ScopedEnv>("RDMACOLL_UCX_WIREUP", v.wireup));
  }
  static std::unique_ptr<Transport> create(RankGroup& g, ProgressMode mode) {
    Options o = Options::from_settings();
    o.backend = Backend::Ucx;
    o.progress = mode;
    return Transport::create(g.world(), o);
  }
  std::vector<std::unique_ptr<ScopedEnv>> env_;
};

using rdmacoll::testing::count_wrong;
using rdmacoll::testing::pattern;

const std::vector<size_t>& kSizes = rdmacoll::testing::kTransferSizes;

TEST_P(UcxTransportMultiRank, TaggedEverySizeBothWays) {
  RankGroup g(2);
  auto t = create(g, ProgressMode::Adaptive);
  const int me = g.rank(), peer = 1 - me;
  EXPECT_EQ(t->describe().rfind("ucx ", 0), 0u) << t->describe();
  if (me == 0) std::printf("[ %s ] %s\n", GetParam().name.c_str(), t->describe().c_str());
  std::vector<uint8_t> out(kSizes.back()), in(kSizes.back() + 1);
  for (size_t k = 0; k < kSizes.size(); ++k) {
    const size_t size = kSizes[k];
    for (size_t i = 0; i < size; ++i) out[i] = pattern(i, size, me, peer);
    std::memset(in.data(), 0xee, size + 1);
    Request r = t->recv(peer, k, in.data(), size);
    Request s = t->send(peer, k, out.data(), size);
    s.wait();
    r.wait();
    EXPECT_EQ(s.bytes(), size);
    EXPECT_EQ(r.bytes(), size);
    EXPECT_EQ(count_wrong(in.data(), size, peer, me), 0u) << "size " << size;
    EXPECT_EQ(in[size], 0xee) << "size " << size << ": wrote past the message";
  }
  // Every byte and message is counted, the same on both sides.
  const uint64_t total = std::accumulate(kSizes.begin(), kSizes.end(), uint64_t{0});
  PeerCounters c = t->counters(peer);
  EXPECT_EQ(c.bytes_sent, total);
  EXPECT_EQ(c.bytes_received, total);
  EXPECT_EQ(c.messages_sent, kSizes.size());
  EXPECT_EQ(c.messages_received, kSizes.size());
  PeerCounters self = t->counters(me);
  EXPECT_EQ(self.bytes_sent + self.bytes_received, 0u);
  // User tags must fit beside the source rank.
  EXPECT_THROW(t->send(peer, ucx::tags::kMaxUserTag + 1, out.data(), 1), std::invalid_argument);
  EXPECT_THROW(t->recv(peer, uint64_t{1} << 63, in.data(), 1), std::invalid_argument);
  // The same tag from two senders: each receive gets its own sender's message (here: self and peer).
  uint32_t from_self = 0, from_peer = 0, mine = 0x5e1f0000u + static_cast<uint32_t>(me);
  Request a = t->recv(me, 77, &from_self, 4), b = t->recv(peer, 77, &from_peer, 4);
  t->send(peer, 77, &mine, 4).wait();
  t->send(me, 77, &mine, 4).wait();
  a.wait();
  b.wait();
  EXPECT_EQ(from_self, mine);
  EXPECT_EQ(from_peer, 0x5e1f0000u + static_cast<uint32_t>(peer));
  bootstrap::barrier(g.store(), "ucxt/tag/done", me, 2, g.deadline());
  t.reset();
  g.join();
}

TEST_P(UcxTransportMultiRank, WritesWithAndWithoutImmediate) {
  RankGroup g(2);
  auto t = create(g, ProgressMode::Poll);
  const int me = g.rank(), peer = 1 - me;
  const size_t big = (size_t{1} << 20) + 3, small = 4095;
  std::vector<uint8_t> window(big + small + 64, 0), src_big(big), src_small(small);
  for (size_t i = 0; i < big; ++i) src_big[i] = pattern(i, big, me, peer);
  for (size_t i = 0; i < small; ++i) src_small[i] = pattern(i, small, me, peer);
  Memory win = t->register_memory(window.data(), window.size(), kRemoteWrite);
  auto descs = bootstrap::all_gather(g.store(), "ucxt/win", me, 2, t->pack_window(win), g.deadline());
  RemoteWindow dst = t->unpack_window(peer, descs[static_cast<size_t>(peer)]);
  EXPECT_EQ(dst.length(), window.size());
  EXPECT_EQ(dst.rank(), peer);

  // Without immediate, then with: the notification may only arrive once both writes landed.
  Request n1 = t->notification(peer);
  Request w1 = t->write(peer, src_big.data(), big, dst, 0, std::nullopt);
  Request w2 = t->write(peer, src_small.data(), small, dst, big + 5, 0xC0FFEEu);
  w1.wait();
  w2.wait();
  EXPECT_EQ(w1.bytes(), big);
  EXPECT_EQ(n1.wait_value(), 0xC0FFEEu);
  EXPECT_EQ(n1.bytes(), small);
  EXPECT_EQ(count_wrong(window.data(), big, peer, me), 0u);
  EXPECT_EQ(count_wrong(window.data() + big + 5, small, peer, me), 0u);
  EXPECT_EQ(window[big + 4], 0);
  EXPECT_EQ(window[big + 5 + small], 0);

  // Notifications arrive in order; a zero-length write carries just the immediate.
  std::vector<Request> notes;
  for (int i = 0; i < 3; ++i) notes.push_back(t->notification(peer));
  for (uint32_t i = 0; i < 3; ++i) t->write(peer, src_small.data(), i, dst, big + small + 8, 100 + i).wait();
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(notes[i].wait_value(), 100 + i);

  // Writing into one's own window goes through the same path.
  Memory own = t->register_memory(window.data(), window.size(), kRemoteWrite);
  RemoteWindow self = t->unpack_window(me, t->pack_window(own));
  std::vector<uint8_t> mark(16, 0xab);
  Request ns = t->notification(me);
  t->write(me, mark.data(), mark.size(), self, window.size() - 16, 9u).wait();
  EXPECT_EQ(ns.wait_value(), 9u);
  EXPECT_EQ(window[window.size() - 1], 0xab);

  // A write outside the window is refused before anything moves.
  EXPECT_THROW(t->write(peer, src_small.data(), 65, dst, window.size() - 64, std::nullopt), std::out_of_range);
  // Counters: every write here carried an immediate except the first; notifications carry
  // their write's length, so both sides agree on what landed.
  PeerCounters c = t->counters(peer);
  const uint64_t with_imm = small + 0 + 1 + 2, notes_bytes = 4 * 12;
  EXPECT_EQ(c.bytes_sent, big + with_imm + notes_bytes);
  EXPECT_EQ(c.messages_sent, 5u);
  EXPECT_EQ(c.bytes_received, with_imm + notes_bytes);
  EXPECT_EQ(c.messages_received, 4u);
  bootstrap::barrier(g.store(), "ucxt/win/done", me, 2, g.deadline());
  t.reset();
  g.join();
}

TEST_P(UcxTransportMultiRank, ShortReceiveBufferNamesBothSizes) {
  RankGroup g(2);
  auto t = create(g, ProgressMode::Adaptive);
  const int me = g.rank(), peer = 1 - me;
  for (size_t size : {size_t{4096}, size_t{1} << 20}) {  // eager and rendezvous
    std::vector<uint8_t> out(size, 1), in(100);
    if (me == 0) {
      try {
        t->send(peer, 3, out.data(), size).wait();  // completes or fails, but never hangs
      } catch (const TransportError& e) {
        std::printf("sender of %zu bytes: %s\n", size, e.what());
      }
    } else {
      try {
        t->recv(peer, 3, in.data(), in.size()).wait();
        ADD_FAILURE() << size << " bytes into a 100-byte buffer did not fail";
      } catch (const TransportError& e) {
        std::string what = e.what();
        EXPECT_NE(what.find(std::to_string(size)), std::string::npos) << what;
        EXPECT_NE(what.find("100"), std::string::npos) << what;
        EXPECT_NE(what.find("rank 0"), std::string::npos) << what;
      }
    }
    bootstrap::barrier(g.store(), "ucxt/short/" + std::to_string(size), me, 2, g.deadline());
  }
  // The connection is still good afterwards.
  uint32_t x = 42 + static_cast<uint32_t>(me), y = 0;
  Request r = t->recv(peer, 4, &y, 4);
  t->send(peer, 4, &x, 4).wait();
  r.wait();
  EXPECT_EQ(y, 42u + static_cast<uint32_t>(peer));
  bootstrap::barrier(g.store(), "ucxt/short/done", me, 2, g.deadline());
  t.reset();
  g.join();
}

TEST_P(UcxTransportMultiRank, DeadPeerFailsItsReceives) {
  RankGroup g(2);
  auto t = create(g, ProgressMode::Block);
  const int me = g.rank();
  // UCX 1.13's shared-memory transports have no peer failure handling (both ranks see that).
  if (t->describe().find("no peer failure detection") != std::string::npos) {
    bootstrap::barrier(g.store(), "ucxt/dead/skip", me, 2, g.deadline());
    t.reset();
    g.join();
    GTEST_SKIP() << "no peer failure detection: " << GetParam().name;
  }
  if (me == 1) {
    g.join();
    std::_Exit(0);  // gone without closing anything, like a crash
  }
  g.join();
  uint32_t v = 0;
  Request r = t->recv(1, 5, &v, 4);
  auto start = bootstrap::Clock::now();
  try {
    r.wait(bootstrap::deadline_in(30));
    ADD_FAILURE() << "a receive from a dead rank completed";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1"), std::string::npos) << e.what();
  }
  EXPECT_LT(bootstrap::Clock::now() - start, std::chrono::seconds(20));
  // Later operations to it fail at once, naming it.
  EXPECT_THROW(t->send(1, 5, &v, 4).wait(bootstrap::deadline_in(1)), TransportError);
}

TEST_P(UcxTransportMultiRank, ThreeRanksAllPairs) {
  const int n = 3;
  RankGroup g(n);
  auto start = bootstrap::Clock::now();
  auto t = create(g, ProgressMode::Block);
  auto connected = bootstrap::Clock::now();
  const int me = g.rank();
  auto size_of = [](int from, int to) { return size_t{1000} + static_cast<size_t>(from * 70001 + to * 3001); };
  std::vector<std::vector<uint8_t>> out(n), in(n);
  std::vector<Request> reqs;
  for (int p = 0; p < n; ++p) {
    out[static_cast<size_t>(p)].resize(size_of(me, p));
    for (size_t i = 0; i < out[static_cast<size_t>(p)].size(); ++i)
      out[static_cast<size_t>(p)][i] = pattern(i, size_of(me, p), me, p);
    in[static_cast<size_t>(p)].resize(size_of(p, me));
    reqs.push_back(t->recv(p, 11, in[static_cast<size_t>(p)].data(), in[static_cast<size_t>(p)].size()));
  }
  for (int p = n - 1; p >= 0; --p) reqs.push_back(t->send(p, 11, out[static_cast<size_t>(p)].data(), size_of(me, p)));
  for (auto& r : reqs) r.wait();
  for (int p = 0; p < n; ++p)
    EXPECT_EQ(count_wrong(in[static_cast<size_t>(p)].data(), size_of(p, me), p, me), 0u) << "from rank " << p;

  // One-sided too: every rank writes its slot of every rank's window, with an immediate.
  const size_t slot = 65536 + 7;
  std::vector<uint8_t> window(slot * n, 0), src(slot);
  for (size_t i = 0; i < slot; ++i) src[i] = pattern(i, slot, me, 0);
  Memory win = t->register_memory(window.data(), window.size(), kRemoteWrite);
  auto descs = bootstrap::all_gather(g.store(), "ucxt/3/win", me, n, t->pack_window(win), g.deadline());
  std::vector<Request> notes, writes;
  std::vector<RemoteWindow> dsts;
  for (int p = 0; p < n; ++p) {
    notes.push_back(t->notification(p));
    dsts.push_back(t->unpack_window(p, descs[static_cast<size_t>(p)]));
  }
  for (int p = 0; p < n; ++p)
    writes.push_back(t->write(p, src.data(), slot, dsts[static_cast<size_t>(p)], slot * static_cast<size_t>(me),
                              static_cast<uint32_t>(me * 10 + p)));
  for (auto& w : writes) w.wait();
  for (int p = 0; p < n; ++p) {
    EXPECT_EQ(notes[static_cast<size_t>(p)].wait_value(), static_cast<uint32_t>(p * 10 + me));
    EXPECT_EQ(count_wrong(window.data() + slot * static_cast<size_t>(p), slot, p, 0), 0u) << "slot of rank " << p;
  }
  if (me == 0)
    std::printf("[ %s ] 3 ranks: connected in %.0f ms, exchanged in %.0f ms (block progress)\n",
                GetParam().name.c_str(), std::chrono::duration<double, std::milli>(connected - start).count(),
                std::chrono::duration<double, std::milli>(bootstrap::Clock::now() - connected).count());
  for (int p = 0; p < n; ++p) {
    PeerCounters c = t->counters(p);
    EXPECT_EQ(c.bytes_sent, size_of(me, p) + slot + 12) << "to rank " << p;
    EXPECT_EQ(c.bytes_received, size_of(p, me) + slot + 12) << "from rank " << p;
  }
  bootstrap::barrier(g.store(), "ucxt/3/done", me, n, g.deadline());
  t.reset();
  g.join();
}

INSTANTIATE_TEST_SUITE_P(Ucx, UcxTransportMultiRank, ::testing::ValuesIn(kVariants),
                         [](const auto& p) { return p.param.name; });

TEST(UcxTransportWireup, RanksThatDisagreeGetAConfigError) {
  ScopedEnv tls("UCX_TLS", "tcp,self"), nets("UCX_NET_DEVICES", "lo"), backend("RDMACOLL_TRANSPORT", "ucx");
  RankGroup g(2);
  ScopedEnv mode("RDMACOLL_UCX_WIREUP", g.rank() == 0 ? "address" : "sockaddr");
  try {
    auto t = Transport::create(g.world());
    ADD_FAILURE() << "ranks wired up differently, yet the transport connected";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RDMACOLL_UCX_WIREUP"), std::string::npos) << e.what();
  }
  g.join();
}

// ---- no network ----------------------------------------------------------------------------

TEST(UcxTransportWireup, AutoPicksSockaddrOnlyForRxe) {
  using std::nullopt;
  const std::vector<std::string> rxe = {"rxe0"}, mlx = {"mlx5_0"}, none = {};
  EXPECT_EQ(choose_ucx_wireup("address", nullopt, std::string("rxe0:1"), rxe), UcxWireup::Address);
  EXPECT_EQ(choose_ucx_wireup("sockaddr", nullopt, nullopt, none), UcxWireup::Sockaddr);
  EXPECT_EQ(choose_ucx_wireup("auto", std::string("rc_verbs,self"), std::string("rxe0:1"), rxe), UcxWireup::Sockaddr);
  EXPECT_EQ(choose_ucx_wireup("auto", std::string("tcp,self"), std::string("lo"), rxe), UcxWireup::Address);
  EXPECT_EQ(choose_ucx_wireup("auto", nullopt, nullopt, rxe), UcxWireup::Sockaddr);
  EXPECT_EQ(choose_ucx_wireup("auto", std::string("rc"), nullopt, rxe), UcxWireup::Sockaddr);
  EXPECT_EQ(choose_ucx_wireup("auto", std::string("^tcp"), std::string("all"), rxe), UcxWireup::Sockaddr);
  EXPECT_EQ(choose_ucx_wireup("auto", std::string("sm,self"), nullopt, rxe), UcxWireup::Address);
  EXPECT_EQ(choose_ucx_wireup("auto", nullopt, nullopt, mlx), UcxWireup::Address);
  EXPECT_EQ(choose_ucx_wireup("auto", nullopt, nullopt, none), UcxWireup::Address);
  EXPECT_EQ(choose_ucx_wireup("auto", nullopt, std::string("mlx5_0:1,rxe1:1"), mlx), UcxWireup::Sockaddr);
  EXPECT_THROW(choose_ucx_wireup("listener", nullopt, nullopt, none), ConfigError);
}

TEST(UcxTransportWireup, RdmaUseFollowsUcxVariables) {
  using std::nullopt;
  const std::vector<std::string> rxe = {"rxe0"}, none = {};
  EXPECT_TRUE(ucx_uses_rdma(std::string("rc_verbs,self"), std::string("rxe0:1"), rxe));
  EXPECT_FALSE(ucx_uses_rdma(std::string("tcp,self"), std::string("lo"), rxe));
  EXPECT_TRUE(ucx_uses_rdma(nullopt, nullopt, rxe));
  EXPECT_FALSE(ucx_uses_rdma(nullopt, nullopt, none));
  EXPECT_FALSE(ucx_uses_rdma(std::string("sm,self"), nullopt, rxe));
  EXPECT_TRUE(ucx_uses_rdma(std::string("ud_verbs"), nullopt, rxe));
}

TEST(UcxTransportTags, SourceRankAndInternalSpaceNeverCollide) {
  namespace tags = ucx::tags;
  EXPECT_EQ(tags::source_of(tags::user(5, 3)), 3);
  EXPECT_EQ(tags::source_of(tags::internal(tags::Internal::Notification, 7)), 7);
  EXPECT_NE(tags::user(5, 3), tags::user(5, 4));
  EXPECT_NE(tags::user(tags::kMaxUserTag, 1) & tags::kInternal, tags::kInternal);
  EXPECT_NE(tags::user(1, 2), tags::internal(tags::Internal::Notification, 2));
  EXPECT_NO_THROW(tags::user(tags::kMaxUserTag, tags::kMaxRanks - 1));
  EXPECT_THROW(tags::user(tags::kMaxUserTag + 1, 0), std::invalid_argument);
}

}  // namespace
}  // namespace rdmacoll::transport
