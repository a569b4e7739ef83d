// Transport conformance: every backend must move every byte of every size correctly, tagged
// and one-sided, between processes; cache registrations; and fail with a clear, timely error
// when a peer never shows up or memory cannot be pinned.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <numeric>

#include "rdmacoll/error.h"
#include "rdmacoll/transport/ib_info.h"
#include "rdmacoll/transport/transport.h"
#include "support/env.h"
#include "support/multiproc.h"
#include "support/pattern.h"

namespace rdmacoll::transport {
namespace {

using rdmacoll::testing::RankGroup;
using rdmacoll::testing::ScopedEnv;

// A backend configuration: the transport and the environment that selects its lanes.
struct Config {
  std::string name;
  const char* transport;
  const char* ucx_tls;
  const char* ucx_devices;
  bool needs_rdma;
};

#if defined(CONFORMANCE_HOST)
const Config kConfigs[] = {{"ucx_tcp", "ucx", "tcp,self", "lo", false}, {"ucx_shm", "ucx", "sm,self", nullptr, false}};
#else
const Config kConfigs[] = {{"verbs", "verbs", nullptr, nullptr, true},
                           {"ucx_rc_verbs", "ucx", "rc_verbs,self", "rxe0:1", true}};
#endif

bool have_rdma() {
  for (const auto& d : ib::list_devices())
    for (const auto& p : d.ports)
      if (p.active) return true;
  return false;
}

class Conformance : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    const Config& c = GetParam();
    if (c.needs_rdma && !have_rdma()) {
      if (rdmacoll::testing::require_rdma_device()) FAIL() << "no RDMA device, but REQUIRE_RDMA_DEVICE=1";
      GTEST_SKIP() << "no RDMA device on this host; runs in the soft-RoCE guest";
    }
    if (c.ucx_devices && std::string(c.ucx_devices).starts_with("rxe")) {
      // UCX on rxe needs the device UCX is told about; take the selected one.
      auto sel = ib::select_from_settings(ib::list_devices());
      devices_ = sel.device + ":" + std::to_string(sel.port);
    } else if (c.ucx_devices) {
      devices_ = c.ucx_devices;
    }
    env_.emplace_back(std::make_unique<ScopedEnv>("RDMACOLL_TRANSPORT", c.transport));
    env_.emplace_back(std::make_unique<ScopedEnv>("UCX_TLS", c.ucx_tls));
    env_.emplace_back(std::make_unique<ScopedEnv>("UCX_NET_DEVICES", devices_.empty() ? nullptr : devices_.c_str()));
  }
  std::string devices_;
  std::vector<std::unique_ptr<ScopedEnv>> env_;
};

using rdmacoll::testing::count_wrong;
using rdmacoll::testing::pattern;

const std::vector<size_t>& kSizes = rdmacoll::testing::kTransferSizes;

TEST_P(Conformance, MultiRankTaggedMessagesEverySize) {
  RankGroup g(2);
  auto t = Transport::create(g.world());
  const int me = g.rank(), peer = 1 - me;
  std::vector<uint8_t> out(kSizes.back()), in(kSizes.back() + 16);
  for (size_t k = 0; k < kSizes.size(); ++k) {
    size_t size = kSizes[k];
    for (size_t i = 0; i < size; ++i) out[i] = pattern(i, size, me, peer);
    std::memset(in.data(), 0xee, size + 16);
    Request r = t->recv(peer, 100 + k, in.data(), size + 16);  // a larger buffer is fine
    Request s = t->send(peer, 100 + k, out.data(), size);
    s.wait();
    r.wait();
    EXPECT_EQ(r.bytes(), size);
    EXPECT_EQ(count_wrong(in.data(), size, peer, me), 0u) << "size " << size << " over " << t->describe();
    EXPECT_EQ(in[size], 0xee) << "wrote past the message";
  }
  // Messages with different tags match their own receives, whatever the arrival order.
  uint32_t a = 0xaaaa0000u + static_cast<uint32_t>(me), b = 0xbbbb0000u + static_cast<uint32_t>(me), ra = 0, rb = 0;
  Request sb = t->send(peer, 2, &b, 4), sa = t->send(peer, 1, &a, 4);
  Request rqa = t->recv(peer, 1, &ra, 4), rqb = t->recv(peer, 2, &rb, 4);
  sa.wait(), sb.wait(), rqa.wait(), rqb.wait();
  EXPECT_EQ(ra, 0xaaaa0000u + static_cast<uint32_t>(peer));
  EXPECT_EQ(rb, 0xbbbb0000u + static_cast<uint32_t>(peer));
  PeerCounters c = t->counters(peer);
  EXPECT_GE(c.bytes_sent, std::accumulate(kSizes.begin(), kSizes.end(), size_t{0}));
  EXPECT_GE(c.bytes_received, std::accumulate(kSizes.begin(), kSizes.end(), size_t{0}));
  bootstrap::barrier(g.store(), "conf/tag/done", me, 2, g.deadline());
  t.reset();
  g.join();
}

