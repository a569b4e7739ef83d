// The communicator end to end: every collective, algorithm, datatype and op between processes,
// against a reference reduction. Built twice (see CMakeLists.txt): UCX over shared memory and
// tcp on the host (COMM_HOST), verbs where there is an RDMA device (COMM_RDMA: the guest).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <time.h>

#include "comm_fixture.h"
#include "comm_test_util.h"
#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/error.h"
#include "rdmacoll/transport/ib_info.h"
#include "support/env.h"
#include "support/multiproc.h"

namespace rdmacoll::collectives {
namespace {

using rdmacoll::testing::RankGroup;
using rdmacoll::testing::ScopedEnv;
using namespace rdmacoll::collectives::testing;

constexpr size_t kCounts[] = {0, 1, 7, 1023, 65537};
constexpr AllreduceAlgorithm kAlgorithms[] = {AllreduceAlgorithm::ring, AllreduceAlgorithm::double_binary_tree,
                                              AllreduceAlgorithm::halving_doubling,
                                              AllreduceAlgorithm::recursive_doubling};

// ctest names must differ between the two binaries (labels are set by name).
#if defined(COMM_RDMA)
#define COMM_SUITE CommunicatorVerbs
#define COMM_INSTANCE Verbs
#else
#define COMM_SUITE CommunicatorUcx
#define COMM_INSTANCE Ucx
#endif

#if defined(COMM_RDMA)
// Soft-RoCE in a TCG guest is slow: fewer ranks there; the host covers 1..8.
const int kRanks[] = {2, 3, 4};
#else
const int kRanks[] = {1, 2, 3, 4, 5, 7, 8};
#endif

void check_allreduce(Communicator& c, DataType type, ReduceOp op, size_t count, const CallOptions& o, bool in_place) {
  const size_t es = dtype_size(type);
  std::vector<char> in = input(type, op, c.rank(), count), out(count * es, '\x5a');
  if (in_place) out = in;
  c.allreduce(in_place ? out.data() : in.data(), out.data(), count, type, op, o);
  const std::vector<char> want = reference(type, op, c.size(), count);
  EXPECT_EQ(first_difference(out.data(), want.data(), count, es), -1)
      << "allreduce " << to_string(type) << " " << to_string(op) << " count " << count << " algorithm "
      << to_string(o.algorithm.value_or(AllreduceAlgorithm::automatic)) << (in_place ? " in place" : "")
      << " on " << c.size() << " ranks";
  if (!in_place) {
    EXPECT_EQ(in, input(type, op, c.rank(), count)) << "the input changed";
  }
}

class Ranks : public ::testing::TestWithParam<int> {};

// Every algorithm at every element count; then every datatype and op.
TEST_P(Ranks, MultiRankAllreduceMatrix) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(GetParam(), [](Communicator& c) {
    int k = 0;
    for (AllreduceAlgorithm a : kAlgorithms)
      for (size_t count : kCounts) check_allreduce(c, DataType::f32, ReduceOp::sum, count, {a, {}}, ++k % 2 == 0);
    for (DataType type : kAllDataTypes)
      for (ReduceOp op : kAllReduceOps) {
        const AllreduceAlgorithm a = kAlgorithms[static_cast<size_t>(k) % std::size(kAlgorithms)];
        check_allreduce(c, type, op, 1023, {a, {}}, ++k % 2 == 0);
      }
    // The automatic choice and the deterministic (ordered) schedules.
    check_allreduce(c, DataType::i64, ReduceOp::sum, 65537, {}, false);
    check_allreduce(c, DataType::bf16, ReduceOp::avg, 7, {AllreduceAlgorithm::ring, true}, true);
  });
}

// reduce_scatter leaves block r on rank r; allgather gathers every rank's block.
TEST_P(Ranks, MultiRankReduceScatterAllgatherBroadcastReduce) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(GetParam(), [](Communicator& c) {
    const int n = c.size(), me = c.rank();
    int k = 0;
    for (size_t count : kCounts) {
      for (auto [type, op] : {std::pair{DataType::i32, ReduceOp::sum}, std::pair{DataType::f16, ReduceOp::max},
                              std::pair{DataType::f64, ReduceOp::avg}}) {
        const size_t es = dtype_size(type);
        const auto mine = schedules_blocks(count, n, me);
        std::vector<char> in = input(type, op, me, count), out(count * es, 0);
        const bool in_place = ++k % 2 == 0;
        if (in_place) out = in;
        c.reduce_scatter(in_place ? out.data() : in.data(), out.data(), count, type, op, {{}, k % 3 == 0});
        const std::vector<char> want = reference(type, op, n, count);
        EXPECT_EQ(first_difference(out.data() + mine.first * es, want.data() + mine.first * es, mine.second, es), -1)
            << "reduce_scatter " << to_string(type) << " " << to_string(op) << " count " << count;
      }
      // allgather: rank q's block holds q's input.
      std::vector<char> full(count), gathered(count, 0);
      for (size_t i = 0; i < count; ++i) full[i] = static_cast<char>(i * 31 + 7);
      std::vector<char> in(count, 0);
      const auto mine = schedules_blocks(count, n, me);
      // count 0: data() is null, and memcpy's pointers must not be, even for 0 bytes.
      if (mine.second > 0) std::memcpy(in.data() + mine.first, full.data() + mine.first, mine.second);
      c.allgather(in.data(), gathered.data(), count, DataType::u8);
      EXPECT_EQ(gathered, full) << "allgather count " << count;
      // broadcast and reduce from a root that moves.
      const int root = static_cast<int>(count % static_cast<size_t>(n));
      std::vector<char> bin = input(DataType::f64, ReduceOp::sum, root, count), bout(count * 8, 0);
      c.broadcast(me == root ? bin.data() : nullptr, bout.data(), count, DataType::f64, root);
      EXPECT_EQ(bout, bin) << "broadcast count " << count << " root " << root;
      std::vector<char> rin = input(DataType::i8, ReduceOp::prod, me, count), rout(count, 0);
      c.reduce(rin.data(), rout.data(), count, DataType::i8, ReduceOp::prod, root, {{}, k % 2 == 0});
      if (me == root) {
        EXPECT_EQ(rout, reference(DataType::i8, ReduceOp::prod, n, count)) << "reduce count " << count;
      }
      c.barrier();
    }
  });
}

