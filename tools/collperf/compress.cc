#include "collperf/compress.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace rdmacoll::collperf {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Roughly standard normal: four 16-bit uniforms summed (Irwin-Hall, variance 4/12), rescaled.
float normalish(uint64_t h) {
  double s = 0;
  for (int k = 0; k < 4; ++k, h >>= 16) s += static_cast<double>(h & 0xFFFF) / 65536.0;
  return static_cast<float>((s - 2.0) * std::sqrt(3.0));
}

}  // namespace

void fill_gradient(int rank, float* buf, size_t count) {
  const uint64_t r = mix(static_cast<uint64_t>(rank) + 1);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t layer = mix(~uint64_t{0} ^ (i >> 10));
    const float scale = std::ldexp(1.0f, -16 + static_cast<int>(layer % 13));
    buf[i] = scale * (0.5f * normalish(mix(i)) + normalish(mix(i ^ r)));
  }
}

double relative_error(const float* out, const float* exact, size_t count) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    const double d = static_cast<double>(out[i]) - static_cast<double>(exact[i]);
    diff += d * d;
    norm += static_cast<double>(exact[i]) * static_cast<double>(exact[i]);
  }
  if (diff == 0) return 0;
  if (norm == 0) return std::isnan(diff) ? diff : std::numeric_limits<double>::infinity();
  return std::sqrt(diff / norm);
}

uint64_t result_hash(const float* buf, size_t count) {
  uint64_t h = mix(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, buf + i, 4);
    h = mix(h ^ bits);
  }
  return h;
}

bool uses_two_phase(const collectives::Codec& codec, collectives::Compression::Scheme scheme) {
  using Scheme = collectives::Compression::Scheme;
  return scheme == Scheme::two_phase || (scheme == Scheme::automatic && !codec.sparse());
}

void local_error_budget(const collectives::Codec& codec, const float* in, size_t count,
                        const collectives::ErrorFeedback* feedback, float* budget) {
  const bool worker = feedback && feedback->worker.size() == count;
  const bool server = feedback && feedback->server.size() == count;
  std::vector<float> v(in, in + count);
  if (worker)
    for (size_t i = 0; i < count; ++i) v[i] += feedback->worker[i];
  std::vector<double> bound(count);
  codec.error_bound(v.data(), count, bound.data());
  for (size_t i = 0; i < count; ++i) {
    double b = bound[i] + std::fabs(static_cast<double>(v[i]) - in[i]) + 1e-6 * std::fabs(in[i]);
    if (server) b += std::fabs(feedback->server[i]);
    budget[i] = static_cast<float>(b);
  }
}

double relerr_limit(const collectives::Codec& codec, bool two_phase, const float* exact, const float* e1,
                    size_t count) {
  std::vector<double> b2(count, 0.0);
  if (two_phase) {
    std::vector<float> worst(count);
    for (size_t i = 0; i < count; ++i) worst[i] = std::fabs(exact[i]) + e1[i];
    codec.error_bound(worst.data(), count, b2.data());
  }
  double total = 0, norm = 0;
  for (size_t i = 0; i < count; ++i) {
    const double t = static_cast<double>(e1[i]) + b2[i];
    total += t * t;
    norm += static_cast<double>(exact[i]) * static_cast<double>(exact[i]);
  }
  if (norm == 0) return std::numeric_limits<double>::infinity();
  return 2 * std::sqrt(total / norm) + 1e-6;
}

}  // namespace rdmacoll::collperf
