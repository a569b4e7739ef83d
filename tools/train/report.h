// What rdmacoll-train prints and logs: the per-epoch table on rank 0's stdout, the CSV and the
// JSON document (see README, Trainer). Kept apart from main() so the unit tests can check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "rdmacoll/training/trainer.h"
#include "train/options.h"

namespace rdmacoll::train {

// One row of the table and the logs: rank 0's view of an epoch.
struct EpochRow {
  size_t epoch = 0;
  double train_loss = 0, test_accuracy = 0, lr = 0;
  double compute_s = 0, comm_s = 0;  // means over ranks
  double wire_bytes = 0;             // mean over ranks
  double plain_bytes = 0;            // mean over ranks: a plain fp32 ring allreduce's
  std::optional<double> ratio;       // plain / wire; none on one rank (nothing on the wire)
  int64_t peak_rss_max = 0;          // bytes, max over ranks
  int peak_rss_rank = 0;
  uint64_t digest = 0;
};

// The run's fixed facts, for the header and the JSON.
struct RunInfo {
  int ranks = 1;
  std::string transport, link;
  size_t train_examples = 0, test_examples = 0, parameters = 0, steps_per_epoch = 0;
  size_t buckets = 0;  // allreduce buckets per step (plain and codecs; PowerSGD: its two calls)
  training::Standardization input;
};

// One model evaluated after training (--prune, --quantize-weights): rank 0 on the whole test set.
struct ModelVariant {
  std::string model;         // "fp32", "pruned", "int8"
  std::string format;        // how size_bytes is counted: "dense", "csr", "bitmap", "int8 per-row"
  double test_accuracy = 0;
  size_t size_bytes = 0;
  double sparsity = 0;       // share of zero weights (pruned; 0 otherwise)
};

std::string fixed(double v, int digits);  // "%.*f"
std::string hex64(uint64_t v);            // 16 hex digits

void print_table_header(std::ostream& out);
void print_row(std::ostream& out, const EpochRow& r);

extern const char* const kCsvHeader;
std::string csv_row(const EpochRow& r);

// The after-training table: one line per variant, size against the first (fp32) one's.
void print_variants(std::ostream& out, const std::vector<ModelVariant>& variants);

// The whole document: run information, the epochs so far, whether the run completed, and the
// variants evaluated after training ("post_training": null when there are none).
std::string json_document(const Options& o, const RunInfo& info, const std::vector<EpochRow>& rows, double total_s,
                          bool done, const std::vector<ModelVariant>& variants = {});

// Writes `text` to `path` whole (replacing it); throws Error naming the file.
void write_file(const std::string& path, const std::string& text);

}  // namespace rdmacoll::train
