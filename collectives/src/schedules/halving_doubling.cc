// Recursive halving-doubling (Rabenseifner) allreduce and recursive doubling allgather.
// Reduce-scatter by recursive halving, then allgather by recursive doubling: 2 log2(n)
// steps, like a tree, and each rank sends 2 (n-1)/n of the data, like the ring. The
// exchanges need a power-of-two team, so other rank counts first fold the extra ranks in.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {
namespace {

// Blocks [lo, hi) of a contiguous partition as one range.
Block span_of(std::span<const Block> blocks, int lo, int hi) {
  const Block first = detail::at(blocks, lo);
  const Block last = detail::at(blocks, hi - 1);
  return {first.offset, last.offset + last.count - first.offset};
}

// Copies blocks [lo, hi) from `from` to `to`, one transfer per run of blocks that are
// adjacent in memory (segmented blocks are not).
void copy_blocks(Schedule& s, std::size_t step, int from, int to, std::span<const Block> blocks,
                 int lo, int hi) {
  Block run{};
  for (int i = lo; i < hi; ++i) {
    const Block b = detail::at(blocks, i);
    if (run.count > 0 && run.offset + run.count == b.offset) {
      run.count += b.count;
      continue;
    }
    detail::add(s, step, detail::copy_block(from, to, run));
    run = b;
  }
  detail::add(s, step, detail::copy_block(from, to, run));
}

// Recursive doubling among p = 2^k participants, from step `step` on. Participant v starts
// with block v; in each step it swaps everything it has with v ^ distance, distance 1, 2,
// 4, ..., and ends with all blocks. Participant v is rank real(v).
//
//   distance 1         distance 2           distance 4
//   0 <-> 1 (b0|b1)    0 <-> 2 (b01|b23)    0 <-> 4 (b0123|b4567)
//   2 <-> 3 (b2|b3)    1 <-> 3 (b01|b23)    ...
template <class Real>
void doubling(Schedule& s, std::size_t step, int v, int p, std::span<const Block> blocks,
              Real real) {
  int lo = v;  // blocks [lo, hi) are complete here
  int hi = v + 1;
  for (int distance = 1; distance < p; distance *= 2, ++step) {
    const int partner = real(v ^ distance);
    const int partner_lo = (v & distance) ? lo - distance : hi;
    copy_blocks(s, step, s.rank, partner, blocks, lo, hi);
    copy_blocks(s, step, partner, s.rank, blocks, partner_lo, partner_lo + distance);
    lo = std::min(lo, partner_lo);
    hi = lo + 2 * distance;
  }
}

}  // namespace

// Allreduce among p = 2^k participants: recursive halving, then doubling (above). Halving
// in step j, with distance d = p / 2^(j+1): v swaps half of the blocks it still reduces
// with v ^ d, keeping the lower half if v & d is clear, and reduces the partner's copy of
// the half it keeps; after k steps v holds block v reduced. 8 participants:
//
//   distance 4: 0-3 keep b0..b3, 4-7 keep b4..b7   (0 <-> 4, 1 <-> 5, 2 <-> 6, 3 <-> 7)
//   distance 2: 0,1 keep b0,b1; 2,3 keep b2,b3 ... (0 <-> 2, 1 <-> 3, 4 <-> 6, 5 <-> 7)
//   distance 1: v keeps bv                         (0 <-> 1, 2 <-> 3, ...)
//
// Other rank counts, as MPICH: with p the largest power of two below n and e = n - p, the
// first 2e ranks pair up. Rank 2i sends its buffer to 2i+1 ("fold"), which reduces it and
// takes part as participant i; ranks r >= 2e take part as r - e; at the end 2i+1 sends the
// result to 2i ("unfold"). n = 6:
//
//   fold        0 -> 1, 2 -> 3
//   halving-doubling among 1 3 4 5 (participants 0 1 2 3); 0 and 2 wait
//   unfold      1 -> 0, 3 -> 2
//
// The halves v receives shrink and nest, so each lands in fresh scratch right after the
// previous (v and its partner have kept the same ranges so far, so the sender knows where);
// the fold lands in [0, count) and the halving starts after it.
Schedule halving_doubling_allreduce(int rank, int nranks, std::size_t count) {
  detail::check_team("halving_doubling_allreduce", rank, nranks);
  int p = 1;
  while (p <= nranks / 2) p *= 2;
  const int extra = nranks - p;
  const int rounds = detail::ceil_log2(p);
  const auto steps = count == 0 ? 0 : static_cast<std::size_t>(2 * rounds + (extra > 0 ? 2 : 0));
  Schedule s = detail::make_schedule(
      rank, nranks, count, scratch_elements(Algorithm::halving_doubling_allreduce, nranks, count),
      steps);
  if (steps == 0) return s;

  const Block all{0, count};
  std::size_t step = 0;
  std::size_t staged = 0;  // where the next reduced range lands in scratch
  if (extra > 0) {
    if (rank < 2 * extra) {
      const int even = rank & ~1;
      detail::add(s, 0, detail::reduce_block(even, even + 1, all, 0));
      detail::add(s, steps - 1, detail::copy_block(even + 1, even, all));
      if (rank == even) return s;  // waits for the unfold
    }
    step = 1;
    staged = count;
  }
  const int v = rank < 2 * extra ? rank / 2 : rank - extra;
  auto real = [extra](int u) { return u < extra ? 2 * u + 1 : u + extra; };
  const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(p));

  int lo = 0;  // blocks [lo, hi) are still being reduced here
  int hi = p;
  for (int distance = p / 2; distance >= 1; distance /= 2, ++step) {
    const int partner = real(v ^ distance);
    const int mid = lo + (hi - lo) / 2;
    const bool upper = (v & distance) != 0;
    const Block keep = upper ? span_of(blocks, mid, hi) : span_of(blocks, lo, mid);
    const Block give = upper ? span_of(blocks, lo, mid) : span_of(blocks, mid, hi);
    detail::add(s, step, detail::reduce_block(rank, partner, give, staged));
    detail::add(s, step, detail::reduce_block(partner, rank, keep, staged));
    staged += keep.count;
    if (upper)
      lo = mid;
    else
      hi = mid;
  }
  doubling(s, step, v, p, blocks, real);
  return s;
}

