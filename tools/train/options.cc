#include "train/options.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "perf/options.h"

namespace rdmacoll::train {

using perf::UsageError;

std::string_view schedule_name(training::LrSchedule::Kind k) {
  switch (k) {
    case training::LrSchedule::Kind::constant: return "constant";
    case training::LrSchedule::Kind::step: return "step";
    case training::LrSchedule::Kind::cosine: return "cosine";
  }
  return "?";
}

std::string usage() {
  return "usage: rdmacoll-run -n N rdmacoll-train [options]     (or mpirun -np N / srun / RDMACOLL_* settings)\n"
         "Trains the 784-256-128-10 MLP on Fashion-MNIST, data-parallel: each rank takes its part of every\n"
         "global batch and the gradients are averaged over the ranks with allreduce, bucket by bucket.\n"
         "\n"
         "      --epochs N           passes over the training set (default 15)\n"
         "      --batch N            global batch, split across the ranks (default 256)\n"
         "      --lr LR              base learning rate (default 0.1)\n"
         "      --momentum M         SGD momentum (default 0.9)\n"
         "      --weight-decay WD    L2 penalty (default 5e-4)\n"
         "      --schedule S         constant|step|cosine, per iteration (default cosine; step: x0.1 every\n"
         "                           third of the run)\n"
         "      --warmup-steps N     linear warm-up iterations (default 0)\n"
         "      --clip NORM          clip the averaged gradient to this global L2 norm (default 0: off); with\n"
         "                           error feedback each rank's gradient, before its momentum (not with --overlap)\n"
         "      --seed S             initial weights and shuffling (default 1)\n"
         "      --data DIR           Fashion-MNIST files (default /usr/share/datasets/fashion-mnist)\n"
         "      --compress C         none|fp16|bf16|int8|qsgd:S|sign|topk:F|powersgd:R|auto, any codec name\n"
         "                           (default none); error feedback per bucket (the ranks then exchange their\n"
         "                           steps, lr x local momentum, not gradients); auto: int8 where measured faster\n"
         "      --bucket-mb MB       group layers (from the last) into buckets of up to MB MiB of gradient, one\n"
         "                           allreduce each (default 25, as PyTorch DDP: this model is one bucket);\n"
         "                           0: one bucket per layer\n"
         "      --overlap            start a bucket's allreduce as soon as its layers' gradients are ready\n"
         "      --no-error-feedback  biased codecs (fp16, bf16, int8, sign, topk): drop each step's encoding error\n"
         "                           instead of carrying it into the next step\n"
         "      --prune S            after training, also evaluate the model with the fraction S of its weights\n"
         "                           (smallest magnitude over all layers) set to zero, and report its size\n"
         "      --quantize-weights int8  after training, also evaluate the model with int8 weights (per-row\n"
         "                           scales), and report its size\n"
         "      --limit-train N      use the first N training images (default: all 60000)\n"
         "      --limit-test N       evaluate on the first N test images (default: all 10000)\n"
         "      --csv FILE           per-epoch log as CSV (rank 0)\n"
         "      --json FILE          per-epoch log and run information as JSON (rank 0)\n"
         "      --timeout SEC        deadline of every collective and of the setup (default RDMACOLL_TIMEOUT)\n"
         "  -h, --help               this text\n"
         "Exit status: 0 success, 1 error (including replicas that diverged), 2 bad usage.\n";
}

namespace {

constexpr perf::Flag kFlags[] = {
    {0, "epochs", true},      {0, "batch", true},       {0, "lr", true},          {0, "momentum", true},
    {0, "weight-decay", true}, {0, "schedule", true},   {0, "warmup-steps", true}, {0, "clip", true},
    {0, "seed", true},        {0, "data", true},        {0, "compress", true},    {0, "overlap", false},
    {0, "limit-train", true}, {0, "limit-test", true},  {0, "csv", true},         {0, "json", true},
    {0, "timeout", true},     {0, "debug-perturb-rank", true}, {0, "no-error-feedback", false},
    {0, "prune", true},       {0, "quantize-weights", true},   {0, "bucket-mb", true},
    {'h', "help", false},
};

double parse_real(const std::string& flag, const std::string& value, double lo, double hi) {
  double v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (value.empty() || ec != std::errc() || p != value.data() + value.size() || !std::isfinite(v))
    throw UsageError(flag + " '" + value + "' is not a number");
  if (v < lo || v > hi)
    throw UsageError(flag + " " + value + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

}  // namespace

Options parse(const std::vector<std::string>& args) {
  Options o;
  constexpr std::int64_t kMaxCount = std::int64_t{1} << 32;
  bool error_feedback = true;
  std::optional<double> bucket_mb;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::optional<perf::FlagValue> fv = perf::read_flag(kFlags, args, i);
    if (!fv) throw UsageError("unexpected argument '" + args[i] + "' (rdmacoll-train takes no positional arguments)");
    const std::string flag = "--" + std::string(fv->flag->long_name);
    const std::string& value = fv->value;
    const std::string_view n = fv->flag->long_name;
    if (n == "epochs") o.epochs = static_cast<std::size_t>(perf::parse_count(flag, value, 1, 100000));
    else if (n == "batch") o.batch = static_cast<std::size_t>(perf::parse_count(flag, value, 1, 1 << 20));
    else if (n == "lr") o.lr = static_cast<float>(parse_real(flag, value, 0, 1e3));
    else if (n == "momentum") o.momentum = static_cast<float>(parse_real(flag, value, 0, 1));
    else if (n == "weight-decay") o.weight_decay = static_cast<float>(parse_real(flag, value, 0, 1));
    else if (n == "schedule") {
      if (value == "constant") o.schedule = training::LrSchedule::Kind::constant;
      else if (value == "step") o.schedule = training::LrSchedule::Kind::step;
      else if (value == "cosine") o.schedule = training::LrSchedule::Kind::cosine;
      else throw UsageError("--schedule '" + value + "' is not one of constant, step, cosine");
    } else if (n == "warmup-steps") o.warmup_steps = static_cast<std::size_t>(perf::parse_count(flag, value, 0, kMaxCount));
    else if (n == "clip") o.clip = parse_real(flag, value, 0, 1e9);
    else if (n == "seed") o.seed = static_cast<std::uint64_t>(perf::parse_count(flag, value, 0, std::numeric_limits<std::int64_t>::max()));
    else if (n == "data") {
      if (value.empty()) throw UsageError("--data needs a directory");
      o.data = value;
    } else if (n == "compress") {
      try {
        o.compress = training::parse_exchange_mode(value);
      } catch (const std::invalid_argument& e) {
        throw UsageError(std::string("--compress: ") + e.what());
      }
    } else if (n == "bucket-mb") bucket_mb = parse_real(flag, value, 0, 1 << 20);
    else if (n == "overlap") o.overlap = true;
    else if (n == "no-error-feedback") error_feedback = false;
    else if (n == "prune") {
      o.prune = parse_real(flag, value, 0, 1);
      if (*o.prune <= 0 || *o.prune >= 1) throw UsageError("--prune " + value + " is not a fraction in (0, 1)");
    } else if (n == "quantize-weights") {
      if (value != "int8") throw UsageError("--quantize-weights '" + value + "' is not int8 (the only format)");
      o.quantize_int8 = true;
    }
    else if (n == "limit-train") o.limit_train = static_cast<std::size_t>(perf::parse_count(flag, value, 1, kMaxCount));
    else if (n == "limit-test") o.limit_test = static_cast<std::size_t>(perf::parse_count(flag, value, 1, kMaxCount));
    else if (n == "csv") o.csv = value;
    else if (n == "json") o.json = value;
    else if (n == "timeout") o.timeout = perf::parse_timeout(value);
    else if (n == "debug-perturb-rank") o.perturb_rank = static_cast<int>(perf::parse_count(flag, value, 0, 1 << 20));
    else if (n == "help") o.help = true;
  }
  if (!o.csv.empty() && o.csv == o.json) throw UsageError("--csv and --json name the same file");
  // Applied after the loop: --compress may come before or after them.
  if (bucket_mb) o.compress.bucket_bytes = static_cast<std::size_t>(*bucket_mb * 1048576.0);
  if (!error_feedback) {
    if (o.compress.kind != training::ExchangeMode::Kind::codec || o.compress.only_if_faster)
      throw UsageError("--no-error-feedback needs a codec (--compress fp16, int8, sign, topk:F, ...), not '" +
                       o.compress.name() + "'");
    o.compress.error_feedback = false;
  }
  return o;
}

}  // namespace rdmacoll::train
