#include "rdmacoll/training/sgd.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

namespace rdmacoll::training {

Sgd::Sgd(std::size_t size, SgdOptions options) : options_(options), velocity_(size, 0.0f) {}

float* Sgd::momentum(const char* who, std::size_t params, std::size_t grads, std::size_t offset) {
  if (params != grads || offset > velocity_.size() || params > velocity_.size() - offset)
    throw std::invalid_argument(std::string(who) + ": " + std::to_string(params) + " parameters, " +
                                std::to_string(grads) + " gradients at offset " + std::to_string(offset) +
                                " of a momentum buffer of " + std::to_string(velocity_.size()));
  return velocity_.data() + offset;
}

void Sgd::step(std::span<float> params, std::span<const float> grads, float lr,
               std::size_t offset) {
  float* v = momentum("Sgd::step", params.size(), grads.size(), offset);
  const float mu = options_.momentum;
  const float wd = options_.weight_decay;
  for (std::size_t i = 0; i < params.size(); ++i) {
    v[i] = mu * v[i] + (grads[i] + wd * params[i]);
    params[i] -= lr * v[i];
  }
}

void Sgd::update(std::span<const float> params, std::span<float> grads, float lr, std::size_t offset) {
  float* v = momentum("Sgd::update", params.size(), grads.size(), offset);
  const float mu = options_.momentum;
  const float wd = options_.weight_decay;
  for (std::size_t i = 0; i < params.size(); ++i) {
    v[i] = mu * v[i] + (grads[i] + wd * params[i]);
    grads[i] = lr * v[i];
  }
}

void Sgd::apply_update(std::span<float> params, std::span<const float> update) {
  if (params.size() != update.size())
    throw std::invalid_argument("Sgd::apply_update: " + std::to_string(params.size()) + " parameters, " +
                                std::to_string(update.size()) + " update elements");
  for (std::size_t i = 0; i < params.size(); ++i) params[i] -= update[i];
}

void Sgd::reset() noexcept { std::fill(velocity_.begin(), velocity_.end(), 0.0f); }

double global_norm(std::span<const float> grads) noexcept {
  double sum = 0;
  for (float g : grads) sum += static_cast<double>(g) * g;
  return std::sqrt(sum);
}

double clip_grad_norm(std::span<float> grads, double max_norm) {
  if (!(max_norm > 0))
    throw std::invalid_argument("clip_grad_norm: max_norm " + std::to_string(max_norm) +
                                " must be > 0");
  const double norm = global_norm(grads);
  if (norm > max_norm) {
    const auto scale = static_cast<float>(max_norm / (norm + 1e-6));
    for (float& g : grads) g *= scale;
  }
  return norm;
}

float LrSchedule::at(std::size_t t) const {
  if (t < warmup_steps)
    return static_cast<float>(static_cast<double>(base_lr) * static_cast<double>(t + 1) /
                              static_cast<double>(warmup_steps));
  const std::size_t s = t - warmup_steps;
  switch (kind) {
    case Kind::constant:
      return base_lr;
    case Kind::step:
      if (step_size == 0) throw std::invalid_argument("LrSchedule: step_size must be > 0");
      return static_cast<float>(base_lr *
                                std::pow(static_cast<double>(gamma),
                                         static_cast<double>(s / step_size)));
    case Kind::cosine: {
      if (total_steps <= warmup_steps)
        throw std::invalid_argument("LrSchedule: cosine needs total_steps (" +
                                    std::to_string(total_steps) + ") > warmup_steps (" +
                                    std::to_string(warmup_steps) + ")");
      const double span = static_cast<double>(total_steps - warmup_steps);
      const double frac = std::min(static_cast<double>(s), span) / span;
      return static_cast<float>(min_lr + (static_cast<double>(base_lr) - min_lr) *
                                             (1.0 + std::cos(std::numbers::pi * frac)) / 2.0);
    }
  }
  return base_lr;
}

}  // namespace rdmacoll::training
