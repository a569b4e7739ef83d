// Float16/BFloat16 conversions: exhaustive over the 16-bit side, sampled against an
// independent reference (double arithmetic + std::nearbyint) on the float side, and the
// F16C path compared bit for bit with the portable one.
#include "rdmacoll/collectives/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace rdmacoll::collectives {
namespace {

float f32(std::uint32_t bits) { return std::bit_cast<float>(bits); }
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

bool is_nan16(std::uint16_t h, int mant_bits) {
  const std::uint16_t exp_mask = static_cast<std::uint16_t>(0x7FFF & ~((1u << mant_bits) - 1));
  return (h & exp_mask) == exp_mask && (h & ((1u << mant_bits) - 1)) != 0;
}

// Reference rounding of a finite float to a 16-bit format with `mant_bits` explicit mantissa
// bits and exponent range [min_exp, max_exp], written from the definition: pick the binade,
// divide by its ulp (exact in double), round with nearbyint (ties-to-even by default).
std::uint16_t reference_round(float f, int mant_bits, int min_exp, int max_exp) {
  const std::uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  const double x = std::fabs(static_cast<double>(f));
  const int bias = max_exp;
  const std::uint16_t inf = static_cast<std::uint16_t>((2 * bias + 1) << mant_bits);
  if (std::isinf(x)) return sign | inf;
  if (x == 0) return sign;
  int frexp_exp = 0;
  std::frexp(x, &frexp_exp);  // x = m * 2^frexp_exp, m in [0.5, 1): binade is frexp_exp - 1
  const int e = std::max(frexp_exp - 1, min_exp);
  const double ulp = std::ldexp(1.0, e - mant_bits);
  const double r = std::nearbyint(x / ulp);  // in [0, 2^(mant_bits+1)]
  std::uint32_t out = 0;
  if (e == min_exp && r < std::ldexp(1.0, mant_bits)) {
    out = static_cast<std::uint32_t>(r);  // subnormal (or zero)
  } else {
    // biased exponent field plus the fraction; r == 2^(mant_bits+1) carries into exponent
    out = (static_cast<std::uint32_t>(e + bias) << mant_bits) +
          (static_cast<std::uint32_t>(r) - (1u << mant_bits));
  }
  if (out >= inf) out = inf;  // overflow rounds to Inf
  return static_cast<std::uint16_t>(sign | out);
}

std::uint16_t reference_half(float f) { return reference_round(f, 10, -14, 15); }
std::uint16_t reference_bf16(float f) { return reference_round(f, 7, -126, 127); }

// Floats worth checking: every combination of the top 16 bits (sign, exponent, top mantissa
// bits) with low halves that sit on, beside and between rounding ties, plus random patterns.
std::vector<float> sample_floats() {
  std::vector<float> out;
  const std::uint32_t lows[] = {0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x1FFF, 0x2000,
                                0x3000, 0x5000, 0x7FFF, 0x8000, 0x8001, 0xF000, 0xFFFF};
  for (std::uint32_t hi = 0; hi < 0x10000; ++hi)
    for (std::uint32_t lo : lows) out.push_back(f32((hi << 16) | lo));
  std::mt19937 rng(12345);
  for (int i = 0; i < 1'000'000; ++i) out.push_back(f32(static_cast<std::uint32_t>(rng())));
  return out;
}

// ---- binary16 -------------------------------------------------------------------------------

TEST(Float16, HalfToFloatMatchesTheDefinitionForAllPatterns) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_bits_to_float(static_cast<std::uint16_t>(h));
    const int exp = (h >> 10) & 0x1F;
    const int mant = h & 0x3FF;
    const double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exp == 0x1F && mant != 0) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;
      EXPECT_EQ(bits(f) & 0x7FFFFFu, 0x400000u | (static_cast<std::uint32_t>(mant) << 13))
          << "NaN payload kept and quiet bit set, " << std::hex << h;
      continue;
    }
    double want;
    if (exp == 0x1F)
      want = sign * std::numeric_limits<double>::infinity();
    else if (exp == 0)
      want = sign * std::ldexp(mant, -24);
    else
      want = sign * std::ldexp(1024 + mant, exp - 25);
    ASSERT_EQ(static_cast<double>(f), want) << std::hex << h;
    ASSERT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;  // -0 stays -0
  }
}

TEST(Float16, RoundTripIsExactForAllNonNaNPatterns) {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto h16 = static_cast<std::uint16_t>(h);
    const std::uint16_t back = float_to_half_bits(half_bits_to_float(h16));
    if (is_nan16(h16, 10))
      ASSERT_EQ(back, h16 | 0x0200) << "NaN comes back quiet, same payload: " << std::hex << h;
    else
      ASSERT_EQ(back, h16) << std::hex << h;
  }
}

