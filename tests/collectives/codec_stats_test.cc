// Statistical properties of the stochastic codecs, over T encodings of one input with seeds
// 0..T-1. The seeds are fixed, so these tests give the same answer on every run. Tolerances
// come from the variance each codec guarantees: a per-element mean must be within 6 standard
// deviations of its bound (the mean of T >= 4000 bounded draws is close to normal: a correct
// codec misses with probability ~2e-9 per element), plus the codec's float rounding slack
// (2^-20 of the scale); a mean squared error within Hoeffding's bound at probability 1e-9.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "rdmacoll/collectives/codec.h"

namespace rdmacoll::collectives {
namespace {

std::vector<float> normal_input(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(gen);
  return x;
}

// The per-bucket scale the encoder wrote (the first 4 * nbuckets bytes of the wire).
std::vector<float> bucket_scales(const std::vector<std::byte>& wire, std::size_t n, std::size_t bucket) {
  std::vector<float> s((n + bucket - 1) / bucket);
  std::memcpy(s.data(), wire.data(), 4 * s.size());
  return s;
}

struct Trials {
  std::vector<double> mean;    // per element, of the decoded value
  double mean_sq_error = 0;    // mean over trials of ||decoded - x||^2
  std::vector<float> scales;   // from the first trial (the scale does not depend on the seed)
};

Trials run_trials(const Codec& c, const std::vector<float>& x, unsigned trials) {
  const std::size_t n = x.size();
  std::vector<std::byte> wire(c.wire_bytes(n));
  std::vector<float> d(n);
  Trials t;
  t.mean.assign(n, 0.0);
  for (unsigned s = 0; s < trials; ++s) {
    c.encode(x.data(), n, wire.data(), s);
    if (s == 0 && c.spec().block) t.scales = bucket_scales(wire, n, c.spec().block);
    c.decode(wire.data(), n, d.data());
    double sq = 0;
    for (std::size_t i = 0; i < n; ++i) {
      t.mean[i] += d[i];
      const double e = static_cast<double>(d[i]) - x[i];
      sq += e * e;
    }
    t.mean_sq_error += sq;
  }
  for (double& m : t.mean) m /= trials;
  t.mean_sq_error /= trials;
  return t;
}

// Stochastic rounding between multiples of `step`: Var = step^2 p (1 - p), p = frac(|x| / step).
double rounding_variance(double x, double step) {
  const double r = std::fabs(x) / step, p = r - std::floor(r);
  return step * step * p * (1 - p);
}

// Hoeffding: the mean of T draws in [0, range] is within range * sqrt(ln(2/1e-9) / (2T)) of its
// expectation except with probability 1e-9.
double hoeffding(double range, unsigned trials) { return range * std::sqrt(std::log(2e9) / (2.0 * trials)); }

void check_qsgd(const std::string& name, std::size_t n, unsigned trials) {
  const auto c = make_codec(name);
  const std::size_t bucket = c->spec().block;
  const double levels = c->spec().levels;
  const std::vector<float> x = normal_input(n, 3);
  const Trials t = run_trials(*c, x, trials);
  double exact_var = 0, range = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double scale = t.scales[i / bucket], step = scale / levels;
    // Unbiased: each decoded value is one of the two multiples of step around x, so its variance
    // is at most step^2 / 4 and the mean's standard deviation at most step / (2 sqrt(T)).
    const double tol = 6 * step / (2 * std::sqrt(static_cast<double>(trials))) + scale * 0x1p-20;
    ASSERT_NEAR(t.mean[i], x[i], tol) << name << " element " << i << " (step " << step << ")";
    exact_var += rounding_variance(x[i], step);
    range += step * step;  // |error| <= step per element
  }
  // The variance is the stochastic-rounding variance, which obeys Alistarh et al.'s bound.
  const double bound = c->variance_bound(x.data(), n);
  EXPECT_LE(exact_var, bound) << name;
  EXPECT_NEAR(t.mean_sq_error, exact_var, hoeffding(range, trials)) << name;
  EXPECT_LE(t.mean_sq_error, bound + hoeffding(range, trials)) << name;
}

TEST(CodecStats, QsgdIsUnbiasedAndObeysTheVarianceBound) {
  check_qsgd("qsgd:4:512", 512, 4000);    // one bucket, sqrt(n)/s bound applies
  check_qsgd("qsgd:4", 512, 4000);        // the default: 8 buckets of 64
  check_qsgd("qsgd:1", 512, 4000);        // the coarsest quantizer
  check_qsgd("qsgd:64:64", 1100, 4000);   // n/s^2 bound, 17 buckets, a partial last one
}

TEST(CodecStats, QsgdVarianceBoundIsAlistarhs) {
  const std::vector<float> x = normal_input(512, 4);
  double norm2 = 0;
  for (const float v : x) norm2 += static_cast<double>(v) * v;
  EXPECT_DOUBLE_EQ(make_codec("qsgd:4:512")->variance_bound(x.data(), 512), std::sqrt(512.0) / 4 * norm2);
  EXPECT_DOUBLE_EQ(make_codec("qsgd:64:512")->variance_bound(x.data(), 512), 512.0 / (64 * 64) * norm2);
}

TEST(CodecStats, TernGradIsUnbiased) {
  const auto c = make_codec("terngrad:128");
  const std::size_t n = 300;
  const unsigned trials = 4000;
  const std::vector<float> x = normal_input(n, 5);
  const Trials t = run_trials(*c, x, trials);
  double exact_var = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const double scale = t.scales[i / 128];
    const double var = std::fabs(x[i]) * (scale - std::fabs(x[i]));  // scale * Bernoulli(|x|/scale)
    ASSERT_NEAR(t.mean[i], x[i], 6 * std::sqrt(var / trials) + scale * 0x1p-20) << "element " << i;
    exact_var += var;
  }
  double range = 0;
  for (std::size_t i = 0; i < n; ++i) range += static_cast<double>(t.scales[i / 128]) * t.scales[i / 128];
  EXPECT_NEAR(t.mean_sq_error, exact_var, hoeffding(range, trials));
  EXPECT_NEAR(c->variance_bound(x.data(), n), exact_var, 1e-9 * exact_var);
}

TEST(CodecStats, RandKIsUnbiasedAndSendsExactlyK) {
  const auto c = make_codec("randk:0.25");
  const std::size_t n = 64, k = 16;
  const unsigned trials = 20000;
  const std::vector<float> x = normal_input(n, 6);
  const Trials t = run_trials(*c, x, trials);
  for (std::size_t i = 0; i < n; ++i) {
    const double var = static_cast<double>(x[i]) * x[i] * (static_cast<double>(n) / k - 1);
    ASSERT_NEAR(t.mean[i], x[i], 6 * std::sqrt(var / trials) + std::fabs(x[i]) * 0x1p-20) << "element " << i;
  }
  std::vector<std::byte> wire(c->wire_bytes(n));
  std::vector<float> d(n);
  for (unsigned s = 0; s < 100; ++s) {
    c->encode(x.data(), n, wire.data(), s);
    c->decode(wire.data(), n, d.data());
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) kept += d[i] != 0.0f ? 1 : 0;
    ASSERT_EQ(kept, k) << "seed " << s;
  }
  double range_bound = 0;  // each trial's squared error is at most sum x^2 (n/k - 1)^2 + sum x^2
  for (const float v : x) range_bound += static_cast<double>(v) * v * (9 + 1);
  EXPECT_NEAR(t.mean_sq_error, c->variance_bound(x.data(), n), hoeffding(range_bound, trials));
}

}  // namespace
}  // namespace rdmacoll::collectives