// Recursive doubling allreduce: log2(p) steps, the whole buffer each, for messages too small
// for bandwidth to matter (halving-doubling takes twice the steps). In the step at distance d,
// participant v and v ^ d swap everything they have; the swapped data lands in scratch (a
// slot per step), and once both transfers are done the step's locals combine it: always the
// lower participant's value op the higher one's, so every rank computes the same expression
// and all end with the same bits (a + b and b + a can differ in a NaN's payload, min/max in
// the sign of a zero). The lower participant reduces into its buffer; the higher one reduces
// its buffer into the slot and copies the result back. Nothing is reduced into a range while
// it is being sent. Other rank counts fold and unfold as in halving_doubling_allreduce.
Schedule recursive_doubling_allreduce(int rank, int nranks, std::size_t count) {
  detail::check_team("recursive_doubling_allreduce", rank, nranks);
  int p = 1;
  while (p <= nranks / 2) p *= 2;
  const int extra = nranks - p;
  const int rounds = detail::ceil_log2(p);
  const auto steps = count == 0 ? 0 : static_cast<std::size_t>(rounds + (extra > 0 ? 2 : 0));
  Schedule s = detail::make_schedule(
      rank, nranks, count, scratch_elements(Algorithm::recursive_doubling_allreduce, nranks, count), steps);
  if (steps == 0) return s;

  const Block all{0, count};
  std::size_t step = 0;
  std::size_t slot = 0;
  if (extra > 0) {
    if (rank < 2 * extra) {
      const int even = rank & ~1;
      detail::add(s, 0, detail::reduce_block(even, even + 1, all, 0));
      detail::add(s, steps - 1, detail::copy_block(even + 1, even, all));
      if (rank == even) return s;
    }
    step = 1;
    slot = count;
  }
  const int v = rank < 2 * extra ? rank / 2 : rank - extra;
  auto real = [extra](int u) { return u < extra ? 2 * u + 1 : u + extra; };
  const Place mine{Memory::user, 0};
  for (int distance = 1; distance < p; distance *= 2, ++step, slot += count) {
    const int partner = real(v ^ distance);
    const Place theirs{Memory::scratch, slot};
    detail::add(s, step, {rank, partner, count, mine, theirs, Action::overwrite, 0});
    detail::add(s, step, {partner, rank, count, mine, theirs, Action::overwrite, 0});
    auto& local = s.steps[step].local;
    if ((v & distance) == 0) {
      local.push_back({Action::reduce, count, theirs, mine});
    } else {
      local.push_back({Action::reduce, count, mine, theirs});
      local.push_back({Action::overwrite, count, theirs, mine});
    }
  }
  return s;
}

Schedule recursive_doubling_allgather(int rank, int nranks, std::span<const Block> blocks) {
  detail::check_team("recursive_doubling_allgather", rank, nranks);
  detail::check_blocks("recursive_doubling_allgather", blocks, nranks);
  if ((nranks & (nranks - 1)) != 0)
    throw std::invalid_argument("recursive_doubling_allgather: nranks " + std::to_string(nranks) +
                                " is not a power of two");
  const bool empty =
      std::all_of(blocks.begin(), blocks.end(), [](const Block& b) { return b.count == 0; });
  const auto steps = empty ? 0 : static_cast<std::size_t>(detail::ceil_log2(nranks));
  Schedule s = detail::make_schedule(rank, nranks, detail::extent(blocks), 0, steps);
  if (steps > 0) doubling(s, 0, rank, nranks, blocks, [](int u) { return u; });
  return s;
}

}  // namespace rdmacoll::collectives::schedules
