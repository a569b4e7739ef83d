// Sgd against hand-computed steps, clipping, and the learning-rate schedules.
#include "rdmacoll/training/sgd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <numbers>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

namespace rdmacoll::training {
namespace {

TEST(Sgd, MomentumAndWeightDecayMatchTorchStepsExactly) {
  Sgd sgd(4, SgdOptions{0.9f, 0.01f});
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 0.0f};
  const std::vector<float> g1 = {0.1f, 0.2f, -0.3f, 1.0f};
  const std::vector<float> g2 = {-0.4f, 0.0f, 0.25f, 2.0f};
  const float lr = 0.1f;

  // torch.optim.SGD(momentum=0.9, weight_decay=0.01): d = g + wd p; v = d on the first step,
  // v = mu v + d after; p -= lr v. The same float operations in the same order.
  std::vector<float> ep = p, ev(4);
  for (std::size_t i = 0; i < 4; ++i) {
    ev[i] = g1[i] + 0.01f * ep[i];
    ep[i] -= lr * ev[i];
  }
  sgd.step(p, g1, lr);
  EXPECT_EQ(p, ep);
  for (std::size_t i = 0; i < 4; ++i) {
    ev[i] = 0.9f * ev[i] + (g2[i] + 0.01f * ep[i]);
    ep[i] -= lr * ev[i];
  }
  sgd.step(p, g2, lr);
  EXPECT_EQ(p, ep);
  EXPECT_EQ(std::vector<float>(sgd.momentum_buffer().begin(), sgd.momentum_buffer().end()), ev);
  // A worked value: p[0] after step 1 = 1 - 0.1 * (0.1 + 0.01) = 0.989.
  EXPECT_FLOAT_EQ(ep[0] + lr * ev[0], 0.989f);
}

TEST(Sgd, SliceStepsUseTheirPartOfTheMomentumBuffer) {
  Sgd whole(6, SgdOptions{0.5f, 0.0f}), sliced(6, SgdOptions{0.5f, 0.0f});
  std::vector<float> a = {1, 2, 3, 4, 5, 6}, b = a;
  const std::vector<float> g = {1, 1, 1, 2, 2, 2};
  for (int step = 0; step < 3; ++step) {
    whole.step(a, g, 0.1f);
    sliced.step(std::span<float>(b).subspan(3), std::span<const float>(g).subspan(3), 0.1f, 3);
    sliced.step(std::span<float>(b).first(3), std::span<const float>(g).first(3), 0.1f, 0);
  }
  EXPECT_EQ(a, b);
  EXPECT_THROW(sliced.step(std::span<float>(b).first(3), std::span<const float>(g).first(3), 0.1f, 4),
               std::invalid_argument);
  EXPECT_THROW(sliced.step(b, std::span<const float>(g).first(5), 0.1f), std::invalid_argument);
  sliced.reset();
  for (float v : sliced.momentum_buffer()) EXPECT_EQ(v, 0.0f);
}

// update() then apply_update() (the step cut around a compressed exchange) is step(), bit for
// bit, slice by slice; a mis-sized update is refused.
TEST(Sgd, UpdateThenApplyIsTheStep) {
  const SgdOptions opt{0.9f, 5e-4f};
  Sgd whole(6, opt), split(6, opt);
  std::vector<float> p = {1.0f, -2.0f, 0.5f, 0.0f, 3.0f, -0.25f}, q = p;
  for (int t = 0; t < 4; ++t) {
    std::vector<float> g(6);
    for (size_t i = 0; i < g.size(); ++i) g[i] = std::sin(static_cast<float>(t * 6 + static_cast<int>(i)));
    std::vector<float> u = g;
    const float lr = 0.1f / static_cast<float>(t + 1);
    whole.step(p, g, lr);
    split.update(std::span<const float>(q).subspan(0, 4), std::span<float>(u).subspan(0, 4), lr, 0);
    split.update(std::span<const float>(q).subspan(4), std::span<float>(u).subspan(4), lr, 4);
    Sgd::apply_update(q, u);
    for (size_t i = 0; i < p.size(); ++i) ASSERT_EQ(p[i], q[i]) << "step " << t << ", parameter " << i;
  }
  std::vector<float> short_update(5);
  EXPECT_THROW(Sgd::apply_update(q, short_update), std::invalid_argument);
  EXPECT_THROW(split.update(q, short_update, 0.1f), std::invalid_argument);
}

TEST(Sgd, ClippingScalesToTheNormAndReportsTheNormBefore) {
  std::vector<float> g = {3.0f, 4.0f};  // norm 5
  EXPECT_DOUBLE_EQ(global_norm(g), 5.0);
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 10.0), 5.0);
  EXPECT_EQ(g, (std::vector<float>{3.0f, 4.0f}));  // under the limit: untouched
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  EXPECT_NEAR(global_norm(g), 1.0, 1e-6);
  EXPECT_NEAR(g[0], 0.6f, 1e-6);
  EXPECT_NEAR(g[1], 0.8f, 1e-6);
  EXPECT_THROW(clip_grad_norm(g, 0.0), std::invalid_argument);
}

// (step, expected rate) pairs.
void expect_rates(const LrSchedule& s, std::initializer_list<std::pair<std::size_t, float>> want) {
  for (const auto& [t, lr] : want) EXPECT_FLOAT_EQ(s.at(t), lr) << "step " << t;
}

TEST(LrSchedule, ValuesAtChosenSteps) {
  const LrSchedule constant{};
  expect_rates(constant, {{0, 0.1f}, {1000, 0.1f}});

  LrSchedule step{LrSchedule::Kind::step, 0.1f};
  step.step_size = 5;
  step.gamma = 0.5f;
  expect_rates(step, {{0, 0.1f}, {4, 0.1f}, {5, 0.05f}, {14, 0.025f}, {15, 0.0125f}});

  LrSchedule cosine{LrSchedule::Kind::cosine, 0.1f};
  cosine.total_steps = 100;
  cosine.min_lr = 0.001f;
  expect_rates(cosine,
               {{0, 0.1f},
                {25, static_cast<float>(0.001 + 0.099 * (1 + std::cos(std::numbers::pi / 4)) / 2)},
                {50, 0.001f + 0.099f * 0.5f},
                {100, 0.001f},
                {500, 0.001f}});

  // Warm-up for 4 steps, then cosine over the remaining 10.
  LrSchedule warm = cosine;
  warm.warmup_steps = 4;
  warm.total_steps = 14;
  warm.min_lr = 0.0f;
  expect_rates(warm, {{0, 0.025f}, {1, 0.05f}, {3, 0.1f}, {4, 0.1f}, {9, 0.05f}, {14, 0.0f}});

  LrSchedule bad = cosine;
  bad.warmup_steps = 100;
  EXPECT_THROW(bad.at(100), std::invalid_argument);
  LrSchedule bad_step = step;
  bad_step.step_size = 0;
  EXPECT_THROW(bad_step.at(0), std::invalid_argument);
}

}  // namespace
}  // namespace rdmacoll::training
