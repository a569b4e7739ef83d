#include "rdmacoll/training/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>

namespace rdmacoll::training {

using collectives::CodecKind;
using collectives::DataType;
using collectives::ReduceOp;

std::string ExchangeMode::name() const {
  switch (kind) {
    case Kind::plain: return "none";
    case Kind::codec: return only_if_faster ? "auto" : spec.name();
    case Kind::powersgd: return spec.name();
  }
  return "?";
}

ExchangeMode parse_exchange_mode(std::string_view text) {
  ExchangeMode m;
  if (text == "auto") {
    m.kind = ExchangeMode::Kind::codec;
    m.spec = collectives::parse_codec("int8");
    m.only_if_faster = true;
    return m;
  }
  try {
    m.spec = collectives::parse_codec(text);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + "; or auto (int8 where it pays)");
  }
  if (m.spec.kind == CodecKind::none) m.kind = ExchangeMode::Kind::plain;
  else if (m.spec.kind == CodecKind::powersgd) m.kind = ExchangeMode::Kind::powersgd;
  else m.kind = ExchangeMode::Kind::codec;
  return m;
}

std::vector<Bucket> make_buckets(std::span<const LayerView> layers, std::size_t bucket_bytes) {
  std::vector<Bucket> buckets;
  for (std::size_t l = layers.size(); l-- > 0;) {
    const LayerView& v = layers[l];
    if (!buckets.empty()) {
      Bucket& b = buckets.back();
      const bool adjacent = v.offset() + v.count() == b.offset;
      if (adjacent && (b.count + v.count()) * sizeof(float) <= bucket_bytes) {
        b.offset = v.offset(), b.count += v.count(), b.first_layer = l;
        continue;
      }
    }
    buckets.push_back({v.offset(), v.count(), l, l});
  }
  return buckets;
}

GradientExchange::GradientExchange(collectives::Communicator& comm, std::span<const LayerView> layers,
                                   ExchangeMode mode)
    : comm_(comm), layers_(layers.begin(), layers.end()), mode_(mode) {
  buckets_ = make_buckets(layers_, mode_.bucket_bytes);
  bucket_of_.resize(layers_.size());
  for (std::size_t b = 0; b < buckets_.size(); ++b)
    for (std::size_t l = buckets_[b].first_layer; l <= buckets_[b].last_layer; ++l) bucket_of_[l] = b;
  layer_started_.assign(layers_.size(), false);
  if (mode_.kind == ExchangeMode::Kind::codec) {
    codec_ = collectives::make_codec(mode_.spec);
    feedback_.resize(buckets_.size());
    // auto: measure now whether compression pays for each bucket's size (collective, the same
    // on every rank), so the measurement is not counted in the first step's timings.
    if (mode_.only_if_faster)
      for (const Bucket& b : buckets_) comm_.compression_pays(*codec_, b.count);
  }
  if (mode_.kind == ExchangeMode::Kind::powersgd) powersgd_.resize(layers_.size());
}

GradientExchange::~GradientExchange() = default;

