// epoch_permutation and local_batch: deterministic, disjoint, covering.
#include "rdmacoll/training/shard.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace rdmacoll::training {
namespace {

TEST(Shard, PermutationIsAPermutationFixedBySeedAndEpoch) {
  const auto a = epoch_permutation(1000, 7, 0);
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::uint32_t> iota(1000);
  std::iota(iota.begin(), iota.end(), 0u);
  EXPECT_EQ(sorted, iota);
  EXPECT_EQ(a, epoch_permutation(1000, 7, 0));
  EXPECT_NE(a, epoch_permutation(1000, 7, 1));
  EXPECT_NE(a, epoch_permutation(1000, 8, 0));
  EXPECT_NE(epoch_permutation(1000, 7, 1), epoch_permutation(1000, 8, 0));
  EXPECT_NE(a, iota);
  EXPECT_TRUE(epoch_permutation(0, 1, 1).empty());
  EXPECT_EQ(epoch_permutation(1, 1, 1), std::vector<std::uint32_t>{0});
  // Golden value: splitmix64 and integer arithmetic only, the same on every machine.
  const auto g = epoch_permutation(10, 1, 2);
  EXPECT_EQ(g, (std::vector<std::uint32_t>{0, 1, 9, 2, 5, 3, 8, 6, 4, 7}));
}

// For R = 1, 3, 4, 7 and B = 256 or 10, over n = 1000 (a short last batch): each global batch
// is split into disjoint parts that cover it, of sizes differing by at most one.
TEST(Shard, LocalBatchesAreDisjointAndCoverEachGlobalBatch) {
  const auto perm = epoch_permutation(1000, 3, 5);
  for (std::size_t batch_size : {256u, 10u}) {
    const std::size_t batches = batches_per_epoch(perm.size(), batch_size, false);
    EXPECT_EQ(batches, (1000 + batch_size - 1) / batch_size);
    for (std::size_t ranks : {1u, 3u, 4u, 7u}) {
      std::vector<std::uint32_t> seen;
      for (std::size_t b = 0; b < batches; ++b) {
        const std::size_t m = std::min(batch_size, perm.size() - b * batch_size);
        std::vector<std::uint32_t> global;
        std::size_t smallest = SIZE_MAX, largest = 0;
        for (std::size_t r = 0; r < ranks; ++r) {
          const auto part = local_batch(perm, batch_size, b, r, ranks);
          smallest = std::min(smallest, part.size());
          largest = std::max(largest, part.size());
          global.insert(global.end(), part.begin(), part.end());
        }
        ASSERT_EQ(global.size(), m);
        EXPECT_TRUE(std::equal(global.begin(), global.end(), perm.begin() + static_cast<std::ptrdiff_t>(b * batch_size)));
        EXPECT_LE(largest - smallest, 1u);
        seen.insert(seen.end(), global.begin(), global.end());
      }
      std::sort(seen.begin(), seen.end());
      EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << ranks << " ranks";
      EXPECT_EQ(seen.size(), perm.size());
    }
  }
  // B = 256 on 4 ranks: 64 each.
  EXPECT_EQ(local_batch(perm, 256, 0, 3, 4).size(), 64u);
  EXPECT_EQ(batches_per_epoch(1000, 256, true), 3u);
  EXPECT_THROW(local_batch(perm, 256, 4, 0, 4), std::invalid_argument);
  EXPECT_THROW(local_batch(perm, 256, 0, 4, 4), std::invalid_argument);
  EXPECT_THROW(local_batch(perm, 0, 0, 0, 4), std::invalid_argument);
}

}  // namespace
}  // namespace rdmacoll::training
