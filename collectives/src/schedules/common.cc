// Block partitions, the pipelining combinator and the builders' shared helpers.
#include "schedules/common.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace rdmacoll::collectives::schedules {
namespace detail {

void check_team(const char* fn, int rank, int nranks) {
  if (nranks < 1)
    throw std::invalid_argument(std::string(fn) + ": nranks " + std::to_string(nranks) +
                                " (need at least 1)");
  if (rank < 0 || rank >= nranks)
    throw std::invalid_argument(std::string(fn) + ": rank " + std::to_string(rank) +
                                " outside [0, " + std::to_string(nranks) + ")");
}

void check_root(const char* fn, int root, int nranks) {
  if (root < 0 || root >= nranks)
    throw std::invalid_argument(std::string(fn) + ": root " + std::to_string(root) +
                                " outside [0, " + std::to_string(nranks) + ")");
}

void check_blocks(const char* fn, std::span<const Block> blocks, int nranks) {
  if (blocks.size() != static_cast<std::size_t>(nranks))
    throw std::invalid_argument(std::string(fn) + ": " + std::to_string(blocks.size()) +
                                " blocks for " + std::to_string(nranks) + " ranks");
  std::vector<Block> sorted(blocks.begin(), blocks.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const Block& a, const Block& b) { return a.offset < b.offset; });
  for (std::size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i - 1].offset + sorted[i - 1].count > sorted[i].offset)
      throw std::invalid_argument(std::string(fn) + ": blocks at offsets " +
                                  std::to_string(sorted[i - 1].offset) + " and " +
                                  std::to_string(sorted[i].offset) + " overlap");
}

std::size_t extent(std::span<const Block> blocks) {
  std::size_t end = 0;
  for (const Block& b : blocks) end = std::max(end, b.offset + b.count);
  return end;
}

int ceil_log2(int n) {
  int k = 0;
  while ((std::size_t{1} << k) < static_cast<std::size_t>(n)) ++k;
  return k;
}

Schedule make_schedule(int rank, int nranks, std::size_t count, std::size_t scratch,
                       std::size_t steps) {
  Schedule s;
  s.rank = rank;
  s.nranks = nranks;
  s.count = count;
  s.scratch = scratch;
  s.steps.resize(steps);
  return s;
}

void add(Schedule& s, std::size_t step, const Transfer& t) {
  if (t.count == 0) return;
  if (t.from == s.rank) s.steps[step].sends.push_back(t);
  if (t.to == s.rank) s.steps[step].recvs.push_back(t);
}

void append(Schedule& s, Schedule tail) {
  s.scratch = std::max(s.scratch, tail.scratch);
  s.steps.insert(s.steps.end(), std::make_move_iterator(tail.steps.begin()),
                 std::make_move_iterator(tail.steps.end()));
}

}  // namespace detail

std::vector<Block> even_blocks(std::size_t count, std::size_t parts) {
  if (parts == 0) throw std::invalid_argument("even_blocks: 0 parts");
  std::vector<Block> blocks(parts);
  const std::size_t base = count / parts;
  const std::size_t longer = count % parts;
  std::size_t offset = 0;
  for (std::size_t i = 0; i < parts; ++i) {
    blocks[i] = {offset, base + (i < longer ? 1 : 0)};
    offset += blocks[i].count;
  }
  return blocks;
}

std::vector<Block> segment_blocks(std::span<const Block> blocks, std::size_t begin,
                                  std::size_t length) {
  std::vector<Block> out;
  out.reserve(blocks.size());
  for (const Block& b : blocks) {
    const std::size_t start = std::min(begin, b.count);
    out.push_back({b.offset + start, std::min(length, b.count - start)});
  }
  return out;
}

// Instance k runs its step j in step j + k, so in one step rank i can forward piece k while
// it receives piece k+1. Pieces touch disjoint user ranges and get disjoint scratch, so the
// interleaved instances cannot disturb one another; each keeps its own step order.
//
//   step:      0    1    2    3    4          (3 pieces of a 3-step instance)
//   piece 0:  s0   s1   s2
//   piece 1:       s0   s1   s2
//   piece 2:            s0   s1   s2
Schedule pipelined(int rank, int nranks, std::size_t count, std::size_t pieces,
                   const std::function<Schedule(std::size_t piece_count)>& instance) {
  detail::check_team("pipelined", rank, nranks);
  if (pieces == 0) throw std::invalid_argument("pipelined: 0 pieces");
  pieces = std::min(pieces, count);
  if (pieces == 0) return detail::make_schedule(rank, nranks, count, 0, 0);

  const std::vector<Block> parts = even_blocks(count, pieces);
  std::vector<Schedule> instances;
  instances.reserve(pieces);
  std::size_t stride = 0;  // scratch per instance: the largest any of them declares
  for (const Block& part : parts) {
    instances.push_back(instance(part.count));
    stride = std::max(stride, instances.back().scratch);
  }
  const std::size_t steps = instances.front().steps.size();
  Schedule out = detail::make_schedule(rank, nranks, count, stride * pieces,
                                       steps == 0 ? 0 : steps + pieces - 1);

  for (std::size_t k = 0; k < pieces; ++k) {
    if (instances[k].steps.size() != steps)
      throw std::logic_error("pipelined: instances differ in their number of steps");
    // Every rank shifts the peer's places the same way: the piece and the scratch slice
    // are the same on every rank.
    auto shift = [&](Place& p) {
      p.offset += p.memory == Memory::user ? parts[k].offset : k * stride;
    };
    auto shifted = [&](Transfer t) {
      shift(t.src);
      shift(t.dst);
      if (t.action == Action::reduce) t.staging += k * stride;
      return t;
    };
    for (std::size_t j = 0; j < steps; ++j) {
      const Step& from = instances[k].steps[j];
      Step& to = out.steps[j + k];
      for (const Transfer& t : from.sends) to.sends.push_back(shifted(t));
      for (const Transfer& t : from.recvs) to.recvs.push_back(shifted(t));
      for (Local l : from.local) {
        shift(l.src);
        shift(l.dst);
        to.local.push_back(l);
      }
    }
  }
  return out;
}

}  // namespace rdmacoll::collectives::schedules
