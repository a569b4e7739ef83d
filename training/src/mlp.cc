#include "rdmacoll/training/mlp.h"

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "rdmacoll/training/fashion_mnist.h"
#include "rng.h"

namespace rdmacoll::training {
namespace {

// Row-major throughout: a batch is one example per row, as the data set stores it, and a
// weight is rows (outputs) x cols (inputs) as in the parameter buffer.
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic>;
using ConstMatMap = Eigen::Map<const RowMat>;
using MatMap = Eigen::Map<RowMat>;

// predict() works in chunks of this many examples to bound its scratch memory.
constexpr std::size_t kPredictChunk = 256;

std::string sizes_string(const std::vector<std::size_t>& sizes) {
  std::string s;
  for (std::size_t v : sizes) s += (s.empty() ? "" : "-") + std::to_string(v);
  return s;
}

}  // namespace

struct Mlp::Impl {
  std::vector<std::size_t> sizes;
  std::vector<LayerView> layers;
  std::vector<float> params, grads;

  // Kept from forward() for backward(): acts[l] is layer l's input (acts[0] the batch, the
  // others ReLU outputs); probs the softmax of the logits.
  std::vector<RowMat> acts;
  RowMat probs;
  std::vector<std::uint8_t> labels;
  RowMat delta, delta_prev;  // dLoss/dZ of the current and the previous layer
  bool have_forward = false;

  ConstMatMap weight(std::size_t l) const {
    const LayerView& v = layers[l];
    return ConstMatMap(params.data() + v.weight_offset, static_cast<Eigen::Index>(v.rows),
                       static_cast<Eigen::Index>(v.cols));
  }
  Eigen::Map<const RowVec> bias(std::size_t l) const {
    const LayerView& v = layers[l];
    return Eigen::Map<const RowVec>(params.data() + v.bias_offset,
                                    static_cast<Eigen::Index>(v.rows));
  }

  // out = ReLU(in * W^T + b) for hidden layers, the logits for the last one.
  void layer_forward(std::size_t l, const RowMat& in, RowMat& out) const {
    out.noalias() = in * weight(l).transpose();
    out.rowwise() += bias(l);
    if (l + 1 < layers.size()) out = out.cwiseMax(0.0f);
  }

  void check_batch(std::span<const float> inputs, std::size_t count) const {
    if (inputs.size() != count * sizes.front())
      throw std::invalid_argument("Mlp " + sizes_string(sizes) + ": " +
                                  std::to_string(inputs.size()) + " input floats for " +
                                  std::to_string(count) + " examples; expected count x " +
                                  std::to_string(sizes.front()));
  }
};

Mlp::Mlp(std::vector<std::size_t> sizes, std::uint64_t seed) : impl_(std::make_unique<Impl>()) {
  if (sizes.size() < 2 || std::find(sizes.begin(), sizes.end(), 0u) != sizes.end() ||
      sizes.back() > 256)
    throw std::invalid_argument("Mlp: layer sizes " + sizes_string(sizes) +
                                " are invalid; give at least input and classes, all > 0, at "
                                "most 256 classes (labels are bytes)");
  std::size_t offset = 0;
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    LayerView v;
    v.rows = sizes[l + 1];
    v.cols = sizes[l];
    v.weight_offset = offset;
    v.bias_offset = offset + v.rows * v.cols;
    offset += v.count();
    impl_->layers.push_back(v);
  }
  impl_->sizes = std::move(sizes);
  impl_->params.assign(offset, 0.0f);
  impl_->grads.assign(offset, 0.0f);
  impl_->acts.resize(impl_->layers.size());
  init(seed);
}