INSTANTIATE_TEST_SUITE_P(COMM_INSTANCE, Ranks, ::testing::ValuesIn(kRanks), [](const auto& param_info) {
  return std::to_string(param_info.param) + "ranks";
});

// A few MiB plus an odd remainder, every algorithm, on 3 and 4 ranks.
class LargeRanks : public ::testing::TestWithParam<int> {};
TEST_P(LargeRanks, MultiRankAllreduceLarge) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(GetParam(), [](Communicator& c) {
    const size_t count = (3u << 20) / 4 + 5;
    for (AllreduceAlgorithm a : kAlgorithms) check_allreduce(c, DataType::f32, ReduceOp::sum, count, {a, {}}, false);
    check_allreduce(c, DataType::i32, ReduceOp::max, count, {{}, true}, true);
  });
}
INSTANTIATE_TEST_SUITE_P(COMM_INSTANCE, LargeRanks, ::testing::Values(3, 4), [](const auto& param_info) {
  return std::to_string(param_info.param) + "ranks";
});

// Random floats: each algorithm within the error bound of its order of operations; the
// deterministic mode bitwise equal to the rank-order sum, whatever algorithm was asked for.
TEST(COMM_SUITE, MultiRankFloatSumsAndDeterministicMode) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(5, [](Communicator& c) {
    constexpr size_t count = 65537;
    const int n = c.size();
    auto values = [](int rank) {  // count is a constant: nothing to capture
      std::mt19937 gen(static_cast<unsigned>(1234 + rank));
      std::uniform_real_distribution<float> d(-1, 1);
      std::vector<float> v(count);
      for (float& x : v) x = d(gen);
      return v;
    };
    std::vector<float> ordered = values(0);
    std::vector<double> exact(ordered.begin(), ordered.end()), magnitude(count);
    for (size_t i = 0; i < count; ++i) magnitude[i] = std::fabs(ordered[i]);
    for (int q = 1; q < n; ++q) {
      std::vector<float> x = values(q);
      reduce_into(DataType::f32, ReduceOp::sum, ordered.data(), x.data(), count);
      for (size_t i = 0; i < count; ++i) exact[i] += x[i], magnitude[i] += std::fabs(x[i]);
    }
    const std::vector<float> mine = values(c.rank());
    for (bool deterministic : {false, true}) {
      for (AllreduceAlgorithm a : kAlgorithms) {
        std::vector<float> out(count);
        c.allreduce(mine.data(), out.data(), count, DataType::f32, ReduceOp::sum, {a, deterministic});
        if (deterministic) {
          EXPECT_EQ(std::memcmp(out.data(), ordered.data(), count * 4), 0) << "deterministic " << to_string(a);
          continue;
        }
        // n - 1 additions, each rounding by at most half an ulp of a partial sum <= magnitude.
        size_t bad = 0;
        for (size_t i = 0; i < count; ++i)
          bad += std::fabs(out[i] - exact[i]) > (n - 1) * 0.5 * 1.1920929e-7 * magnitude[i] ? 1 : 0;
        EXPECT_EQ(bad, 0u) << to_string(a);
      }
    }
  });
}

