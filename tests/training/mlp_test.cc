// Mlp on synthetic data: layout, deterministic initialisation, gradients against central
// finite differences, the layer-by-layer backward, and learning (loss falls, a small batch is
// fitted). The real-data check is in mlp_fashion_mnist_test.cc.
#include "rdmacoll/training/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "rdmacoll/training/fashion_mnist.h"
#include "rdmacoll/training/sgd.h"
#include "rng.h"  // training/src: the generator behind init and shuffling

namespace rdmacoll::training {
namespace {

// count random examples of `in` features in [-1, 1) and labels below `classes`.
struct Synthetic {
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  Synthetic(std::size_t count, std::size_t in, std::size_t classes, std::uint64_t seed) {
    detail::SplitMix64 rng(seed);
    for (std::size_t i = 0; i < count * in; ++i) x.push_back(2.0f * rng.uniform01() - 1.0f);
    for (std::size_t i = 0; i < count; ++i) y.push_back(static_cast<std::uint8_t>(rng.below(classes)));
  }
  Batch batch() const { return Batch{x, y}; }
};

TEST(Mlp, DefaultLayoutIsOneBufferWithPerLayerViews) {
  const Mlp m;
  EXPECT_EQ(m.sizes(), (std::vector<std::size_t>{784, 256, 128, 10}));
  ASSERT_EQ(m.layers().size(), 3u);
  const std::size_t expect_rows[] = {256, 128, 10}, expect_cols[] = {784, 256, 128};
  std::size_t offset = 0;
  for (std::size_t l = 0; l < 3; ++l) {
    const LayerView& v = m.layers()[l];
    EXPECT_EQ(v.rows, expect_rows[l]);
    EXPECT_EQ(v.cols, expect_cols[l]);
    EXPECT_EQ(v.weight_offset, offset);
    EXPECT_EQ(v.bias_offset, offset + v.rows * v.cols);
    EXPECT_EQ(m.weights(l).data(), m.params().data() + v.weight_offset);
    EXPECT_EQ(m.bias(l).data(), m.params().data() + v.bias_offset);
    offset += v.count();
  }
  EXPECT_EQ(m.params().size(), 784u * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  EXPECT_EQ(m.params().size(), offset);
  EXPECT_EQ(m.grads().size(), offset);
}

TEST(Mlp, RejectsBadSizesAndBatches) {
  EXPECT_THROW(Mlp({10}), std::invalid_argument);
  EXPECT_THROW(Mlp({10, 0, 3}), std::invalid_argument);
  EXPECT_THROW(Mlp({10, 300}), std::invalid_argument);
  Mlp m({4, 3}, 1);
  EXPECT_THROW(m.backward(), std::logic_error);
  const std::vector<float> x(8, 0.5f);
  const std::vector<std::uint8_t> y = {0, 3};  // 3 is not a class of a 3-class net
  EXPECT_THROW(m.forward(Batch{x, y}), std::invalid_argument);
  const std::vector<std::uint8_t> y3 = {0, 1, 2};  // 3 labels, 2 examples' inputs
  EXPECT_THROW(m.forward(Batch{x, y3}), std::invalid_argument);
  EXPECT_THROW(m.forward(Batch{{}, {}}), std::invalid_argument);
}

TEST(Mlp, SameSeedGivesBitwiseSameWeightsAndHeScale) {
  const Mlp a({784, 256, 128, 10}, 42), b({784, 256, 128, 10}, 42), c({784, 256, 128, 10}, 43);
  ASSERT_EQ(a.params().size(), b.params().size());
  EXPECT_EQ(std::memcmp(a.params().data(), b.params().data(), a.params().size_bytes()), 0);
  EXPECT_NE(std::memcmp(a.params().data(), c.params().data(), a.params().size_bytes()), 0);
  // Golden values: the generator is integer arithmetic and one float rounding per weight, so
  // these hold on any machine; a change here changes every seeded run.
  EXPECT_EQ(a.params()[0], 0.0422650464f);
  EXPECT_EQ(a.params()[1], -0.0595032871f);
  EXPECT_EQ(a.params()[a.layers()[2].weight_offset], 0.0871307775f);
  for (std::size_t l = 0; l < a.layers().size(); ++l) {
    const auto w = a.weights(l);
    const double bound = std::sqrt(6.0 / static_cast<double>(a.layers()[l].cols));
    double sq = 0;
    for (float v : w) {
      ASSERT_LE(std::fabs(v), bound);
      sq += static_cast<double>(v) * v;
    }
    // He: variance 2 / fan_in (uniform on [-b, b] has variance b^2 / 3).
    EXPECT_NEAR(sq / static_cast<double>(w.size()), 2.0 / static_cast<double>(a.layers()[l].cols),
                0.1 * 2.0 / static_cast<double>(a.layers()[l].cols));
    for (float v : a.bias(l)) EXPECT_EQ(v, 0.0f);
  }
  Mlp d = c;
  d.init(42);
  EXPECT_EQ(std::memcmp(a.params().data(), d.params().data(), a.params().size_bytes()), 0);
}

// Central differences in float: with h = 1e-3 the rounding noise of a loss near 1 is about
// 1e-7 / 2e-3 = 5e-5 and the truncation error O(h^2); the tolerance leaves room for both.
TEST(Mlp, BackwardMatchesCentralFiniteDifferences) {
  Mlp m({6, 5, 4, 3}, 7);
  // Non-zero biases so that their gradients are tested away from the initial state too.
  detail::SplitMix64 rng(99);
  for (std::size_t l = 0; l < m.layers().size(); ++l)
    for (float& b : m.bias(l)) b = 0.2f * (2.0f * rng.uniform01() - 1.0f);
  const Synthetic data(4, 6, 3, 5);
  m.forward(data.batch());
  m.backward();
  const std::vector<float> analytic(m.grads().begin(), m.grads().end());

  const float h = 1e-3f;
  std::size_t checked = 0;
  for (std::size_t i = 0; i < m.params().size(); ++i) {
    Mlp probe = m;
    const float p = probe.params()[i];
    probe.params()[i] = p + h;
    const double up = probe.forward(data.batch()).loss;
    probe.params()[i] = p - h;
    const double down = probe.forward(data.batch()).loss;
    const double numeric = (up - down) / (static_cast<double>(p + h) - static_cast<double>(p - h));
    EXPECT_NEAR(analytic[i], numeric, 1e-3 + 1e-2 * std::fabs(numeric)) << "parameter " << i;
    ++checked;
  }
  EXPECT_EQ(checked, m.params().size());
}

TEST(Mlp, LayerByLayerBackwardCallsFromLastLayerWithFinishedGradients) {
  Mlp m({8, 7, 6, 5, 4}, 3);
  const Synthetic data(10, 8, 4, 11);
  m.forward(data.batch());
  m.backward();
  const std::vector<float> whole(m.grads().begin(), m.grads().end());

  std::fill(m.grads().begin(), m.grads().end(), -1.0f);
  std::vector<std::size_t> order;
  m.backward([&](std::size_t l) {
    order.push_back(l);
    const LayerView& v = m.layers()[l];
    for (std::size_t i = v.offset(); i < v.offset() + v.count(); ++i)
      ASSERT_EQ(m.grads()[i], whole[i]) << "layer " << l << " element " << i;
  });
  EXPECT_EQ(order, (std::vector<std::size_t>{3, 2, 1, 0}));
  EXPECT_EQ(std::memcmp(m.grads().data(), whole.data(), whole.size() * sizeof(float)), 0);
}

TEST(Mlp, LossDecreasesAndATinyNetFitsASmallBatch) {
  Mlp m({8, 32, 4}, 1);
  const Synthetic data(16, 8, 4, 2);
  Sgd sgd(m.params().size(), SgdOptions{0.9f, 0.0f});
  const double first = m.forward(data.batch()).loss;
  ForwardResult last;
  for (int step = 0; step < 300; ++step) {
    last = m.forward(data.batch());
    m.backward();
    sgd.step(m.params(), m.grads(), 0.1f);
  }
  last = m.forward(data.batch());
  EXPECT_LT(last.loss, 0.1 * first) << "first " << first << " last " << last.loss;
  EXPECT_EQ(last.correct, 16u);
  EXPECT_EQ(m.predict(data.x), last.predictions);
}

TEST(Mlp, AccuracyAndGatherBatchUseTheDataset) {
  Dataset ds;
  ds.count = 3;
  ds.rows = 1;
  ds.cols = 2;
  ds.images = {1, 0, 0, 1, 1, 0};
  ds.labels = {0, 1, 1};
  Mlp m({2, 2}, 0);
  // Identity weights: the class is the larger pixel, so examples 0 and 1 are right, 2 wrong.
  std::copy_n(std::vector<float>{1, 0, 0, 1}.begin(), 4, m.weights(0).begin());
  EXPECT_DOUBLE_EQ(m.accuracy(ds), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.accuracy(ds, 2), 1.0);

  std::vector<float> x;
  std::vector<std::uint8_t> y;
  const std::uint32_t idx[] = {2, 0};
  const Batch b = gather_batch(ds, idx, x, y);
  EXPECT_EQ(x, (std::vector<float>{1, 0, 1, 0}));
  EXPECT_EQ(y, (std::vector<std::uint8_t>{1, 0}));
  EXPECT_EQ(b.inputs.data(), x.data());
  const std::uint32_t bad[] = {3};
  EXPECT_THROW(gather_batch(ds, bad, x, y), std::out_of_range);
}

}  // namespace
}  // namespace rdmacoll::training
