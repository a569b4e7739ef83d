// Every schedule, run by the in-memory simulator (schedule_sim.h) for many rank counts,
// element counts and roots: int64 sums must match a reference exactly, reproducible mode
// must match the rank-order fp32 sum bit for bit, and the schedules must be consistent
// (pairing, bounds, declared scratch, one-sided safety). Also the cost model.
#include "schedule.h"
#include "exec/control.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "schedule_sim.h"

namespace rdmacoll::collectives::schedules {
namespace {

constexpr int kRankCounts[] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 16};
// 0, 1, fewer than the ranks, odd sizes, and 3 MiB of int64 plus an odd remainder.
constexpr std::size_t kCounts[] = {0, 1, 7, 1023, 65537, 3 * (1u << 20) / 8 + 5};
constexpr std::size_t kLarge = 65537;  // above this, rooted collectives try two roots only

bool is_power_of_two(int n) { return (n & (n - 1)) == 0; }

bool pipelinable(Algorithm a) {
  const Collective c = collective_of(a);
  return c == Collective::allreduce || c == Collective::broadcast || c == Collective::reduce;
}

bool rooted(Algorithm a) {
  const Collective c = collective_of(a);
  return c == Collective::broadcast || c == Collective::reduce;
}

bool reduces(Algorithm a) {
  const Collective c = collective_of(a);
  return c == Collective::allreduce || c == Collective::reduce_scatter || c == Collective::reduce;
}

// Rank r's input element i: well-mixed 64-bit values (splitmix64), so a lost, doubled or
// misplaced contribution changes the sum.
std::uint64_t mix(std::uint64_t rank, std::uint64_t i) {
  std::uint64_t z = rank * 0x9E3779B97F4A7C15ull + i + 1;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// fp32 of mixed signs and magnitudes 2^-20 .. 2^20, so the order of a sum shows in its bits.
float mixed_float(std::uint64_t rank, std::uint64_t i) {
  const std::uint64_t h = mix(rank, i);
  const float unit = static_cast<float>(h & 0xFFFFFF) * 0x1p-24f - 0.5f;  // [-0.5, 0.5)
  return std::ldexp(unit, static_cast<int>((h >> 24) % 41) - 20);
}

std::int64_t input(int rank, std::size_t i) {
  return static_cast<std::int64_t>(mix(static_cast<std::uint64_t>(rank), i));
}

// v[rank] for rank-indexed vectors.
template <class Vector>
auto& at(Vector& v, int rank) {
  return v[static_cast<std::size_t>(rank)];
}

std::size_t end(const Block& b) { return b.offset + b.count; }

template <class T>
std::vector<std::byte> to_bytes(const std::vector<T>& v) {
  std::vector<std::byte> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

template <class T>
std::vector<T> from_bytes(const std::vector<std::byte>& b) {
  std::vector<T> v(b.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

std::vector<Schedule> build_all(Spec spec) {
  std::vector<Schedule> ranks;
  for (spec.rank = 0; spec.rank < spec.nranks; ++spec.rank) ranks.push_back(build(spec));
  return ranks;
}

// Checks every rank's schedule of `spec`: the declared scratch, validate(), and for the
// barrier that every rank hears from every other. Returns "" or the first problem.
std::string check_schedules(const std::vector<Schedule>& ranks, const Spec& spec) {
  const std::size_t declared =
      scratch_elements(spec.algorithm, spec.nranks, spec.count, spec.pieces);
  if (ranks[0].scratch != declared)
    return "declares scratch " + std::to_string(ranks[0].scratch) + ", scratch_elements says " +
           std::to_string(declared);
  const Validation v = validate(ranks, collective_of(spec.algorithm) == Collective::barrier);
  if (!v.error.empty()) return v.error;
  if (collective_of(spec.algorithm) == Collective::barrier)
    for (std::size_t r = 0; r < v.known.size(); ++r)
      for (std::size_t q = 0; q < v.known.size(); ++q)
        if (v.known[r][q] == 0)
          return "rank " + std::to_string(r) + " leaves without hearing from rank " +
                 std::to_string(q);
  return "";
}

// First index where got and want differ (only where `checked`), as a message; "" if none.
template <class T>
std::string first_difference(const std::vector<T>& got, const std::vector<T>& want, int rank,
                             Block checked) {
  for (std::size_t i = checked.offset; i < checked.offset + checked.count; ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0)
      return "rank " + std::to_string(rank) + " element " + std::to_string(i) + ": got " +
             std::to_string(got[i]) + ", want " + std::to_string(want[i]);
  return "";
}

// Runs `spec` on every rank with int64 sums and compares each rank's buffer, where the
// collective defines it, with a reference computed element by element.
std::string run_int64(const Spec& spec) {
  const std::vector<Schedule> ranks = build_all(spec);
  if (std::string e = check_schedules(ranks, spec); !e.empty()) return e;
  const Collective c = collective_of(spec.algorithm);
  if (c == Collective::barrier) return "";

  const int n = spec.nranks;
  const std::size_t count = spec.count;
  const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(n));
  std::vector<std::int64_t> sum(count, 0);
  std::vector<std::int64_t> owners(count);  // allgather: element i of its block's rank
  for (int b = 0; b < n; ++b)
    for (std::size_t i = at(blocks, b).offset; i < end(at(blocks, b)); ++i) owners[i] = input(b, i);
  std::vector<std::vector<std::byte>> user;
  for (int r = 0; r < n; ++r) {
    std::vector<std::int64_t> in(count);
    for (std::size_t i = 0; i < count; ++i) {
      in[i] = input(r, i);
      sum[i] = static_cast<std::int64_t>(static_cast<std::uint64_t>(sum[i]) +
                                         static_cast<std::uint64_t>(in[i]));
      // Allgather and broadcast must overwrite what the receivers had: give them junk.
      const bool junk = c == Collective::allgather
                            ? i < at(blocks, r).offset || i >= end(at(blocks, r))
                            : c == Collective::broadcast && r != spec.root;
      if (junk) in[i] = input(1000 + r, i);
    }
    user.push_back(to_bytes(in));
  }
  std::vector<std::int64_t> root_input;
  if (c == Collective::broadcast) root_input = from_bytes<std::int64_t>(at(user, spec.root));

  run(ranks, DataType::i64, user);

  for (int r = 0; r < n; ++r) {
    const std::vector<std::int64_t> got = from_bytes<std::int64_t>(at(user, r));
    const Block all{0, count};
    std::string e;
    switch (c) {
      case Collective::allreduce: e = first_difference(got, sum, r, all); break;
      case Collective::reduce_scatter: e = first_difference(got, sum, r, at(blocks, r)); break;
      case Collective::allgather: e = first_difference(got, owners, r, all); break;
      case Collective::broadcast: e = first_difference(got, root_input, r, all); break;
      case Collective::reduce:
        if (r == spec.root) e = first_difference(got, sum, r, all);
        break;
      case Collective::barrier: break;
    }
    if (!e.empty()) return e;
  }
  return "";
}

std::string name(const Spec& s) {
  return std::string(to_string(s.algorithm)) + " nranks " + std::to_string(s.nranks) + " count " +
         std::to_string(s.count) + " root " + std::to_string(s.root) + " pieces " +
         std::to_string(s.pieces);
}

// ---- every algorithm against the reference ----------------------------------------------------

class EveryAlgorithm : public testing::TestWithParam<Algorithm> {};

TEST_P(EveryAlgorithm, MatchesTheReferenceForAllRankCountsSizesAndRoots) {
  const Algorithm a = GetParam();
  for (int n : kRankCounts) {
    if (a == Algorithm::recursive_doubling_allgather && !is_power_of_two(n)) {
      EXPECT_THROW(build({a, 0, n, 8}), std::invalid_argument) << n;
      continue;
    }
    for (std::size_t count : kCounts) {
      std::vector<int> roots{0};
      if (rooted(a) && count <= kLarge)
        for (int root = 1; root < n; ++root) roots.push_back(root);
      else if (rooted(a) && n > 1)
        roots.push_back(n - 1);
      for (int root : roots)
        for (std::size_t pieces : {1u, 3u}) {
          // Pieces are instances of the same schedule: two roots and no giant count suffice.
          if (pieces > 1 && (!pipelinable(a) || count > kLarge || (root != 0 && root != n - 1)))
            continue;
          const Spec spec{a, 0, n, count, root, pieces};
          ASSERT_EQ(run_int64(spec), "") << name(spec);
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Schedules, EveryAlgorithm, testing::ValuesIn(kAllAlgorithms),
                         [](const testing::TestParamInfo<Algorithm>& param) {
                           return std::string(to_string(param.param));
                         });

// ---- shapes -----------------------------------------------------------------------------------

// The ring the argument check goes round (exec/control.h): one cycle through every rank, the
// same on every rank; where n is a power of two each rank's next is a partner it sends data to
// in recursive doubling, so a small allreduce's ring check rides a data message on every rank.
TEST(Schedules, TheRingCheckGoesRoundEveryRankThroughRecursiveDoublingPartners) {
  for (int n = 1; n <= 17; ++n) {
    std::vector<char> seen(static_cast<std::size_t>(n), 0);
    int r = 0;
    for (int i = 0; i < n; ++i, r = exec::ring_next(r, n)) {
      ASSERT_FALSE(seen[static_cast<std::size_t>(r)]) << "n=" << n << " rank " << r << " twice";
      seen[static_cast<std::size_t>(r)] = 1;
      ASSERT_EQ(exec::ring_prev(exec::ring_next(r, n), n), r) << "n=" << n;
    }
    EXPECT_EQ(r, 0) << "n=" << n << ": not one cycle";
    if ((n & (n - 1)) != 0) {
      EXPECT_EQ(exec::ring_next(n - 1, n), 0) << "rank order where n is not a power of two";
      continue;
    }
    const std::vector<Schedule> all = build_all({Algorithm::recursive_doubling_allreduce, 0, n, 2});
    for (int q = 0; q < n && n > 1; ++q) {
      bool sends = false;
      for (const auto& step : all[static_cast<std::size_t>(q)].steps)
        for (const Transfer& t : step.sends) sends = sends || t.to == exec::ring_next(q, n);
      EXPECT_TRUE(sends) << "n=" << n << ": rank " << q << " sends nothing to its next, " << exec::ring_next(q, n);
    }
  }
}

TEST(Schedules, TakeTheNumberOfStepsTheirDiagramsShow) {
  auto steps = [](Algorithm a, int n, std::size_t pieces = 1) {
    return build({a, 0, n, 1000, 0, pieces}).steps.size();
  };
  EXPECT_EQ(steps(Algorithm::ring_allreduce, 5), 8u);                // 2 (n-1)
  EXPECT_EQ(steps(Algorithm::ring_reduce_scatter, 5), 4u);           // n-1
  EXPECT_EQ(steps(Algorithm::halving_doubling_allreduce, 8), 6u);    // 2 log2 n
  EXPECT_EQ(steps(Algorithm::halving_doubling_allreduce, 6), 6u);    // + fold, unfold
  EXPECT_EQ(steps(Algorithm::recursive_doubling_allreduce, 8), 3u);  // log2 n
  EXPECT_EQ(steps(Algorithm::recursive_doubling_allreduce, 6), 4u);  // + fold, unfold
  EXPECT_EQ(steps(Algorithm::recursive_doubling_allreduce, 2), 1u);
  EXPECT_EQ(steps(Algorithm::double_binary_tree_allreduce, 8), 6u);  // up 3, down 3
  EXPECT_EQ(steps(Algorithm::recursive_doubling_allgather, 16), 4u);
  EXPECT_EQ(steps(Algorithm::binomial_broadcast, 5), 3u);  // ceil(log2 n)
  EXPECT_EQ(steps(Algorithm::binomial_reduce, 8), 3u);
  EXPECT_EQ(steps(Algorithm::chain_broadcast, 5), 4u);       // n-1
  EXPECT_EQ(steps(Algorithm::chain_broadcast, 5, 10), 13u);  // + pieces-1
  EXPECT_EQ(steps(Algorithm::dissemination_barrier, 11), 4u);
  EXPECT_EQ(steps(Algorithm::ordered_allreduce, 4), 4u);  // 1 + ring allgather
  EXPECT_EQ(steps(Algorithm::ring_allreduce, 1), 0u);
  EXPECT_EQ(build({Algorithm::ring_allreduce, 0, 4, 0}).steps.size(), 0u);  // nothing to move
}

// The compressed allreduce's first phase: block q of rank r's send region ends up in block r of
// rank q's receive region, in n-1 steps of one exchange per rank (both directions with one
// peer where n is a power of two).
TEST(Alltoall, DeliversEveryBlockToItsOwnerOneExchangePerStep) {
  for (int n : kRankCounts) {
    for (std::size_t block : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
      const auto un = static_cast<std::size_t>(n);
      std::vector<Schedule> ranks;
      std::vector<std::vector<std::byte>> user;
      for (int r = 0; r < n; ++r) {
        ranks.push_back(alltoall(r, n, block));
        std::vector<std::int64_t> mem(2 * un * block, -1);
        for (std::size_t i = 0; i < un * block; ++i) mem[i] = static_cast<std::int64_t>(mix(r, i));
        user.push_back(to_bytes(mem));
      }
      const std::string where = "nranks " + std::to_string(n) + " block " + std::to_string(block);
      const Validation v = validate(ranks, false);
      ASSERT_EQ(v.error, "") << where;
      const std::size_t steps = block == 0 || n == 1 ? 0 : un - 1;
      const bool pairs = (n & (n - 1)) == 0;
      for (const Schedule& s : ranks) {
        ASSERT_EQ(s.steps.size(), steps) << where;
        for (const Step& st : s.steps) {
          ASSERT_EQ(st.sends.size(), 1u) << where;
          ASSERT_EQ(st.recvs.size(), 1u) << where;
          if (pairs) {
            EXPECT_EQ(st.sends[0].to, st.recvs[0].from) << where;
          }
        }
      }
      if (n == 1) continue;  // no steps: one rank's caller copies its block itself
      run(ranks, DataType::i64, user);
      for (int r = 0; r < n; ++r) {
        const std::vector<std::int64_t> got = from_bytes<std::int64_t>(user[static_cast<std::size_t>(r)]);
        for (std::size_t q = 0; q < un; ++q)
          for (std::size_t i = 0; i < block; ++i)
            ASSERT_EQ(got[(un + q) * block + i], static_cast<std::int64_t>(mix(q, static_cast<std::size_t>(r) * block + i)))
                << where << ": rank " << r << " block from " << q << " element " << i;
      }
    }
  }
}

TEST(Schedules, EvenBlocksPutTheRemainderFirst) {
  const std::vector<Block> blocks = even_blocks(10, 4);
  EXPECT_EQ(blocks, (std::vector<Block>{{0, 3}, {3, 3}, {6, 2}, {8, 2}}));
  EXPECT_EQ(even_blocks(2, 4), (std::vector<Block>{{0, 1}, {1, 1}, {2, 0}, {2, 0}}));
  EXPECT_EQ(segment_blocks(blocks, 2, 2), (std::vector<Block>{{2, 1}, {5, 1}, {8, 0}, {10, 0}}));
}

TEST(Schedules, ScratchNeverShrinksAsTheCountGrows) {
  for (Algorithm a : kAllAlgorithms)
    for (int n : kRankCounts)
      for (std::size_t pieces : {1u, 3u, 64u}) {
        if (pieces > 1 && !pipelinable(a)) continue;
        std::size_t previous = 0;
        for (std::size_t count = 0; count < 400; ++count) {
          const std::size_t now = scratch_elements(a, n, count, pieces);
          ASSERT_GE(now, previous) << to_string(a) << " n " << n << " count " << count;
          previous = now;
        }
      }
}

// ---- segments: how the executor splits large reduce-scatters and allgathers -------------------

TEST(Segments, KeepBlockROnRankR) {
  using Builder = Schedule (*)(int, int, std::span<const Block>);
  const Builder builders[] = {ring_reduce_scatter, ordered_reduce_scatter, ring_allgather,
                              recursive_doubling_allgather};
  for (Builder make : builders)
    for (int n : {3, 4, 5, 8})
      for (std::size_t count : {7u, 1023u, 65537u})
        for (std::size_t segment : {1u, 100u, 4096u}) {
          const bool gather = make == ring_allgather || make == recursive_doubling_allgather;
          if (make == recursive_doubling_allgather && !is_power_of_two(n)) continue;
          if (count / static_cast<std::size_t>(n) / segment > 100) continue;  // keep it quick
          SCOPED_TRACE("n " + std::to_string(n) + " count " + std::to_string(count) + " segment " +
                       std::to_string(segment));
          const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(n));
          std::vector<std::vector<std::byte>> user;
          for (int r = 0; r < n; ++r) {
            std::vector<std::int64_t> in(count);
            for (std::size_t i = 0; i < count; ++i) in[i] = input(r, i);
            user.push_back(to_bytes(in));
          }
          for (std::size_t begin = 0; begin < blocks[0].count; begin += segment) {
            const std::vector<Block> part = segment_blocks(blocks, begin, segment);
            std::vector<Schedule> ranks;
            for (int r = 0; r < n; ++r) ranks.push_back(make(r, n, part));
            ASSERT_EQ(validate(ranks, false).error, "");
            run(ranks, DataType::i64, user);
          }
          for (int r = 0; r < n; ++r) {
            const auto got = from_bytes<std::int64_t>(at(user, r));
            for (int b = 0; b < n; ++b) {
              if (!gather && b != r) continue;  // reduce-scatter defines block r only
              for (std::size_t i = at(blocks, b).offset; i < end(at(blocks, b)); ++i) {
                std::uint64_t want = 0;  // allgather: b's element; reduce-scatter: the sum
                for (int q = 0; q < n; ++q)
                  if (!gather || q == b) want += static_cast<std::uint64_t>(input(q, i));
                ASSERT_EQ(static_cast<std::uint64_t>(got[i]), want) << "rank " << r << " at " << i;
              }
            }
          }
        }
}

// ---- reproducible mode ------------------------------------------------------------------------

// Runs a reducing collective on fp32 and returns every rank's buffer.
std::vector<std::vector<float>> run_f32(const Spec& spec) {
  const std::vector<Schedule> ranks = build_all(spec);
  EXPECT_EQ(check_schedules(ranks, spec), "") << name(spec);
  std::vector<std::vector<std::byte>> user;
  for (int r = 0; r < spec.nranks; ++r) {
    std::vector<float> in(spec.count);
    for (std::size_t i = 0; i < spec.count; ++i)
      in[i] = mixed_float(static_cast<std::uint64_t>(r), i);
    user.push_back(to_bytes(in));
  }
  run(ranks, DataType::f32, user);
  std::vector<std::vector<float>> out;
  for (const auto& bytes : user) out.push_back(from_bytes<float>(bytes));
  return out;
}

// x_0 + x_1 + ... + x_{n-1}, left to right, in float: the order ordered.cc documents.
std::vector<float> rank_order_sum(int n, std::size_t count) {
  std::vector<float> acc(count);
  for (std::size_t i = 0; i < count; ++i) {
    acc[i] = mixed_float(0, i);
    for (int q = 1; q < n; ++q) acc[i] = acc[i] + mixed_float(static_cast<std::uint64_t>(q), i);
  }
  return acc;
}

bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

TEST(Reproducible, EveryReductionSumsInRankOrderBitForBit) {
  std::vector<Algorithm> ordered;  // what the reducing algorithms turn into
  for (Algorithm a : kAllAlgorithms) {
    const Algorithm r = reproducible(a);
    EXPECT_EQ(collective_of(r), collective_of(a)) << to_string(a);
    if (!reduces(a))
      EXPECT_EQ(r, a) << to_string(a);
    else if (std::find(ordered.begin(), ordered.end(), r) == ordered.end())
      ordered.push_back(r);
  }
  EXPECT_EQ(ordered.size(), 3u);  // one per reducing collective
  for (Algorithm a : ordered) {
    for (int n : kRankCounts)
      for (std::size_t count :
           {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1023}, kLarge}) {
        const std::vector<float> want = rank_order_sum(n, count);
        const std::vector<Block> blocks = even_blocks(count, static_cast<std::size_t>(n));
        std::vector<int> roots{0};
        if (rooted(a) && n > 1) roots.push_back(n - 1);
        for (int root : roots)
          for (std::size_t pieces : {1u, 3u}) {
            if (pieces > 1 && !pipelinable(a)) continue;
            const Spec spec{a, 0, n, count, root, pieces};
            const std::vector<std::vector<float>> got = run_f32(spec);
            for (int r = 0; r < n; ++r) {
              if (collective_of(a) == Collective::reduce && r != root) continue;
              const Block b =
                  collective_of(a) == Collective::reduce_scatter ? at(blocks, r) : Block{0, count};
              for (std::size_t i = b.offset; i < end(b); ++i)
                ASSERT_TRUE(same_bits(at(got, r)[i], want[i]))
                    << name(spec) << " rank " << r << " element " << i << ": " << at(got, r)[i]
                    << " vs " << want[i];
            }
          }
      }
  }
}

// The check above has teeth: with this data, summing in another order changes bits.
TEST(Reproducible, OtherAlgorithmsSumInOtherOrders) {
  const std::size_t count = 1023;
  const std::vector<float> want = rank_order_sum(8, count);
  for (Algorithm a : {Algorithm::ring_allreduce, Algorithm::double_binary_tree_allreduce,
                      Algorithm::halving_doubling_allreduce, Algorithm::recursive_doubling_allreduce}) {
    const std::vector<float> got = run_f32({a, 0, 8, count})[3];
    std::size_t differ = 0;
    for (std::size_t i = 0; i < count; ++i) differ += same_bits(got[i], want[i]) ? 0u : 1u;
    EXPECT_GT(differ, 0u) << to_string(a);
  }
}

// Recursive doubling combines on every rank at once, in one canonical order, so all ranks end
// with the same bits (the other allreduces reduce each element on one rank and copy it).
TEST(RecursiveDoubling, EveryRankEndsWithTheSameBits) {
  for (int n : {2, 5, 6, 8}) {
    const std::vector<std::vector<float>> got = run_f32({Algorithm::recursive_doubling_allreduce, 0, n, 4099});
    for (int r = 1; r < n; ++r)
      EXPECT_EQ(std::memcmp(got[static_cast<std::size_t>(r)].data(), got[0].data(), 4099 * sizeof(float)), 0)
          << "rank " << r << " of " << n;
  }
}

// ---- cost model -------------------------------------------------------------------------------

double seconds(Algorithm a, int n, std::size_t bytes) {
  return estimate(a, n, bytes / 8, 8).seconds;
}

TEST(CostModel, PicksLatencyAlgorithmsForSmallAndBandwidthAlgorithmsForLarge) {
  const std::size_t small = 8;
  const std::size_t large = 64u << 20;
  const double ring_small = seconds(Algorithm::ring_allreduce, 8, small);
  EXPECT_LT(seconds(Algorithm::halving_doubling_allreduce, 8, small), ring_small);
  EXPECT_LT(seconds(Algorithm::double_binary_tree_allreduce, 8, small), ring_small);
  EXPECT_LT(seconds(Algorithm::recursive_doubling_allreduce, 8, small),
            seconds(Algorithm::halving_doubling_allreduce, 8, small));
  EXPECT_LT(seconds(Algorithm::halving_doubling_allreduce, 8, large),
            seconds(Algorithm::recursive_doubling_allreduce, 8, large));

  const double tree_large = seconds(Algorithm::double_binary_tree_allreduce, 8, large);
  EXPECT_LT(seconds(Algorithm::ring_allreduce, 8, large), tree_large);
  EXPECT_LT(seconds(Algorithm::halving_doubling_allreduce, 8, large), tree_large);

  EXPECT_LT(seconds(Algorithm::binomial_broadcast, 8, small),
            seconds(Algorithm::chain_broadcast, 8, small));
  EXPECT_LT(seconds(Algorithm::chain_broadcast, 8, large),
            seconds(Algorithm::binomial_broadcast, 8, large));
  EXPECT_LT(seconds(Algorithm::recursive_doubling_allgather, 8, small),
            seconds(Algorithm::ring_allgather, 8, small));
}

TEST(CostModel, PipelinesLargeMessagesOnly) {
  EXPECT_EQ(estimate(Algorithm::chain_broadcast, 8, 1, 8).pieces, 1u);
  const Estimate large = estimate(Algorithm::chain_broadcast, 8, 8u << 20, 8);
  EXPECT_GT(large.pieces, 1u);
  EXPECT_LE(large.pieces, std::size_t{8} << 20);
  EXPECT_GT(estimate(Algorithm::double_binary_tree_allreduce, 8, 8u << 20, 8).pieces, 1u);
  EXPECT_EQ(estimate(Algorithm::ring_allreduce, 8, 8u << 20, 8).pieces, 1u);
}

TEST(CostModel, EdgeCases) {
  EXPECT_EQ(estimate(Algorithm::ring_allreduce, 1, 1000, 4).seconds, 0.0);
  EXPECT_EQ(estimate(Algorithm::ring_allreduce, 4, 0, 4).seconds, 0.0);
  EXPECT_GT(estimate(Algorithm::dissemination_barrier, 4, 0, 4).seconds, 0.0);
  EXPECT_EQ(estimate(Algorithm::recursive_doubling_allgather, 6, 1000, 4).seconds,
            std::numeric_limits<double>::infinity());
  EXPECT_THROW(estimate(Algorithm::ring_allreduce, 0, 1, 4), std::invalid_argument);
  EXPECT_THROW(estimate(static_cast<Algorithm>(99), 4, 1, 4), std::invalid_argument);
}

// ---- arguments --------------------------------------------------------------------------------

TEST(Schedules, RefuseBadArguments) {
  EXPECT_THROW(build({Algorithm::ring_allreduce, 4, 4, 10}), std::invalid_argument);
  EXPECT_THROW(build({Algorithm::ring_allreduce, 0, 0, 10}), std::invalid_argument);
  EXPECT_THROW(build({Algorithm::binomial_broadcast, 0, 4, 10, 4}), std::invalid_argument);
  EXPECT_THROW(build({Algorithm::ring_allreduce, 0, 4, 10, 0, 0}), std::invalid_argument);
  EXPECT_THROW(build({Algorithm::ring_reduce_scatter, 0, 4, 10, 0, 2}), std::invalid_argument);
  EXPECT_THROW(build({static_cast<Algorithm>(99), 0, 4, 10}), std::invalid_argument);
  const std::vector<Block> overlapping{{0, 5}, {4, 5}};
  EXPECT_THROW(ring_reduce_scatter(0, 2, overlapping), std::invalid_argument);
  EXPECT_THROW(ring_allgather(0, 3, overlapping), std::invalid_argument);
  EXPECT_EQ(to_string(static_cast<Algorithm>(99)), "unknown");
}

}  // namespace
}  // namespace rdmacoll::collectives::schedules