Mlp::~Mlp() = default;
Mlp::Mlp(const Mlp& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Mlp& Mlp::operator=(const Mlp& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}
Mlp::Mlp(Mlp&&) noexcept = default;
Mlp& Mlp::operator=(Mlp&&) noexcept = default;

void Mlp::init(std::uint64_t seed) {
  detail::SplitMix64 rng(seed);
  for (const LayerView& v : impl_->layers) {
    // sqrt and division are correctly rounded in IEEE arithmetic: the bound is portable too.
    const float bound = std::sqrt(6.0f / static_cast<float>(v.cols));
    float* w = impl_->params.data() + v.weight_offset;
    for (std::size_t i = 0; i < v.weight_count(); ++i)
      w[i] = (2.0f * rng.uniform01() - 1.0f) * bound;  // 2u - 1 is exact; one rounding
    std::fill_n(impl_->params.data() + v.bias_offset, v.rows, 0.0f);
  }
  std::fill(impl_->grads.begin(), impl_->grads.end(), 0.0f);
  impl_->have_forward = false;
}

const std::vector<std::size_t>& Mlp::sizes() const noexcept { return impl_->sizes; }
std::span<const LayerView> Mlp::layers() const noexcept { return impl_->layers; }
std::span<float> Mlp::params() noexcept { return impl_->params; }
std::span<const float> Mlp::params() const noexcept { return impl_->params; }
std::span<float> Mlp::grads() noexcept { return impl_->grads; }
std::span<const float> Mlp::grads() const noexcept { return impl_->grads; }

std::span<float> Mlp::weights(std::size_t l) noexcept {
  return params().subspan(impl_->layers[l].weight_offset, impl_->layers[l].weight_count());
}
std::span<const float> Mlp::weights(std::size_t l) const noexcept {
  return params().subspan(impl_->layers[l].weight_offset, impl_->layers[l].weight_count());
}
std::span<float> Mlp::bias(std::size_t l) noexcept {
  return params().subspan(impl_->layers[l].bias_offset, impl_->layers[l].bias_count());
}
std::span<const float> Mlp::bias(std::size_t l) const noexcept {
  return params().subspan(impl_->layers[l].bias_offset, impl_->layers[l].bias_count());
}

ForwardResult Mlp::forward(const Batch& batch) {
  Impl& m = *impl_;
  const std::size_t n = batch.labels.size();
  if (n == 0) throw std::invalid_argument("Mlp::forward: empty batch");
  m.check_batch(batch.inputs, n);
  const std::size_t classes = num_classes();
  for (std::size_t i = 0; i < n; ++i)
    if (batch.labels[i] >= classes)
      throw std::invalid_argument("Mlp::forward: label " + std::to_string(batch.labels[i]) +
                                  " of example " + std::to_string(i) + " is not below " +
                                  std::to_string(classes) + " classes");
  m.have_forward = false;

  const auto rows = static_cast<Eigen::Index>(n);
  m.acts[0] = ConstMatMap(batch.inputs.data(), rows, static_cast<Eigen::Index>(input_size()));
  for (std::size_t l = 0; l + 1 < m.layers.size(); ++l) m.layer_forward(l, m.acts[l], m.acts[l + 1]);
  m.layer_forward(m.layers.size() - 1, m.acts.back(), m.probs);

  // Softmax with the row maximum subtracted (no overflow); the loss of example i is
  // log(sum_j exp(z_ij - max_i)) - (z_iy - max_i), summed in double.
  ForwardResult r;
  r.predictions.resize(n);
  double loss = 0;
  for (Eigen::Index i = 0; i < rows; ++i) {
    auto row = m.probs.row(i);
    Eigen::Index argmax = 0;
    const float max = row.maxCoeff(&argmax);
    const float target = row(batch.labels[static_cast<std::size_t>(i)]) - max;
    row = (row.array() - max).exp();
    const float sum = row.sum();
    row /= sum;
    loss += std::log(static_cast<double>(sum)) - static_cast<double>(target);
    r.predictions[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(argmax);
    r.correct += r.predictions[static_cast<std::size_t>(i)] == batch.labels[static_cast<std::size_t>(i)];
  }
  r.loss = loss / static_cast<double>(n);
  m.labels.assign(batch.labels.begin(), batch.labels.end());
  m.have_forward = true;
  return r;
}

void Mlp::backward() { backward(nullptr); }

void Mlp::backward(const std::function<void(std::size_t layer)>& on_layer_ready) {
  Impl& m = *impl_;
  if (!m.have_forward) throw std::logic_error("Mlp::backward without a preceding forward()");
  const std::size_t n = m.labels.size();
  // dLoss/dlogits of the mean loss: (softmax - onehot) / n.
  m.delta = m.probs;
  for (std::size_t i = 0; i < n; ++i) m.delta(static_cast<Eigen::Index>(i), m.labels[i]) -= 1.0f;
  m.delta *= 1.0f / static_cast<float>(n);

  for (std::size_t l = m.layers.size(); l-- > 0;) {
    const LayerView& v = m.layers[l];
    MatMap gw(m.grads.data() + v.weight_offset, static_cast<Eigen::Index>(v.rows),
              static_cast<Eigen::Index>(v.cols));
    Eigen::Map<RowVec> gb(m.grads.data() + v.bias_offset, static_cast<Eigen::Index>(v.rows));
    gw.noalias() = m.delta.transpose() * m.acts[l];
    gb = m.delta.colwise().sum();
    if (on_layer_ready) on_layer_ready(l);
    if (l == 0) break;
    // Through W, then through the ReLU that produced acts[l] (its gradient is 1 where the
    // output is positive).
    m.delta_prev.noalias() = m.delta * m.weight(l);
    m.delta_prev = (m.acts[l].array() > 0.0f).select(m.delta_prev, 0.0f);
    std::swap(m.delta, m.delta_prev);
  }
}

std::vector<std::uint8_t> Mlp::predict(std::span<const float> inputs) const {
  const Impl& m = *impl_;
  const std::size_t in = input_size();
  const std::size_t n = inputs.size() / in;
  m.check_batch(inputs, n);
  std::vector<std::uint8_t> out(n);
  RowMat a, b;
  for (std::size_t start = 0; start < n; start += kPredictChunk) {
    const std::size_t rows = std::min(kPredictChunk, n - start);
    a = ConstMatMap(inputs.data() + start * in, static_cast<Eigen::Index>(rows),
                    static_cast<Eigen::Index>(in));
    for (std::size_t l = 0; l < m.layers.size(); ++l) {
      m.layer_forward(l, a, b);
      std::swap(a, b);
    }
    for (std::size_t i = 0; i < rows; ++i) {
      Eigen::Index argmax = 0;
      a.row(static_cast<Eigen::Index>(i)).maxCoeff(&argmax);
      out[start + i] = static_cast<std::uint8_t>(argmax);
    }
  }
  return out;
}

double Mlp::accuracy(const Dataset& data, std::size_t limit) const {
  if (data.pixels_per_image() != input_size())
    throw std::invalid_argument("Mlp::accuracy: images of " +
                                std::to_string(data.pixels_per_image()) + " pixels for a net with " +
                                std::to_string(input_size()) + " inputs");
  const std::size_t n = std::min(limit, data.count);
  if (n == 0) return 0;
  const std::vector<std::uint8_t> pred =
      predict(std::span<const float>(data.images.data(), n * input_size()));
  std::size_t correct = 0;
  for (std::size_t i = 0; i < n; ++i) correct += pred[i] == data.labels[i];
  return static_cast<double>(correct) / static_cast<double>(n);
}

Batch gather_batch(const Dataset& data, std::span<const std::uint32_t> indices,
                   std::vector<float>& x, std::vector<std::uint8_t>& y) {
  const std::size_t px = data.pixels_per_image();
  x.resize(indices.size() * px);
  y.resize(indices.size());
  for (std::size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] >= data.count)
      throw std::out_of_range("gather_batch: index " + std::to_string(indices[i]) +
                              " is outside a data set of " + std::to_string(data.count));
    std::copy_n(data.image(indices[i]), px, x.data() + i * px);
    y[i] = data.labels[indices[i]];
  }
  return Batch{x, y};
}

}  // namespace rdmacoll::training
