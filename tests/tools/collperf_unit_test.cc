// The collective benchmarks' pieces without a network: flags, size sweeps, busbw factors, -a,
// the data patterns against the real reduction kernels, and the table and JSON output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "collperf/compress.h"
#include "collperf/data.h"
#include "collperf/options.h"
#include "collperf/report.h"
#include "perf/options.h"
#include "rdmacoll/collectives/codec.h"
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

TEST(CollPerfOptions, CompressTakesACodecOrAuto) {
  using Scheme = collectives::Compression::Scheme;
  Options o = parse_all(Collective::allreduce, {});
  EXPECT_TRUE(o.compress.empty());
  o = parse_all(Collective::allreduce, {"--compress", "int8"});
  EXPECT_EQ(o.compress, "int8:256");  // canonical
  EXPECT_FALSE(o.compress_auto);
  EXPECT_FALSE(o.feedback);
  EXPECT_EQ(o.scheme, Scheme::automatic);
  EXPECT_EQ(o.seed, 0u);
  o = parse_all(Collective::allreduce, {"--compress", "auto"});
  EXPECT_EQ(o.compress, "int8:256");
  EXPECT_TRUE(o.compress_auto);
  o = parse_all(Collective::allreduce, {"--compress=auto:topk:0.05", "-o", "avg", "-d", "float", "--feedback",
                                        "--scheme", "allgather", "--seed", "77"});
  EXPECT_EQ(o.compress, collectives::parse_codec("topk:0.05").name());
  EXPECT_TRUE(o.compress_auto);
  EXPECT_TRUE(o.feedback);
  EXPECT_EQ(o.scheme, Scheme::allgather);
  EXPECT_EQ(o.seed, 77u);
  EXPECT_EQ(parse_all(Collective::allreduce, {"--compress", "sign", "--scheme", "two_phase"}).scheme, Scheme::two_phase);
  EXPECT_EQ(scheme_name(Scheme::two_phase), "two_phase");
  const std::string u = usage(Collective::allreduce);
  for (const char* f : {"--compress", "--feedback", "--scheme", "--seed"}) EXPECT_NE(u.find(f), std::string::npos) << f;
  EXPECT_EQ(usage(Collective::reduce).find("--compress"), std::string::npos);
}

TEST(CollPerfOptions, CompressOnlyWithFloatSumOrAvgAllreduce) {
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--compress", "bogus"}, {"--compress", "auto:bogus"}, {"--compress", "powersgd:2"}, {"--compress"},
           {"--compress", "int8", "-d", "half"}, {"--compress", "int8", "-d", "all"}, {"--compress", "int8", "-o", "max"},
           {"--compress", "int8", "-o", "all"}, {"--compress", "int8", "--algo", "ring"},
           {"--compress", "int8", "--deterministic"}, {"--compress", "int8", "--scheme", "tree"},
           {"--compress", "int8", "--seed", "-1"}, {"--feedback"}, {"--scheme", "allgather"}, {"--seed", "3"}}) {
    EXPECT_THROW(parse_all(Collective::allreduce, bad), perf::UsageError) << bad[0] << " " << bad.back();
  }
  EXPECT_THROW(parse_all(Collective::reduce_scatter, {"--compress", "int8"}), perf::UsageError);
  EXPECT_THROW(parse_all(Collective::broadcast, {"--compress", "int8"}), perf::UsageError);
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

TEST(CollPerfReport, WireColumns) {
  // 3 ranks, 3 MB of fp32: the ring sends 2(n-1)/n x 3 MB = 4 MB per rank.
  EXPECT_DOUBLE_EQ(ring_bytes_per_rank(3, 3000000), 4000000);
  const Wire w = wire_columns(3, 3000000, 100, 1000000);  // 1 MB per rank in 100 us
  EXPECT_DOUBLE_EQ(w.bytes, 1000000);
  EXPECT_DOUBLE_EQ(w.busbw_gbs, 10.0);      // wire bytes / time
  EXPECT_DOUBLE_EQ(w.algbw_gbs, 10.0 / (4.0 / 3));  // / the busbw factor
  EXPECT_DOUBLE_EQ(w.ratio, 4.0);
  const Wire none = wire_columns(1, 4096, 0, 0);  // one rank sends nothing; no time
  EXPECT_EQ(none.busbw_gbs, 0);
  EXPECT_EQ(none.algbw_gbs, 0);
  EXPECT_EQ(none.ratio, 0);
}

TEST(CollPerfCompress, RelativeErrorAndHash) {
  const std::vector<float> exact{3, 4, 0}, off{3, 4, 0.5f}, nan{3, NAN, 0};
  EXPECT_EQ(relative_error(exact.data(), exact.data(), 3), 0);
  EXPECT_DOUBLE_EQ(relative_error(off.data(), exact.data(), 3), 0.1);  // 0.5 / 5
  EXPECT_TRUE(std::isnan(relative_error(nan.data(), exact.data(), 3)));
  const std::vector<float> zero(3, 0.0f);
  EXPECT_TRUE(std::isinf(relative_error(off.data(), zero.data(), 3)));
  EXPECT_EQ(result_hash(exact.data(), 3), result_hash(std::vector<float>{3, 4, 0}.data(), 3));
  EXPECT_NE(result_hash(exact.data(), 3), result_hash(off.data(), 3));
  const std::vector<float> neg_zero{3, 4, -0.0f};  // bitwise: -0 is not 0
  EXPECT_NE(result_hash(exact.data(), 3), result_hash(neg_zero.data(), 3));
}

