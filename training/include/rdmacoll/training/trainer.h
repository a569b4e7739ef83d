// The pieces of data-parallel SGD that sit between the model and the collectives: averaging the
// ranks' gradients bucket by bucket (optionally compressed, with error feedback), checking that
// the replicas stayed identical, and standardising the inputs. Uses only the public collectives
// API (communicator.h, codec.h, powersgd.h).
//
// Buckets, as in PyTorch DDP: consecutive layers, taken from the last (whose gradients
// Mlp::backward(callback) reports first), grouped up to ExchangeMode::bucket_bytes (DDP's
// bucket_cap_mb, 25 MiB by default: this model's 0.9 MB is one bucket). A bucket's allreduce
// starts once all its layers are started; with bucket_bytes 0, one bucket per layer:
//
//   backward:   layer 2 ready -> start(2)   layer 1 ready -> start(1)   layer 0 ready -> start(0)
//   wire:                        [allreduce 2 ......][allreduce 1 ..........][allreduce 0 ....]
//   finish():                                                               wait all <--------
//
// Fewer, larger buckets cost fewer collective calls (each pays the links' latency and its
// steps' synchronisation); more buckets let communication overlap the backward pass.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/collectives/powersgd.h"
#include "rdmacoll/training/mlp.h"
#include "rdmacoll/training/sgd.h"

namespace rdmacoll::training {

// How gradients are averaged: a codec name as collectives::parse_codec reads it ("none", "int8",
// "qsgd:4", "topk:0.01", "powersgd:2", ...) or "auto" (int8 where it is measured to pay,
// Compression::only_if_faster).
struct ExchangeMode {
  enum class Kind { plain, codec, powersgd };
  Kind kind = Kind::plain;
  collectives::CodecSpec spec;  // codec, powersgd: the parsed name
  bool only_if_faster = false;  // auto
  // Biased codecs only: false sends each step's encoding without carrying its error into the
  // next step, to show what error feedback is worth.
  bool error_feedback = true;
  // Layers are grouped into buckets of up to this many bytes of fp32 gradient (a larger layer is
  // a bucket of its own); 0: one bucket per layer.
  std::size_t bucket_bytes = kDefaultBucketBytes;
  static constexpr std::size_t kDefaultBucketBytes = std::size_t{25} << 20;  // DDP's bucket_cap_mb
  std::string name() const;     // "none", "int8:256", "auto", "powersgd:2", ...
};
// Throws std::invalid_argument naming the value and the valid forms.
ExchangeMode parse_exchange_mode(std::string_view text);

// What the exchanges since the last reset put on the wire and cost this rank.
struct ExchangeStats {
  std::uint64_t wire_bytes = 0;   // Work::wire().bytes_sent summed (the transport's counters)
  double plain_bytes = 0;         // what a plain fp32 ring allreduce of the same buckets sends
  double wait_seconds = 0;        // in finish() waits and in the (blocking) PowerSGD calls
  std::uint64_t calls = 0;        // collective calls issued
  std::uint64_t nonfinite = 0;    // NaN/Inf inputs this rank's encoders met
};

// A bucket: the slice [offset, offset + count) of the gradient buffer, layers [first, last].
struct Bucket {
  std::size_t offset = 0, count = 0;
  std::size_t first_layer = 0, last_layer = 0;
};
// The buckets of `layers` (Mlp::layers()) for a byte cap (ExchangeMode::bucket_bytes), in the
// order they become ready (from the last layer); only adjacent slices share a bucket.
std::vector<Bucket> make_buckets(std::span<const LayerView> layers, std::size_t bucket_bytes);

// Averages one replica's gradients over all ranks, bucket by bucket. Codecs: error feedback
// (one ErrorFeedback per bucket) for the biased ones, none for the unbiased (qsgd, terngrad,
// randk), whose residual would grow. PowerSGD: one PowerSgdState (with its error feedback) per
// weight matrix, biases allreduced plainly. Every rank must call
// start() for the same layers in the same order, then finish(), every step.
class GradientExchange {
 public:
  // `layers` is the model's layout (Mlp::layers()); the communicator outlives this object.
  // Collective for "auto": measures per bucket size whether compression pays.
  GradientExchange(collectives::Communicator& comm, std::span<const LayerView> layers, ExchangeMode mode);
  ~GradientExchange();
  GradientExchange(const GradientExchange&) = delete;
  GradientExchange& operator=(const GradientExchange&) = delete;

