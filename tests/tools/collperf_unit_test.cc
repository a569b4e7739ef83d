// The collective benchmarks' pieces without a network: flags, size sweeps, busbw factors, -a,
// the data patterns against the real reduction kernels, and the table and JSON output.
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <vector>

#include "collperf/data.h"
#include "collperf/options.h"
#include "collperf/report.h"
#include "perf/options.h"
#include "rdmacoll/collectives/reduce.h"

namespace rdmacoll::collperf {
namespace {

Options parse_all(Collective c, std::vector<std::string> args) { return parse(c, args); }

TEST(CollPerfOptions, DefaultsAreNcclTests) {
  Options o = parse_all(Collective::allreduce, {});
  EXPECT_EQ(o.minbytes, 8u);
  EXPECT_EQ(o.maxbytes, size_t{64} << 20);
  EXPECT_EQ(o.stepfactor, 2u);
  EXPECT_EQ(o.iters, 20u);
  EXPECT_EQ(o.warmup, 5u);
  EXPECT_TRUE(o.check);
  EXPECT_EQ(o.types, std::vector<DataType>{DataType::f32});
  EXPECT_EQ(o.ops, std::vector<ReduceOp>{ReduceOp::sum});
  EXPECT_EQ(o.average, Average::mean);
  EXPECT_FALSE(o.blocking);
  EXPECT_FALSE(o.json);
}

TEST(CollPerfOptions, ShortAndLongFlags) {
  Options o = parse_all(Collective::reduce, {"-b", "1K", "--maxbytes=2M", "-f", "4", "-n", "3", "--warmup_iters", "0",
                                             "-c", "0", "-d", "bf16", "-o", "max", "-r", "2", "-a", "3", "-z", "1",
                                             "--deterministic", "--transport", "verbs", "--timeout", "7", "-J"});
  EXPECT_EQ(o.minbytes, 1024u);
  EXPECT_EQ(o.maxbytes, size_t{2} << 20);
  EXPECT_EQ(o.stepfactor, 4u);
  EXPECT_EQ(o.iters, 3u);
  EXPECT_EQ(o.warmup, 0u);
  EXPECT_FALSE(o.check);
  EXPECT_EQ(o.types, std::vector<DataType>{DataType::bf16});
  EXPECT_EQ(o.ops, std::vector<ReduceOp>{ReduceOp::max});
  EXPECT_EQ(o.root, 2);
  EXPECT_EQ(o.average, Average::max);
  EXPECT_TRUE(o.blocking);
  EXPECT_TRUE(o.deterministic);
  EXPECT_EQ(o.backend, transport::Backend::Verbs);
  EXPECT_EQ(o.timeout, 7);
  EXPECT_TRUE(o.json);
}

TEST(CollPerfOptions, NcclTestsTypeNamesAndAll) {
  EXPECT_EQ(parse_all(Collective::allreduce, {"-d", "float"}).types, std::vector<DataType>{DataType::f32});
  EXPECT_EQ(parse_all(Collective::allreduce, {"-d", "half"}).types, std::vector<DataType>{DataType::f16});
  EXPECT_EQ(parse_all(Collective::allreduce, {"-d", "bfloat16"}).types, std::vector<DataType>{DataType::bf16});
  EXPECT_EQ(parse_all(Collective::allreduce, {"-d", "int64"}).types, std::vector<DataType>{DataType::i64});
  EXPECT_EQ(parse_all(Collective::allreduce, {"-d", "all"}).types.size(), 8u);
  EXPECT_EQ(parse_all(Collective::allreduce, {"-o", "all"}).ops.size(), 5u);
  EXPECT_EQ(nccl_name(DataType::f32), "float");
  EXPECT_EQ(nccl_name(DataType::bf16), "bfloat16");
  EXPECT_EQ(nccl_name(DataType::u8), "uint8");
}

TEST(CollPerfOptions, AlgoIsAllreduceOnly) {
  EXPECT_EQ(parse_all(Collective::allreduce, {"--algo", "tree"}).algorithm, AllreduceAlgorithm::double_binary_tree);
  EXPECT_EQ(parse_all(Collective::allreduce, {"--algo", "halving_doubling"}).algorithm,
            AllreduceAlgorithm::halving_doubling);
  EXPECT_THROW(parse_all(Collective::allgather, {"--algo", "ring"}), perf::UsageError);
  EXPECT_THROW(parse_all(Collective::allreduce, {"--algo", "bogus"}), perf::UsageError);
}

TEST(CollPerfOptions, NoOpOrRootWhereTheCollectiveHasNone) {
  Options o = parse_all(Collective::allgather, {"-o", "all", "-r", "3"});
  EXPECT_EQ(o.ops.size(), 1u);  // one pass, printed as "none"
  EXPECT_EQ(o.root, 0);
}

TEST(CollPerfOptions, BadUsageThrows) {
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--bogus"}, {"-b"}, {"-b", "12Q"}, {"-b", "0"}, {"-b", "64", "-e", "8"}, {"-n", "0"}, {"-n", "x"},
           {"-c", "2"}, {"-z", "-1"}, {"-a", "4"}, {"-f", "1"}, {"-f", "2", "-i", "8"}, {"-i", "0"},
           {"-d", "float128"}, {"-o", "xor"}, {"--transport", "tcp"}, {"--timeout", "-1"}, {"host"},
           {"--json=1"}, {"-i", "1", "-b", "1", "-e", "1G"}}) {
    EXPECT_THROW(parse_all(Collective::allreduce, bad), perf::UsageError) << bad[0];
  }
}

