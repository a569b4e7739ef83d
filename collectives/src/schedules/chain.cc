// Chain broadcast: root -> root+1 -> ... -> root-1. Alone it takes n-1 steps of the whole
// message; its point is pipelining (Spec::pieces = c): piece k leaves rank i in step i + k,
// so all links carry a piece at once and the time approaches one message's transfer time,
// (n - 2 + c) steps of 1/c of the data. The choice for large broadcasts.
//
//   3 pieces, 4 ranks:   step 0    step 1    step 2    step 3    step 4
//                        0-p0->1   0-p1->1   0-p2->1
//                                  1-p0->2   1-p1->2   1-p2->2
//                                            2-p0->3   2-p1->3   2-p2->3
#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {

Schedule chain_broadcast(int rank, int nranks, int root, std::size_t count) {
  detail::check_team("chain_broadcast", rank, nranks);
  detail::check_root("chain_broadcast", root, nranks);
  const int steps = count == 0 ? 0 : nranks - 1;
  Schedule s = detail::make_schedule(rank, nranks, count, 0, static_cast<std::size_t>(steps));
  if (steps == 0) return s;
  const int position = detail::wrap(rank - root, nranks);
  if (position + 1 < nranks)
    detail::add(s, static_cast<std::size_t>(position),
                detail::copy_block(rank, detail::wrap(rank + 1, nranks), {0, count}));
  if (position > 0)
    detail::add(s, static_cast<std::size_t>(position - 1),
                detail::copy_block(detail::wrap(rank - 1, nranks), rank, {0, count}));
  return s;
}

}  // namespace rdmacoll::collectives::schedules
