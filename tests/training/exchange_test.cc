// GradientExchange with error feedback, between processes over UCX (shared memory): the
// residual stays out of the momentum. The ranks' gradients are held constant, so exact
// SGD with momentum has a closed form to compare with, and the only difference the 1-bit
// sign codec may make is what its residuals (each rank's worker residual, the owner's
// server residual, in units of parameters) still hold back:
//   params_T = exact_T + server + (sum_r worker_r) / n.
// Fed gradients instead (the residual re-entering the momentum buffer, a gain of
// 1 / (1 - momentum)), the parameters drift from exact_T by several times what the residuals
// hold; with the real gradients of rdmacoll-train that drift stalled or diverged sign.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/training/mlp.h"
#include "rdmacoll/training/sgd.h"
#include "rdmacoll/training/trainer.h"
#include "support/env.h"
#include "support/multiproc.h"

namespace rdmacoll::training {
namespace {

using collectives::Communicator;
using collectives::DataType;
using collectives::ReduceOp;

// Rank r's constant gradient: signed, magnitudes over two decades (as a layer's are).
float gradient(int r, size_t i) {
  const double x = static_cast<double>(i) * 0.61 + r * 2.3;
  return static_cast<float>(std::sin(x) * std::exp(2.3 * std::cos(0.05 * static_cast<double>(i) + r)) * 1e-2);
}

void feedback_stays_out_of_the_momentum(int n, size_t bucket_bytes = ExchangeMode::kDefaultBucketBytes) {
  rdmacoll::testing::ScopedEnv transport("RDMACOLL_TRANSPORT", "ucx"), tls("UCX_TLS", "sm,self");
  rdmacoll::testing::RankGroup g(n);
  auto comm = Communicator::create(g.world());
  ASSERT_EQ(comm->size(), n);
  {
    Mlp model({40, 24, 10}, 3);
    ExchangeMode mode = parse_exchange_mode("sign:64");
    mode.bucket_bytes = bucket_bytes;
    GradientExchange exchange(*comm, model.layers(), mode);
    ASSERT_TRUE(exchange.averages_updates());
    ASSERT_EQ(exchange.buckets().size(), bucket_bytes == 0 ? model.layers().size() : 1u);
    const SgdOptions opt{0.9f, 0.0f};
    Sgd sgd(model.params().size(), opt);
    const std::span<float> params = model.params(), grads = model.grads();
    const size_t count = params.size();
    std::vector<double> mean(count, 0.0), exact(params.begin(), params.end()), velocity(count, 0.0);
    for (int r = 0; r < n; ++r)
      for (size_t i = 0; i < count; ++i) mean[i] += static_cast<double>(gradient(r, i)) / n;
    const float lr = 0.1f;
    const int steps = 60;
    for (int t = 0; t < steps; ++t) {
      for (size_t i = 0; i < count; ++i) grads[i] = gradient(comm->rank(), i);
      for (size_t l = model.layers().size(); l-- > 0;) {
        exchange.prepare(l, sgd, params, grads, lr);
        exchange.start(l, grads, static_cast<uint64_t>(t));
      }
      exchange.finish();
      exchange.apply(sgd, params, grads, lr);
      for (size_t i = 0; i < count; ++i) {
        velocity[i] = opt.momentum * velocity[i] + mean[i];
        exact[i] -= lr * velocity[i];
      }
    }
    // What the residuals hold, summed over ranks (a server entry is non-zero on its owner only).
    std::vector<float> worker(count), server(count);
    for (size_t b = 0; b < exchange.buckets().size(); ++b) {
      const Bucket& v = exchange.buckets()[b];
      const collectives::ErrorFeedback& ef = exchange.feedback(b);
      ASSERT_EQ(ef.worker.size(), v.count);
      std::copy(ef.worker.begin(), ef.worker.end(), worker.begin() + static_cast<std::ptrdiff_t>(v.offset));
      std::copy(ef.server.begin(), ef.server.end(), server.begin() + static_cast<std::ptrdiff_t>(v.offset));
    }
    comm->allreduce(worker.data(), worker.data(), count, DataType::f32, ReduceOp::sum);
    comm->allreduce(server.data(), server.data(), count, DataType::f32, ReduceOp::sum);
    double held = 0;
    for (size_t i = 0; i < count; ++i) {
      const double kept = server[i] + static_cast<double>(worker[i]) / n;
      held += std::fabs(kept);
      ASSERT_NEAR(params[i], exact[i] + kept, 1e-5 * (1 + std::fabs(exact[i])))
          << n << " rank(s), parameter " << i << ": the residuals hold " << kept;
    }
    EXPECT_GT(held, 0.0) << "the sign codec left nothing behind: the check would not see a drift";
  }
  comm->barrier();
  comm.reset();
  g.join();
}

TEST(GradientExchangeUcx, SingleRankErrorFeedbackStaysOutOfTheMomentum) { feedback_stays_out_of_the_momentum(1); }
TEST(GradientExchangeUcx, MultiRankErrorFeedbackStaysOutOfTheMomentum) { feedback_stays_out_of_the_momentum(2); }
TEST(GradientExchangeUcx, MultiRankErrorFeedbackStaysOutOfTheMomentum3) { feedback_stays_out_of_the_momentum(3); }
TEST(GradientExchangeUcx, MultiRankErrorFeedbackStaysOutOfTheMomentumBucketPerLayer) {
  feedback_stays_out_of_the_momentum(2, 0);
}

// Buckets as DDP makes them: from the last layer, adjacent slices, up to the byte cap.
TEST(Buckets, GroupAdjacentLayersFromTheLastUpToTheCap) {
  Mlp model({40, 24, 10}, 3);  // layer 0: 40x24 + 24 = 984 values at offset 0; layer 1: 250 at 984
  const std::span<const LayerView> layers = model.layers();
  ASSERT_EQ(layers.size(), 2u);
  ASSERT_EQ(layers[1].offset(), 984u);
  auto shape = [&](size_t cap) {
    std::vector<std::vector<size_t>> out;
    for (const Bucket& b : make_buckets(layers, cap)) out.push_back({b.offset, b.count, b.first_layer, b.last_layer});
    return out;
  };
  using V = std::vector<std::vector<size_t>>;
  EXPECT_EQ(shape(0), (V{{984, 250, 1, 1}, {0, 984, 0, 0}}));
  EXPECT_EQ(shape(ExchangeMode::kDefaultBucketBytes), (V{{0, 1234, 0, 1}}));
  EXPECT_EQ(shape(1234 * 4), (V{{0, 1234, 0, 1}}));
  EXPECT_EQ(shape(1234 * 4 - 1), (V{{984, 250, 1, 1}, {0, 984, 0, 0}}));
  EXPECT_EQ(shape(100), (V{{984, 250, 1, 1}, {0, 984, 0, 0}}));  // a layer over the cap: its own bucket
  Mlp deeper({8, 6, 5, 4, 3}, 1);  // 54, 35, 24, 15 values
  std::vector<std::vector<size_t>> got;
  for (const Bucket& b : make_buckets(deeper.layers(), (15 + 24) * 4)) got.push_back({b.first_layer, b.last_layer});
  EXPECT_EQ(got, (V{{2, 3}, {1, 1}, {0, 0}}));
}

// Every rank must start every layer of a bucket before finish(): a bucket started for part of
// its layers is the caller's mistake, named, and so is a layer started twice in one step.
TEST(GradientExchangeUcx, SingleRankRefusesAPartlyStartedBucketNamingTheLayers) {
  rdmacoll::testing::ScopedEnv transport("RDMACOLL_TRANSPORT", "ucx"), tls("UCX_TLS", "sm,self");
  rdmacoll::testing::RankGroup g(1);
  auto comm = Communicator::create(g.world());
  {
    Mlp model({6, 4, 3}, 1);
    GradientExchange exchange(*comm, model.layers(), parse_exchange_mode("none"));
    ASSERT_EQ(exchange.buckets().size(), 1u);
    exchange.start(1, model.grads(), 0);
    EXPECT_THROW(
        {
          try {
            exchange.start(1, model.grads(), 0);
          } catch (const std::logic_error& e) {
            EXPECT_NE(std::string(e.what()).find("layer 1 started twice"), std::string::npos) << e.what();
            throw;
          }
        },
        std::logic_error);
    EXPECT_THROW(
        {
          try {
            exchange.finish();
          } catch (const std::logic_error& e) {
            EXPECT_NE(std::string(e.what()).find("not started: 0"), std::string::npos) << e.what();
            throw;
          }
        },
        std::logic_error);
  }
  comm.reset();
  g.join();
}

// One bucket or one per layer: the same average (up to the order of the float sums).
TEST(GradientExchangeUcx, MultiRankBucketLayoutsGiveTheSameAverage) {
  rdmacoll::testing::ScopedEnv transport("RDMACOLL_TRANSPORT", "ucx"), tls("UCX_TLS", "sm,self");
  const int n = 3;
  rdmacoll::testing::RankGroup g(n);
  auto comm = Communicator::create(g.world());
  {
    std::vector<std::vector<float>> results;
    for (size_t cap : {size_t{0}, ExchangeMode::kDefaultBucketBytes}) {
      Mlp model({40, 24, 10}, 3);
      ExchangeMode mode = parse_exchange_mode("none");
      mode.bucket_bytes = cap;
      GradientExchange exchange(*comm, model.layers(), mode);
      for (size_t i = 0; i < model.grads().size(); ++i) model.grads()[i] = gradient(comm->rank(), i);
      for (size_t l = model.layers().size(); l-- > 0;) exchange.start(l, model.grads(), 0);
      exchange.finish();
      EXPECT_EQ(exchange.stats().calls, cap == 0 ? 2u : 1u);
      results.emplace_back(model.grads().begin(), model.grads().end());
    }
    for (size_t i = 0; i < results[0].size(); ++i) {
      double mean = 0;
      for (int r = 0; r < n; ++r) mean += static_cast<double>(gradient(r, i)) / n;
      ASSERT_NEAR(results[0][i], mean, 1e-6 * (1 + std::fabs(mean))) << "per-layer buckets, element " << i;
      ASSERT_NEAR(results[1][i], mean, 1e-6 * (1 + std::fabs(mean))) << "one bucket, element " << i;
    }
  }
  comm->barrier();
  comm.reset();
  g.join();
}

// Without error feedback (and for exact codecs) the exchange averages gradients and apply()
// is Sgd::step; prepare() leaves the gradients alone.
TEST(GradientExchangeUcx, SingleRankWithoutFeedbackAveragesGradients) {
  rdmacoll::testing::ScopedEnv transport("RDMACOLL_TRANSPORT", "ucx"), tls("UCX_TLS", "sm,self");
  rdmacoll::testing::RankGroup g(1);
  auto comm = Communicator::create(g.world());
  {
    Mlp model({6, 4, 3}, 1);
    ExchangeMode mode = parse_exchange_mode("sign");
    mode.error_feedback = false;
    GradientExchange exchange(*comm, model.layers(), mode);
    EXPECT_FALSE(exchange.averages_updates());
    EXPECT_FALSE(GradientExchange(*comm, model.layers(), parse_exchange_mode("none")).averages_updates());
    EXPECT_FALSE(GradientExchange(*comm, model.layers(), parse_exchange_mode("qsgd:4")).averages_updates());
    EXPECT_TRUE(GradientExchange(*comm, model.layers(), parse_exchange_mode("int8")).averages_updates());
    Sgd sgd(model.params().size());
    std::vector<float> before(model.grads().size());
    for (size_t i = 0; i < before.size(); ++i) model.grads()[i] = before[i] = 0.01f * static_cast<float>(i % 7);
    exchange.prepare(0, sgd, model.params(), model.grads(), 0.1f);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(model.grads()[i], before[i]);
  }
  comm->barrier();
  comm.reset();
  g.join();
}

}  // namespace
}  // namespace rdmacoll::training
