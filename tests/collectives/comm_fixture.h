// What the multi-process communicator tests share: the backend they run on (UCX over shared
// memory or tcp on the host, COMM_HOST; verbs in the soft-RoCE guest, COMM_RDMA), and a
// communicator on every rank of a forked group.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/transport/ib_info.h"
#include "support/env.h"
#include "support/multiproc.h"

namespace rdmacoll::collectives {

#if defined(COMM_RDMA)
inline bool have_rdma() {
  for (const auto& d : rdmacoll::ib::list_devices())
    for (const auto& p : d.ports)
      if (p.active) return true;
  return false;
}
#endif

// Selects the backend for this process and the ranks it spawns (they inherit the environment).
class Backend {
 public:
  explicit Backend(bool tcp = false) {
#if defined(COMM_RDMA)
    (void)tcp;
    env_.emplace_back(std::make_unique<rdmacoll::testing::ScopedEnv>("RDMACOLL_TRANSPORT", "verbs"));
#else
    env_.emplace_back(std::make_unique<rdmacoll::testing::ScopedEnv>("RDMACOLL_TRANSPORT", "ucx"));
    env_.emplace_back(std::make_unique<rdmacoll::testing::ScopedEnv>("UCX_TLS", tcp ? "tcp,self" : "sm,self"));
    env_.emplace_back(std::make_unique<rdmacoll::testing::ScopedEnv>("UCX_NET_DEVICES", tcp ? "lo" : nullptr));
#endif
  }

 private:
  std::vector<std::unique_ptr<rdmacoll::testing::ScopedEnv>> env_;
};

inline bool skip_without_device() {
#if defined(COMM_RDMA)
  if (!have_rdma()) {
    if (rdmacoll::testing::require_rdma_device()) ADD_FAILURE() << "no RDMA device, but REQUIRE_RDMA_DEVICE=1";
    return true;
  }
#endif
  return false;
}

// Runs `body` on every rank of an n-rank communicator, then tears it down together.
template <class F>
void with_comm(int n, F body, Communicator::Options options = Communicator::Options::from_settings()) {
  rdmacoll::testing::RankGroup g(n);
  auto comm = Communicator::create(g.world(), options);
  ASSERT_EQ(comm->size(), n);
  body(*comm);
  comm->barrier();
  bootstrap::barrier(g.store(), "comm-test/done", g.rank(), n, g.deadline());
  comm.reset();
  g.join();
}

}  // namespace rdmacoll::collectives
