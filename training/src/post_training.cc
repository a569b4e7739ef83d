#include "rdmacoll/training/post_training.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace rdmacoll::training {
namespace {

// Zeroes the k smallest |params[i]| over the positions in idx (ties: the lower position first).
void zero_smallest(std::span<float> params, std::vector<std::size_t>& idx, std::size_t k) {
  if (k == 0) return;
  auto smaller = [&](std::size_t a, std::size_t b) {
    const float ma = std::fabs(params[a]), mb = std::fabs(params[b]);
    return ma < mb || (ma == mb && a < b);
  };
  if (k < idx.size()) std::nth_element(idx.begin(), idx.begin() + static_cast<std::ptrdiff_t>(k),
                                       idx.end(), smaller);
  for (std::size_t i = 0; i < k; ++i) params[idx[i]] = 0.0f;
}

std::size_t rounded_share(double fraction, std::size_t count) {
  return std::min(count, static_cast<std::size_t>(std::llround(fraction * static_cast<double>(count))));
}

}  // namespace

std::size_t dense_size_bytes(const Mlp& model) noexcept {
  return model.params().size() * sizeof(float);
}

PruneReport prune_magnitude(Mlp& model, double sparsity, PruneScope scope) {
  if (!(sparsity >= 0 && sparsity <= 1))
    throw std::invalid_argument("prune_magnitude: sparsity " + std::to_string(sparsity) +
                                " is not in [0, 1]");
  const std::span<float> params = model.params();
  std::vector<std::size_t> idx;
  for (const LayerView& v : model.layers()) {
    if (scope == PruneScope::per_layer) idx.clear();
    for (std::size_t i = 0; i < v.weight_count(); ++i) idx.push_back(v.weight_offset + i);
    if (scope == PruneScope::per_layer) zero_smallest(params, idx, rounded_share(sparsity, idx.size()));
  }
  if (scope == PruneScope::global) zero_smallest(params, idx, rounded_share(sparsity, idx.size()));
  return sparse_size(model);
}

PruneReport sparse_size(const Mlp& model) {
  PruneReport r;
  r.dense_bytes = dense_size_bytes(model);
  for (std::size_t l = 0; l < model.layers().size(); ++l) {
    const LayerView& v = model.layers()[l];
    const std::span<const float> w = model.weights(l);
    const auto zeros = static_cast<std::size_t>(std::count(w.begin(), w.end(), 0.0f));
    const std::size_t nnz = w.size() - zeros;
    const std::size_t index_bytes = v.cols <= 65536 ? 2 : 4;
    const std::size_t bias_bytes = v.bias_count() * sizeof(float);
    r.weights += w.size();
    r.zero_weights += zeros;
    r.csr_bytes += nnz * (sizeof(float) + index_bytes) + (v.rows + 1) * 4 + bias_bytes;
    r.bitmap_bytes += (w.size() + 7) / 8 + nnz * sizeof(float) + bias_bytes;
  }
  r.sparsity = r.weights ? static_cast<double>(r.zero_weights) / static_cast<double>(r.weights) : 0;
  return r;
}

QuantizedMlp quantize_int8(const Mlp& model, QuantScale scale) {
  QuantizedMlp out;
  out.sizes = model.sizes();
  for (std::size_t l = 0; l < model.layers().size(); ++l) {
    const LayerView& v = model.layers()[l];
    const std::span<const float> w = model.weights(l);
    QuantizedLayer ql;
    ql.rows = v.rows;
    ql.cols = v.cols;
    ql.q.resize(w.size());
    const std::size_t groups = scale == QuantScale::per_row ? v.rows : 1;
    const std::size_t group_size = w.size() / groups;
    for (std::size_t g = 0; g < groups; ++g) {
      const std::span<const float> part = w.subspan(g * group_size, group_size);
      float max = 0;
      for (float x : part) max = std::max(max, std::fabs(x));
      const float s = max / 127.0f;
      ql.scales.push_back(s);
      for (std::size_t i = 0; i < group_size; ++i) {
        // In double, so that w / s rounds to the nearest integer exactly as the bound assumes.
        const double q = s > 0 ? std::nearbyint(static_cast<double>(part[i]) / s) : 0.0;
        ql.q[g * group_size + i] = static_cast<std::int8_t>(std::clamp(q, -127.0, 127.0));
      }
    }
    const std::span<const float> b = model.bias(l);
    ql.bias.assign(b.begin(), b.end());
    out.layers.push_back(std::move(ql));
  }
  return out;
}

std::size_t QuantizedMlp::size_bytes() const noexcept {
  std::size_t bytes = 0;
  for (const QuantizedLayer& l : layers)
    bytes += l.q.size() + (l.scales.size() + l.bias.size()) * sizeof(float);
  return bytes;
}

Mlp QuantizedMlp::dequantize() const {
  Mlp m(sizes);
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const QuantizedLayer& ql = layers[l];
    const std::span<float> w = m.weights(l);
    for (std::size_t r = 0; r < ql.rows; ++r)
      for (std::size_t c = 0; c < ql.cols; ++c)
        w[r * ql.cols + c] = static_cast<float>(ql.q[r * ql.cols + c]) * ql.scale_of_row(r);
    std::copy(ql.bias.begin(), ql.bias.end(), m.bias(l).begin());
  }
  return m;
}

}  // namespace rdmacoll::training