TEST(CollPerfOptions, UsageNamesEveryFlag) {
  std::string u = usage(Collective::allreduce);
  for (const char* f : {"--minbytes", "--maxbytes", "--stepfactor", "--stepbytes", "--iters", "--warmup_iters",
                        "--check", "--datatype", "--op", "--root", "--average", "--blocking", "--algo",
                        "--deterministic", "--transport", "--timeout", "--json", "--help"})
    EXPECT_NE(u.find(f), std::string::npos) << f;
  EXPECT_EQ(usage(Collective::broadcast).find("--algo"), std::string::npos);
}

TEST(CollPerfSizes, FactorAndStep) {
  Options o = parse_all(Collective::allreduce, {"-b", "8", "-e", "1M", "-f", "8"});
  EXPECT_EQ(sizes(o), (std::vector<size_t>{8, 64, 512, 4096, 32768, 262144}));
  o = parse_all(Collective::allreduce, {"-b", "8", "-e", "64M"});
  EXPECT_EQ(sizes(o).size(), 24u);
  EXPECT_EQ(sizes(o).back(), size_t{64} << 20);
  o = parse_all(Collective::allreduce, {"-b", "1K", "-e", "4K", "-i", "1K"});
  EXPECT_EQ(sizes(o), (std::vector<size_t>{1024, 2048, 3072, 4096}));
  o = parse_all(Collective::allreduce, {"-b", "100", "-e", "350", "-i", "100"});
  EXPECT_EQ(sizes(o), (std::vector<size_t>{100, 200, 300}));
  o = parse_all(Collective::allreduce, {"-b", "1G", "-e", "1G"});
  EXPECT_EQ(sizes(o), (std::vector<size_t>{size_t{1} << 30}));
}

TEST(CollPerfReport, BusBandwidthFactorsAsNcclTests) {
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::allreduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::allreduce, 2), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::allreduce, 1), 0.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::reduce_scatter, 4), 0.75);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::allgather, 3), 2.0 / 3);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::broadcast, 8), 1.0);
  EXPECT_DOUBLE_EQ(busbw_factor(Collective::reduce, 8), 1.0);
}

TEST(CollPerfReport, AlgbwAndAverageModes) {
  Placement p = placement(Collective::allreduce, 4, 1000000, 100, 0);  // 1 MB in 100 us
  EXPECT_DOUBLE_EQ(p.algbw_gbs, 10.0);
  EXPECT_DOUBLE_EQ(p.busbw_gbs, 15.0);
  EXPECT_EQ(placement(Collective::allreduce, 4, 8, 0, 0).algbw_gbs, 0);  // no division by zero
  std::vector<double> t{4, 1, 7};
  EXPECT_EQ(combine(Average::rank0, t), 4);
  EXPECT_EQ(combine(Average::mean, t), 4);
  EXPECT_EQ(combine(Average::min, t), 1);
  EXPECT_EQ(combine(Average::max, t), 7);
}

std::vector<Row> two_rows() {
  Row a;
  a.bytes = 8;
  a.count = 2;
  a.redop = "sum";
  a.out_of_place = placement(Collective::allreduce, 2, 8, 10, 0);
  a.in_place = placement(Collective::allreduce, 2, 8, 20, 0);
  Row b = a;
  b.bytes = 1 << 20;
  b.count = 1 << 18;
  b.out_of_place = placement(Collective::allreduce, 2, b.bytes, 100, 3);
  b.in_place = placement(Collective::allreduce, 2, b.bytes, 200, -1);
  return {a, b};
}

TEST(CollPerfReport, AverageBusBandwidthOverRowsAndPlacements) {
  std::vector<Row> rows = two_rows();
  double expect = (0.0008 + 0.0004 + 1048576 / 100e-6 / 1e9 + 1048576 / 200e-6 / 1e9) / 4;
  EXPECT_NEAR(avg_busbw(rows), expect, 1e-12);
  EXPECT_EQ(total_wrong(rows), 3);  // the unchecked placement counts 0
}

