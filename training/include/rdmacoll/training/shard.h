// Deterministic shuffling and sharding for data-parallel SGD. Every rank computes the same
// permutation of the training set for an epoch from (seed, epoch) alone, cuts it into global
// batches, and takes its own disjoint part of each:
//
//   permutation  | batch 0 (B)               | batch 1 (B)               | ... | last (<= B) |
//   batch 0      | rank 0 | rank 1 | ... | rank R-1 |
//
// Rank r of R gets [floor(r * m / R), floor((r + 1) * m / R)) of a global batch of m
// examples, so the parts are disjoint, cover the batch, and differ in size by at most one (they
// are all B / R when R divides B).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace rdmacoll::training {

// A permutation of 0..n-1 (Fisher-Yates with splitmix64, seeded from seed and epoch), the same
// bits on every machine. Throws std::invalid_argument for n >= 2^32.
std::vector<std::uint32_t> epoch_permutation(std::size_t n, std::uint64_t seed,
                                             std::uint64_t epoch);

// Global batches of `global_batch` in n examples: ceil(n / B), or floor(n / B) with drop_last
// (the trailing partial batch left out).
std::size_t batches_per_epoch(std::size_t n, std::size_t global_batch, bool drop_last) noexcept;

// Rank `rank` of `ranks`'s part of global batch `batch` of `perm`: a view into perm. The last
// batch may be short (m < B) unless dropped. Throws std::invalid_argument for global_batch 0,
// rank >= ranks or a batch past the end.
std::span<const std::uint32_t> local_batch(std::span<const std::uint32_t> perm,
                                           std::size_t global_batch, std::size_t batch,
                                           std::size_t rank, std::size_t ranks);

}  // namespace rdmacoll::training
