// First RDMA tests: device discovery and GID choice on a real device, an RC queue-pair
// exchange (RDMA WRITE, then SEND) between two processes with every byte verified, and the
// verbs transport surfacing RC's receiver-not-ready error.
// Suites named *MultiRank run as one process per rank; the two-guest run executes them with
// one rank in each guest.
#include <gtest/gtest.h>
#include <infiniband/verbs.h>

#include <cstdlib>
#include <cstring>
#include <numeric>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "rdmacoll/transport/ib_info.h"
#include "rdmacoll/transport/transport.h"
#include "support/env.h"
#include "support/multiproc.h"
#include "verbs/verbs.h"
#include "wire.h"

namespace rdmacoll {
namespace {

using bootstrap::Deadline;

// Skips (or fails, inside the guest) when this host has no active RDMA port.
#define REQUIRE_DEVICE(devs)                                                                         \
  do {                                                                                               \
    bool any_active = false;                                                                         \
    for (const auto& d : devs)                                                                       \
      for (const auto& p : d.ports) any_active = any_active || p.active;                             \
    if (!any_active) {                                                                               \
      if (testing::require_rdma_device()) FAIL() << "no active RDMA port, but REQUIRE_RDMA_DEVICE=1"; \
      GTEST_SKIP() << "no RDMA device with an active port on this host; the test command runs this "  \
                      "test in the soft-RoCE guest (tests/guest/rdmacoll-guest)";                    \
    }                                                                                                \
  } while (0)

using testing::ScopedEnv;

TEST(RdmaDevices, EnumeratesPortsAndGidTable) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  auto [dev, port] = ib::select_port(devs, "");
  EXPECT_FALSE(dev->name.empty());
  EXPECT_TRUE(port->active);
  EXPECT_GE(port->active_mtu, 256);
  EXPECT_LE(port->active_mtu, port->max_mtu);
  EXPECT_GT(dev->max_qp_wr, 0);
  ASSERT_FALSE(port->gids.empty()) << ib::describe(devs);
  std::cout << ib::describe(devs);
}

TEST(RdmaDevices, SelectsRoCEv2Ipv4MappedGidUnlessOverridden) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  auto [dev, port] = ib::select_port(devs, "");
  if (port->link_layer != "Ethernet") GTEST_SKIP() << "InfiniBand port: no RoCE GIDs to choose from";
  int chosen = ib::select_gid(*dev, *port, std::nullopt);
  const ib::GidEntry* entry = nullptr;
  for (const auto& g : port->gids)
    if (g.index == chosen) entry = &g;
  ASSERT_NE(entry, nullptr);
  bool has_v2_ipv4 = false;
  for (const auto& g : port->gids) has_v2_ipv4 |= g.type == ib::GidType::RoCEv2 && g.ipv4_mapped();
  ASSERT_TRUE(has_v2_ipv4) << "expected an IPv4-mapped RoCEv2 GID on " << dev->name << "\n" << ib::describe(devs);
  EXPECT_EQ(entry->type, ib::GidType::RoCEv2);
  EXPECT_TRUE(entry->ipv4_mapped()) << entry->to_string();

  // RDMACOLL_IB_GID_INDEX wins when it names a GID in the table...
  int other = -1;
  for (const auto& g : port->gids)
    if (g.index != chosen) other = g.index;
  ASSERT_GE(other, 0) << "the port has a single GID";
  {
    ScopedEnv env("RDMACOLL_IB_GID_INDEX", std::to_string(other).c_str());
    EXPECT_EQ(ib::select_from_settings(devs).gid_index, other);
  }
  // ...and is refused, listing the valid ones, when it does not.
  ScopedEnv env("RDMACOLL_IB_GID_INDEX", "250");
  try {
    ib::select_from_settings(devs);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("valid indices"), std::string::npos) << e.what();
  }
}

TEST(RdmaDevices, UnknownDeviceNamesWhatExists) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  ScopedEnv env("RDMACOLL_IB_DEVICE", "nosuchdev0");
  try {
    ib::select_from_settings(devs);
    FAIL() << "expected DeviceError";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find(devs[0].name), std::string::npos) << e.what();
  }
}

// ---- RC exchange between two processes ---------------------------------------------------

struct PeerInfo {
  verbs::RcEndpoint ep;
  uint64_t window_addr = 0;
  uint32_t window_rkey = 0;
};

std::vector<uint8_t> encode(const PeerInfo& p) {
  wire::Writer w;
  w.header(1).u32(p.ep.qpn).u32(p.ep.psn).raw(p.ep.gid.data(), 16).u16(p.ep.lid).u8(p.ep.mtu);
  w.u64(p.window_addr).u32(p.window_rkey);
  return std::move(w.data());
}

