// Magnitude pruning and int8 quantization: sparsity reached, round-trip error, size figures.
#include "rdmacoll/training/post_training.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace rdmacoll::training {
namespace {

std::size_t zeros(std::span<const float> w) {
  return static_cast<std::size_t>(std::count(w.begin(), w.end(), 0.0f));
}

TEST(Prune, PerLayerReachesTheSparsityInEveryLayerAndKeepsTheLargest) {
  Mlp m({784, 256, 128, 10}, 5);
  const Mlp before = m;
  const PruneReport r = prune_magnitude(m, 0.9, PruneScope::per_layer);
  for (std::size_t l = 0; l < m.layers().size(); ++l) {
    const std::span<const float> w = m.weights(l), w0 = before.weights(l);
    EXPECT_EQ(zeros(w), static_cast<std::size_t>(std::llround(0.9 * static_cast<double>(w.size()))))
        << "layer " << l;
    // Every surviving weight is unchanged and at least as large as every pruned one.
    float largest_pruned = 0, smallest_kept = INFINITY;
    for (std::size_t i = 0; i < w.size(); ++i) {
      if (w[i] == 0) largest_pruned = std::max(largest_pruned, std::fabs(w0[i]));
      else {
        EXPECT_EQ(w[i], w0[i]);
        smallest_kept = std::min(smallest_kept, std::fabs(w[i]));
      }
    }
    EXPECT_LE(largest_pruned, smallest_kept);
    EXPECT_TRUE(std::equal(m.bias(l).begin(), m.bias(l).end(), before.bias(l).begin()));
  }
  EXPECT_NEAR(r.sparsity, 0.9, 1e-5);
  EXPECT_EQ(r.weights, 784u * 256 + 256 * 128 + 128 * 10);
}

TEST(Prune, GlobalCutsOneThresholdAcrossLayers) {
  Mlp m({784, 256, 128, 10}, 5);
  const PruneReport r = prune_magnitude(m, 0.5, PruneScope::global);
  EXPECT_EQ(r.zero_weights, static_cast<std::size_t>(std::llround(0.5 * static_cast<double>(r.weights))));
  // He init makes the first layer's weights the smallest (bound sqrt(6/784) < sqrt(6/128)),
  // so a global cut takes more than half of layer 0 and less than half of layer 2.
  EXPECT_GT(zeros(m.weights(0)), m.weights(0).size() / 2);
  EXPECT_LT(zeros(m.weights(2)), m.weights(2).size() / 2);
  EXPECT_THROW(prune_magnitude(m, 1.5, PruneScope::global), std::invalid_argument);
}

TEST(Prune, SizeFiguresFollowTheDocumentedFormats) {
  Mlp m({4, 3, 2}, 1);  // weights 3x4 and 2x3, biases 3 and 2: 23 floats
  EXPECT_EQ(dense_size_bytes(m), 23u * 4);
  const PruneReport r = prune_magnitude(m, 0.5, PruneScope::per_layer);
  // Layer 0: 12 weights, 6 left; layer 1: 6 weights, 3 left.
  EXPECT_EQ(r.zero_weights, 9u);
  EXPECT_EQ(r.dense_bytes, 92u);
  // CSR: values 4 B + uint16 column 2 B per non-zero, (rows + 1) uint32 row pointers, fp32 bias.
  EXPECT_EQ(r.csr_bytes, (6 * 6 + 4 * 4 + 3 * 4) + (3 * 6 + 3 * 4 + 2 * 4));
  // Bitmap: one bit per weight rounded up to bytes, fp32 values, fp32 bias.
  EXPECT_EQ(r.bitmap_bytes, (2 + 6 * 4 + 3 * 4) + (1 + 3 * 4 + 2 * 4));
  const PruneReport again = sparse_size(m);
  EXPECT_EQ(again.csr_bytes, r.csr_bytes);
  EXPECT_EQ(prune_magnitude(m, 0.0, PruneScope::global).zero_weights, 9u);  // nothing new
}

void expect_round_trip(const Mlp& m, const QuantizedMlp& q) {
  const Mlp d = q.dequantize();
  ASSERT_EQ(d.sizes(), m.sizes());
  for (std::size_t l = 0; l < m.layers().size(); ++l) {
    const QuantizedLayer& ql = q.layers[l];
    const std::span<const float> w = m.weights(l), dw = d.weights(l);
    for (std::size_t i = 0; i < w.size(); ++i) {
      const float s = ql.scale_of_row(i / ql.cols);
      // scale / 2 from rounding to the nearest step, plus one float rounding of q * scale.
      ASSERT_LE(std::fabs(dw[i] - w[i]), s / 2 + std::fabs(w[i]) * 1e-7f) << "layer " << l << " " << i;
      ASSERT_LE(std::abs(static_cast<int>(ql.q[i])), 127);
    }
    EXPECT_TRUE(std::equal(d.bias(l).begin(), d.bias(l).end(), m.bias(l).begin()));
  }
}

TEST(Quantize, RoundTripWithinHalfAScalePerWeight) {
  Mlp m({784, 256, 128, 10}, 9);
  m.bias(1)[3] = 0.25f;
  std::fill(m.weights(2).begin(), m.weights(2).begin() + 128, 0.0f);  // an all-zero row
  for (QuantScale s : {QuantScale::per_row, QuantScale::per_tensor}) {
    const QuantizedMlp q = quantize_int8(m, s);
    expect_round_trip(m, q);
    EXPECT_EQ(q.layers[0].scales.size(), s == QuantScale::per_row ? 256u : 1u);
  }
  const QuantizedMlp q = quantize_int8(m, QuantScale::per_row);
  EXPECT_EQ(q.layers[2].scales[0], 0.0f);
  // The largest weight of a row maps to +-127.
  const auto row0 = m.weights(0).first(784);
  const auto big = std::max_element(row0.begin(), row0.end(),
                                    [](float a, float b) { return std::fabs(a) < std::fabs(b); });
  EXPECT_EQ(std::abs(static_cast<int>(q.layers[0].q[static_cast<std::size_t>(big - row0.begin())])), 127);
}

TEST(Quantize, SizeIsOneBytePerWeightPlusScalesAndBiases) {
  const Mlp m({784, 256, 128, 10}, 9);
  const std::size_t weights = 784 * 256 + 256 * 128 + 128 * 10, biases = 256 + 128 + 10;
  EXPECT_EQ(quantize_int8(m, QuantScale::per_row).size_bytes(), weights + 4 * biases + 4 * biases);
  EXPECT_EQ(quantize_int8(m, QuantScale::per_tensor).size_bytes(), weights + 4 * 3 + 4 * biases);
  EXPECT_EQ(dense_size_bytes(m), 4 * (weights + biases));
}

}  // namespace
}  // namespace rdmacoll::training
