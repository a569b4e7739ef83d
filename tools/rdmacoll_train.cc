// rdmacoll-train: data-parallel SGD of the MLP on Fashion-MNIST over rdmacoll's collectives.
//   rdmacoll-run -n 2 -- rdmacoll-train --epochs 2 --compress int8
// Rank 0 broadcasts the initial weights; each rank trains on its part of every global batch
// (shard.h) and the gradients are averaged per bucket (trainer.h: GradientExchange). After every
// epoch the ranks compare digests of their parameters (they must be bitwise equal), evaluate
// their share of the test set, and rank 0 prints one row of the table (and the CSV/JSON logs).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "perf/options.h"
#include "perf/report.h"
#include "perf/runner.h"
#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "rdmacoll/training/fashion_mnist.h"
#include "rdmacoll/training/mlp.h"
#include "rdmacoll/training/post_training.h"
#include "rdmacoll/training/sgd.h"
#include "rdmacoll/training/shard.h"
#include "rdmacoll/training/trainer.h"
#include "train/options.h"
#include "train/report.h"

namespace {

using namespace rdmacoll;
using collectives::Communicator;
using collectives::DataType;
using train::EpochRow;
using train::Options;
using train::RunInfo;
using train::fixed;
using train::hex64;
namespace bs = rdmacoll::bootstrap;
namespace tr = rdmacoll::training;

constexpr const char* kName = "rdmacoll-train";
int g_rank = -1;  // for error messages, once known
bool g_reported = false;  // the error was printed already (before the communicator went)

void report(const std::exception& e) {
  std::string who = g_rank >= 0 ? "rank " + std::to_string(g_rank) + ": " : "";
  if (std::string_view(e.what()).starts_with("rank ")) who.clear();
  std::cerr << kName << ": " << who << e.what() << std::endl;
  g_reported = true;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One epoch as every rank sees it, gathered (f64: the 64-bit digest travels as two 32-bit halves).
enum Field : size_t {
  kLossSum, kExamples, kCorrect, kTested, kWire, kPlain, kWait, kCompute, kRss, kDigestHi, kDigestLo, kFields
};

// Keeps the first `limit` examples (0: all).
void limit_dataset(tr::Dataset& d, size_t limit) {
  if (limit == 0 || limit >= d.count) return;
  d.count = limit;
  d.images.resize(limit * d.pixels_per_image());
  d.labels.resize(limit);
}

// Correct predictions on this rank's share [r m / R, (r+1) m / R) of the test set.
size_t correct_on_share(const tr::Mlp& model, const tr::Dataset& test, int rank, int ranks, size_t& tested) {
  const size_t lo = test.count * static_cast<size_t>(rank) / static_cast<size_t>(ranks);
  const size_t hi = test.count * static_cast<size_t>(rank + 1) / static_cast<size_t>(ranks);
  tested = hi - lo;
  if (tested == 0) return 0;
  const size_t px = test.pixels_per_image();
  const std::vector<uint8_t> pred =
      model.predict(std::span<const float>(test.images.data() + lo * px, tested * px));
  size_t correct = 0;
  for (size_t i = 0; i < tested; ++i) correct += pred[i] == test.labels[lo + i] ? 1 : 0;
  return correct;
}

// --prune, --quantize-weights: the trained model as it is, and each shrunk copy, evaluated on
// the whole test set (rank 0 alone: the replicas are equal).
std::vector<train::ModelVariant> shrink(const Options& o, const tr::Mlp& model, const tr::Dataset& test) {
  std::vector<train::ModelVariant> out;
  if (!o.prune && !o.quantize_int8) return out;
  out.push_back({"fp32", "dense", model.accuracy(test), tr::dense_size_bytes(model), 0});
  if (o.prune) {
    tr::Mlp pruned = model;
    const tr::PruneReport r = tr::prune_magnitude(pruned, *o.prune, tr::PruneScope::global);
    const bool bitmap = r.bitmap_bytes <= r.csr_bytes;
    out.push_back({"pruned", bitmap ? "bitmap" : "csr", pruned.accuracy(test), bitmap ? r.bitmap_bytes : r.csr_bytes,
                   r.sparsity});
  }
  if (o.quantize_int8) {
    const tr::QuantizedMlp q = tr::quantize_int8(model, tr::QuantScale::per_row);
    out.push_back({"int8", "int8 per-row", q.dequantize().accuracy(test), q.size_bytes(), 0});
  }
  return out;
}

int run(const Options& o, const std::vector<std::string>& args) {
  const double timeout = o.timeout > 0 ? o.timeout : settings::get_seconds("RDMACOLL_TIMEOUT");
  std::optional<bs::LaunchInfo> launch = bs::detect_launch();
  if (!launch) {
    std::cerr << kName << ": not launched: run every rank under rdmacoll-run -n N, mpirun -np N or srun, or set "
                 "RDMACOLL_RANK, RDMACOLL_WORLD_SIZE and RDMACOLL_ADDR\n\n"
              << train::usage();
    return 2;
  }
  const int rank = launch->rank, ranks = launch->world_size;
  g_rank = rank;
  if (o.batch < static_cast<size_t>(ranks)) {
    std::cerr << kName << ": --batch " << o.batch << " is smaller than the " << ranks
              << " ranks launched: every rank needs an example of each batch\n\n"
              << train::usage();
    return 2;
  }

  // The data first: a missing file is an error of every rank on its own, before anyone waits.
  tr::Dataset train_set = tr::load_fashion_mnist(o.data, tr::Split::train);
  tr::Dataset test_set = tr::load_fashion_mnist(o.data, tr::Split::test);
  RunInfo info;
  info.input = tr::pixel_statistics(train_set.images);  // over the whole training set
  limit_dataset(train_set, o.limit_train);
  limit_dataset(test_set, o.limit_test);
  tr::standardize(train_set.images, info.input);
  tr::standardize(test_set.images, info.input);

  bs::World world = bs::connect_world(*launch, bs::deadline_in(timeout));
  perf::require_same_args(*world.store, "train/args", rank, ranks, args, bs::deadline_in(timeout));
  Communicator::Options copt = Communicator::Options::from_settings();
  if (o.timeout > 0) copt.timeout_s = o.timeout;
  std::unique_ptr<Communicator> comm = Communicator::create(world, copt);
  // An error from here on is printed before the communicator is destroyed: destroying it with
  // calls in flight can abort inside UCX (seen behind --link 100mbit), which would lose it.
  try {

    tr::Mlp model({std::begin(tr::kDefaultMlpSizes), std::end(tr::kDefaultMlpSizes)}, o.seed);
    comm->broadcast(model.params().data(), model.params().data(), model.params().size(), DataType::f32, 0);
    tr::Sgd sgd(model.params().size(), {.momentum = o.momentum, .weight_decay = o.weight_decay});
    const size_t steps = tr::batches_per_epoch(train_set.count, o.batch, false);
    tr::LrSchedule lr{o.schedule, o.lr};
    lr.warmup_steps = o.warmup_steps;
    lr.total_steps = std::max(o.epochs * steps, o.warmup_steps + 1);
    lr.step_size = std::max<size_t>(1, o.epochs * steps / 3);
    tr::GradientExchange exchange(*comm, model.layers(), o.compress);
    // Error feedback: the ranks exchange their steps (lr * local momentum), not gradients (see
    // GradientExchange::averages_updates), so --clip bounds each rank's gradient before its
    // momentum, which needs all of it: not while layers start during backward.
    const bool updates = exchange.averages_updates();
    if (updates && o.clip > 0 && o.overlap)
      throw ConfigError("--clip with --overlap and error feedback: the ranks exchange steps, and a rank's gradient "
                        "is clipped as a whole before its step, after backward; drop --overlap or --clip, or add "
                        "--no-error-feedback");

    info.ranks = ranks;
    info.transport = comm->transport().describe();
    info.link = settings::get_string("RDMACOLL_LINK");
    info.train_examples = train_set.count;
    info.test_examples = test_set.count;
    info.parameters = model.params().size();
    info.steps_per_epoch = steps;
    info.buckets = exchange.buckets().size();

    const bool printer = rank == 0;
    const bool progress = printer && isatty(STDOUT_FILENO);
    if (printer) {
      std::cout << "# rdmacoll-train: " << ranks << " rank(s), " << info.transport
                << (info.link.empty() ? "" : ", link " + info.link) << "\n# model 784-256-128-10 (" << info.parameters
                << " parameters), " << info.train_examples << " training / " << info.test_examples
                << " test images, inputs standardised with mean " << fixed(info.input.mean, 4) << " std "
                << fixed(info.input.std, 4) << "\n# compress " << o.compress.name()
                << (o.compress.error_feedback ? "" : " without error feedback")
                << (o.compress.kind == tr::ExchangeMode::Kind::powersgd
                        ? std::string()
                        : ", " + std::to_string(info.buckets) + " bucket(s) (--bucket-mb " +
                              fixed(static_cast<double>(o.compress.bucket_bytes) / 1048576.0, 2) + ")")
                << (o.overlap ? ", overlap" : "")
                << ", batch " << o.batch << " (global), " << steps << " steps/epoch, lr " << o.lr << " "
                << train::schedule_name(o.schedule) << ", momentum " << o.momentum << ", weight decay "
                << o.weight_decay << ", warm-up " << o.warmup_steps << ", clip " << o.clip << ", seed " << o.seed
                << "\n# compute, comm: mean over ranks; wire: bytes sent per rank (transport counters, mean over "
                   "ranks); ratio: plain fp32 ring allreduce bytes / wire bytes; rss_max: max over ranks (rank)\n";
      train::print_table_header(std::cout);
      if (!o.csv.empty()) train::write_file(o.csv, train::kCsvHeader);
    }

    std::vector<EpochRow> rows;
    std::vector<float> x;
    std::vector<uint8_t> y;
    const auto t_run = std::chrono::steady_clock::now();
    size_t t = 0;  // global step
    for (size_t epoch = 0; epoch < o.epochs; ++epoch) {
      exchange.reset_stats();
      const auto t_epoch = std::chrono::steady_clock::now();
      const std::vector<uint32_t> perm = tr::epoch_permutation(train_set.count, o.seed, epoch);
      double loss_sum = 0;
      size_t examples = 0;
      for (size_t b = 0; b < steps; ++b, ++t) {
        const std::span<const uint32_t> mine = tr::local_batch(perm, o.batch, b, rank, ranks);
        const size_t global = std::min(o.batch, train_set.count - b * o.batch);
        // The ranks' parts may differ by one example: weighting each rank's mean gradient by its
        // share makes the average over ranks the mean over the global batch.
        const float weight = static_cast<float>(mine.size() * static_cast<size_t>(ranks)) / static_cast<float>(global);
        const std::span<float> grads = model.grads();
        // With error feedback a layer's gradient becomes this rank's step for it first.
        auto to_update = [&](size_t l) { exchange.prepare(l, sgd, model.params(), grads, lr.at(t)); };
        auto ready = [&](size_t l) {
          const tr::LayerView& v = model.layers()[l];
          for (float& g : grads.subspan(v.offset(), v.count())) g *= weight;
          if (o.overlap) to_update(l), exchange.start(l, grads, t);
        };
        if (mine.empty()) {  // a short last batch with fewer examples than ranks
          std::fill(grads.begin(), grads.end(), 0.0f);
          if (o.overlap)
            for (size_t l = model.layers().size(); l-- > 0;) to_update(l), exchange.start(l, grads, t);
        } else {
          const tr::ForwardResult fr = model.forward(tr::gather_batch(train_set, mine, x, y));
          loss_sum += fr.loss * static_cast<double>(mine.size());
          examples += mine.size();
          model.backward(ready);
        }
        if (!o.overlap) {
          if (updates && o.clip > 0) tr::clip_grad_norm(grads, o.clip);  // this rank's gradient
          for (size_t l = model.layers().size(); l-- > 0;) to_update(l), exchange.start(l, grads, t);
        }
        exchange.finish();
        exchange.apply(sgd, model.params(), grads, lr.at(t), o.clip);
        if (progress && (b % 8 == 0 || b + 1 == steps)) {
          std::printf("\r  epoch %zu/%zu  step %zu/%zu ", epoch + 1, o.epochs, b + 1, steps);
          std::fflush(stdout);
        }
      }
      const double epoch_s = since(t_epoch);
      if (progress) std::printf("\r%60s\r", "");
      if (o.perturb_rank && *o.perturb_rank == rank && epoch == 0) model.params()[0] += 1e-3f;

      size_t tested = 0;
      const size_t correct = correct_on_share(model, test_set, rank, ranks, tested);

      const tr::ExchangeStats& st = exchange.stats();
      const uint64_t digest = tr::parameter_digest(model.params());
      std::vector<double> all(kFields * static_cast<size_t>(ranks));
      double* me = all.data() + kFields * static_cast<size_t>(rank);
      me[kLossSum] = loss_sum;
      me[kExamples] = static_cast<double>(examples);
      me[kCorrect] = static_cast<double>(correct);
      me[kTested] = static_cast<double>(tested);
      me[kWire] = static_cast<double>(st.wire_bytes);
      me[kPlain] = st.plain_bytes;
      me[kWait] = st.wait_seconds;
      me[kCompute] = epoch_s - st.wait_seconds;
      me[kRss] = static_cast<double>(perf::peak_rss_bytes());
      me[kDigestHi] = static_cast<double>(digest >> 32);
      me[kDigestLo] = static_cast<double>(digest & 0xFFFFFFFFu);
      comm->allgather(all.data(), all.data(), all.size(), DataType::f64);

      // The replicas must be bitwise equal: every rank checks, so every rank stops alike.
      auto digest_of = [&](int r) {
        const double* rec = all.data() + kFields * static_cast<size_t>(r);
        return (static_cast<uint64_t>(rec[kDigestHi]) << 32) | static_cast<uint64_t>(rec[kDigestLo]);
      };
      std::string diverged;
      for (int r = 1; r < ranks; ++r)
        if (digest_of(r) != digest_of(0))
          diverged += (diverged.empty() ? "" : ", ") + std::to_string(r) + " (" + hex64(digest_of(r)) + ")";
      if (!diverged.empty())
        throw Error("replicas diverged in epoch " + std::to_string(epoch + 1) + ": the parameters of rank(s) " +
                    diverged + " differ from rank 0's (" + hex64(digest_of(0)) +
                    "); every rank must apply the same averaged gradients");

      EpochRow row;
      row.epoch = epoch + 1;
      row.lr = lr.at(t - 1);
      row.digest = digest;
      double loss = 0, n_ex = 0, n_ok = 0, n_test = 0, wire = 0, plain = 0;
      for (int r = 0; r < ranks; ++r) {
        const double* rec = all.data() + kFields * static_cast<size_t>(r);
        loss += rec[kLossSum], n_ex += rec[kExamples], n_ok += rec[kCorrect], n_test += rec[kTested];
        wire += rec[kWire], plain += rec[kPlain];
        row.compute_s += rec[kCompute] / ranks;
        row.comm_s += rec[kWait] / ranks;
        if (static_cast<int64_t>(rec[kRss]) > row.peak_rss_max) {
          row.peak_rss_max = static_cast<int64_t>(rec[kRss]);
          row.peak_rss_rank = r;
        }
      }
      row.train_loss = n_ex > 0 ? loss / n_ex : 0;
      if (!std::isfinite(row.train_loss))  // the same sum on every rank: all stop alike
        throw Error("training diverged in epoch " + std::to_string(epoch + 1) + ": the mean training loss is " +
                    fixed(row.train_loss, 4) + "; try a smaller --lr, --clip, or another --compress");
      row.test_accuracy = n_test > 0 ? n_ok / n_test : 0;
      row.wire_bytes = wire / ranks;
      row.plain_bytes = plain / ranks;
      if (wire > 0) row.ratio = plain / wire;
      rows.push_back(row);
      if (printer) {
        train::print_row(std::cout, row);
        if (!o.csv.empty()) {
          std::ofstream f(o.csv, std::ios::app);
          f << train::csv_row(row);
          if (!f.flush()) throw Error("cannot write " + o.csv + ": " + std::strerror(errno));
        }
        if (!o.json.empty()) train::write_file(o.json, train::json_document(o, info, rows, since(t_run), false));
      }
    }
    const double total_s = since(t_run);
    if (printer) {
      std::cout << "# final test accuracy " << fixed(rows.back().test_accuracy, 4) << " after " << o.epochs
                << " epoch(s), " << fixed(total_s, 1) << " s\n";
      const std::vector<train::ModelVariant> variants = shrink(o, model, test_set);
      train::print_variants(std::cout, variants);
      if (!o.json.empty()) train::write_file(o.json, train::json_document(o, info, rows, total_s, true, variants));
    }
  } catch (const std::exception& e) {
    report(e);
    throw;
  }
  comm.reset();
  bs::finalize(world, bs::deadline_in(timeout));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  Options o;
  try {
    o = train::parse(args);
  } catch (const ConfigError& e) {  // UsageError, or a bad RDMACOLL_* default
    std::cerr << kName << ": " << e.what() << "\n\n" << train::usage();
    return 2;
  }
  if (o.help) {
    std::cout << train::usage();
    return 0;
  }
  try {
    return run(o, args);
  } catch (const std::exception& e) {  // rdmacoll::Error (timeouts, divergence), DataError, bad_alloc, ...
    if (!g_reported) report(e);
    return 1;
  }
}