TEST_P(Conformance, MultiRankWriteWithImmediateEverySize) {
  RankGroup g(2);
  auto t = Transport::create(g.world());
  const int me = g.rank(), peer = 1 - me;
  std::vector<uint8_t> window(kSizes.back() + 64), src(kSizes.back());
  Memory win = t->register_memory(window.data(), window.size(), kRemoteWrite);
  auto descs = bootstrap::all_gather(g.store(), "conf/win", me, 2, t->pack_window(win), g.deadline());
  RemoteWindow dst = t->unpack_window(peer, descs[static_cast<size_t>(peer)]);
  EXPECT_EQ(dst.length(), window.size());
  for (size_t k = 0; k < kSizes.size(); ++k) {
    size_t size = kSizes[k];
    const size_t offset = 7;  // unaligned on purpose
    for (size_t i = 0; i < size; ++i) src[i] = pattern(i, size, me, peer);
    Request n = t->notification(peer);
    t->write(peer, src.data(), size, dst, offset, static_cast<uint32_t>(1000 + k)).wait();
    EXPECT_EQ(n.wait_value(), 1000 + k);
    EXPECT_EQ(count_wrong(window.data() + offset, size, peer, me), 0u) << "size " << size << " over " << t->describe();
    // The writer may reuse the window only after its owner checked it.
    bootstrap::barrier(g.store(), "conf/win/" + std::to_string(k), me, 2, g.deadline());
  }
  // A write past the end of the window is refused before anything moves.
  EXPECT_THROW(t->write(peer, src.data(), 65, dst, window.size() - 64, std::nullopt), std::out_of_range);
  bootstrap::barrier(g.store(), "conf/win/done", me, 2, g.deadline());
  t.reset();
  g.join();
}

TEST_P(Conformance, MultiRankShortReceiveBufferIsAnError) {
  RankGroup g(2);
  auto t = Transport::create(g.world());
  const int me = g.rank(), peer = 1 - me;
  for (size_t size : {size_t{100}, size_t{1} << 20}) {  // eager and rendezvous sizes
    std::vector<uint8_t> out(size, 1), in(size / 2);
    if (me == 0) {
      Request s = t->send(peer, 9, out.data(), size);
      try {
        s.wait();  // may complete or fail, depending on the protocol
      } catch (const TransportError&) {
      }
    } else {
      Request r = t->recv(peer, 9, in.data(), in.size());
      try {
        r.wait();
        ADD_FAILURE() << "a " << size << "-byte message into a " << in.size() << "-byte buffer did not fail";
      } catch (const TransportError& e) {
        EXPECT_NE(std::string(e.what()).find(std::to_string(size)), std::string::npos) << e.what();
      }
    }
    bootstrap::barrier(g.store(), "conf/short/" + std::to_string(size), me, 2, g.deadline());
  }
  t.reset();
  g.join();
}

TEST_P(Conformance, ThreeRanksAllPairs) {
  RankGroup g(3);
  auto t = Transport::create(g.world());
  const int me = g.rank(), n = 3;
  const size_t size = 12345;
  std::vector<std::vector<uint8_t>> out(n, std::vector<uint8_t>(size)), in(n, std::vector<uint8_t>(size));
  std::vector<Request> reqs;
  for (int p = 0; p < n; ++p) {
    for (size_t i = 0; i < size; ++i) out[static_cast<size_t>(p)][i] = pattern(i, size, me, p);
    reqs.push_back(t->recv(p, 5, in[static_cast<size_t>(p)].data(), size));
  }
  for (int p = 0; p < n; ++p) reqs.push_back(t->send(p, 5, out[static_cast<size_t>(p)].data(), size));
  for (auto& r : reqs) r.wait();
  for (int p = 0; p < n; ++p) EXPECT_EQ(count_wrong(in[static_cast<size_t>(p)].data(), size, p, me), 0u) << "from " << p;
  bootstrap::barrier(g.store(), "conf/3/done", me, n, g.deadline());
  t.reset();
  g.join();
}

// Four ranks on this two-core machine pass messages round a ring in each progress mode. Poll
// mode makes waiting ranks spin on cores the others need; block and adaptive sleep instead.
// The test proves all three stay correct and finish; bench/progress_modes.sh measures them.
void four_rank_ring(const char* mode) {
  ScopedEnv progress("RDMACOLL_PROGRESS", mode);
  RankGroup g(4);
  auto t = Transport::create(g.world());
  const int me = g.rank(), n = 4, right = (me + 1) % n, left = (me + n - 1) % n;
  const size_t size = 4096;
  std::vector<uint8_t> out(size), in(size);
  for (int it = 0; it < 100; ++it) {
    for (size_t i = 0; i < size; ++i) out[i] = pattern(i, size, me, it);
    Request r = t->recv(left, static_cast<uint64_t>(it), in.data(), size);
    t->send(right, static_cast<uint64_t>(it), out.data(), size).wait();
    r.wait();
    ASSERT_EQ(count_wrong(in.data(), size, left, it), 0u) << "iteration " << it << " in " << mode << " mode";
  }
  bootstrap::barrier(g.store(), std::string("conf/ring/") + mode, me, n, g.deadline());
  t.reset();
  g.join();
}