PeerInfo decode(const std::vector<uint8_t>& b) {
  wire::Reader r(b, "RC endpoint");
  PeerInfo p;
  EXPECT_EQ(r.header(), 1);
  p.ep.qpn = r.u32();
  p.ep.psn = r.u32();
  r.raw(p.ep.gid.data(), 16);
  p.ep.lid = r.u16();
  p.ep.mtu = r.u8();
  p.window_addr = r.u64();
  p.window_rkey = r.u32();
  r.expect_end();
  return p;
}

uint8_t pattern(size_t i, size_t size, int writer) {
  return static_cast<uint8_t>((i * 131 + size * 7 + static_cast<size_t>(writer) * 29 + (i >> 8)) & 0xff);
}

// Polls until one completion arrives; a deadline bounds it and a bad status fails loudly.
ibv_wc poll_one(ibv_cq* cq, Deadline deadline, int peer) {
  ibv_wc wc{};
  for (;;) {
    int n = ibv_poll_cq(cq, 1, &wc);
    if (n < 0) throw TransportError("ibv_poll_cq failed: " + std::to_string(n));
    if (n == 1) break;
    if (bootstrap::Clock::now() > deadline)
      throw TimeoutError("no completion from peer rank " + std::to_string(peer) + " before the deadline");
  }
  if (wc.status != IBV_WC_SUCCESS)
    throw TransportError(std::string("completion error: ") + ibv_wc_status_str(wc.status) + ", opcode " +
                         verbs::opcode_name(wc.opcode) + ", peer rank " + std::to_string(peer) +
                         ", vendor_err " + std::to_string(wc.vendor_err));
  return wc;
}