TEST(CollPerfCompress, GradientInputsDependOnRankAndSpreadOverDecades) {
  constexpr size_t kCount = 1 << 16;
  std::vector<float> a(kCount), b(kCount), a2(kCount);
  fill_gradient(0, a.data(), kCount);
  fill_gradient(1, b.data(), kCount);
  fill_gradient(0, a2.data(), kCount);
  EXPECT_EQ(a, a2);
  size_t same = 0, negative = 0;
  float lo = INFINITY, hi = 0;
  for (size_t i = 0; i < kCount; ++i) {
    same += a[i] == b[i];
    negative += a[i] < 0;
    ASSERT_TRUE(std::isfinite(a[i]));
    if (a[i] != 0) lo = std::min(lo, std::fabs(a[i])), hi = std::max(hi, std::fabs(a[i]));
  }
  EXPECT_LT(same, kCount / 100);
  EXPECT_GT(negative, kCount / 3);
  EXPECT_LT(negative, kCount * 2 / 3);
  EXPECT_GT(hi / lo, 1e4);
}

// The -c 1 limit: the sum of 3 ranks' inputs compressed by each codec (locally, the two-phase
// arithmetic without a network) is within it, and a wrong result is not.
TEST(CollPerfCompress, RelerrLimitHoldsForTheCodecsAndCatchesGarbage) {
  constexpr size_t kCount = 30000;
  constexpr int kRanks = 3;
  for (const char* name : {"none", "fp16", "int8", "sign", "qsgd:4", "terngrad", "topk:0.05", "randk:0.1"}) {
    auto codec = collectives::make_codec(name);
    std::vector<float> exact(kCount, 0.0f), out(kCount, 0.0f), e1(kCount, 0.0f), x(kCount), d(kCount), budget(kCount);
    std::vector<std::byte> wire(codec->wire_bytes(kCount));
    for (int r = 0; r < kRanks; ++r) {
      fill_gradient(r, x.data(), kCount);
      local_error_budget(*codec, x.data(), kCount, nullptr, budget.data());
      codec->encode(x.data(), kCount, wire.data(), 5 + static_cast<uint64_t>(r));
      codec->decode_add(wire.data(), kCount, out.data());
      for (size_t i = 0; i < kCount; ++i) exact[i] += x[i], e1[i] += budget[i];
    }
    const bool two_phase = !codec->sparse();
    if (two_phase) {  // the owner's re-encoding of the sum
      codec->encode(out.data(), kCount, wire.data(), 9);
      codec->decode(wire.data(), kCount, out.data());
    }
    const double limit = relerr_limit(*codec, two_phase, exact.data(), e1.data(), kCount);
    const double relerr = relative_error(out.data(), exact.data(), kCount);
    EXPECT_LE(relerr, limit) << name;
    EXPECT_LT(limit, 1e3) << name;
    for (size_t i = 0; i < kCount; ++i) d[i] = exact[i] * 1e4f;  // far off
    EXPECT_GT(relative_error(d.data(), exact.data(), kCount), limit) << name;
  }
  // Error feedback's held-back residual widens the budget by what it holds.
  auto int8 = collectives::make_codec("int8");
  std::vector<float> x(1024), plain(1024), fed(1024);
  fill_gradient(0, x.data(), 1024);
  local_error_budget(*int8, x.data(), 1024, nullptr, plain.data());
  collectives::ErrorFeedback ef;
  ef.worker.assign(1024, 1.0f);
  ef.server.assign(1024, 0.0f);
  local_error_budget(*int8, x.data(), 1024, &ef, fed.data());
  for (size_t i = 0; i < 1024; ++i) ASSERT_GE(fed[i], plain[i] + 0.99f) << i;
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

TEST(CollPerfReport, CompressedTableAndJson) {
  RunInfo info;
  info.ranks = 3;
  info.options = parse_all(Collective::allreduce, {"--compress", "auto", "--feedback"});
  info.peak_rss_bytes = {1, 2, 3};
  info.peak_scratch_bytes = {0, 0, 0};
  Row r;
  r.bytes = 3000000;
  r.count = 750000;
  r.redop = "sum";
  for (Placement* p : {&r.out_of_place, &r.in_place}) {
    *p = placement(Collective::allreduce, 3, r.bytes, 100, 0);
    Wire w = wire_columns(3, r.bytes, 100, 1000000);
    w.relerr = 0.0042;
    w.relerr_limit = 0.5;
    w.compressed = p == &r.out_of_place;
    w.only_if_faster = true;
    p->wire = w;
  }
  std::ostringstream out;
  print_header(out, info);
  print_row(out, r);
  const std::string s = out.str();
  EXPECT_NE(s.find("# Compression: int8:256 only where it is faster (auto), scheme auto, error feedback on, seed 0"),
            std::string::npos)
      << s;
  const std::string heads = "#       size         count      type   redop    root     time   algbw   busbw        wire  walgbw  "
                            "wbusbw   ratio    relerr #wrong  comp";
  EXPECT_NE(s.find(heads + "     time"), std::string::npos) << s;
  EXPECT_NE(s.find("     3000000        750000     float     sum      -1    100.0   30.00   40.00     1000000    7.50   "
                   "10.00    4.00  4.20e-03      0   yes    100.0"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("0    no\n"), std::string::npos) << s;
  const std::string j = to_json(info, {r});
  for (const char* k : {"\"compression\": {\"codec\": \"int8:256\", \"auto\": true, \"scheme\": \"auto\", \"feedback\": true",
                        "\"wire_bytes\": 1e+06", "\"wire_algbw_gbs\": 7.5", "\"wire_busbw_gbs\": 10",
                        "\"compression_ratio\": 4", "\"relerr\": 0.0042", "\"relerr_limit\": 0.5",
                        "\"compressed\": true", "\"compressed\": false"})
    EXPECT_NE(j.find(k), std::string::npos) << k << "\n" << j;
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
