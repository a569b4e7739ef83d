// reduce_into / finalize_avg against a straightforward per-element reference, for every
// data type x op, at counts that exercise empty, scalar, sub-vector and long-with-tail loops.
#include "rdmacoll/collectives/reduce.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "rdmacoll/collectives/half.h"

namespace rdmacoll::collectives {
namespace {

template <class T>
constexpr bool kIs16 = std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>;

// Calls f(T{}) with the storage type of `type`.
template <class F>
void with_type(DataType type, F&& f) {
  switch (type) {
    case DataType::f32: return f(float{});
    case DataType::f64: return f(double{});
    case DataType::f16: return f(Float16{});
    case DataType::bf16: return f(BFloat16{});
    case DataType::i8: return f(std::int8_t{});
    case DataType::u8: return f(std::uint8_t{});
    case DataType::i32: return f(std::int32_t{});
    case DataType::i64: return f(std::int64_t{});
  }
  FAIL() << "bad type";
}

// ---- reference ------------------------------------------------------------------------------

template <class T>
T ref_combine(ReduceOp op, T a, T b) {
  if constexpr (kIs16<T>) {
    return T(ref_combine(op, static_cast<float>(a), static_cast<float>(b)));
  } else if constexpr (std::is_floating_point_v<T>) {
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::avg: return a + b;
      case ReduceOp::prod: return a * b;
      case ReduceOp::min:
        if (std::isnan(a)) return a;
        if (std::isnan(b)) return b;
        return std::fmin(a, b);
      case ReduceOp::max:
        if (std::isnan(a)) return a;
        if (std::isnan(b)) return b;
        return std::fmax(a, b);
    }
  } else {
    // Wrap-around arithmetic written as "compute mod 2^64, keep the low bits".
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::avg:
        return static_cast<T>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
      case ReduceOp::prod:
        return static_cast<T>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
      case ReduceOp::min: return a < b ? a : b;
      case ReduceOp::max: return a > b ? a : b;
    }
  }
  return a;
}

template <class T>
T ref_divide(T a, std::size_t n) {
  if constexpr (kIs16<T>)
    return T(static_cast<float>(a) / static_cast<float>(n));
  else if constexpr (std::is_floating_point_v<T>)
    return a / static_cast<T>(n);
  else
    return static_cast<T>(static_cast<std::int64_t>(a) / static_cast<std::int64_t>(n));
}

// Equal as the documentation promises: NaN matches any NaN (which payload survives an add is
// the hardware's business); min/max compare by value because +-0 may come out either way;
// everything else bit for bit.
template <class T>
bool same(ReduceOp op, T got, T want) {
  if constexpr (kIs16<T>) {
    return same(op, static_cast<float>(got), static_cast<float>(want));
  } else if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(got) || std::isnan(want)) return std::isnan(got) && std::isnan(want);
    if (op == ReduceOp::min || op == ReduceOp::max) return got == want;
    return std::memcmp(&got, &want, sizeof(T)) == 0;
  } else {
    return got == want;
  }
}

template <class T>
double as_double(T v) {
  if constexpr (kIs16<T>)
    return static_cast<double>(static_cast<float>(v));
  else
    return static_cast<double>(v);
}

// ---- inputs ---------------------------------------------------------------------------------

// Random values of T with the awkward ones (NaN, Inf, +-0, subnormals, extremes) mixed in.
template <class T>
std::vector<T> make_input(std::size_t count, std::mt19937_64& rng) {
  std::vector<T> v(count);
  if constexpr (kIs16<T>) {
    for (auto& x : v) x = T::from_bits(static_cast<std::uint16_t>(rng()));  // any pattern
  } else if constexpr (std::is_floating_point_v<T>) {
    using L = std::numeric_limits<T>;
    const T specials[] = {L::quiet_NaN(), -L::quiet_NaN(), L::infinity(), -L::infinity(), T(0),
                          -T(0),          L::denorm_min(), L::max(),      L::lowest(),    L::min()};
    std::uniform_real_distribution<T> dist(T(-1000), T(1000));
    for (std::size_t i = 0; i < count; ++i)
      v[i] = i % 61 == 5 ? specials[(i / 61) % std::size(specials)] : dist(rng);
  } else {
    for (auto& x : v) x = static_cast<T>(rng());  // full range, so sums and products wrap
  }
  return v;
}

