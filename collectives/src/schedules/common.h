// What the schedule builders share: argument checks and small constructors. Private to
// collectives/src/schedules/.
#pragma once

#include <cstddef>
#include <span>

#include "schedule.h"

namespace rdmacoll::collectives::schedules::detail {

// Throw std::invalid_argument naming the builder `fn` and the bad value.
void check_team(const char* fn, int rank, int nranks);
void check_root(const char* fn, int root, int nranks);
// One block per rank, no two overlapping.
void check_blocks(const char* fn, std::span<const Block> blocks, int nranks);

// End of the last block: the user elements a block-based schedule addresses.
std::size_t extent(std::span<const Block> blocks);

// Smallest k with 2^k >= n (n >= 1).
int ceil_log2(int n);

// x mod n in [0, n), for rank arithmetic round a ring.
inline int wrap(int x, int n) { return ((x % n) + n) % n; }

// v[i] for a rank-indexed vector (ranks are int, as in the transport).
template <class Vector>
auto& at(Vector& v, int i) {
  return v[static_cast<std::size_t>(i)];
}

// A schedule with `steps` empty steps.
Schedule make_schedule(int rank, int nranks, std::size_t count, std::size_t scratch,
                       std::size_t steps);

// Records t in step `step` of s: as a send if s.rank is t.from, as a receive if it is t.to.
// Empty transfers are dropped: data schedules never need them (the barrier adds its own).
void add(Schedule& s, std::size_t step, const Transfer& t);

// The same user range on both ranks: the receiver's block b becomes the sender's.
inline Transfer copy_block(int from, int to, Block b) {
  return {from, to, b.count, {Memory::user, b.offset}, {Memory::user, b.offset}, Action::overwrite,
          0};
}
// The sender's block b is reduced into the receiver's block b, landing at `staging` first.
inline Transfer reduce_block(int from, int to, Block b, std::size_t staging) {
  return {from,           to,     b.count, {Memory::user, b.offset}, {Memory::user, b.offset},
          Action::reduce, staging};
}

// Appends tail's steps after s's. Both phases use scratch from offset 0: the caller makes
// sure that is safe (the second phases here use none).
void append(Schedule& s, Schedule tail);

}  // namespace rdmacoll::collectives::schedules::detail