  // Marks layer `layer`'s slice of `grads` (the whole gradient buffer; with averages_updates(),
  // the buffer of the ranks' steps) ready, and starts averaging its bucket in place once every
  // layer of the bucket is.
  // Plain and codec buckets are non-blocking (allreduce_async). PowerSGD layers are gathered
  // and finish() runs them together, as the paper does: one allreduce of every layer's P and
  // bias, one of every Q (blocking). `step` seeds the stochastic codecs.
  void start(std::size_t layer, std::span<float> grads, std::uint64_t step);
  // Waits for every bucket started since the last finish(); grads then holds the average.
  // Throws std::logic_error if a bucket has some of its layers started but not all.
  void finish();

  // Whether the buckets carry error feedback (a biased codec without --no-error-feedback). The
  // caller then passes each rank's own step, lr * local momentum (Sgd::update), instead of its
  // gradient, and subtracts the average from the parameters (Sgd::apply_update): the residual
  // is then in units of parameters and never re-enters a momentum buffer, as in EF-SignSGD
  // (Karimireddy et al. 2019, EF on lr * g) and dist-EF-SGDM (Zheng et al. 2019, EF on
  // lr * m). Fed with gradients, a residual re-sent by the codec was integrated by the
  // momentum (a gain of 1 / (1 - momentum), 10 at 0.9) and the 1-bit sign codec with
  // feedback stalled or diverged where it trained without. With an exact exchange both orders
  // give the same steps: the average of the ranks' lr * m is lr times the global momentum.
  bool averages_updates() const noexcept;

  // The optimizer's side of a step, around start() and finish(), as rdmacoll-train runs it:
  //   for each layer: prepare(layer, ...), start(layer, ...);  finish();  apply(...).
  // prepare() turns the layer's slice of grads into this rank's step (Sgd::update) when
  // averages_updates(), and leaves it alone otherwise. apply() then moves the parameters by
  // the averaged steps (Sgd::apply_update), or, without error feedback, clips the averaged
  // gradient to the global norm `clip` (if > 0) and takes sgd.step. With error feedback, a
  // clip belongs to each rank's whole gradient before prepare().
  void prepare(std::size_t layer, Sgd& sgd, std::span<const float> params, std::span<float> grads, float lr) const;
  void apply(Sgd& sgd, std::span<float> params, std::span<float> grads, float lr, double clip = 0) const;

  const ExchangeStats& stats() const noexcept { return stats_; }
  void reset_stats() noexcept { stats_ = {}; }
  const ExchangeMode& mode() const noexcept { return mode_; }
  std::span<const Bucket> buckets() const noexcept { return buckets_; }
  // Bucket `bucket`'s error-feedback memory (codecs; empty until its first call).
  const collectives::ErrorFeedback& feedback(std::size_t bucket) const { return feedback_.at(bucket); }

 private:
  void progress();  // lets the calls in flight advance (the executor has no thread of its own)
  void run_powersgd();  // the gathered PowerSGD layers

  collectives::Communicator& comm_;
  std::vector<LayerView> layers_;
  ExchangeMode mode_;
  std::vector<Bucket> buckets_;
  std::vector<std::size_t> bucket_of_;  // layer -> bucket
  std::vector<bool> layer_started_;     // since the last finish()
  std::unique_ptr<collectives::Codec> codec_;
  std::vector<collectives::ErrorFeedback> feedback_;     // biased codecs: one per bucket
  std::vector<collectives::PowerSgdState> powersgd_;     // powersgd: one per weight matrix
  std::vector<std::size_t> powersgd_layers_;             // started since the last finish()
  std::span<float> powersgd_grads_;
  std::vector<collectives::Work> in_flight_;
  ExchangeStats stats_;
};

// 64-bit FNV-1a of the parameters' bytes: equal replicas have equal digests.
std::uint64_t parameter_digest(std::span<const float> params) noexcept;

// Mean and standard deviation of every pixel of `images` (accumulated in double).
struct Standardization {
  float mean = 0, std = 1;
};
Standardization pixel_statistics(std::span<const float> images) noexcept;
// x = (x - mean) / std for every element.
void standardize(std::span<float> images, Standardization s) noexcept;

}  // namespace rdmacoll::training
