// Command line of rdmacoll-train, the data-parallel SGD trainer. Kept apart from main() so the
// unit tests can check the parsing without a network.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rdmacoll/training/sgd.h"
#include "rdmacoll/training/trainer.h"

namespace rdmacoll::train {

struct Options {
  std::size_t epochs = 15;
  std::size_t batch = 256;  // global: split across the ranks
  float lr = 0.1f;
  float momentum = 0.9f;
  float weight_decay = 5e-4f;
  training::LrSchedule::Kind schedule = training::LrSchedule::Kind::cosine;
  std::size_t warmup_steps = 0;
  double clip = 0;  // max global gradient norm; 0: no clipping
  std::uint64_t seed = 1;
  std::string data = "/usr/share/datasets/fashion-mnist";
  training::ExchangeMode compress;  // default: none (plain fp32 allreduce)
  bool overlap = false;
  // After training, rank 0 reports the test accuracy and size of the model pruned to this
  // sparsity (global magnitude pruning) and/or with int8 weights (per-row scales).
  std::optional<double> prune;
  bool quantize_int8 = false;
  std::size_t limit_train = 0;  // 0: all
  std::size_t limit_test = 0;   // 0: all
  std::string csv, json;        // log files; empty: none
  double timeout = 0;           // seconds; 0: RDMACOLL_TIMEOUT
  // Test only (not in the usage): this rank's weights are nudged after the first epoch's last
  // step, so the replica check must catch it.
  std::optional<int> perturb_rank;
  bool help = false;
};

// Parses argv (without argv[0]). Throws perf::UsageError naming the flag.
Options parse(const std::vector<std::string>& args);
std::string usage();
std::string_view schedule_name(training::LrSchedule::Kind k);

}  // namespace rdmacoll::train