namespace {

using Seconds = std::chrono::duration<double>;
double since(std::chrono::steady_clock::time_point t0) {
  return Seconds(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void GradientExchange::start(std::size_t layer, std::span<float> grads, std::uint64_t step) {
  const LayerView& v = layers_.at(layer);
  if (v.offset() + v.count() > grads.size())
    throw std::invalid_argument("GradientExchange::start: layer " + std::to_string(layer) +
                                " does not fit the gradient buffer");
  if (layer_started_[layer])
    throw std::logic_error("GradientExchange::start: layer " + std::to_string(layer) +
                           " started twice in one step (call finish() between steps)");
  layer_started_[layer] = true;
  const double n = comm_.size();
  // A plain ring allreduce sends 2 (n-1)/n of the buffer per rank.
  stats_.plain_bytes += 2.0 * (n - 1) / n * 4.0 * static_cast<double>(v.count());
  if (mode_.kind == ExchangeMode::Kind::powersgd) {
    // Gathered: finish() runs every layer's matrix and bias together, in two allreduces.
    if (!powersgd_layers_.empty() && powersgd_grads_.data() != grads.data())
      throw std::invalid_argument("GradientExchange::start: PowerSGD layers of one step must share a gradient buffer");
    powersgd_grads_ = grads;
    powersgd_layers_.push_back(layer);
    return;
  }
  const std::size_t index = bucket_of_[layer];
  const Bucket& b = buckets_[index];
  for (std::size_t l = b.first_layer; l <= b.last_layer; ++l)
    if (!layer_started_[l]) return progress();  // the bucket waits for its other layers
  float* g = grads.data() + b.offset;
  if (mode_.kind == ExchangeMode::Kind::plain) {
    in_flight_.push_back(comm_.allreduce_async(g, g, b.count, DataType::f32, ReduceOp::avg));
  } else {
    collectives::Compression c;
    c.codec = codec_.get();
    // Error feedback suits the biased codecs (int8, sign, topk, fp16, ...). The unbiased ones
    // (qsgd, terngrad, randk) are not contractions: at few levels their error can exceed the
    // gradient, and a residual carrying it grows until the model diverges (measured: qsgd:4
    // with feedback reached NaN within one epoch). They go without.
    c.feedback = averages_updates() ? &feedback_[index] : nullptr;
    c.seed = step;
    c.only_if_faster = mode_.only_if_faster;
    in_flight_.push_back(comm_.allreduce_async(g, g, b.count, ReduceOp::avg, c));
  }
  ++stats_.calls;
  progress();
}

bool GradientExchange::averages_updates() const noexcept {
  return mode_.kind == ExchangeMode::Kind::codec && mode_.error_feedback && !codec_->unbiased();
}

void GradientExchange::prepare(std::size_t layer, Sgd& sgd, std::span<const float> params, std::span<float> grads,
                               float lr) const {
  if (!averages_updates()) return;
  const LayerView& v = layers_.at(layer);
  sgd.update(params.subspan(v.offset(), v.count()), grads.subspan(v.offset(), v.count()), lr, v.offset());
}

void GradientExchange::apply(Sgd& sgd, std::span<float> params, std::span<float> grads, float lr, double clip) const {
  if (averages_updates()) return Sgd::apply_update(params, grads);
  if (clip > 0) clip_grad_norm(grads, clip);
  sgd.step(params, grads, lr);
}

void GradientExchange::progress() {
  for (collectives::Work& w : in_flight_)
    if (!w.test()) break;  // calls complete in order
}

void GradientExchange::finish() {
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    const Bucket& b = buckets_[i];
    std::string missing;
    std::size_t started = 0;
    for (std::size_t l = b.first_layer; l <= b.last_layer; ++l)
      if (layer_started_[l]) ++started;
      else missing += (missing.empty() ? "" : ", ") + std::to_string(l);
    if (started == 0 || missing.empty()) continue;
    throw std::logic_error("GradientExchange::finish: bucket " + std::to_string(i) + " (layers " +
                           std::to_string(b.first_layer) + "-" + std::to_string(b.last_layer) +
                           ") was started for some of its layers only; not started: " + missing);
  }
  std::fill(layer_started_.begin(), layer_started_.end(), false);
  if (!powersgd_layers_.empty()) run_powersgd();
  const auto t0 = std::chrono::steady_clock::now();
  for (collectives::Work& w : in_flight_) w.wait();
  stats_.wait_seconds += since(t0);
  for (const collectives::Work& w : in_flight_) {
    stats_.wire_bytes += w.wire().bytes_sent;
    stats_.nonfinite += w.nonfinite();
  }
  in_flight_.clear();
}

void GradientExchange::run_powersgd() {
  std::vector<collectives::PowerSgdMatrix> matrices;
  std::vector<float> biases;
  for (std::size_t layer : powersgd_layers_) {
    const LayerView& v = layers_[layer];
    matrices.push_back({powersgd_grads_.data() + v.weight_offset, v.rows, v.cols, &powersgd_[layer]});
    const float* b = powersgd_grads_.data() + v.bias_offset;
    biases.insert(biases.end(), b, b + v.bias_count());
  }
  const auto t0 = std::chrono::steady_clock::now();
  const collectives::PowerSgdResult r =
      collectives::powersgd_allreduce(comm_, matrices, biases, mode_.spec.rank, /*error_feedback=*/true);
  stats_.wait_seconds += since(t0);
  stats_.wire_bytes += r.wire.bytes_sent;
  stats_.calls += 2;
  const float* b = biases.data();
  for (std::size_t layer : powersgd_layers_) {
    const LayerView& v = layers_[layer];
    std::copy(b, b + v.bias_count(), powersgd_grads_.data() + v.bias_offset);
    b += v.bias_count();
  }
  powersgd_layers_.clear();
}

std::uint64_t parameter_digest(std::span<const float> params) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = reinterpret_cast<const unsigned char*>(params.data());
  for (std::size_t i = 0; i < params.size_bytes(); ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

Standardization pixel_statistics(std::span<const float> images) noexcept {
  if (images.empty()) return {};
  double sum = 0, sq = 0;
  for (float x : images) {
    sum += x;
    sq += static_cast<double>(x) * x;
  }
  const double n = static_cast<double>(images.size());
  const double mean = sum / n;
  const double var = std::max(0.0, sq / n - mean * mean);
  Standardization s;
  s.mean = static_cast<float>(mean);
  s.std = var > 0 ? static_cast<float>(std::sqrt(var)) : 1.0f;
  return s;
}

void standardize(std::span<float> images, Standardization s) noexcept {
  const float inv = 1.0f / s.std;
  for (float& x : images) x = (x - s.mean) * inv;
}

}  // namespace rdmacoll::training