// A message many times RDMACOLL_BUFFSIZE runs in segments; scratch never exceeds the pool.
TEST(COMM_SUITE, MultiRankMessageMuchLargerThanScratch) {
  if (skip_without_device()) return;
  Backend b;
  Communicator::Options o = Communicator::Options::from_settings();
  o.buffsize = 1u << 20;
  with_comm(3, [](Communicator& c) {
#if defined(COMM_RDMA)
    const size_t count = (4u << 20) / 4 + 3;  // soft-RoCE under TCG is slow: 4 MiB, still 4 pools
#else
    const size_t count = (16u << 20) / 4 + 3;  // 16 MiB of f32 and three elements
#endif
    for (AllreduceAlgorithm a : kAlgorithms) check_allreduce(c, DataType::f32, ReduceOp::sum, count, {a, {}}, false);
    check_allreduce(c, DataType::f32, ReduceOp::sum, count, {{}, true}, true);
    const int n = c.size(), me = c.rank();
    std::vector<char> rs = input(DataType::i32, ReduceOp::sum, me, count);
    c.reduce_scatter(rs.data(), rs.data(), count, DataType::i32, ReduceOp::sum);
    const auto mine = schedules_blocks(count, n, me);
    const auto want = reference(DataType::i32, ReduceOp::sum, n, count);
    EXPECT_EQ(first_difference(rs.data() + mine.first * 4, want.data() + mine.first * 4, mine.second, 4), -1);
    std::vector<char> full(count * 4), got(count * 4, 0);
    for (size_t i = 0; i < full.size(); ++i) full[i] = static_cast<char>(i * 13 + 1);
    c.allgather(full.data(), got.data(), count, DataType::i32);
    EXPECT_EQ(got, full);
    EXPECT_EQ(c.scratch_bytes(), 1u << 20);
    EXPECT_GT(c.peak_scratch_bytes(), 0u);
    EXPECT_LE(c.peak_scratch_bytes(), c.scratch_bytes());
  }, o);
}

// Several calls in flight, waited for out of order; each has its own sequence number.
TEST(COMM_SUITE, MultiRankNonBlockingCallsInFlight) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(3, [](Communicator& c) {
    const size_t count = 100003;
    std::vector<std::vector<char>> bufs;
    std::vector<Work> works;
    const uint64_t first = c.next_sequence();
    for (int k = 0; k < 4; ++k) {
      bufs.push_back(input(DataType::i64, ReduceOp::sum, c.rank(), count));
      works.push_back(c.allreduce_async(bufs.back().data(), bufs.back().data(), count, DataType::i64, ReduceOp::sum,
                                        {kAlgorithms[k % 3], {}}));
    }
    Work bar = c.barrier_async();
    for (int k = 0; k < 4; ++k) EXPECT_EQ(works[static_cast<size_t>(k)].sequence(), first + static_cast<uint64_t>(k));
    bar.wait();
    for (auto it = works.rbegin(); it != works.rend(); ++it) it->wait();
    const auto want = reference(DataType::i64, ReduceOp::sum, c.size(), count);
    for (const auto& buf : bufs) EXPECT_EQ(buf, want);
  });
}