TEST_P(Conformance, FourRanksRingPollMode) { four_rank_ring("poll"); }
TEST_P(Conformance, FourRanksRingBlockMode) { four_rank_ring("block"); }
TEST_P(Conformance, FourRanksRingAdaptiveMode) { four_rank_ring("adaptive"); }

// A world of one: registration needs no peer.
std::unique_ptr<Transport> solo(bootstrap::World& world) {
  world.info.rank = 0;
  world.info.world_size = 1;
  world.info.host = "127.0.0.1";
  world.server = std::make_unique<bootstrap::TcpStoreServer>("127.0.0.1", 0);
  world.store = std::make_unique<bootstrap::TcpStore>("127.0.0.1", world.server->port(), bootstrap::deadline_in(5));
  return Transport::create(world);
}

TEST_P(Conformance, RegistrationCacheHitsAndInvalidation) {
  bootstrap::World world;
  auto t = solo(world);
  auto buf = std::make_unique<std::vector<uint8_t>>(size_t{4} << 20);
  CacheStats before = t->cache_stats();
  Memory a = t->register_memory(buf->data(), buf->size(), kRemoteWrite);
  Memory b = t->register_memory(buf->data() + 4096, 8192, kRemoteWrite);  // inside a: a hit
  CacheStats mid = t->cache_stats();
  EXPECT_EQ(mid.misses, before.misses + 1);
  EXPECT_EQ(mid.hits, before.hits + 1);
  void* old = buf->data();
  a = Memory();
  b = Memory();
  buf.reset();  // freed: the entry must go
  EXPECT_GT(t->cache_stats().invalidations, mid.invalidations);
  // Memory now at the same address (if the allocator reuses it) is registered afresh.
  auto again = std::make_unique<std::vector<uint8_t>>(size_t{4} << 20);
  t->register_memory(again->data(), again->size(), kRemoteWrite);
  EXPECT_EQ(t->cache_stats().misses, mid.misses + 1) << (again->data() == old ? "same address" : "new address");
}

TEST_P(Conformance, PeerNeverStartedTimesOutNamingIt) {
  ScopedEnv timeout("RDMACOLL_TIMEOUT", "2");
  bootstrap::World world;
  world.info.rank = 0;
  world.info.world_size = 3;
  world.info.host = "127.0.0.1";
  world.server = std::make_unique<bootstrap::TcpStoreServer>("127.0.0.1", 0);
  world.store = std::make_unique<bootstrap::TcpStore>("127.0.0.1", world.server->port(), bootstrap::deadline_in(5));
  auto start = bootstrap::Clock::now();
  try {
    Transport::create(world);
    FAIL() << "connecting to ranks that never started succeeded";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("rank(s) 1, 2"), std::string::npos) << e.what();
  }
  EXPECT_LT(bootstrap::Clock::now() - start, std::chrono::seconds(30));  // bounded, not a speed check
}

#if defined(CONFORMANCE_RDMA)
// Root ignores `ulimit -l` (CAP_IPC_LOCK), so the child drops that capability the way a normal
// user lacks it, lowers the limit, and registers more than it allows.
TEST_P(Conformance, MemlockLimitGivesTheHint) {
  if (std::getenv("CONFORMANCE_MEMLOCK_CHILD")) {
    try {
      bootstrap::World world;
      auto t = solo(world);  // its own buffers fit in the 4 MiB limit
      std::vector<uint8_t> big(size_t{16} << 20);
      t->register_memory(big.data(), big.size(), kRemoteWrite);
      FAIL() << "registering 16 MiB under a 4 MiB memlock limit succeeded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ulimit -l"), std::string::npos) << e.what();
    }
    return;
  }
  if (system("command -v setpriv >/dev/null") != 0) GTEST_SKIP() << "setpriv (util-linux) not installed";
  std::string cmd = "ulimit -l 4096 && CONFORMANCE_MEMLOCK_CHILD=1 exec setpriv --inh-caps=-ipc_lock "
                    "--bounding-set=-ipc_lock /proc/" + std::to_string(getpid()) + "/exe --gtest_filter='" +
                    rdmacoll::testing::current_test_name() + "'";
  int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status)) << cmd;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's output is above";
}
#endif

INSTANTIATE_TEST_SUITE_P(Backends, Conformance, ::testing::ValuesIn(kConfigs),
                         [](const auto& p) { return p.param.name; });

}  // namespace
}  // namespace rdmacoll::transport
