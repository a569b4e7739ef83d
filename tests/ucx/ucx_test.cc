// UCX tagged messages between two processes on this host, over each transport UCX offers here
// (tcp, shared memory), with sizes from 0 B to 64 MiB and every byte verified.
#include <gtest/gtest.h>

#include <cstring>

#include "rdmacoll/error.h"
#include "support/env.h"
#include "support/multiproc.h"
#include "ucx/ucx.h"

namespace rdmacoll {
namespace {

uint8_t pattern(size_t i, size_t size, int sender) {
  return static_cast<uint8_t>((i * 251 + size * 3 + static_cast<size_t>(sender) * 17 + (i >> 12)) & 0xff);
}

class UcxMultiRank : public ::testing::TestWithParam<std::string> {};

TEST_P(UcxMultiRank, TaggedSendRecvVerifiesEveryByte) {
  // Children inherit the environment, so every rank uses the same transports.
  testing::ScopedEnv tls("UCX_TLS", GetParam() == "shm" ? "sm,self" : "tcp,self");
  testing::ScopedEnv nets("UCX_NET_DEVICES", GetParam() == "tcp" ? "lo" : nullptr);
  testing::RankGroup group(2);
  const int me = group.rank(), peer = 1 - me;
  auto deadline = group.deadline();

  auto ctx = ucx::create_context();
  auto worker = ucx::create_worker(ctx);
  auto addrs = bootstrap::all_gather(group.store(), "ucx/addr", me, 2, ucx::worker_address(worker), deadline);
  ucx::Endpoint ep(worker, addrs[static_cast<size_t>(peer)], peer);

  const std::vector<size_t> sizes = {0, 1, 4095, 4096, (size_t{1} << 20) + 3, size_t{64} << 20};
  std::vector<uint8_t> out(sizes.back()), in(sizes.back());
  for (size_t k = 0; k < sizes.size(); ++k) {
    size_t size = sizes[k];
    for (size_t i = 0; i < size; ++i) out[i] = pattern(i, size, me);
    std::memset(in.data(), 0, size);
    // Tag = (sender, size index): a message can only match the receive meant for it.
    ucp_request_param_t rp{};
    ucs_status_ptr_t rreq = ucp_tag_recv_nbx(worker.get(), in.data(), size, (uint64_t(peer) << 32) | k,
                                             ~uint64_t{0}, &rp);
    ucp_request_param_t sp{};
    ucs_status_ptr_t sreq = ucp_tag_send_nbx(ep.get(), out.data(), size, (uint64_t(me) << 32) | k, &sp);
    std::string what = "size " + std::to_string(size) + " with peer rank " + std::to_string(peer);
    ucx::wait_nbx(worker, sreq, deadline, "ucp_tag_send_nbx " + what);
    ucx::wait_nbx(worker, rreq, deadline, "ucp_tag_recv_nbx " + what);
    size_t wrong = 0;
    for (size_t i = 0; i < size; ++i) wrong += in[i] != pattern(i, size, peer);
    EXPECT_EQ(wrong, 0u) << what << " over " << GetParam();
  }
  // Keep the worker progressing until both sides are done, so late ACKs are not lost.
  bootstrap::barrier(group.store(), "ucx/done", me, 2, deadline);
  group.join();
}

INSTANTIATE_TEST_SUITE_P(Transports, UcxMultiRank, ::testing::Values("tcp", "shm"),
                         [](const auto& p) { return p.param; });

TEST(Ucx, ContextFailureNamesTheCallAndHints) {
  testing::ScopedEnv tls("UCX_TLS", "no_such_transport");
  try {
    auto ctx = ucx::create_context();
    auto worker = ucx::create_worker(ctx);
    FAIL() << "expected a TransportError for UCX_TLS=no_such_transport";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("failed"), std::string::npos) << e.what();
  }
}

// UCX's 64 KiB receive segment bounds its zero-copy fragments over tcp; rdmacoll raises it
// (ucx.cc) where tcp may be used, keeps a value the user set, and leaves it unset where UCX_TLS
// rules tcp out (UCX would report it as an unused variable at every start).
TEST(Ucx, TcpReceiveSegmentIsRaisedUnlessSetOrUnused) {
  const char* kVar = "UCX_TCP_RX_SEG_SIZE";
  auto value_after_context = [&](const char* tls) -> std::string {
    testing::ScopedEnv t("UCX_TLS", tls);
    auto ctx = ucx::create_context();
    const char* v = std::getenv(kVar);
    return v ? v : "(unset)";
  };
  {
    testing::ScopedEnv rx(kVar, nullptr);
    EXPECT_EQ(value_after_context("tcp,self"), "512k");
  }
  {
    testing::ScopedEnv rx(kVar, nullptr);
    EXPECT_EQ(value_after_context(nullptr), "512k");  // no UCX_TLS: every transport, tcp too
  }
  {
    testing::ScopedEnv rx(kVar, "128k");
    EXPECT_EQ(value_after_context("tcp,self"), "128k");
  }
  {
    testing::ScopedEnv rx(kVar, nullptr);
    EXPECT_EQ(value_after_context("sm,self"), "(unset)");
    EXPECT_EQ(value_after_context("^tcp"), "(unset)");
  }
}

// UCX_TLS as UCX reads it, for the defaults rdmacoll sets (ucx.cc): a list names what may be
// used, "^list" what may not; "rc" and "ib" name rc over verbs among others.
TEST(Ucx, TlsListsAreReadAsUcxDoes) {
  for (const char* tls : {(const char*)nullptr, "", "all", "rc", "rc_verbs", "rc_v", "ib", "sm,rc_x", "tcp,rc:aux", "^tcp",
                          "^ud,sm"})
    EXPECT_TRUE(ucx::tls_allows(tls, ucx::names_rc)) << (tls ? tls : "(unset)");
  for (const char* tls : {"tcp", "sm,self", "ud_verbs", "^rc", "^ib", "^tcp,rc_verbs", "dc_mlx5"})
    EXPECT_FALSE(ucx::tls_allows(tls, ucx::names_rc)) << tls;
  for (const char* tls : {(const char*)nullptr, "all", "tcp", "sm,tcp", "^rc", "^sm,rc"})
    EXPECT_TRUE(ucx::tls_allows(tls, ucx::names_tcp)) << (tls ? tls : "(unset)");
  for (const char* tls : {"sm,self", "rc", "^tcp", "^rc,tcp", "tcpx"})
    EXPECT_FALSE(ucx::tls_allows(tls, ucx::names_tcp)) << tls;
}

}  // namespace
}  // namespace rdmacoll