// A rank that never joins: the timeout names the collective, its sequence number and the rank.
TEST(COMM_SUITE, MultiRankTimeoutNamesCollectiveAndMissingRank) {
  if (skip_without_device()) return;
  Backend b;
  RankGroup g(3);
  auto c = Communicator::create(g.world());
  if (g.rank() != 2) {
    std::vector<float> buf(1000, 1.0f);
    try {
      c->allreduce_async(buf.data(), buf.data(), buf.size(), DataType::f32, ReduceOp::sum,
                         {AllreduceAlgorithm::ring, {}})
          .wait(bootstrap::deadline_in(1.5));
      ADD_FAILURE() << "no timeout";
    } catch (const TimeoutError& e) {
      const std::string msg = e.what();
      std::printf("timeout message: %s\n", msg.c_str());
      EXPECT_NE(msg.find("allreduce #0"), std::string::npos) << msg;
      // Rank 0 receives from rank 2 in the ring's first step; rank 1 from rank 0.
      if (g.rank() == 0) {
        EXPECT_NE(msg.find("ranks 2"), std::string::npos) << msg;
      }
    }
  }
  bootstrap::barrier(g.store(), "comm-test/timeout/done", g.rank(), 3, g.deadline());
  c.reset();
  g.join();
}

// Bad arguments are refused with a typed error before anything is queued: the call takes no
// sequence number, and the communicator goes on working.
TEST(COMM_SUITE, MultiRankBadArgumentsAreRefused) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(2, [](Communicator& c) {
    std::vector<float> buf(64, 1.0f);
    const uint64_t seq = c.next_sequence();
    EXPECT_THROW(c.allreduce(nullptr, buf.data(), 4, DataType::f32, ReduceOp::sum), std::invalid_argument);
    EXPECT_THROW(c.reduce_scatter(buf.data(), nullptr, 4, DataType::f32, ReduceOp::sum), std::invalid_argument);
    EXPECT_THROW(c.allreduce(buf.data(), buf.data(), SIZE_MAX / 2, DataType::f32, ReduceOp::sum), std::length_error);
    try {  // overlapping, not the same buffer
      c.allreduce(buf.data(), buf.data() + 1, 32, DataType::f32, ReduceOp::sum);
      ADD_FAILURE() << "overlap accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("overlap"), std::string::npos) << e.what();
    }
    EXPECT_THROW(c.allreduce(buf.data(), buf.data(), 4, static_cast<DataType>(99), ReduceOp::sum), std::invalid_argument);
    EXPECT_THROW(c.broadcast(buf.data(), buf.data(), 4, DataType::f32, 2), std::invalid_argument);  // root out of range
    EXPECT_EQ(c.next_sequence(), seq);
    check_allreduce(c, DataType::f32, ReduceOp::sum, 1000, {}, false);
  });
}

// The cost model is measured at creation, without taking a sequence number from the caller,
// and every rank holds the same values (they decide the algorithm, so they must agree).
TEST(COMM_SUITE, MultiRankCostModelMeasuredAndAgreed) {
  if (skip_without_device()) return;
  Backend b;
  Communicator::Options o = Communicator::Options::from_settings();
  o.cost_model.reset();
  with_comm(3, [](Communicator& c) {
    const CostModel& m = c.cost_model();
    EXPECT_STREQ(m.source, "measured");
    EXPECT_EQ(c.next_sequence(), 0u);
    EXPECT_EQ(c.peak_scratch_bytes(), 0u);
    const double mine[3] = {m.alpha_s, m.beta_s_per_byte, m.gamma_s_per_byte};
    for (double v : mine) EXPECT_TRUE(std::isfinite(v) && v > 0) << v;
    std::vector<double> all(9);
    std::copy(mine, mine + 3, all.begin() + 3 * c.rank());
    c.allgather(all.data(), all.data(), all.size(), DataType::f64);
    for (int q = 0; q < 3; ++q)
      for (int i = 0; i < 3; ++i) EXPECT_EQ(all[static_cast<size_t>(3 * q + i)], mine[i]) << "rank " << q;
  }, o);
}

// A model given in the options (RDMACOLL_COST_MODEL) is used as it is: nothing is measured.
TEST(COMM_SUITE, MultiRankCostModelGiven) {
  if (skip_without_device()) return;
  Backend b;
  Communicator::Options o = Communicator::Options::from_settings();
  o.cost_model = parse_cost_model("7,3,2");
  with_comm(2, [](Communicator& c) {
    EXPECT_STREQ(c.cost_model().source, "RDMACOLL_COST_MODEL");
    EXPECT_DOUBLE_EQ(c.cost_model().alpha_s, 7e-6);
    EXPECT_DOUBLE_EQ(c.cost_model().beta_s_per_byte, 1 / 3e9);
    check_allreduce(c, DataType::f32, ReduceOp::sum, 100000, {}, false);
  }, o);
}

