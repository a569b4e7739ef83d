#include "rdmacoll/training/shard.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include "rng.h"

namespace rdmacoll::training {

std::vector<std::uint32_t> epoch_permutation(std::size_t n, std::uint64_t seed,
                                             std::uint64_t epoch) {
  if (n > std::numeric_limits<std::uint32_t>::max())
    throw std::invalid_argument("epoch_permutation: " + std::to_string(n) +
                                " examples do not fit 32-bit indices");
  std::vector<std::uint32_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0u);
  // One splitmix64 step mixes the seed so that (seed, epoch) and (seed + 1, epoch - 1) do not
  // start from neighbouring states.
  detail::SplitMix64 rng(detail::SplitMix64(seed).next() ^ (epoch * 0xD1B54A32D192ED03ull));
  for (std::size_t i = n; i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
  return perm;
}

std::size_t batches_per_epoch(std::size_t n, std::size_t global_batch, bool drop_last) noexcept {
  if (global_batch == 0) return 0;
  return drop_last ? n / global_batch : (n + global_batch - 1) / global_batch;
}

std::span<const std::uint32_t> local_batch(std::span<const std::uint32_t> perm,
                                           std::size_t global_batch, std::size_t batch,
                                           std::size_t rank, std::size_t ranks) {
  if (global_batch == 0 || rank >= ranks)
    throw std::invalid_argument("local_batch: global batch " + std::to_string(global_batch) +
                                ", rank " + std::to_string(rank) + " of " +
                                std::to_string(ranks) + "; need a batch > 0 and rank < ranks");
  const std::size_t start = batch * global_batch;
  if (batch >= batches_per_epoch(perm.size(), global_batch, false))
    throw std::invalid_argument("local_batch: batch " + std::to_string(batch) + " of " +
                                std::to_string(global_batch) + " is past the end of " +
                                std::to_string(perm.size()) + " examples");
  const std::size_t m = std::min(global_batch, perm.size() - start);
  const std::size_t lo = rank * m / ranks, hi = (rank + 1) * m / ranks;
  return perm.subspan(start + lo, hi - lo);
}

}  // namespace rdmacoll::training
