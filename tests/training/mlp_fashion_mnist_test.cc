// One epoch of single-process training on the real Fashion-MNIST training set (Debian's
// dataset-fashion-mnist; skipped with a reason if it is not installed): batch 64, lr 0.05,
// momentum 0.9, no weight decay, the default 784-256-128-10 net. Evaluated on the whole
// 10,000-image test set. Prints the epoch time, then quantizes and prunes the trained model
// and checks what that costs in accuracy.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "rdmacoll/training/fashion_mnist.h"
#include "rdmacoll/training/mlp.h"
#include "rdmacoll/training/post_training.h"
#include "rdmacoll/training/sgd.h"
#include "rdmacoll/training/shard.h"

namespace rdmacoll::training {
namespace {

TEST(MlpFashionMnist, OneEpochReachesEightyPercentTestAccuracy) {
  const std::filesystem::path dir(kDefaultFashionMnistDir);
  if (!std::filesystem::exists(dir / "train-images-idx3-ubyte.gz") &&
      !std::filesystem::exists(dir / "train-images-idx3-ubyte"))
    GTEST_SKIP() << "Fashion-MNIST is not installed in " << dir
                 << " (apt-get install dataset-fashion-mnist)";
#ifndef NDEBUG
  // Eigen at -O0 is some 50x slower: an epoch would not fit the ctest timeout.
  GTEST_SKIP() << "unoptimised (Debug) build: one epoch would take minutes; build with "
                  "-DCMAKE_BUILD_TYPE=RelWithDebInfo or Release";
#endif
  const Dataset train = load_fashion_mnist(Split::train);
  const Dataset test = load_fashion_mnist(Split::test);

  Mlp model({784, 256, 128, 10}, 1);
  Sgd sgd(model.params().size(), SgdOptions{0.9f, 0.0f});
  const std::size_t batch = 64;
  const auto perm = epoch_permutation(train.count, 1, 0);
  std::vector<float> x;
  std::vector<std::uint8_t> y;
  double loss_sum = 0;
  const std::size_t batches = batches_per_epoch(train.count, batch, false);
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t b = 0; b < batches; ++b) {
    const Batch mb = gather_batch(train, local_batch(perm, batch, b, 0, 1), x, y);
    loss_sum += model.forward(mb).loss;
    model.backward();
    sgd.step(model.params(), model.grads(), 0.05f);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double acc = model.accuracy(test);
  std::printf("one epoch, batch %zu, %zu steps: %.2f s (%.0f images/s), mean train loss %.4f, "
              "test accuracy %.4f\n",
              batch, batches, seconds, static_cast<double>(train.count) / seconds,
              loss_sum / static_cast<double>(batches), acc);
  RecordProperty("epoch_seconds", std::to_string(seconds));
  RecordProperty("test_accuracy", std::to_string(acc));
  EXPECT_GE(acc, 0.80);

  // Post-training compression of the same model, on the same test set.
  const QuantizedMlp q = quantize_int8(model, QuantScale::per_row);
  const double q_acc = q.dequantize().accuracy(test);
  Mlp pruned = model;
  const PruneReport p = prune_magnitude(pruned, 0.5, PruneScope::global);
  const double p_acc = pruned.accuracy(test);
  std::printf("fp32 %zu B, acc %.4f; int8 per-row %zu B, acc %.4f; pruned 50%% global: CSR %zu B, "
              "bitmap %zu B, acc %.4f\n",
              dense_size_bytes(model), acc, q.size_bytes(), q_acc, p.csr_bytes, p.bitmap_bytes, p_acc);
  EXPECT_NEAR(q_acc, acc, 0.01);
  EXPECT_GE(p_acc, 0.75);
}

}  // namespace
}  // namespace rdmacoll::training