// A call that timed out leaves transfers in flight. Destroying the communicator afterwards
// must not touch the call's buffers, which a caller unwinding from the error has typically
// freed by then (they are declared after the communicator).
TEST(COMM_SUITE, MultiRankDestroyAfterTimeoutLeavesFreedBuffersAlone) {
  if (skip_without_device()) return;
  Backend b;
  RankGroup g(4);
  auto c = Communicator::create(g.world());
  // Every rank joins, with a deadline far too short for 256 MiB: each times out mid-transfer.
  const size_t count = size_t{64} << 20;  // mmap'd, so free() unmaps it
  auto* in = static_cast<float*>(std::malloc(count * 4));
  auto* out = static_cast<float*>(std::malloc(count * 4));
  std::fill(in, in + count, 1.0f);
  EXPECT_THROW(c->allreduce_async(in, out, count, DataType::f32, ReduceOp::sum,
                                  {AllreduceAlgorithm::halving_doubling, {}})
                   .wait(bootstrap::deadline_in(0.3)),
               TimeoutError);
  std::free(in);
  std::free(out);
  c.reset();  // must neither crash nor hang
  bootstrap::barrier(g.store(), "comm-test/destroy-after-timeout/done", g.rank(), 4, g.deadline());
  g.join();
}

// split: ranks 0..4 by parity, ranked by descending rank; rank 4 joins no group. Each group
// reduces on its own, and the parent still works afterwards.
TEST(COMM_SUITE, MultiRankSplit) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(5, [](Communicator& c) {
    const int me = c.rank();
    auto sub = c.split(me == 4 ? -1 : me % 2, -me);
    if (me == 4) {
      EXPECT_EQ(sub, nullptr);
    } else {
      ASSERT_NE(sub, nullptr);
      ASSERT_EQ(sub->size(), 2);
      EXPECT_EQ(sub->rank(), me < 2 ? 1 : 0);  // key -rank: the higher rank comes first
      int64_t v = me + 1;
      sub->allreduce(&v, &v, 1, DataType::i64, ReduceOp::sum);
      EXPECT_EQ(v, me % 2 == 0 ? 1 + 3 : 2 + 4);
      sub->barrier();
    }
    int64_t w = me;
    c.allreduce(&w, &w, 1, DataType::i64, ReduceOp::sum);
    EXPECT_EQ(w, 0 + 1 + 2 + 3 + 4);
  });
}

// Data moved with tagged send/recv instead of writes (DataPath::send, what UCX over tcp gets
// by default), on the transport that would write: every algorithm and collective, in flight
// together, and runs larger than half the pool.
TEST(COMM_SUITE, MultiRankSendDataPath) {
  if (skip_without_device()) return;
  Backend b;
  Communicator::Options o = Communicator::Options::from_settings();
  o.data_path = DataPath::send;
  o.buffsize = 1 << 20;
  with_comm(3, [](Communicator& c) {
    const int n = c.size(), me = c.rank();
    int k = 0;
    for (AllreduceAlgorithm a : kAlgorithms)
      for (size_t count : {size_t{0}, size_t{7}, size_t{65537}, size_t{(1u << 20) / 4 + 3}})
        check_allreduce(c, DataType::f32, ReduceOp::sum, count, {a, {}}, ++k % 2 == 0);
    check_allreduce(c, DataType::f64, ReduceOp::max, 1023, {{}, true}, false);
    // reduce-scatter and allgather in flight together (each rank's block at its own place).
    const size_t count = 3001;
    const auto mine = schedules_blocks(count, n, me);
    std::vector<char> in = input(DataType::i32, ReduceOp::sum, me, count), out(count * 4, 0);
    std::vector<char> full(count), part(count, 0), gathered(count, 0);
    for (size_t i = 0; i < count; ++i) full[i] = static_cast<char>(i * 31 + 7);
    std::memcpy(part.data() + mine.first, full.data() + mine.first, mine.second);
    Work rs = c.reduce_scatter_async(in.data(), out.data(), count, DataType::i32, ReduceOp::sum);
    Work ag = c.allgather_async(part.data(), gathered.data(), count, DataType::u8);
    ag.wait(), rs.wait();
    const std::vector<char> want = reference(DataType::i32, ReduceOp::sum, n, count);
    EXPECT_EQ(first_difference(out.data() + mine.first * 4, want.data() + mine.first * 4, mine.second, 4), -1);
    EXPECT_EQ(gathered, full);
    std::vector<char> b_in = input(DataType::u8, ReduceOp::max, 1, 4097), b_out(4097);
    c.broadcast(me == 1 ? b_in.data() : nullptr, b_out.data(), 4097, DataType::u8, 1);
    EXPECT_EQ(b_out, b_in);
  }, o);
}

