// build(): one entry point over all algorithms, with their names, collectives and scratch.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "schedules/common.h"

namespace rdmacoll::collectives::schedules {
namespace {

struct Info {
  Algorithm algorithm;
  std::string_view name;
  Collective collective;
  Algorithm reproducible;
};

constexpr Info kInfo[] = {
    {Algorithm::ring_allreduce, "ring_allreduce", Collective::allreduce,
     Algorithm::ordered_allreduce},
    {Algorithm::double_binary_tree_allreduce, "double_binary_tree_allreduce", Collective::allreduce,
     Algorithm::ordered_allreduce},
    {Algorithm::halving_doubling_allreduce, "halving_doubling_allreduce", Collective::allreduce,
     Algorithm::ordered_allreduce},
    {Algorithm::recursive_doubling_allreduce, "recursive_doubling_allreduce", Collective::allreduce,
     Algorithm::ordered_allreduce},
    {Algorithm::ordered_allreduce, "ordered_allreduce", Collective::allreduce,
     Algorithm::ordered_allreduce},
    {Algorithm::ring_reduce_scatter, "ring_reduce_scatter", Collective::reduce_scatter,
     Algorithm::ordered_reduce_scatter},
    {Algorithm::ordered_reduce_scatter, "ordered_reduce_scatter", Collective::reduce_scatter,
     Algorithm::ordered_reduce_scatter},
    {Algorithm::ring_allgather, "ring_allgather", Collective::allgather, Algorithm::ring_allgather},
    {Algorithm::recursive_doubling_allgather, "recursive_doubling_allgather", Collective::allgather,
     Algorithm::recursive_doubling_allgather},
    {Algorithm::binomial_broadcast, "binomial_broadcast", Collective::broadcast,
     Algorithm::binomial_broadcast},
    {Algorithm::chain_broadcast, "chain_broadcast", Collective::broadcast,
     Algorithm::chain_broadcast},
    {Algorithm::binomial_reduce, "binomial_reduce", Collective::reduce, Algorithm::ordered_reduce},
    {Algorithm::ordered_reduce, "ordered_reduce", Collective::reduce, Algorithm::ordered_reduce},
    {Algorithm::dissemination_barrier, "dissemination_barrier", Collective::barrier,
     Algorithm::dissemination_barrier},
};

const Info* info(Algorithm algorithm) noexcept {
  for (const Info& i : kInfo)
    if (i.algorithm == algorithm) return &i;
  return nullptr;
}

const Info& checked_info(const char* fn, Algorithm algorithm) {
  if (const Info* i = info(algorithm)) return *i;
  throw std::invalid_argument(std::string(fn) + ": invalid Algorithm value " +
                              std::to_string(static_cast<int>(algorithm)));
}

// Pieces make sense where one buffer flows through the ranks, not for the block-wise
// collectives (a piece of a reduce-scatter would not keep block r on rank r).
void check_pieces(const char* fn, const Info& i, std::size_t pieces) {
  if (pieces == 0) throw std::invalid_argument(std::string(fn) + ": pieces is 0");
  const bool pipelinable = i.collective == Collective::allreduce ||
                           i.collective == Collective::broadcast ||
                           i.collective == Collective::reduce;
  if (pieces != 1 && !pipelinable)
    throw std::invalid_argument(std::string(fn) + ": " + std::string(i.name) +
                                " cannot be pipelined (pieces " + std::to_string(pieces) + ")");
}

}  // namespace

std::string_view to_string(Algorithm algorithm) noexcept {
  const Info* i = info(algorithm);
  return i ? i->name : "unknown";
}

Collective collective_of(Algorithm algorithm) {
  return checked_info("collective_of", algorithm).collective;
}

Algorithm reproducible(Algorithm algorithm) {
  return checked_info("reproducible", algorithm).reproducible;
}

Schedule build(const Spec& spec) {
  const Info& i = checked_info("build", spec.algorithm);
  check_pieces("build", i, spec.pieces);
  const int rank = spec.rank;
  const int n = spec.nranks;
  detail::check_team("build", rank, n);
  auto blocks = [&] { return even_blocks(spec.count, static_cast<std::size_t>(n)); };
  auto one = [&](std::size_t count) -> Schedule {
    switch (spec.algorithm) {
      case Algorithm::ring_allreduce: return ring_allreduce(rank, n, count);
      case Algorithm::double_binary_tree_allreduce:
        return double_binary_tree_allreduce(rank, n, count);
      case Algorithm::halving_doubling_allreduce: return halving_doubling_allreduce(rank, n, count);
      case Algorithm::recursive_doubling_allreduce: return recursive_doubling_allreduce(rank, n, count);
      case Algorithm::ordered_allreduce: return ordered_allreduce(rank, n, count);
      case Algorithm::ring_reduce_scatter: return ring_reduce_scatter(rank, n, blocks());
      case Algorithm::ordered_reduce_scatter: return ordered_reduce_scatter(rank, n, blocks());
      case Algorithm::ring_allgather: return ring_allgather(rank, n, blocks());
      case Algorithm::recursive_doubling_allgather:
        return recursive_doubling_allgather(rank, n, blocks());
      case Algorithm::binomial_broadcast: return binomial_broadcast(rank, n, spec.root, count);
      case Algorithm::chain_broadcast: return chain_broadcast(rank, n, spec.root, count);
      case Algorithm::binomial_reduce: return binomial_reduce(rank, n, spec.root, count);
      case Algorithm::ordered_reduce: return ordered_reduce(rank, n, spec.root, count);
      case Algorithm::dissemination_barrier: return dissemination_barrier(rank, n);
    }
    throw std::logic_error("build: unhandled algorithm");  // checked_info() let it through
  };
  if (spec.pieces == 1) return one(spec.count);
  return pipelined(rank, n, spec.count, spec.pieces, one);
}

std::size_t scratch_elements(Algorithm algorithm, int nranks, std::size_t count,
                             std::size_t pieces) {
  const Info& i = checked_info("scratch_elements", algorithm);
  check_pieces("scratch_elements", i, pieces);
  if (nranks < 1) throw std::invalid_argument("scratch_elements: nranks " + std::to_string(nranks));
  pieces = std::min(pieces, count);
  if (pieces > 1)  // as pipelined(): a slice per piece, each sized for the longest piece
    return pieces * scratch_elements(algorithm, nranks, (count + pieces - 1) / pieces);

  const auto n = static_cast<std::size_t>(nranks);
  switch (algorithm) {
    case Algorithm::ring_allreduce:
    case Algorithm::ring_reduce_scatter:  // every block but one's left neighbour's
      return count - count / n;
    case Algorithm::double_binary_tree_allreduce:  // a slot per child, at most two
      return (n > 3 ? 2 : n > 1 ? 1 : 0) * count;
    case Algorithm::halving_doubling_allreduce: {  // the fold, then p/2 + p/4 + ... blocks
      std::size_t p = 1;
      while (2 * p <= n) p *= 2;
      return (p < n ? count : 0) + (p - 1) * ((count + p - 1) / p);
    }
    case Algorithm::recursive_doubling_allreduce: {  // the fold, then a slot per step
      std::size_t p = 1;
      while (2 * p <= n) p *= 2;
      return ((p < n ? 1 : 0) + static_cast<std::size_t>(detail::ceil_log2(static_cast<int>(p)))) * count;
    }
    case Algorithm::ordered_allreduce:
    case Algorithm::ordered_reduce_scatter:
    case Algorithm::ordered_reduce:  // n-1 slots of the longest block
      return (n - 1) * ((count + n - 1) / n);
    case Algorithm::binomial_reduce:  // a slot per step
      return static_cast<std::size_t>(detail::ceil_log2(nranks)) * count;
    case Algorithm::ring_allgather:
    case Algorithm::recursive_doubling_allgather:
    case Algorithm::binomial_broadcast:
    case Algorithm::chain_broadcast:
    case Algorithm::dissemination_barrier: return 0;
  }
  return 0;  // unreachable: checked_info() refused anything else
}

}  // namespace rdmacoll::collectives::schedules
