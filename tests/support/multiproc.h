// Multi-process tests. A test that needs N ranks creates a RankGroup:
//  - run directly (ctest, or by hand), this process becomes rank 0, serves the rendezvous store
//    on loopback, and re-executes this test binary N-1 times, filtered to the same test, as
//    ranks 1..N-1;
//  - run with RDMACOLL_RANK/RDMACOLL_WORLD_SIZE/RDMACOLL_ADDR set (two guests, a cluster), this
//    process is just that rank; every test gets its own port (RDMACOLL_ADDR's port + a hash of
//    the test name), so consecutive tests never meet each other's store.
// join() waits for the children with a deadline and reports their exit status, with the
// failure messages from a failed child's own XML report.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"

namespace rdmacoll::testing {

class RankGroup {
 public:
  explicit RankGroup(int world_size);
  ~RankGroup();
  RankGroup(const RankGroup&) = delete;
  RankGroup& operator=(const RankGroup&) = delete;

  int rank() const { return world_.info.rank; }
  int world_size() const { return world_.info.world_size; }
  bool launched_externally() const { return external_; }
  // A rank that a RankGroup's rank 0 spawned (local mode), as opposed to one a launcher started.
  bool spawned_by_rank0() const { return spawned_; }
  bootstrap::Store& store() { return *world_.store; }
  // The connected world, for Transport::create(group.world()).
  bootstrap::World& world() { return world_; }
  // A deadline for the test's own waits (RDMACOLL_TIMEOUT).
  bootstrap::Deadline deadline() const;

  // Barrier across the group, then (rank 0, local mode) waits for the children and records a
  // test failure for each child that did not exit 0.
  void join();

 private:
  bool external_ = false, spawned_ = false;
  bootstrap::World world_;
  std::vector<pid_t> children_;
  std::vector<std::string> reports_;  // each child's GoogleTest XML report (join reads it)
  void remove_reports();
};

// The current test's "Suite.Name" (with the parameter suffix for parameterized tests).
std::string current_test_name();

// True when REQUIRE_RDMA_DEVICE=1: tests that would skip for lack of a device fail instead
// (the soft-RoCE guest run sets it, so a broken guest cannot pass by skipping).
bool require_rdma_device();

}  // namespace rdmacoll::testing
