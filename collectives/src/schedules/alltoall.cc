// All-to-all of equal blocks in one step: every rank sends block q of its send region to rank q
// and receives rank q's block for it into block q of its receive region. The compressed
// allreduce's first phase (each rank's encoded share of every owner's block) is one.
#include <stdexcept>
#include <string>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {

Schedule alltoall(int rank, int nranks, std::size_t block) {
  detail::check_team("alltoall", rank, nranks);
  const auto n = static_cast<std::size_t>(nranks);
  if (block != 0 && n > SIZE_MAX / 2 / block)
    throw std::invalid_argument("alltoall: " + std::to_string(nranks) + " blocks of " + std::to_string(block) +
                                " elements overflow");
  Schedule s = detail::make_schedule(rank, nranks, 2 * n * block, 0, block == 0 || nranks == 1 ? 0 : 1);
  if (s.steps.empty()) return s;
  for (int q = 0; q < nranks; ++q) {
    if (q == rank) continue;
    const auto uq = static_cast<std::size_t>(q), ur = static_cast<std::size_t>(rank);
    detail::add(s, 0, {rank, q, block, {Memory::user, uq * block}, {Memory::user, (n + ur) * block}, Action::overwrite, 0});
    detail::add(s, 0, {q, rank, block, {Memory::user, ur * block}, {Memory::user, (n + uq) * block}, Action::overwrite, 0});
  }
  // This rank's own block, from its send region to its receive region.
  s.steps[0].local.push_back({Action::overwrite, block, {Memory::user, static_cast<std::size_t>(rank) * block},
                              {Memory::user, (n + static_cast<std::size_t>(rank)) * block}});
  return s;
}

}  // namespace rdmacoll::collectives::schedules
