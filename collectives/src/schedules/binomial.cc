// Binomial-tree broadcast and reduce (any root), and the dissemination barrier: ceil(log2 n)
// steps each, the fewest possible, each moving the whole message. For small messages, where
// the per-message latency dominates.
#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {

using detail::wrap;

// Ranks relative to the root (v = rank - root mod n). In step k every rank that has the data
// (v < 2^k) sends it to v + 2^k:
//
//   step 0: 0->1     step 1: 0->2 1->3     step 2: 0->4 1->5 2->6 3->7
Schedule binomial_broadcast(int rank, int nranks, int root, std::size_t count) {
  detail::check_team("binomial_broadcast", rank, nranks);
  detail::check_root("binomial_broadcast", root, nranks);
  const int rounds = count == 0 ? 0 : detail::ceil_log2(nranks);
  Schedule s = detail::make_schedule(rank, nranks, count, 0, static_cast<std::size_t>(rounds));
  const int v = wrap(rank - root, nranks);
  auto real = [&](int u) { return wrap(u + root, nranks); };
  for (int k = 0; k < rounds; ++k) {
    const int reach = 1 << k;
    const auto step = static_cast<std::size_t>(k);
    if (v < reach && v + reach < nranks)
      detail::add(s, step, detail::copy_block(rank, real(v + reach), {0, count}));
    else if (v >= reach && v < 2 * reach)
      detail::add(s, step, detail::copy_block(real(v - reach), rank, {0, count}));
  }
  return s;
}

// The broadcast backwards: in step k, rank v with v mod 2^(k+1) == 2^k sends its partial sum
// to v - 2^k, which reduces it.
//
//   step 0: 1->0 3->2 5->4 7->6     step 1: 2->0 6->4     step 2: 4->0
//
// A rank's partial sums come from a different rank in each step, and none of them waits for
// this rank to finish reducing the previous one, so step k's lands in a scratch slot of its
// own, [k * count, (k+1) * count).
Schedule binomial_reduce(int rank, int nranks, int root, std::size_t count) {
  detail::check_team("binomial_reduce", rank, nranks);
  detail::check_root("binomial_reduce", root, nranks);
  const int rounds = count == 0 ? 0 : detail::ceil_log2(nranks);
  Schedule s = detail::make_schedule(rank, nranks, count,
                                     scratch_elements(Algorithm::binomial_reduce, nranks, count),
                                     static_cast<std::size_t>(rounds));
  const int v = wrap(rank - root, nranks);
  auto real = [&](int u) { return wrap(u + root, nranks); };
  for (int k = 0; k < rounds; ++k) {
    const int reach = 1 << k;
    const auto step = static_cast<std::size_t>(k);
    const std::size_t slot = step * count;
    if (v % (2 * reach) == reach)
      detail::add(s, step, detail::reduce_block(rank, real(v - reach), {0, count}, slot));
    else if (v % (2 * reach) == 0 && v + reach < nranks)
      detail::add(s, step, detail::reduce_block(real(v + reach), rank, {0, count}, slot));
  }
  return s;
}

// In step k rank r signals r + 2^k and waits for r - 2^k (mod n). After ceil(log2 n) steps
// every rank has heard, directly or through others, from every rank that entered.
//
//   n = 5    step 0: r -> r+1     step 1: r -> r+2     step 2: r -> r+4
Schedule dissemination_barrier(int rank, int nranks) {
  detail::check_team("dissemination_barrier", rank, nranks);
  const int rounds = detail::ceil_log2(nranks);
  Schedule s = detail::make_schedule(rank, nranks, 0, 0, static_cast<std::size_t>(rounds));
  for (int k = 0; k < rounds; ++k) {
    Step& step = s.steps[static_cast<std::size_t>(k)];
    step.sends.push_back({rank, wrap(rank + (1 << k), nranks), 0, {}, {}, Action::overwrite, 0});
    step.recvs.push_back({wrap(rank - (1 << k), nranks), rank, 0, {}, {}, Action::overwrite, 0});
  }
  return s;
}

}  // namespace rdmacoll::collectives::schedules