TEST(Float16, RoundingTiesToEvenOnHandPickedValues) {
  struct Case {
    float in;
    std::uint16_t want;
  };
  const float ulp1 = std::ldexp(1.0f, -10);  // binary16 spacing just above 1.0
  const Case cases[] = {
      {1.0f, 0x3C00},
      {1.0f + ulp1 / 2, 0x3C00},                        // tie, 0x3C00 is even
      {std::nextafter(1.0f + ulp1 / 2, 2.0f), 0x3C01},  // just above the tie
      {std::nextafter(1.0f + ulp1 / 2, 0.0f), 0x3C00},  // just below
      {1.0f + 3 * ulp1 / 2, 0x3C02},                    // tie, 0x3C01 odd: up
      {2049.0f, 0x6800},                                // 2048 | 2050: to 2048
      {2051.0f, 0x6802},                                // 2050 | 2052: to 2052
      {-2051.0f, 0xE802},
      {65504.0f, 0x7BFF},  // largest finite
      {65519.0f, 0x7BFF},
      {std::nextafter(65520.0f, 0.0f), 0x7BFF},
      {65520.0f, 0x7C00},  // tie with 2^16: Inf
      {1e6f, 0x7C00},
      {-1e6f, 0xFC00},
      {std::numeric_limits<float>::max(), 0x7C00},
      {std::numeric_limits<float>::infinity(), 0x7C00},
      {-std::numeric_limits<float>::infinity(), 0xFC00},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {std::ldexp(1.0f, -14), 0x0400},     // smallest normal
      {std::ldexp(1023.0f, -24), 0x03FF},  // largest subnormal
      {std::ldexp(1023.5f, -24), 0x0400},  // tie, 0x3FF odd: up
      {std::ldexp(1.0f, -24), 0x0001},     // smallest subnormal
      {std::ldexp(1.0f, -25), 0x0000},     // tie with 0: to 0
      {std::nextafter(std::ldexp(1.0f, -25), 1.0f), 0x0001},
      {-std::ldexp(1.0f, -25), 0x8000},
      {std::ldexp(3.0f, -25), 0x0002},  // 1.5 ulp: to 2
      {std::ldexp(5.0f, -25), 0x0002},  // 2.5 ulp: to 2
      {std::ldexp(7.0f, -25), 0x0004},  // 3.5 ulp: to 4
      {std::numeric_limits<float>::denorm_min(), 0x0000},
      {-std::numeric_limits<float>::denorm_min(), 0x8000},
      {f32(0x7FC00000), 0x7E00},  // quiet NaN
      {f32(0xFFC00000), 0xFE00},  // negative NaN
      {f32(0x7FC02000), 0x7E01},  // payload kept
      {f32(0x7F800001), 0x7E00},  // signalling NaN whose payload is all in the dropped bits:
                                  // must stay NaN, not become Inf
      {f32(0x7FA00000), 0x7F00},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(float_to_half_bits(c.in), c.want)
        << "in=" << c.in << " (0x" << std::hex << bits(c.in) << ")";
    if (!std::isnan(c.in)) {
      EXPECT_EQ(reference_half(c.in), c.want) << "reference, 0x" << std::hex << bits(c.in);
    }
  }
}

TEST(Float16, FloatToHalfMatchesReferenceOnSampledFloats) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  for (float f : sample_floats()) {
    const std::uint16_t got = float_to_half_bits(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_nan16(got, 10)) << std::hex << bits(f);
      ASSERT_EQ(got, ((bits(f) >> 16) & 0x8000) | 0x7E00 | ((bits(f) >> 13) & 0x3FF));
    } else {
      ASSERT_EQ(got, reference_half(f)) << "float 0x" << std::hex << bits(f) << " = " << f;
    }
  }
}

TEST(Float16, StorageTypeConverts) {
  EXPECT_EQ(Float16(1.5f).bits, 0x3E00);
  EXPECT_EQ(static_cast<float>(Float16::from_bits(0xC000)), -2.0f);
  static_assert(Float16(0.5f).bits == 0x3800, "usable in constant expressions");
}

// ---- F16C versus portable -------------------------------------------------------------------