TEST(VerbsMultiRank, RcWriteThenSendVerifiesEveryByte) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  testing::RankGroup group(2);
  const int me = group.rank(), peer = 1 - me;
  const Deadline deadline = group.deadline();
  ib::Selection sel = ib::select_from_settings(devs);
  auto [dev, port] = ib::select_port(devs, sel.device + ":" + std::to_string(sel.port));

  const std::vector<size_t> sizes = {1, 4095, 4096, (size_t{1} << 20) + 3};
  const size_t max_size = sizes.back();
  const size_t msg_size = 64;  // SEND payload: the size just written and a checksum
  std::vector<uint8_t> window(max_size), src(max_size), send_buf(msg_size), recv_buf(msg_size * 4);

  auto ctx = verbs::open_device(sel.device);
  auto pd = verbs::alloc_pd(ctx);
  auto cq = verbs::create_cq(ctx, 256);
  // The window is the only memory a peer may write to; sources need local access only.
  auto window_mr = verbs::reg_mr(pd, window.data(), window.size(), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
  auto src_mr = verbs::reg_mr(pd, src.data(), src.size(), 0);
  auto send_mr = verbs::reg_mr(pd, send_buf.data(), send_buf.size(), 0);
  auto recv_mr = verbs::reg_mr(pd, recv_buf.data(), recv_buf.size(), IBV_ACCESS_LOCAL_WRITE);
  verbs::QpCaps caps;
  auto qp = verbs::create_rc_qp(pd, cq, cq, caps);
  verbs::qp_to_init(qp.get(), sel.port, IBV_ACCESS_REMOTE_WRITE);

  auto post_recv = [&](size_t slot) {
    ibv_sge sge{reinterpret_cast<uintptr_t>(recv_buf.data() + slot * msg_size), static_cast<uint32_t>(msg_size),
                recv_mr->lkey};
    ibv_recv_wr wr{}, *bad = nullptr;
    wr.wr_id = slot;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    verbs::check_rc(ibv_post_recv(qp.get(), &wr, &bad), "ibv_post_recv");
  };
  for (size_t s = 0; s < 4; ++s) post_recv(s);

  PeerInfo mine;
  mine.ep.qpn = qp->qp_num;
  mine.ep.psn = static_cast<uint32_t>(0x1000 + me * 0x777) & 0xffffff;
  mine.ep.lid = port->lid;
  mine.ep.mtu = static_cast<uint8_t>(verbs::mtu_enum(port->active_mtu));
  for (const auto& g : port->gids)
    if (g.index == sel.gid_index) mine.ep.gid = g.raw;
  mine.window_addr = reinterpret_cast<uintptr_t>(window.data());
  mine.window_rkey = window_mr->rkey;
  auto all = bootstrap::all_gather(group.store(), "rc_test/ep", me, 2, encode(mine), deadline);
  PeerInfo theirs = decode(all[static_cast<size_t>(peer)]);

  verbs::qp_to_rtr(qp.get(), theirs.ep, sel.port, sel.gid_index, verbs::mtu_enum(port->active_mtu),
                   port->link_layer == "Ethernet", peer);
  verbs::qp_to_rts(qp.get(), mine.ep.psn, static_cast<int>(*settings::get_int("RDMACOLL_IB_TIMEOUT")),
                   static_cast<int>(*settings::get_int("RDMACOLL_IB_RETRY_CNT")),
                   static_cast<int>(*settings::get_int("RDMACOLL_IB_RNR_RETRY")));
  // Both QPs must be in RTR before either sends.
  bootstrap::barrier(group.store(), "rc_test/rts", me, 2, deadline);

  size_t recv_slot = 0;
  for (size_t size : sizes) {
    for (int writer = 0; writer < 2; ++writer) {
      if (me == writer) {
        for (size_t i = 0; i < size; ++i) src[i] = pattern(i, size, writer);
        uint64_t sum = std::accumulate(src.begin(), src.begin() + static_cast<ptrdiff_t>(size), uint64_t{0});
        std::memset(send_buf.data(), 0, msg_size);
        std::memcpy(send_buf.data(), &size, 8);
        std::memcpy(send_buf.data() + 8, &sum, 8);
        // WRITE then SEND on one RC QP: the SEND's arrival proves the WRITE landed before it.
        ibv_sge wsge{reinterpret_cast<uintptr_t>(src.data()), static_cast<uint32_t>(size), src_mr->lkey};
        ibv_sge ssge{reinterpret_cast<uintptr_t>(send_buf.data()), static_cast<uint32_t>(msg_size), send_mr->lkey};
        ibv_send_wr wr[2]{}, *bad = nullptr;
        wr[0].wr_id = 1;
        wr[0].opcode = IBV_WR_RDMA_WRITE;
        wr[0].sg_list = &wsge;
        wr[0].num_sge = 1;
        wr[0].wr.rdma.remote_addr = theirs.window_addr;
        wr[0].wr.rdma.rkey = theirs.window_rkey;
        wr[0].send_flags = size <= caps.max_inline_data ? IBV_SEND_INLINE : 0;
        wr[0].next = &wr[1];
        wr[1].wr_id = 2;
        wr[1].opcode = IBV_WR_SEND;
        wr[1].sg_list = &ssge;
        wr[1].num_sge = 1;
        wr[1].send_flags = IBV_SEND_SIGNALED;
        verbs::check_rc(ibv_post_send(qp.get(), wr, &bad), "ibv_post_send(WRITE+SEND)");
        ibv_wc wc = poll_one(cq.get(), deadline, peer);
        EXPECT_EQ(wc.opcode, IBV_WC_SEND);
        EXPECT_EQ(wc.wr_id, 2u);
      } else {
        ibv_wc wc = poll_one(cq.get(), deadline, peer);
        ASSERT_EQ(wc.opcode, IBV_WC_RECV);
        ASSERT_EQ(wc.byte_len, msg_size);
        const uint8_t* msg = recv_buf.data() + wc.wr_id * msg_size;
        uint64_t got_size = 0, got_sum = 0;
        std::memcpy(&got_size, msg, 8);
        std::memcpy(&got_sum, msg + 8, 8);
        ASSERT_EQ(got_size, size);
        size_t wrong = 0, first_wrong = size;
        for (size_t i = 0; i < size; ++i)
          if (window[i] != pattern(i, size, writer)) wrong++, first_wrong = std::min(first_wrong, i);
        EXPECT_EQ(wrong, 0u) << "size " << size << ": " << wrong << " wrong bytes, first at " << first_wrong;
        uint64_t sum = std::accumulate(window.begin(), window.begin() + static_cast<ptrdiff_t>(size), uint64_t{0});
        EXPECT_EQ(sum, got_sum);
        post_recv(wc.wr_id);
        ++recv_slot;
      }
      // The writer may overwrite the window only after the reader checked it.
      bootstrap::barrier(group.store(), "rc_test/" + std::to_string(size) + "/" + std::to_string(writer), me, 2,
                         deadline);
    }
  }
  EXPECT_EQ(recv_slot, sizes.size());
  group.join();
}