// Small allreduces through the mailboxes (exec/direct.h), on c's ranks: the call runs
// `algorithm`, `wire` checks its Work::wire() (the input's bytes given), and the result is the
// rank-order fold, bit for bit what deterministic mode computes. Then every type and op at sizes
// on both sides of the mailbox's size, and `rounds` rounds with calls of every other kind
// between them (broadcasts from every root, which not every rank waits on; large allreduces),
// several in flight: a mailbox slot is used again only once every peer is done with it.
template <class WireCheck>
void small_allreduces_through_mailboxes(Communicator& c, std::string_view algorithm, int rounds, WireCheck wire) {
  const int n = c.size(), me = c.rank();
  constexpr size_t count = 1000;  // 4000 bytes: fits a mailbox
  auto values = [](int rank) {
    std::mt19937 gen(static_cast<unsigned>(99 + rank));
    std::uniform_real_distribution<float> d(-1, 1);
    std::vector<float> v(count);
    for (float& x : v) x = d(gen) * std::ldexp(1.0f, static_cast<int>(gen() % 20) - 10);
    return v;
  };
  std::vector<float> ordered = values(0);
  for (int q = 1; q < n; ++q) reduce_into(DataType::f32, ReduceOp::sum, ordered.data(), values(q).data(), count);
  const std::vector<float> mine = values(me);
  std::vector<float> out(count), det(count);
  Work w = c.allreduce_async(mine.data(), out.data(), count, DataType::f32, ReduceOp::sum);
  w.wait();
  EXPECT_EQ(w.algorithm(), algorithm);
  wire(w, count * 4);
  EXPECT_EQ(std::memcmp(out.data(), ordered.data(), count * 4), 0) << "not the rank-order fold";
  c.allreduce(mine.data(), det.data(), count, DataType::f32, ReduceOp::sum, {AllreduceAlgorithm::ring, true});
  EXPECT_EQ(std::memcmp(det.data(), ordered.data(), count * 4), 0) << "deterministic mode differs";
  // A named algorithm is that algorithm, over the transport.
  Work r = c.allreduce_async(mine.data(), out.data(), count, DataType::f32, ReduceOp::sum, {AllreduceAlgorithm::ring, {}});
  r.wait();
  EXPECT_EQ(r.algorithm(), "ring_allreduce");

  int k = 0;
  for (DataType type : kAllDataTypes)
    for (ReduceOp op : kAllReduceOps)
      for (size_t cnt : {size_t{1}, size_t{7}, size_t{16384 / dtype_size(type)}, size_t{16384 / dtype_size(type) + 1}})
        check_allreduce(c, type, op, cnt, {}, ++k % 2 == 0);

  std::vector<float> big(65537);
  for (int it = 0; it < rounds; ++it) {
    std::vector<int32_t> s1(5, (me + 1) * (it + 1)), root(3, me == it % n ? it * 10 + me : -1);
    std::vector<int64_t> s2(1, me * 1000 + it), s2_out(1);
    Work a = c.allreduce_async(s1.data(), s1.data(), s1.size(), DataType::i32, ReduceOp::sum);
    Work bc = c.broadcast_async(root.data(), root.data(), root.size(), DataType::i32, it % n);
    Work m = c.allreduce_async(s2.data(), s2_out.data(), 1, DataType::i64, ReduceOp::max);
    Work l;
    if (it % 50 == 0) {
      std::fill(big.begin(), big.end(), 1.0f);
      l = c.allreduce_async(big.data(), big.data(), big.size(), DataType::f32, ReduceOp::sum);
    }
    a.wait(), bc.wait(), m.wait();
    if (it % 50 == 0) {
      l.wait();
      ASSERT_EQ(big[65536], static_cast<float>(n));
    }
    for (int32_t v : s1) ASSERT_EQ(v, (it + 1) * n * (n + 1) / 2) << "iteration " << it;
    for (int32_t v : root) ASSERT_EQ(v, it * 10 + it % n) << "iteration " << it;
    ASSERT_EQ(s2_out[0], (n - 1) * 1000 + it) << "iteration " << it;
  }
}