TEST(CollPerfReport, TableHasNcclTestsColumns) {
  RunInfo info;
  info.ranks = 2;
  info.rank_lines = {{0, 11, "h0", "mlx5_0", "RC"}, {1, 12, "h1", "rxe0", "RC"}};
  info.peak_rss_bytes = {1 << 20, 2 << 20};
  info.peak_scratch_bytes = {0, 4096};
  std::ostringstream out;
  print_header(out, info);
  for (const Row& r : two_rows()) print_row(out, r);
  print_footer(out, info, two_rows());
  const std::string s = out.str();
  EXPECT_NE(s.find("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   "
                   "algbw   busbw #wrong\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("#  Rank  1 Pid     12 on         h1 transport ucx device rxe0 (RC)\n"), std::string::npos) << s;
  EXPECT_NE(s.find("           8             2     float     sum      -1    10.00    0.00    0.00      0    20.00    "
                   "0.00    0.00      0\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("     1048576        262144     float     sum      -1    100.0   10.49   10.49      3    200.0    "
                   "5.24    5.24    N/A\n"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("# Out of bounds values : 3 FAILED\n"), std::string::npos) << s;
  EXPECT_NE(s.find("# Avg bus bandwidth    : "), std::string::npos) << s;
  EXPECT_NE(s.find("rank 1 2.0"), std::string::npos) << s;
}

TEST(CollPerfReport, JsonHasEveryField) {
  RunInfo info;
  info.ranks = 2;
  info.transport_line = "ucx \"quoted\"";
  info.peak_rss_bytes = {1, 2};
  info.peak_scratch_bytes = {3, 4};
  info.scratch_bytes = 64;
  const std::string j = to_json(info, two_rows());
  for (const char* k : {"\"tool\": \"rdmacoll-allreduce-perf\"", "\"collective\": \"allreduce\"", "\"ranks\": 2",
                        "\"rows\": [", "\"out_of_place\": {\"time_us\": 10,", "\"wrong\": null",
                        "\"avg_busbw_gbs\": ", "\"peak_rss_bytes\": [1, 2]", "\"scratch_bytes\": 64",
                        "\\\"quoted\\\""})
    EXPECT_NE(j.find(k), std::string::npos) << k << "\n" << j;
  // Non-finite numbers would make invalid JSON.
  EXPECT_EQ(j.find("inf"), std::string::npos);
  EXPECT_EQ(j.find("nan"), std::string::npos);
}

// The patterns reduced by the library's own kernels agree bitwise with the reference the tools
// check against, for every type, op and a few rank counts (odd ones included).
TEST(CollPerfData, ReferenceMatchesTheKernels) {
  constexpr size_t kCount = 1000;
  for (DataType t : collectives::kAllDataTypes) {
    const size_t es = collectives::dtype_size(t);
    for (ReduceOp op : collectives::kAllReduceOps) {
      for (int n : {1, 2, 3, 7, 16}) {
        std::vector<char> acc(kCount * es), x(kCount * es);
        fill_input(t, op, 0, acc.data(), 0, kCount);
        for (int r = 1; r < n; ++r) {
          fill_input(t, op, r, x.data(), 0, kCount);
          collectives::reduce_into(t, op, acc.data(), x.data(), kCount);
        }
        if (op == ReduceOp::avg) collectives::finalize_avg(t, acc.data(), kCount, static_cast<size_t>(n));
        EXPECT_EQ(count_wrong_reduced(t, op, n, acc.data(), 0, kCount), 0u)
            << collectives::to_string(t) << " " << collectives::to_string(op) << " n=" << n;
        // One changed element is one wrong element; so is a result for the wrong rank count.
        std::memset(acc.data() + 17 * es, 0x7F, es);
        EXPECT_EQ(count_wrong_reduced(t, op, n, acc.data(), 0, kCount), 1u) << collectives::to_string(t);
        if (op == ReduceOp::sum) {
          EXPECT_GT(count_wrong_reduced(t, op, n + 1, acc.data(), 0, kCount), kCount / 4) << collectives::to_string(t);
        }
      }
    }
  }
}

TEST(CollPerfData, CopiesIdentifyTheirRank) {
  constexpr size_t kCount = 4096;
  for (DataType t : collectives::kAllDataTypes) {
    std::vector<char> b(kCount * collectives::dtype_size(t));
    fill_input(t, std::nullopt, 3, b.data(), 0, kCount);
    EXPECT_EQ(count_wrong_copied(t, 3, b.data(), 0, kCount), 0u);
    EXPECT_GT(count_wrong_copied(t, 2, b.data(), 0, kCount), kCount * 9 / 10) << collectives::to_string(t);
    // Element i depends on i: a block at the wrong offset does not pass.
    const char* shifted = b.data() + collectives::dtype_size(t);
    EXPECT_GT(count_wrong_copied(t, 3, shifted, 0, kCount - 1), kCount * 9 / 10) << collectives::to_string(t);
  }
}

TEST(CollPerfData, BlocksAreTheCommunicatorsPartition) {
  EXPECT_EQ(block(10, 3, 0), std::make_pair(size_t{0}, size_t{4}));
  EXPECT_EQ(block(10, 3, 1), std::make_pair(size_t{4}, size_t{3}));
  EXPECT_EQ(block(10, 3, 2), std::make_pair(size_t{7}, size_t{3}));
  EXPECT_EQ(block(2, 4, 3), std::make_pair(size_t{2}, size_t{0}));
}

}  // namespace
}  // namespace rdmacoll::collperf
