// rdmacoll-train's flag parsing, and the pure parts of the gradient exchange (trainer.h): mode
// names, parameter digests, input standardisation. No network.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "perf/options.h"
#include "rdmacoll/training/trainer.h"
#include "train/options.h"
#include "train/report.h"

namespace {

using rdmacoll::perf::UsageError;
using rdmacoll::train::parse;
using rdmacoll::training::ExchangeMode;
using rdmacoll::training::LrSchedule;

TEST(TrainOptions, DefaultsAreTheIssuesRecipe) {
  const auto o = parse({});
  EXPECT_EQ(o.epochs, 15u);
  EXPECT_EQ(o.batch, 256u);
  EXPECT_FLOAT_EQ(o.lr, 0.1f);
  EXPECT_FLOAT_EQ(o.momentum, 0.9f);
  EXPECT_FLOAT_EQ(o.weight_decay, 5e-4f);
  EXPECT_EQ(o.schedule, LrSchedule::Kind::cosine);
  EXPECT_EQ(o.warmup_steps, 0u);
  EXPECT_EQ(o.clip, 0.0);
  EXPECT_EQ(o.data, "/usr/share/datasets/fashion-mnist");
  EXPECT_EQ(o.compress.kind, ExchangeMode::Kind::plain);
  EXPECT_EQ(o.compress.name(), "none");
  EXPECT_FALSE(o.overlap);
  EXPECT_EQ(o.limit_train, 0u);
  EXPECT_FALSE(o.perturb_rank.has_value());
}

TEST(TrainOptions, ParsesEveryFlag) {
  const auto o = parse({"--epochs", "3", "--batch=512", "--lr", "0.05", "--momentum", "0", "--weight-decay", "1e-4",
                        "--schedule", "step", "--warmup-steps", "100", "--clip", "5", "--seed", "7", "--data", "/d",
                        "--compress", "qsgd:4", "--overlap", "--bucket-mb", "0.5", "--limit-train", "6000", "--limit-test", "2000", "--csv",
                        "a.csv", "--json", "a.json", "--timeout", "30", "--debug-perturb-rank", "1"});
  EXPECT_EQ(o.epochs, 3u);
  EXPECT_EQ(o.batch, 512u);
  EXPECT_FLOAT_EQ(o.lr, 0.05f);
  EXPECT_FLOAT_EQ(o.momentum, 0.0f);
  EXPECT_FLOAT_EQ(o.weight_decay, 1e-4f);
  EXPECT_EQ(o.schedule, LrSchedule::Kind::step);
  EXPECT_EQ(o.warmup_steps, 100u);
  EXPECT_EQ(o.clip, 5.0);
  EXPECT_EQ(o.seed, 7u);
  EXPECT_EQ(o.data, "/d");
  EXPECT_EQ(o.compress.kind, ExchangeMode::Kind::codec);
  EXPECT_EQ(o.compress.name(), "qsgd:4:64");
  EXPECT_TRUE(o.overlap);
  EXPECT_EQ(o.compress.bucket_bytes, 524288u);
  EXPECT_EQ(parse({"--bucket-mb", "0", "--compress", "int8"}).compress.bucket_bytes, 0u);  // either order
  EXPECT_EQ(parse({}).compress.bucket_bytes, 25u << 20);  // DDP's default
  EXPECT_EQ(o.limit_train, 6000u);
  EXPECT_EQ(o.limit_test, 2000u);
  EXPECT_EQ(o.csv, "a.csv");
  EXPECT_EQ(o.json, "a.json");
  EXPECT_EQ(o.timeout, 30.0);
  EXPECT_EQ(o.perturb_rank, 1);
}

TEST(TrainOptions, CompressModes) {
  EXPECT_EQ(parse({"--compress", "powersgd:2"}).compress.kind, ExchangeMode::Kind::powersgd);
  EXPECT_EQ(parse({"--compress", "powersgd:2"}).compress.spec.rank, 2u);
  const auto a = parse({"--compress", "auto"}).compress;
  EXPECT_EQ(a.kind, ExchangeMode::Kind::codec);
  EXPECT_TRUE(a.only_if_faster);
  EXPECT_EQ(a.name(), "auto");
  EXPECT_EQ(a.spec.name(), "int8:256");
  for (const char* c : {"fp16", "bf16", "int8", "sign", "topk:0.01", "terngrad", "randk:0.1"})
    EXPECT_EQ(parse({"--compress", c}).compress.kind, ExchangeMode::Kind::codec) << c;
}

TEST(TrainOptions, ErrorFeedbackPruneQuantize) {
  const auto o = parse({"--no-error-feedback", "--compress", "sign", "--prune", "0.5", "--quantize-weights", "int8"});
  EXPECT_FALSE(o.compress.error_feedback);  // the flag may come before --compress
  EXPECT_EQ(o.prune, 0.5);
  EXPECT_TRUE(o.quantize_int8);
  const auto d = parse({});
  EXPECT_TRUE(d.compress.error_feedback);
  EXPECT_FALSE(d.prune);
  EXPECT_FALSE(d.quantize_int8);
}

TEST(TrainOptions, BadFlagsThrowUsageErrors) {
  const std::vector<std::vector<std::string>> bad = {
      {"--bogus"}, {"--epochs"}, {"--epochs", "0"}, {"--batch", "x"}, {"--batch", "0"}, {"--lr", "-1"},
      {"--lr", "nan"}, {"--momentum", "1.5"}, {"--schedule", "linear"}, {"--compress", "int9"},
      {"--compress", "powersgd:0"}, {"--limit-train", "0"}, {"--timeout", "0"}, {"--csv", "f", "--json", "f"},
      {"positional"}, {"--overlap=1"}, {"--prune", "0"}, {"--prune", "1"}, {"--prune", "x"},
      {"--quantize-weights", "int4"}, {"--no-error-feedback"}, {"--compress", "powersgd:2", "--no-error-feedback"},
      {"--compress", "auto", "--no-error-feedback"}, {"--bucket-mb", "-1"}, {"--bucket-mb", "x"}};
  for (const auto& args : bad) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    EXPECT_THROW(parse(args), UsageError) << joined;
  }
}