// 3 ranks, rank 2 never making its small allreduce: ranks 0 and 1 time out first on a deadline
// of their own (the call stays in flight; the message holds `waiting`), then on the collective's
// (timeout_s), where the ranks agree that rank 2 is missing.
void small_allreduce_without_rank_2(double timeout_s, const std::string& waiting) {
  RankGroup g(3);
  Communicator::Options o = Communicator::Options::from_settings();
  o.timeout_s = timeout_s;
  o.cost_model = parse_cost_model("10,1,1");
  auto c = Communicator::create(g.world(), o);
  if (g.rank() != 2) {
    std::vector<float> buf(8, 1.0f);
    try {
      c->allreduce_async(buf.data(), buf.data(), buf.size(), DataType::f32, ReduceOp::sum).wait(bootstrap::deadline_in(0.5));
      ADD_FAILURE() << "no timeout";
    } catch (const TimeoutError& e) {
      const std::string msg = e.what();
      std::printf("rank %d: %s\n", g.rank(), msg.c_str());
      EXPECT_NE(msg.find(waiting), std::string::npos) << msg;
    }
    try {  // the collective's own deadline: the ranks agree on who is missing
      c->allreduce(buf.data(), buf.data(), buf.size(), DataType::f32, ReduceOp::sum);
      ADD_FAILURE() << "no timeout";
    } catch (const TimeoutError& e) {
      const std::string msg = e.what();
      std::printf("rank %d: %s\n", g.rank(), msg.c_str());
      EXPECT_NE(msg.find("missing: rank 2 "), std::string::npos) << msg;
    }
  }
  bootstrap::barrier(g.store(), "comm-test/small-timeout/done", g.rank(), 3, g.deadline());
  c.reset();
  g.join();
}

#if defined(COMM_HOST)
// The same executor over UCX tcp, where one-sided writes are emulated with messages: by
// default it sends (DataPath::automatic), and writes still work when asked for.
void allreduce_over_tcp(DataPath path) {
  Backend b(/*tcp=*/true);
  Communicator::Options o = Communicator::Options::from_settings();
  o.data_path = path;
  with_comm(3, [](Communicator& c) {
    for (AllreduceAlgorithm a : kAlgorithms)
      for (size_t count : {size_t{7}, size_t{65537}}) check_allreduce(c, DataType::f32, ReduceOp::sum, count, {a, {}}, false);
  }, o);
}
TEST(COMM_SUITE, MultiRankAllreduceOverTcp) { allreduce_over_tcp(DataPath::automatic); }
TEST(COMM_SUITE, MultiRankAllreduceOverTcpWriting) { allreduce_over_tcp(DataPath::write); }

// The algorithm a small automatic allreduce runs (its result checked).
std::string small_allreduce_algorithm(Communicator& c) {
  std::vector<char> in = input(DataType::f32, ReduceOp::sum, c.rank(), 7), out(7 * 4);
  Work w = c.allreduce_async(in.data(), out.data(), 7, DataType::f32, ReduceOp::sum);
  w.wait();
  EXPECT_EQ(first_difference(out.data(), reference(DataType::f32, ReduceOp::sum, c.size(), 7).data(), 7, 4), -1);
  EXPECT_GT(w.wire().bytes_sent, 0u);
  return std::string(w.algorithm());
}

// Small allreduces where every peer's pool is mapped into the process (UCX shared memory) go
// through the mailboxes behind the pools: no message crosses the transport (the call counts its
// input as read by each peer).
TEST(COMM_SUITE, MultiRankSmallAllreduceThroughSharedMemory) {
  Backend b;
  with_comm(4, [](Communicator& c) {
    small_allreduces_through_mailboxes(c, "shared_memory_allreduce", 300, [&c](const Work& w, size_t bytes) {
      const auto n = static_cast<uint64_t>(c.size());
      EXPECT_EQ(w.wire().bytes_sent, (n - 1) * bytes) << "one copy of the input per peer, and nothing else";
      EXPECT_EQ(w.wire().bytes_received, (n - 1) * bytes);
      EXPECT_EQ(w.wire().messages_sent, n - 1);
    });
  });
}