TEST(Float16, F16cAndPortableAgreeOnAllHalfPatterns) {
  if (!detail::have_f16c()) GTEST_SKIP() << "CPU has no F16C; only the portable path runs";
  std::vector<Float16> in(0x10000);
  for (std::uint32_t h = 0; h < 0x10000; ++h) in[h].bits = static_cast<std::uint16_t>(h);
  std::vector<float> a(in.size()), b(in.size());
  detail::to_float_portable(in.data(), a.data(), in.size());
  detail::to_float_f16c(in.data(), b.data(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i)
    ASSERT_EQ(bits(a[i]), bits(b[i])) << "half 0x" << std::hex << i;
}

TEST(Float16, F16cAndPortableAgreeOnSampledFloats) {
  if (!detail::have_f16c()) GTEST_SKIP() << "CPU has no F16C; only the portable path runs";
  const std::vector<float> in = sample_floats();
  std::vector<Float16> a(in.size()), b(in.size());
  detail::from_float_portable(in.data(), a.data(), in.size());
  detail::from_float_f16c(in.data(), b.data(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i)
    ASSERT_EQ(a[i].bits, b[i].bits) << "float 0x" << std::hex << bits(in[i]);
}

// The vector path converts 8 at a time; counts that are not multiples of 8 use the tail code,
// which must neither skip elements nor write past the end.
TEST(Float16, BulkConversionHandlesOddCounts) {
  for (std::size_t count : {0u, 1u, 7u, 8u, 9u, 15u, 17u, 1003u}) {
    std::vector<float> src(count + 1);
    for (std::size_t i = 0; i < count; ++i) src[i] = static_cast<float>(i) * 0.37f - 11.0f;
    std::vector<Float16> h(count + 1, Float16::from_bits(0xAAAA));
    from_float(src.data(), h.data(), count);
    EXPECT_EQ(h[count].bits, 0xAAAA) << "wrote past the end, count " << count;
    std::vector<float> back(count + 1, -7.0f);
    to_float(h.data(), back.data(), count);
    EXPECT_EQ(back[count], -7.0f) << "wrote past the end, count " << count;
    for (std::size_t i = 0; i < count; ++i) {
      ASSERT_EQ(h[i].bits, float_to_half_bits(src[i])) << i;
      ASSERT_EQ(bits(back[i]), bits(half_bits_to_float(h[i].bits))) << i;
    }
  }
}

// ---- bfloat16 -------------------------------------------------------------------------------

TEST(BFloat16, RoundTripIsExactForAllNonNaNPatterns) {
  for (std::uint32_t b = 0; b < 0x10000; ++b) {
    const auto b16 = static_cast<std::uint16_t>(b);
    const float f = bf16_bits_to_float(b16);
    ASSERT_EQ(bits(f), b << 16) << std::hex << b;  // widening is exact, NaN included
    const std::uint16_t back = float_to_bf16_bits(f);
    if (is_nan16(b16, 7))
      ASSERT_EQ(back, b16 | 0x0040) << "NaN comes back quiet: " << std::hex << b;
    else
      ASSERT_EQ(back, b16) << std::hex << b;
  }
}

TEST(BFloat16, RoundingTiesToEvenOnHandPickedValues) {
  struct Case {
    float in;
    std::uint16_t want;
  };
  const float ulp1 = std::ldexp(1.0f, -7);
  const Case cases[] = {
      {1.0f, 0x3F80},
      {1.0f + ulp1 / 2, 0x3F80},                        // tie, even stays
      {std::nextafter(1.0f + ulp1 / 2, 2.0f), 0x3F81},  // just above
      {1.0f + 3 * ulp1 / 2, 0x3F82},                    // tie, odd rounds up
      {std::numeric_limits<float>::max(), 0x7F80},      // rounds up to Inf
      {f32(0x7F7F7FFF), 0x7F7F},                        // just below the tie: largest finite
      {f32(0x7F7F8000), 0x7F80},                        // tie, 0x7F7F odd: Inf
      {-std::numeric_limits<float>::infinity(), 0xFF80},
      {std::numeric_limits<float>::denorm_min(), 0x0000},  // tie-free tiny: 0
      {f32(0x00008000), 0x0000},                           // subnormal tie, even: 0
      {f32(0x00018000), 0x0002},                           // subnormal tie, odd: up
      {-0.0f, 0x8000},
      {f32(0x7F800001), 0x7FC0},  // signalling NaN with low payload stays NaN
      {f32(0xFFC00000), 0xFFC0},
  };
  for (const Case& c : cases)
    EXPECT_EQ(float_to_bf16_bits(c.in), c.want) << "float 0x" << std::hex << bits(c.in);
}

TEST(BFloat16, FloatToBf16MatchesReferenceOnSampledFloats) {
  for (float f : sample_floats()) {
    const std::uint16_t got = float_to_bf16_bits(f);
    if (std::isnan(f))
      ASSERT_EQ(got, static_cast<std::uint16_t>((bits(f) >> 16) | 0x40)) << std::hex << bits(f);
    else
      ASSERT_EQ(got, reference_bf16(f)) << "float 0x" << std::hex << bits(f) << " = " << f;
  }
}

TEST(BFloat16, BulkConversionMatchesScalar) {
  const std::vector<float> in = sample_floats();
  std::vector<BFloat16> h(in.size());
  from_float(in.data(), h.data(), in.size());
  std::vector<float> back(in.size());
  to_float(h.data(), back.data(), in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    ASSERT_EQ(h[i].bits, float_to_bf16_bits(in[i])) << i;
    ASSERT_EQ(bits(back[i]), static_cast<std::uint32_t>(h[i].bits) << 16) << i;
  }
}

}  // namespace
}  // namespace rdmacoll::collectives
