// Ring reduce-scatter, ring allgather, and ring allreduce as the one followed by the other.
// Each rank sends only to rank+1 and receives only from rank-1; every step moves one block
// per rank, so the links are busy all the time and the bandwidth term is optimal
// (2 (n-1)/n of the data per rank for allreduce), at the price of 2 (n-1) steps.
#include <algorithm>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {

using detail::wrap;

// Reduce-scatter, 4 ranks, blocks b0..b3. In step t rank r sends block r-t-1 to r+1, which
// reduces it into its own copy; block b starts at rank b+1 and has every rank's part when
// it reaches rank b, after n-1 steps:
//
//          step 0            step 1            step 2
//   r0 --b3--> r1     r0 --b2--> r1     r0 --b1--> r1
//   r1 --b0--> r2     r1 --b3--> r2     r1 --b2--> r2
//   r2 --b1--> r3     r2 --b0--> r3     r2 --b3--> r3
//   r3 --b2--> r0     r3 --b1--> r0     r3 --b0--> r0     => rank r holds the sum of block r
//
// A rank receives n-1 different blocks, so each lands in a slice of scratch of its own
// (written once): the receiver's k-th block goes right after the k-1 before it. The sender
// knows that offset because the blocks it sends are the ones its right neighbour receives.
Schedule ring_reduce_scatter(int rank, int nranks, std::span<const Block> blocks) {
  detail::check_team("ring_reduce_scatter", rank, nranks);
  detail::check_blocks("ring_reduce_scatter", blocks, nranks);
  std::size_t total = 0;
  std::size_t smallest = blocks[0].count;
  for (const Block& b : blocks) {
    total += b.count;
    smallest = std::min(smallest, b.count);
  }
  const int n = nranks;
  const auto steps = total == 0 ? 0 : static_cast<std::size_t>(n - 1);
  Schedule s = detail::make_schedule(rank, n, detail::extent(blocks), total - smallest, steps);

  const int right = wrap(rank + 1, n);
  const int left = wrap(rank - 1, n);
  std::size_t sent = 0;      // elements this rank has sent: where the next lands at `right`
  std::size_t received = 0;  // elements `left` has sent us: where the next lands here
  auto block = [&](int i) { return blocks[static_cast<std::size_t>(wrap(i, n))]; };
  for (std::size_t t = 0; t < steps; ++t) {
    const int step = static_cast<int>(t);
    const Block out = block(rank - step - 1);
    const Block in = block(rank - step - 2);
    detail::add(s, t, detail::reduce_block(rank, right, out, sent));
    detail::add(s, t, detail::reduce_block(left, rank, in, received));
    sent += out.count;
    received += in.count;
  }
  return s;
}

// Allgather, 4 ranks: rank r starts with block r. In step t rank r passes block r-t on to
// r+1 (its own first, then the one it has just received):
//
//          step 0            step 1            step 2
//   r0 --b0--> r1     r0 --b3--> r1     r0 --b2--> r1
//   r1 --b1--> r2     r1 --b0--> r2     r1 --b3--> r2
//   r2 --b2--> r3     r2 --b1--> r3     r2 --b0--> r3
//   r3 --b3--> r0     r3 --b2--> r0     r3 --b1--> r0     => every rank holds every block
Schedule ring_allgather(int rank, int nranks, std::span<const Block> blocks) {
  detail::check_team("ring_allgather", rank, nranks);
  detail::check_blocks("ring_allgather", blocks, nranks);
  bool empty = true;
  for (const Block& b : blocks) empty = empty && b.count == 0;
  const int n = nranks;
  const auto steps = empty ? 0 : static_cast<std::size_t>(n - 1);
  Schedule s = detail::make_schedule(rank, n, detail::extent(blocks), 0, steps);

  const int right = wrap(rank + 1, n);
  const int left = wrap(rank - 1, n);
  auto block = [&](int i) { return blocks[static_cast<std::size_t>(wrap(i, n))]; };
  for (std::size_t t = 0; t < steps; ++t) {
    const int step = static_cast<int>(t);
    detail::add(s, t, detail::copy_block(rank, right, block(rank - step)));
    detail::add(s, t, detail::copy_block(left, rank, block(rank - step - 1)));
  }
  return s;
}

// Reduce-scatter leaves block r reduced on rank r, which is where allgather starts from.
Schedule ring_allreduce(int rank, int nranks, std::size_t count) {
  detail::check_team("ring_allreduce", rank, nranks);
  const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(nranks));
  Schedule s = ring_reduce_scatter(rank, nranks, blocks);
  detail::append(s, ring_allgather(rank, nranks, blocks));
  return s;
}

}  // namespace rdmacoll::collectives::schedules
