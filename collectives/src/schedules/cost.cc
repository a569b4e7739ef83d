// The cost model the communicator picks algorithms with. Hockney's alpha-beta model plus a
// reduction term: for each algorithm, steps on the critical path x alpha + bytes a rank
// sends (or receives) along it x beta + bytes it reduces along it x gamma, with n the
// message's bytes and p the rank count. Rough by design: it only has to rank algorithms.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {
namespace {

// A pipelined algorithm of `steps` steps cut into c pieces takes steps + c - 1 steps, each
// moving per_step / c: T(c) = (steps + c - 1) (alpha + per_step / c), least near
// c = sqrt((steps - 1) per_step / alpha). Pieces hold at least one element.
Estimate pipeline(double steps, double per_step, double alpha, std::size_t count) {
  auto time = [&](double c) { return (steps + c - 1) * (alpha + per_step / c); };
  const double best =
      alpha > 0 ? std::sqrt((steps - 1) * per_step / alpha) : static_cast<double>(count);
  const double limit = std::max(1.0, static_cast<double>(count));
  const double lo = std::clamp(std::floor(best), 1.0, limit);
  const double hi = std::clamp(std::ceil(best), 1.0, limit);
  const double c = time(lo) <= time(hi) ? lo : hi;
  return {time(c), static_cast<std::size_t>(c)};
}

}  // namespace

Estimate estimate(Algorithm algorithm, int nranks, std::size_t count, std::size_t element_size,
                  const CostModel& m) {
  if (nranks < 1) throw std::invalid_argument("estimate: nranks " + std::to_string(nranks));
  const Collective collective = collective_of(algorithm);  // refuses invalid values
  if (nranks == 1 || (count == 0 && collective != Collective::barrier)) return {0, 1};

  const double p = nranks;
  const double n = static_cast<double>(count) * static_cast<double>(element_size);
  const double log_p = detail::ceil_log2(nranks);
  const double share = (p - 1) / p * n;  // all blocks but one's own
  switch (algorithm) {
    case Algorithm::ring_allreduce:
    case Algorithm::ordered_allreduce:  // n-1 messages in, then the ring allgather
      return {2 * (p - 1) * m.alpha + 2 * share * m.beta + share * m.gamma, 1};
    case Algorithm::halving_doubling_allreduce: {
      double q = 1;
      while (2 * q <= p) q *= 2;
      const double fold = q < p ? 1 : 0;  // whole buffer in and out once more
      const double moved = 2 * (q - 1) / q * n + 2 * fold * n;
      const double reduced = (q - 1) / q * n + fold * n;
      return {(2 * std::log2(q) + 2 * fold) * m.alpha + moved * m.beta + reduced * m.gamma, 1};
    }
    case Algorithm::recursive_doubling_allreduce: {
      double q = 1;
      while (2 * q <= p) q *= 2;
      const double fold = q < p ? 1 : 0;
      const double rounds = std::log2(q);
      return {(rounds + 2 * fold) * m.alpha + (rounds + 2 * fold) * n * m.beta + (rounds + fold) * n * m.gamma, 1};
    }
    case Algorithm::double_binary_tree_allreduce:
      // About 2 log2 p steps. Once the pipeline is full an inner rank sends four pieces of
      // a half per step (up one tree, down to two children, up the other tree as a leaf)
      // and reduces two.
      return pipeline(2 * log_p, n * (2 * m.beta + m.gamma), m.alpha, count);
    case Algorithm::ring_reduce_scatter:
    case Algorithm::ordered_reduce_scatter:
      return {(p - 1) * m.alpha + share * (m.beta + m.gamma), 1};
    case Algorithm::ring_allgather: return {(p - 1) * m.alpha + share * m.beta, 1};
    case Algorithm::recursive_doubling_allgather:
      if ((nranks & (nranks - 1)) != 0) return {std::numeric_limits<double>::infinity(), 1};
      return {log_p * m.alpha + share * m.beta, 1};
    case Algorithm::binomial_broadcast: return {log_p * (m.alpha + n * m.beta), 1};
    case Algorithm::chain_broadcast: return pipeline(p - 1, n * m.beta, m.alpha, count);
    case Algorithm::binomial_reduce: return {log_p * (m.alpha + n * (m.beta + m.gamma)), 1};
    case Algorithm::ordered_reduce:  // reduce-scatter, then n-1 blocks into the root
      return {2 * (p - 1) * m.alpha + 2 * share * m.beta + share * m.gamma, 1};
    case Algorithm::dissemination_barrier: return {log_p * m.alpha, 1};
  }
  return {std::numeric_limits<double>::infinity(), 1};  // unreachable: collective_of() checked
}

}  // namespace rdmacoll::collectives::schedules
