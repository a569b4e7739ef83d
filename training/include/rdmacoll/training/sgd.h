// Minibatch SGD as torch.optim.SGD does it (dampening 0, no Nesterov), a learning-rate
// schedule, and gradient clipping by global L2 norm. Everything works on flat float spans, so
// it applies to Mlp::params()/grads() as a whole or to one layer's slice.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace rdmacoll::training {

struct SgdOptions {
  float momentum = 0.9f;
  // L2 penalty, added to the gradient as weight_decay * p before momentum (torch.optim.SGD's
  // weight_decay, applied to every parameter it is given, biases included, as PyTorch does
  // when one parameter group holds the whole model).
  float weight_decay = 5e-4f;
};

class Sgd {
 public:
  // `size` parameters: the momentum buffer starts at zero, which makes the first step
  // v = g as in PyTorch.
  Sgd(std::size_t size, SgdOptions options = {});

  // For each i:  g = grads[i] + wd * params[i];  v[offset+i] = mu * v[offset+i] + g;
  //              params[i] -= lr * v[offset+i].
  // `offset` places the slice in the momentum buffer (a layer's LayerView::offset() when
  // stepping layer by layer). Throws std::invalid_argument if the sizes differ or the slice
  // does not fit.
  void step(std::span<float> params, std::span<const float> grads, float lr,
            std::size_t offset = 0);

  // step() cut in two around a compressed exchange (GradientExchange::averages_updates):
  // update() advances the momentum as step() does and writes the step it would take,
  // lr * v[offset+i], over grads; apply_update() subtracts an update from the parameters.
  // update() then apply_update() of the same values is step(), bit for bit.
  void update(std::span<const float> params, std::span<float> grads, float lr, std::size_t offset = 0);
  static void apply_update(std::span<float> params, std::span<const float> update);

  const SgdOptions& options() const noexcept { return options_; }
  std::span<const float> momentum_buffer() const noexcept { return velocity_; }
  void reset() noexcept;  // momentum back to zero

 private:
  // The momentum slice for `params` parameters at `offset`, after checking that the sizes agree
  // (std::invalid_argument naming `who` otherwise).
  float* momentum(const char* who, std::size_t params, std::size_t grads, std::size_t offset);
  SgdOptions options_;
  std::vector<float> velocity_;
};

// Global L2 norm over all of `grads` (accumulated in double).
double global_norm(std::span<const float> grads) noexcept;

// If the global norm exceeds max_norm, scales grads by max_norm / (norm + 1e-6) (as
// torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. max_norm must be > 0.
double clip_grad_norm(std::span<float> grads, double max_norm);

// Learning rate as a function of the step (an iteration or an epoch: the caller picks the
// unit and uses it for every field).
//
//   t < warmup_steps:  base_lr * (t + 1) / warmup_steps          (linear warm-up)
//   then, with s = t - warmup_steps:
//     constant:  base_lr
//     step:      base_lr * gamma ^ floor(s / step_size)
//     cosine:    min_lr + (base_lr - min_lr) * (1 + cos(pi * min(s, T) / T)) / 2,
//                T = total_steps - warmup_steps (min_lr from T on)
struct LrSchedule {
  enum class Kind { constant, step, cosine };
  Kind kind = Kind::constant;
  float base_lr = 0.1f;
  std::size_t warmup_steps = 0;
  std::size_t step_size = 1;    // step: decay every step_size steps
  float gamma = 0.1f;           // step: factor per decay
  std::size_t total_steps = 1;  // cosine: steps until min_lr, warm-up included
  float min_lr = 0.0f;          // cosine: final rate

  // Throws std::invalid_argument for step_size 0, or cosine with total_steps <= warmup_steps.
  float at(std::size_t t) const;
};

}  // namespace rdmacoll::training