// Not where the caller said how data moves (RDMACOLL_DATA_PATH), nor over tcp.
TEST(COMM_SUITE, MultiRankSmallAllreduceSendsWhereAsked) {
  Backend b;
  Communicator::Options send = Communicator::Options::from_settings();
  send.data_path = DataPath::send;
  with_comm(2, [](Communicator& c) { EXPECT_NE(small_allreduce_algorithm(c), "shared_memory_allreduce"); }, send);
}
TEST(COMM_SUITE, MultiRankSmallAllreduceOverTcpSends) {
  Backend tcp(/*tcp=*/true);
  with_comm(2, [](Communicator& c) { EXPECT_NE(small_allreduce_algorithm(c), "shared_memory_allreduce"); });
}

// A rank waiting in a small call over shared memory for a peer that comes 300 ms late (still
// computing) does not keep its core busy all that time: once the peer is a millisecond late it
// naps between looks. Its CPU time over the wait stays well under the wait's length (without
// the naps it was the whole of it).
TEST(COMM_SUITE, MultiRankSmallAllreduceWaitForALatePeerNaps) {
  Backend b;
  with_comm(2, [](Communicator& c) {
    std::vector<float> buf(8, 1.0f);
    c.allreduce(buf.data(), buf.data(), buf.size(), DataType::f32, ReduceOp::sum);  // both here
    if (c.rank() == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
    auto cpu = [] {
      timespec ts{};
      clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
    };
    const double cpu0 = cpu();
    const auto wall0 = std::chrono::steady_clock::now();
    std::fill(buf.begin(), buf.end(), 1.0f);
    Work w = c.allreduce_async(buf.data(), buf.data(), buf.size(), DataType::f32, ReduceOp::sum);
    w.wait();
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    const double used = cpu() - cpu0;
    EXPECT_EQ(w.algorithm(), "shared_memory_allreduce");
    EXPECT_EQ(buf[7], 2.0f);
    if (c.rank() == 0) {
      std::printf("rank 0 waited %.3f s, using %.3f s of CPU\n", wall, used);
      EXPECT_GT(wall, 0.2);
      EXPECT_LT(used, 0.5 * wall) << "the wait kept a core busy";
    }
  });
}

// A rank that never makes a small call over shared memory: the others' deadline names it and
// what they waited for.
TEST(COMM_SUITE, MultiRankSmallAllreduceTimeoutNamesTheMissingRank) {
  Backend b;
  small_allreduce_without_rank_2(1.5, "allreduce #0 (shared_memory_allreduce: waiting for the input of rank 2 in shared memory)");
}
#endif

#if defined(COMM_RDMA)
// Small allreduces over verbs go through the pushed mailboxes: each rank writes its input, with
// a check word, into its slot of every peer's mailbox, one plain RDMA WRITE per peer, and polls
// its own slots for the peers' inputs.
TEST(COMM_SUITE, MultiRankSmallAllreduceThroughRdmaMailboxes) {
  if (skip_without_device()) return;
  Backend b;
  with_comm(3, [](Communicator& c) {
    small_allreduces_through_mailboxes(c, "rdma_mailbox_allreduce", 100, [&c](const Work& w, size_t bytes) {
      const auto n = static_cast<uint64_t>(c.size());
      // Looped back through one device, a write completes within its post: counted in its call.
      EXPECT_EQ(w.wire().messages_sent, n - 1) << "one write per peer";
      EXPECT_EQ(w.wire().bytes_sent, (n - 1) * (16 + bytes + 8)) << "slot header, input and check word, to each peer";
      // At least: a wait that lasts reads the peers' call lines too (direct.h).
      EXPECT_GE(w.wire().messages_received, n - 1) << "one write from each peer";
      EXPECT_GE(w.wire().bytes_received, (n - 1) * (16 + bytes + 8));
    });
  });
}

// A rank that never makes its small call: the others' deadline names it and what they waited for.
TEST(COMM_SUITE, MultiRankSmallAllreduceThroughRdmaMailboxesNamesTheMissingRank) {
  if (skip_without_device()) return;
  Backend b;
  small_allreduce_without_rank_2(3, "allreduce #0 (rdma_mailbox_allreduce: waiting for the input of rank 2 in its RDMA mailbox)");
}
#endif

}  // namespace
}  // namespace rdmacoll::collectives