// A receiver that stops taking messages: its posted receive buffers fill and are not reposted.
// With a finite RDMACOLL_IB_RNR_RETRY the sender's SEND ends in RC's RNR-retry-exceeded
// completion, and the verbs transport fails the request with an error naming the peer and the
// setting. (At the default of 7 RC retries for ever; the collective's deadline bounds the wait.)
TEST(VerbsMultiRank, RnrRetryExceededFailsTheSendNamingThePeer) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  ScopedEnv backend("RDMACOLL_TRANSPORT", "verbs"), rnr("RDMACOLL_IB_RNR_RETRY", "0");
  testing::RankGroup group(2);
  const int me = group.rank(), peer = 1 - me;
  auto t = transport::Transport::create(group.world());
  if (me == 0) {
    // Rank 1 does not drive its transport until the end: nothing reposts its buffers.
    std::string error;
    uint64_t payload = 0;
    int sent = 0;
    for (; sent < 4096 && error.empty(); ++sent) {
      try {
        t->send(peer, 7, &payload, sizeof payload).wait(group.deadline());
      } catch (const TransportError& e) {
        error = e.what();
      }
    }
    EXPECT_NE(error.find("RNR retry counter exceeded"), std::string::npos) << "after " << sent << " sends: " << error;
    EXPECT_NE(error.find("peer rank 1"), std::string::npos) << error;
    EXPECT_NE(error.find("RDMACOLL_IB_RNR_RETRY"), std::string::npos) << error;
    EXPECT_GT(sent, 1) << "the first send failed: its receive buffers were posted";
  }
  bootstrap::barrier(group.store(), "rnr/done", me, 2, group.deadline());
  t.reset();
  group.join();
}

// The send bounce buffers are shared by all peers and bounded (RDMACOLL_IB_SEND_SLOTS): with
// three of them, four ranks (two across two guests) each post 150 messages of assorted eager
// sizes to every peer at once (450 sends against 3 slots), then one large message that goes by
// rendezvous. Every send
// must wait its turn for a slot, none may be lost or reordered, and every byte must arrive.
TEST(VerbsMultiRank, SharedSendSlotsRunOutAndEveryMessageStillArrives) {
  auto devs = ib::list_devices();
  REQUIRE_DEVICE(devs);
  ScopedEnv backend("RDMACOLL_TRANSPORT", "verbs"), slots("RDMACOLL_IB_SEND_SLOTS", "3");
  // Four ranks here; as many as the launcher started elsewhere (two guests: one rank each).
  const char* launched = std::getenv("RDMACOLL_WORLD_SIZE");
  const int kRanks = launched ? std::atoi(launched) : 4;
  constexpr int kMessages = 150;
  testing::RankGroup group(kRanks);
  const int me = group.rank();
  auto t = transport::Transport::create(group.world());
  const auto size_of = [](int i) { return static_cast<size_t>(1 + (i * 977) % 8000); };
  const auto byte_of = [](int from, int to, int i, size_t k) {
    return static_cast<uint8_t>((from * 31 + to * 17 + i * 7 + static_cast<int>(k)) & 0xff);
  };
  constexpr size_t kLarge = 1 << 20;
  std::vector<std::vector<std::vector<uint8_t>>> out(kRanks), in(kRanks);
  std::vector<transport::Request> sends, recvs;
  for (int p = 0; p < kRanks; ++p) {
    if (p == me) continue;
    for (int i = 0; i <= kMessages; ++i) {
      const size_t n = i == kMessages ? kLarge : size_of(i);
      in[p].emplace_back(n, 0);
      recvs.push_back(t->recv(p, 100 + static_cast<uint64_t>(i), in[p].back().data(), n));
    }
  }
  bootstrap::barrier(group.store(), "slots/posted", me, kRanks, group.deadline());
  for (int i = 0; i <= kMessages; ++i) {
    for (int p = 0; p < kRanks; ++p) {
      if (p == me) continue;
      const size_t n = i == kMessages ? kLarge : size_of(i);
      auto& buf = out[p].emplace_back(n);
      for (size_t k = 0; k < n; ++k) buf[k] = byte_of(me, p, i, k);
      sends.push_back(t->send(p, 100 + static_cast<uint64_t>(i), buf.data(), n));
    }
  }
  for (auto& r : sends) r.wait(group.deadline());
  for (auto& r : recvs) r.wait(group.deadline());
  for (int p = 0; p < kRanks; ++p) {
    if (p == me) continue;
    for (int i = 0; i <= kMessages; ++i) {
      const auto& buf = in[p][static_cast<size_t>(i)];
      size_t wrong = 0;
      for (size_t k = 0; k < buf.size(); ++k) wrong += buf[k] != byte_of(p, me, i, k);
      ASSERT_EQ(wrong, 0u) << "message " << i << " from rank " << p << " (" << buf.size() << " bytes)";
    }
  }
  bootstrap::barrier(group.store(), "slots/done", me, kRanks, group.deadline());
  t.reset();
  group.join();
}

}  // namespace
}  // namespace rdmacoll
