// Reproducible reductions (RDMACOLL_DETERMINISTIC): reduce-scatter where the owner of each
// block forms the whole sum itself, in rank order, then the result is moved, never added to
// again. Rank b owns block b. In one step every rank sends its copy of block b to b, into a
// scratch slot per sender; then b combines the copies one rank at a time, the running value
// always the left operand (x_q is rank q's copy; b's own is read in place):
//
//   acc = x_0;  acc = acc op x_1;  acc = acc op x_2;  ...;  acc = acc op x_{n-1}
//
//   4 ranks, block 2:   r0 --x0--> r2 slot 0      then on r2:  slot 0 = slot 0 op slot 1
//                       r1 --x1--> r2 slot 1                   slot 0 = slot 0 op x_2 (own)
//                       r3 --x3--> r2 slot 2                   slot 0 = slot 0 op slot 2
//                                                              block 2 = slot 0
//
// (Block 0's owner accumulates in place: its own copy is x_0.) The sum is formed by one rank
// in one fixed order, so it does not depend on which algorithm moves the result afterwards,
// on segments, pieces or chunks, or on the order messages arrive in. The price: n-1
// messages into every rank in one step, fine for the moderate rank counts of training jobs.
#include <algorithm>
#include <vector>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {

Schedule ordered_reduce_scatter(int rank, int nranks, std::span<const Block> blocks) {
  detail::check_team("ordered_reduce_scatter", rank, nranks);
  detail::check_blocks("ordered_reduce_scatter", blocks, nranks);
  std::size_t longest = 0;
  for (const Block& b : blocks) longest = std::max(longest, b.count);
  const auto others = static_cast<std::size_t>(nranks - 1);
  const std::size_t steps = longest == 0 || nranks == 1 ? 0 : 1;
  Schedule s = detail::make_schedule(rank, nranks, detail::extent(blocks), others * longest, steps);
  if (steps == 0) return s;

  // Sender q's copy of block b lands in b's scratch slot q (slots skip b itself).
  auto slot = [&](int q, int b) -> Place {
    const auto index = static_cast<std::size_t>(q < b ? q : q - 1);
    return {Memory::scratch, index * detail::at(blocks, b).count};
  };
  const Block own = detail::at(blocks, rank);
  for (int q = 0; q < nranks; ++q) {
    if (q == rank) continue;
    const Block theirs = detail::at(blocks, q);
    detail::add(s, 0,
                {rank,
                 q,
                 theirs.count,
                 {Memory::user, theirs.offset},
                 slot(rank, q),
                 Action::overwrite,
                 0});
    detail::add(
        s, 0,
        {q, rank, own.count, {Memory::user, own.offset}, slot(q, rank), Action::overwrite, 0});
  }
  if (own.count == 0) return s;

  const Place in_place{Memory::user, own.offset};
  std::vector<Local>& local = s.steps[0].local;
  const Place acc = rank == 0 ? in_place : slot(0, rank);
  for (int q = 1; q < nranks; ++q)
    local.push_back({Action::reduce, own.count, q == rank ? in_place : slot(q, rank), acc});
  if (rank != 0) local.push_back({Action::overwrite, own.count, acc, in_place});
  return s;
}

Schedule ordered_allreduce(int rank, int nranks, std::size_t count) {
  detail::check_team("ordered_allreduce", rank, nranks);
  const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(nranks));
  Schedule s = ordered_reduce_scatter(rank, nranks, blocks);
  detail::append(s, ring_allgather(rank, nranks, blocks));
  return s;
}

// Then every rank sends its block to the root in one more step.
Schedule ordered_reduce(int rank, int nranks, int root, std::size_t count) {
  detail::check_team("ordered_reduce", rank, nranks);
  detail::check_root("ordered_reduce", root, nranks);
  const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(nranks));
  Schedule s = ordered_reduce_scatter(rank, nranks, blocks);
  if (s.steps.empty()) return s;
  s.steps.emplace_back();
  const std::size_t gather = s.steps.size() - 1;
  for (int q = 0; q < nranks; ++q)
    if (q != root) detail::add(s, gather, detail::copy_block(q, root, detail::at(blocks, q)));
  return s;
}

}  // namespace rdmacoll::collectives::schedules
