#include "train/report.h"

#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>

#include "perf/report.h"
#include "rdmacoll/error.h"

namespace rdmacoll::train {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

void print_table_header(std::ostream& out) {
  out << "#  epoch  train_loss  test_acc        lr  compute(s)  comm(s)    wire(MB)   ratio  rss_max(MiB)\n";
}

void print_row(std::ostream& out, const EpochRow& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%8zu  %10.4f  %8.4f  %8.5f  %10.2f  %7.2f  %10.2f  %6s  %8.1f (r%d)\n", r.epoch,
                r.train_loss, r.test_accuracy, r.lr, r.compute_s, r.comm_s, r.wire_bytes / 1e6,
                r.ratio ? fixed(*r.ratio, 2).c_str() : "-", static_cast<double>(r.peak_rss_max) / 1048576.0,
                r.peak_rss_rank);
  out << buf << std::flush;
}

void print_variants(std::ostream& out, const std::vector<ModelVariant>& variants) {
  if (variants.empty()) return;
  out << "# after training (rank 0, the whole test set):\n#  model    format         sparsity  test_acc    size(B)  smaller\n";
  const double base = static_cast<double>(variants.front().size_bytes);
  for (const ModelVariant& v : variants) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "#  %-8s %-13s %9.2f  %8.4f  %9zu  %6.2fx\n", v.model.c_str(), v.format.c_str(),
                  v.sparsity, v.test_accuracy, v.size_bytes,
                  v.size_bytes ? base / static_cast<double>(v.size_bytes) : 0.0);
    out << buf;
  }
  out << std::flush;
}

const char* const kCsvHeader =
    "epoch,train_loss,test_accuracy,lr,compute_s,comm_s,wire_bytes,plain_bytes,compression_ratio,peak_rss_bytes_max,"
    "peak_rss_rank,digest\n";

std::string csv_row(const EpochRow& r) {
  std::ostringstream o;
  o.precision(9);
  o << r.epoch << ',' << r.train_loss << ',' << r.test_accuracy << ',' << r.lr << ',' << r.compute_s << ','
    << r.comm_s << ',' << fixed(r.wire_bytes, 0) << ',' << fixed(r.plain_bytes, 0) << ','
    << (r.ratio ? fixed(*r.ratio, 4) : "") << ',' << r.peak_rss_max << ',' << r.peak_rss_rank << ','
    << hex64(r.digest) << '\n';
  return o.str();
}

// Writes `text` to `path` whole (replacing it); throws Error naming the file.
void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  f.flush();
  if (!f) throw Error("cannot write " + path + ": " + std::strerror(errno));
}

namespace {

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

// A float flag as given (0.1, not 0.100000001).
std::string json_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.7g", static_cast<double>(v));
  return std::isfinite(v) ? buf : "null";
}

std::string json_row(const EpochRow& r) {
  std::ostringstream o;
  o << "{\"epoch\": " << r.epoch << ", \"train_loss\": " << json_number(r.train_loss)
    << ", \"test_accuracy\": " << json_number(r.test_accuracy) << ", \"lr\": " << json_number(r.lr)
    << ", \"compute_s\": " << json_number(r.compute_s) << ", \"comm_s\": " << json_number(r.comm_s)
    << ", \"wire_bytes\": " << fixed(r.wire_bytes, 0) << ", \"plain_bytes\": " << fixed(r.plain_bytes, 0)
    << ", \"compression_ratio\": " << (r.ratio ? json_number(*r.ratio) : "null")
    << ", \"peak_rss_bytes_max\": " << r.peak_rss_max << ", \"peak_rss_rank\": " << r.peak_rss_rank
    << ", \"digest\": \"" << hex64(r.digest) << "\"}";
  return o.str();
}

}  // namespace

std::string json_document(const Options& o, const RunInfo& info, const std::vector<EpochRow>& rows, double total_s,
                          bool done, const std::vector<ModelVariant>& variants) {
  std::ostringstream j;
  j << "{\n  \"tool\": \"rdmacoll-train\",\n  \"run\": {\"ranks\": " << info.ranks
    << ", \"transport\": " << perf::json_quote(info.transport)
    << ", \"link\": " << (info.link.empty() ? "null" : perf::json_quote(info.link))
    << ", \"compress\": " << perf::json_quote(o.compress.name()) << ", \"overlap\": " << (o.overlap ? "true" : "false")
    << ", \"bucket_bytes\": " << o.compress.bucket_bytes << ", \"buckets\": " << info.buckets
    << ", \"error_feedback\": " << (o.compress.error_feedback ? "true" : "false")
    << ", \"epochs\": " << o.epochs << ", \"batch\": " << o.batch << ", \"lr\": " << json_float(o.lr)
    << ", \"momentum\": " << json_float(o.momentum) << ", \"weight_decay\": " << json_float(o.weight_decay)
    << ", \"schedule\": \"" << schedule_name(o.schedule) << "\", \"warmup_steps\": " << o.warmup_steps
    << ", \"clip\": " << json_number(o.clip) << ", \"seed\": " << o.seed << ", \"data\": " << perf::json_quote(o.data)
    << ", \"train_examples\": " << info.train_examples << ", \"test_examples\": " << info.test_examples
    << ", \"steps_per_epoch\": " << info.steps_per_epoch << ", \"model\": [784, 256, 128, 10], \"parameters\": "
    << info.parameters << ", \"input_mean\": " << json_float(info.input.mean)
    << ", \"input_std\": " << json_float(info.input.std) << "},\n  \"epochs\": [";
  for (size_t i = 0; i < rows.size(); ++i) j << (i ? ",\n    " : "\n    ") << json_row(rows[i]);
  j << (rows.empty() ? "" : "\n  ") << "],\n  \"completed\": " << (done ? "true" : "false")
    << ",\n  \"final_test_accuracy\": " << (rows.empty() ? "null" : json_number(rows.back().test_accuracy))
    << ",\n  \"total_s\": " << json_number(total_s) << ",\n  \"post_training\": ";
  if (variants.empty()) j << "null";
  for (size_t i = 0; i < variants.size(); ++i) {
    const ModelVariant& v = variants[i];
    j << (i ? ",\n    " : "[\n    ") << "{\"model\": " << perf::json_quote(v.model)
      << ", \"format\": " << perf::json_quote(v.format) << ", \"sparsity\": " << json_number(v.sparsity)
      << ", \"test_accuracy\": " << json_number(v.test_accuracy) << ", \"size_bytes\": " << v.size_bytes << "}";
  }
  j << (variants.empty() ? "" : "\n  ]") << "\n}\n";
  return j.str();
}

}  // namespace rdmacoll::train