// ---- every type x op x count ----------------------------------------------------------------

using Param = std::tuple<DataType, ReduceOp, std::size_t>;

class ReduceAll : public ::testing::TestWithParam<Param> {};

// Three "ranks" reduced into the first one, like a ring step would, then finalized for avg.
TEST_P(ReduceAll, MatchesReference) {
  const auto [type, op, count] = GetParam();
  with_type(type, [&, type = type, op = op, count = count](auto tag) {
    using T = decltype(tag);
    std::mt19937_64 rng(count * 131 + static_cast<std::size_t>(type) * 7 +
                        static_cast<std::size_t>(op));
    std::vector<T> r0 = make_input<T>(count, rng);
    const std::vector<T> r1 = make_input<T>(count, rng);
    const std::vector<T> r2 = make_input<T>(count, rng);
    std::vector<T> want = r0;
    for (std::size_t i = 0; i < count; ++i) {
      want[i] = ref_combine(op, ref_combine(op, want[i], r1[i]), r2[i]);
      if (op == ReduceOp::avg) want[i] = ref_divide(want[i], 3);
    }

    // The same through reduce_to (out of place), which must agree (bit for bit but for NaN payloads).
    std::vector<T> out(count), out2(count);
    reduce_to(type, op, out.data(), r0.data(), r1.data(), count);
    reduce_to(type, op, out2.data(), out.data(), r2.data(), count);

    reduce_into(type, op, r0.data(), r1.data(), count);
    reduce_into(type, op, r0.data(), r2.data(), count);
    if (op == ReduceOp::avg) finalize_avg(type, r0.data(), count, 3);
    if (op == ReduceOp::avg) finalize_avg(type, out2.data(), count, 3);

    for (std::size_t i = 0; i < count; ++i) {
      ASSERT_TRUE(same(op, r0[i], want[i]))
          << "element " << i << ": got " << as_double(r0[i]) << ", want " << as_double(want[i]);
      ASSERT_TRUE(same(op, out2[i], r0[i]))
          << "reduce_to, element " << i << ": got " << as_double(out2[i]) << ", reduce_into gave " << as_double(r0[i]);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(AllTypesOpsCounts, ReduceAll,
                         ::testing::Combine(::testing::ValuesIn(kAllDataTypes),
                                            ::testing::ValuesIn(kAllReduceOps),
                                            ::testing::Values(std::size_t{0}, std::size_t{1},
                                                              std::size_t{7},
                                                              std::size_t{1000003})),
                         [](const ::testing::TestParamInfo<Param>& p) {
                           return std::string(to_string(std::get<0>(p.param))) + "_" +
                                  std::string(to_string(std::get<1>(p.param))) + "_" +
                                  std::to_string(std::get<2>(p.param));
                         });

// Buffers inside a larger allocation start at arbitrary element offsets; vector loops must
// not assume alignment.
TEST(Reduce, UnalignedBuffers) {
  for (DataType type : kAllDataTypes) {
    with_type(type, [&](auto tag) {
      using T = decltype(tag);
      std::mt19937_64 rng(7);
      const std::size_t count = 100003;
      std::vector<T> a = make_input<T>(count + 3, rng);
      const std::vector<T> b = make_input<T>(count + 3, rng);
      std::vector<T> want(a.begin() + 1, a.begin() + 1 + count);
      for (std::size_t i = 0; i < count; ++i)
        want[i] = ref_combine(ReduceOp::max, want[i], b[i + 3]);
      reduce_into(type, ReduceOp::max, a.data() + 1, b.data() + 3, count);
      for (std::size_t i = 0; i < count; ++i)
        ASSERT_TRUE(same(ReduceOp::max, a[i + 1], want[i])) << to_string(type) << " " << i;
    });
  }
}

// ---- documented corner cases ----------------------------------------------------------------

TEST(Reduce, IntegerSumAndProdWrapAround) {
  std::int8_t i8[] = {127, -128, 16, -1};
  const std::int8_t i8_src[] = {1, -1, 16, -128};
  reduce_into(DataType::i8, ReduceOp::sum, i8, i8_src, 4);
  EXPECT_EQ(i8[0], -128);
  EXPECT_EQ(i8[1], 127);
  EXPECT_EQ(i8[2], 32);
  EXPECT_EQ(i8[3], 127);

  std::int8_t i8p[] = {16, -128, 3};
  const std::int8_t i8p_src[] = {16, -1, 100};
  reduce_into(DataType::i8, ReduceOp::prod, i8p, i8p_src, 3);
  EXPECT_EQ(i8p[0], 0);     // 256 mod 256
  EXPECT_EQ(i8p[1], -128);  // 128 wraps to -128
  EXPECT_EQ(i8p[2], 44);    // 300 - 256

  std::uint8_t u8[] = {255, 16};
  const std::uint8_t u8_src[] = {1, 17};
  reduce_into(DataType::u8, ReduceOp::sum, u8, u8_src, 2);
  EXPECT_EQ(u8[0], 0);
  std::uint8_t u8p[] = {255, 16};
  reduce_into(DataType::u8, ReduceOp::prod, u8p, u8_src, 2);
  EXPECT_EQ(u8p[1], 16);  // 272 mod 256

  using L32 = std::numeric_limits<std::int32_t>;
  std::int32_t i32[] = {L32::max(), 65536, L32::min()};
  const std::int32_t i32_src[] = {1, 65536, -1};
  reduce_into(DataType::i32, ReduceOp::sum, i32, i32_src, 3);
  EXPECT_EQ(i32[0], L32::min());
  EXPECT_EQ(i32[2], L32::max());
  std::int32_t i32p[] = {L32::max(), 65536, L32::min()};
  reduce_into(DataType::i32, ReduceOp::prod, i32p, i32_src, 3);
  EXPECT_EQ(i32p[1], 0);           // 2^32
  EXPECT_EQ(i32p[2], L32::min());  // -(-2^31) wraps

  using L64 = std::numeric_limits<std::int64_t>;
  std::int64_t i64[] = {L64::max(), L64::min()};
  const std::int64_t i64_src[] = {1, -1};
  reduce_into(DataType::i64, ReduceOp::sum, i64, i64_src, 2);
  EXPECT_EQ(i64[0], L64::min());
  EXPECT_EQ(i64[1], L64::max());
  std::int64_t i64p[] = {L64::min(), std::int64_t{1} << 32};
  const std::int64_t i64p_src[] = {-1, std::int64_t{1} << 32};
  reduce_into(DataType::i64, ReduceOp::prod, i64p, i64p_src, 2);
  EXPECT_EQ(i64p[0], L64::min());
  EXPECT_EQ(i64p[1], 0);
}

float nan_with_payload(std::uint32_t payload) {
  return std::bit_cast<float>(0x7FC00000u | payload);
}
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// Documented: if either operand is NaN the result is NaN, dst's own if dst is NaN.
TEST(Reduce, MinMaxPropagateNaN) {
  for (ReduceOp op : {ReduceOp::min, ReduceOp::max}) {
    float dst[] = {nan_with_payload(1), 1.0f, nan_with_payload(3), 2.0f, 5.0f};
    const float src[] = {1.0f, nan_with_payload(2), nan_with_payload(4), 3.0f, -5.0f};
    reduce_into(DataType::f32, op, dst, src, 5);
    EXPECT_EQ(bits(dst[0]), bits(nan_with_payload(1))) << to_string(op);
    EXPECT_EQ(bits(dst[1]), bits(nan_with_payload(2))) << to_string(op);
    EXPECT_EQ(bits(dst[2]), bits(nan_with_payload(3))) << to_string(op);
    EXPECT_EQ(dst[3], op == ReduceOp::min ? 2.0f : 3.0f);
    EXPECT_EQ(dst[4], op == ReduceOp::min ? -5.0f : 5.0f);

    const double nan = std::numeric_limits<double>::quiet_NaN();
    double d[] = {nan, 1.0, 1.0};
    const double s[] = {1.0, nan, 2.0};
    reduce_into(DataType::f64, op, d, s, 3);
    EXPECT_TRUE(std::isnan(d[0]));
    EXPECT_TRUE(std::isnan(d[1]));
    EXPECT_EQ(d[2], op == ReduceOp::min ? 1.0 : 2.0);

    Float16 h[] = {Float16::from_bits(0x7E01), Float16(1.0f)};
    const Float16 hs[] = {Float16(1.0f), Float16::from_bits(0xFE02)};
    reduce_into(DataType::f16, op, h, hs, 2);
    EXPECT_EQ(h[0].bits, 0x7E01);
    EXPECT_EQ(h[1].bits, 0xFE02);

    BFloat16 b[] = {BFloat16(1.0f), BFloat16::from_bits(0x7FC1)};
    const BFloat16 bs[] = {BFloat16::from_bits(0xFFC0), BFloat16(1.0f)};
    reduce_into(DataType::bf16, op, b, bs, 2);
    EXPECT_EQ(b[0].bits, 0xFFC0);
    EXPECT_EQ(b[1].bits, 0x7FC1);
  }
}

// 16-bit floats are combined in float and rounded once (ties to even).
TEST(Reduce, SixteenBitFloatsRoundOnce) {
  Float16 h[] = {Float16(2048.0f), Float16(2050.0f), Float16(60000.0f)};
  const Float16 hs[] = {Float16(1.0f), Float16(1.0f), Float16(10000.0f)};
  reduce_into(DataType::f16, ReduceOp::sum, h, hs, 3);
  EXPECT_EQ(static_cast<float>(h[0]), 2048.0f);  // 2049: tie, to even
  EXPECT_EQ(static_cast<float>(h[1]), 2052.0f);  // 2051: tie, to even
  EXPECT_TRUE(std::isinf(static_cast<float>(h[2])));

  BFloat16 b[] = {BFloat16(256.0f), BFloat16(258.0f)};
  const BFloat16 bs[] = {BFloat16(1.0f), BFloat16(1.0f)};
  reduce_into(DataType::bf16, ReduceOp::sum, b, bs, 2);
  EXPECT_EQ(static_cast<float>(b[0]), 256.0f);
  EXPECT_EQ(static_cast<float>(b[1]), 260.0f);
}

TEST(FinalizeAvg, IntegersTruncateTowardZero) {
  std::int32_t i32[] = {-7, 7, -1, 1, 0, std::numeric_limits<std::int32_t>::min()};
  finalize_avg(DataType::i32, i32, 6, 2);
  EXPECT_EQ(i32[0], -3);
  EXPECT_EQ(i32[1], 3);
  EXPECT_EQ(i32[2], 0);
  EXPECT_EQ(i32[3], 0);
  EXPECT_EQ(i32[4], 0);
  EXPECT_EQ(i32[5], -1073741824);

  std::int8_t i8[] = {-128, 127, -128};
  finalize_avg(DataType::i8, i8, 2, 128);
  EXPECT_EQ(i8[0], -1);
  EXPECT_EQ(i8[1], 0);
  EXPECT_EQ(i8[2], -128);  // beyond count: untouched

  std::uint8_t u8[] = {255, 3};
  finalize_avg(DataType::u8, u8, 2, 2);
  EXPECT_EQ(u8[0], 127);
  EXPECT_EQ(u8[1], 1);

  using L64 = std::numeric_limits<std::int64_t>;
  std::int64_t i64[] = {L64::min(), L64::max(), L64::min(), -5};
  finalize_avg(DataType::i64, i64, 1, 1);
  EXPECT_EQ(i64[0], L64::min());
  finalize_avg(DataType::i64, i64 + 1, 3, std::numeric_limits<std::size_t>::max());
  EXPECT_EQ(i64[1], 0);
  EXPECT_EQ(i64[2], 0);
  EXPECT_EQ(i64[3], 0);
  std::int64_t most_negative = L64::min();
  finalize_avg(DataType::i64, &most_negative, 1, std::size_t{1} << 63);
  EXPECT_EQ(most_negative, -1);
}

TEST(FinalizeAvg, FloatsDivide) {
  float f[] = {3.0f, -1.0f, 1.0f};
  finalize_avg(DataType::f32, f, 3, 3);
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[1], -1.0f / 3.0f);
  EXPECT_EQ(f[2], 1.0f / 3.0f);
  double d[] = {1.0};
  finalize_avg(DataType::f64, d, 1, 4);
  EXPECT_EQ(d[0], 0.25);
  Float16 h[] = {Float16(1.0f)};
  finalize_avg(DataType::f16, h, 1, 3);
  EXPECT_EQ(h[0].bits, float_to_half_bits(1.0f / 3.0f));
  BFloat16 b[] = {BFloat16(1.0f)};
  finalize_avg(DataType::bf16, b, 1, 3);
  EXPECT_EQ(b[0].bits, float_to_bf16_bits(1.0f / 3.0f));
}

// ---- argument checks ------------------------------------------------------------------------

TEST(Reduce, NullPointersAreOnlyFineWithCountZero) {
  EXPECT_NO_THROW(reduce_into(DataType::f32, ReduceOp::sum, nullptr, nullptr, 0));
  EXPECT_NO_THROW(finalize_avg(DataType::f32, nullptr, 0, 4));
  float x = 1;
  EXPECT_THROW(reduce_into(DataType::f32, ReduceOp::sum, nullptr, &x, 1), std::invalid_argument);
  EXPECT_THROW(reduce_into(DataType::f32, ReduceOp::sum, &x, nullptr, 1), std::invalid_argument);
  EXPECT_THROW(finalize_avg(DataType::f32, nullptr, 1, 4), std::invalid_argument);
  try {
    reduce_into(DataType::i32, ReduceOp::sum, &x, nullptr, 1);
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "reduce_into: src is null with count 1");
  }
}

TEST(Reduce, RejectsOverlapZeroRanksAndBadEnums) {
  float buf[4] = {1, 2, 3, 4};
  EXPECT_THROW(reduce_into(DataType::f32, ReduceOp::sum, buf, buf, 4), std::invalid_argument);
  EXPECT_THROW(reduce_into(DataType::f32, ReduceOp::sum, buf, buf + 1, 2), std::invalid_argument);
  EXPECT_NO_THROW(reduce_into(DataType::f32, ReduceOp::sum, buf, buf + 2, 2));  // adjacent
  EXPECT_EQ(buf[0], 4.0f);
  EXPECT_THROW(finalize_avg(DataType::f32, buf, 4, 0), std::invalid_argument);
  EXPECT_THROW(reduce_into(static_cast<DataType>(42), ReduceOp::sum, buf, buf + 2, 1),
               std::invalid_argument);
  EXPECT_THROW(reduce_into(DataType::f32, static_cast<ReduceOp>(42), buf, buf + 2, 1),
               std::invalid_argument);
  EXPECT_THROW(finalize_avg(static_cast<DataType>(42), buf, 1, 2), std::invalid_argument);
  EXPECT_THROW(reduce_into(DataType::f64, ReduceOp::sum, buf, buf + 2,
                           std::numeric_limits<std::size_t>::max() / 4),
               std::invalid_argument);  // count * 8 bytes wraps size_t
}

TEST(Reduce, ReduceToRejectsNullsAndOverlapWithDst) {
  float a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, 40}, out[8] = {};
  EXPECT_NO_THROW(reduce_to(DataType::f32, ReduceOp::sum, nullptr, nullptr, nullptr, 0));
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, out, nullptr, b, 4), std::invalid_argument);
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, out, a, nullptr, 4), std::invalid_argument);
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, nullptr, a, b, 4), std::invalid_argument);
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, a, a, b, 4), std::invalid_argument);  // dst is a
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, out + 1, out, b, 4), std::invalid_argument);
  EXPECT_THROW(reduce_to(DataType::f32, ReduceOp::sum, out + 2, a, out, 4), std::invalid_argument);
  EXPECT_THROW(reduce_to(DataType::f32, static_cast<ReduceOp>(42), out, a, b, 4), std::invalid_argument);
  reduce_to(DataType::f32, ReduceOp::max, out, a, a, 4);  // a and b may be one array
  EXPECT_EQ(out[3], 4.0f);
  reduce_to(DataType::f32, ReduceOp::sum, out + 4, a, b, 4);  // adjacent to dst's neighbour
  EXPECT_EQ(out[7], 44.0f);
  try {
    reduce_to(DataType::f32, ReduceOp::sum, out + 1, out, b, 4);
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "reduce_to: dst and a overlap (16 bytes each, 4 bytes apart)");
  }
}

}  // namespace
}  // namespace rdmacoll::collectives