TEST(TrainerDigest, EqualBitsEqualDigestsAnyChangeDiffers) {
  std::vector<float> a(1000);
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(static_cast<float>(i));
  std::vector<float> b = a;
  EXPECT_EQ(rdmacoll::training::parameter_digest(a), rdmacoll::training::parameter_digest(b));
  b[999] = std::nextafter(b[999], 2.0f);
  EXPECT_NE(rdmacoll::training::parameter_digest(a), rdmacoll::training::parameter_digest(b));
  b = a;
  b[0] = -0.0f;  // +0 and -0 are different bits: a replica check must see them
  a[0] = 0.0f;
  EXPECT_NE(rdmacoll::training::parameter_digest(a), rdmacoll::training::parameter_digest(b));
}

TEST(TrainerStandardize, MeanZeroStdOne) {
  std::vector<float> x = {0, 0.25f, 0.5f, 1, 1, 0};
  const auto s = rdmacoll::training::pixel_statistics(x);
  EXPECT_NEAR(s.mean, 0.4583333, 1e-6);
  rdmacoll::training::standardize(x, s);
  double sum = 0, sq = 0;
  for (float v : x) sum += v, sq += static_cast<double>(v) * v;
  EXPECT_NEAR(sum / 6, 0, 1e-6);
  EXPECT_NEAR(sq / 6, 1, 1e-5);
  // A constant input has no spread: divide by 1, not 0.
  std::vector<float> c(4, 0.5f);
  EXPECT_EQ(rdmacoll::training::pixel_statistics(c).std, 1.0f);
}

TEST(TrainReport, JsonHasNullsForWhatIsNotANumber) {
  rdmacoll::train::Options o;
  rdmacoll::train::RunInfo info;
  info.ranks = 1;
  info.transport = "ucx \"shm\"";
  rdmacoll::train::EpochRow row;
  row.epoch = 1;
  row.train_loss = std::numeric_limits<double>::quiet_NaN();
  row.digest = 0xabcdef;
  const std::string doc = rdmacoll::train::json_document(o, info, {row}, 1.5, true);
  EXPECT_NE(doc.find("\"train_loss\": null"), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"compression_ratio\": null"), std::string::npos) << doc;  // one rank: no wire
  EXPECT_NE(doc.find("\"digest\": \"0000000000abcdef\""), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"transport\": \"ucx \\\"shm\\\"\""), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"lr\": 0.1,"), std::string::npos) << doc;  // the flag as given
  EXPECT_NE(doc.find("\"completed\": true"), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"post_training\": null"), std::string::npos) << doc;
  EXPECT_NE(doc.find("\"error_feedback\": true"), std::string::npos) << doc;
  const std::string shrunk = rdmacoll::train::json_document(
      o, info, {row}, 1.5, true, {{"fp32", "dense", 0.89, 941096, 0}, {"pruned", "bitmap", 0.885, 500000, 0.5}});
  EXPECT_NE(shrunk.find("{\"model\": \"pruned\", \"format\": \"bitmap\", \"sparsity\": 0.5, "
                        "\"test_accuracy\": 0.885, \"size_bytes\": 500000}"),
            std::string::npos)
      << shrunk;
  const std::string empty = rdmacoll::train::json_document(o, info, {}, 0, false);
  EXPECT_NE(empty.find("\"epochs\": [],"), std::string::npos) << empty;
  EXPECT_NE(empty.find("\"final_test_accuracy\": null"), std::string::npos) << empty;
}

TEST(TrainReport, CsvRowMatchesHeader) {
  rdmacoll::train::EpochRow row;
  row.epoch = 3;
  row.ratio = 3.94;
  const std::string header = rdmacoll::train::kCsvHeader, line = rdmacoll::train::csv_row(row);
  EXPECT_EQ(std::count(header.begin(), header.end(), ','), std::count(line.begin(), line.end(), ','));
  EXPECT_EQ(line.substr(0, 2), "3,");
  EXPECT_NE(line.find(",3.9400,"), std::string::npos) << line;
  std::ostringstream table;
  rdmacoll::train::print_row(table, row);
  EXPECT_NE(table.str().find("  3.94  "), std::string::npos) << table.str();
}

}  // namespace
