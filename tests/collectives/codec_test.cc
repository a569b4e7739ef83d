// The compression codecs (codec.h): names, wire sizes, error bounds on awkward inputs,
// non-finite reporting, decode_add, error feedback (bitwise), and the AVX2 kernels against the
// portable ones bit for bit. The statistical checks are in codec_stats_test.cc.
#include "rdmacoll/collectives/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "rdmacoll/error.h"

namespace rdmacoll::collectives {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Every kind, with default and small blocks, and the extremes of the parameters.
const std::vector<std::string> kCodecs = {
    "none",       "fp16",       "bf16",     "int8",    "int8:64",  "sign",     "sign:64",
    "qsgd:1",     "qsgd:4",     "qsgd:127:64", "qsgd:1000", "qsgd:4:16", "qsgd:4:48", "qsgd:8:128",
    "terngrad",   "terngrad:64",
    "topk:0.1",   "topk:1",     "randk:0.1", "randk:1"};

std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }

// The block/bucket size of a codec, or 256 for those without one: sizes block-1 and block+1.
std::size_t block_of(const Codec& c) { return c.spec().block ? c.spec().block : 256; }

std::vector<std::size_t> sizes_for(const Codec& c) {
  const std::size_t b = block_of(c);
  return {0, 1, 7, b - 1, b + 1, 65537};
}

enum class Input { random, constant, zero, denormal, huge, mixed_scale };
const Input kInputs[] = {Input::random, Input::constant, Input::zero, Input::denormal, Input::huge,
                         Input::mixed_scale};

std::vector<float> make_input(Input kind, std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (kind) {
      case Input::random: x[i] = normal(gen); break;
      case Input::constant: x[i] = -0.375f; break;
      case Input::zero: x[i] = 0.0f; break;
      case Input::denormal: x[i] = std::bit_cast<float>(static_cast<std::uint32_t>(gen() & 0x807FFFFFu)); break;
      case Input::huge: x[i] = normal(gen) * 1e37f; break;
      case Input::mixed_scale: x[i] = normal(gen) * std::ldexp(1.0f, static_cast<int>(gen() % 80) - 40); break;
    }
  }
  return x;
}

struct Encoded {
  std::vector<std::byte> wire;
  EncodeStats stats;
  std::vector<float> decoded;
};

// Encodes into a buffer with a 64-byte canary after wire_bytes(n) and checks encode wrote
// exactly wire_bytes(n) bytes, every one of them, and reported that size.
Encoded round_trip(const Codec& c, const std::vector<float>& x, std::uint64_t seed = 42) {
  const std::size_t n = x.size(), wb = c.wire_bytes(n);
  Encoded e;
  e.wire.assign(wb + 64, std::byte{0xA5});
  e.stats = c.encode(x.data(), n, e.wire.data(), seed);
  EXPECT_EQ(e.stats.bytes, wb) << c.name() << " n=" << n;
  for (std::size_t i = wb; i < wb + 64; ++i)
    if (e.wire[i] != std::byte{0xA5}) {
      ADD_FAILURE() << c.name() << " n=" << n << " wrote past wire_bytes at byte " << i;
      break;
    }
  e.wire.resize(wb);
  // Every byte of the encoding is written: encoding over a different fill gives the same bytes.
  std::vector<std::byte> again(wb, std::byte{0x5A});
  c.encode(x.data(), n, again.data(), seed);
  EXPECT_EQ(again, e.wire) << c.name() << " n=" << n << " leaves wire bytes unwritten";
  e.decoded.assign(n, std::numeric_limits<float>::signaling_NaN());
  c.decode(e.wire.data(), n, e.decoded.data());
  return e;
}

// ---- names ----------------------------------------------------------------------------------

TEST(CodecSpec, ParsesEveryFormAndNamesItCanonically) {
  const std::pair<const char*, const char*> cases[] = {
      {"none", "none"},         {"fp16", "fp16"},           {"bf16", "bf16"},
      {"int8", "int8:256"},     {"int8:64", "int8:64"},     {"sign", "sign:256"},
      {"sign:1024", "sign:1024"}, {"qsgd:4", "qsgd:4:64"}, {"qsgd:4:128", "qsgd:4:128"},
      {"terngrad", "terngrad:512"}, {"topk:0.01", "topk:0.01"}, {"randk:1", "randk:1"},
      {"powersgd:4", "powersgd:4"}};
  for (const auto& [in, canonical] : cases) {
    const CodecSpec s = parse_codec(in);
    EXPECT_EQ(s.name(), canonical) << in;
    EXPECT_EQ(parse_codec(s.name()).name(), canonical) << in;
  }
  const CodecSpec q = parse_codec("qsgd:7:64");
  EXPECT_EQ(q.kind, CodecKind::qsgd);
  EXPECT_EQ(q.levels, 7u);
  EXPECT_EQ(q.block, 64u);
  EXPECT_EQ(parse_codec("powersgd:3").rank, 3u);
  EXPECT_DOUBLE_EQ(parse_codec("topk:0.25").fraction, 0.25);
}

TEST(CodecSpec, BadNamesSayWhatIsWrongAndListTheValidForms) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "unknown codec"},          {"fp8", "unknown codec 'fp8'"},
      {"int8:100", "multiple of 8"},  {"int8:0", "multiple of 8"},
      {"int8:abc", "not a whole number"}, {"sign:8:8", "takes 0 or 1"},
      {"qsgd", "takes 1 or 2"},       {"qsgd:0", "not in [1, 32767]"},
      {"qsgd:40000", "not in [1, 32767]"}, {"topk:0", "(0, 1]"},
      {"topk:1.5", "(0, 1]"},         {"randk:x", "(0, 1]"},
      {"fp16:2", "takes 0"},          {"powersgd:0", "rank"},
      {"int8:-8", "not a whole number"}, {"FP16", "unknown codec"}};
  for (const auto& [name, why] : cases) {
    try {
      parse_codec(name);
      ADD_FAILURE() << "'" << name << "' parsed";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("codec '" + std::string(name) + "'"), std::string::npos) << msg;
      EXPECT_NE(msg.find(why), std::string::npos) << msg;
      EXPECT_NE(msg.find("valid forms: none, fp16, bf16, int8[:BLOCK]"), std::string::npos) << msg;
    }
  }
}

TEST(CodecSpec, PowerSgdParsesButIsNotAnElementCodec) {
  try {
    make_codec("powersgd:2");
    ADD_FAILURE() << "make_codec built powersgd";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not an element codec"), std::string::npos) << e.what();
  }
}

TEST(Codec, Properties) {
  struct P {
    const char* name;
    bool unbiased, deterministic, sparse, exact;
  };
  const P cases[] = {{"none", true, true, false, true},       {"fp16", false, true, false, true},
                     {"bf16", false, true, false, true},      {"int8", false, true, false, true},
                     {"sign", false, true, false, false},     {"qsgd:4", true, false, false, false},
                     {"terngrad", true, false, false, false}, {"topk:0.1", false, true, true, true},
                     {"randk:0.1", true, false, true, false}};
  for (const P& p : cases) {
    const auto c = make_codec(p.name);
    EXPECT_EQ(c->unbiased(), p.unbiased) << p.name;
    EXPECT_EQ(c->deterministic(), p.deterministic) << p.name;
    EXPECT_EQ(c->sparse(), p.sparse) << p.name;
    EXPECT_EQ(c->exact_feedback(), p.exact) << p.name;
  }
}

// ---- wire sizes and compression ratios ---------------------------------------------------------

TEST(Codec, WireBytesAreTheDocumentedFormats) {
  const std::size_t n = 1 << 20;
  const auto bytes = [&](const char* name) { return make_codec(name)->wire_bytes(n); };
  EXPECT_EQ(bytes("none"), 4 * n);
  EXPECT_EQ(bytes("fp16"), 2 * n);
  EXPECT_EQ(bytes("bf16"), 2 * n);
  EXPECT_EQ(bytes("int8"), n + 4 * (n / 256));            // 3.94x
  EXPECT_EQ(bytes("sign"), n / 8 + 4 * (n / 256));        // 28.4x
  EXPECT_EQ(bytes("qsgd:1"), n / 4 + 4 * (n / 64));       // 2-bit codes, buckets of 64
  EXPECT_EQ(bytes("qsgd:7"), n / 2 + 4 * (n / 64));       // 4-bit
  EXPECT_EQ(bytes("qsgd:127"), n + 4 * (n / 64));         // 8-bit
  EXPECT_EQ(bytes("qsgd:128"), 2 * n + 4 * (n / 64));     // 16-bit
  EXPECT_EQ(bytes("qsgd:4:512"), n / 2 + 4 * (n / 512));
  EXPECT_EQ(bytes("terngrad"), n / 4 + 4 * (n / 512));
  const std::size_t k = 10486;  // round(0.01 * 2^20)
  EXPECT_EQ(bytes("topk:0.01"), 4 * k + (k * 20 + 7) / 8);  // 20-bit indices
  EXPECT_EQ(bytes("randk:0.01"), 4 * k + (k * 20 + 7) / 8);
  const double in = 4.0 * n;
  EXPECT_NEAR(in / bytes("int8"), 4.0 * 256 / 260, 1e-9);
  EXPECT_NEAR(in / bytes("sign"), 32.0 * 256 / 288, 1e-9);
  EXPECT_NEAR(in / bytes("terngrad"), 32.0 * 512 / (2 * 512 + 32), 1e-9);  // 15.5x
  EXPECT_GT(in / bytes("topk:0.01"), 61.0);
  // Partial blocks and the smallest sizes.
  EXPECT_EQ(make_codec("int8:64")->wire_bytes(65), 8u + 65u);
  EXPECT_EQ(make_codec("sign:64")->wire_bytes(65), 8u + 9u);
  EXPECT_EQ(make_codec("topk:0.5")->wire_bytes(1), 4u);      // one value, 0-bit index
  EXPECT_EQ(make_codec("topk:0.5")->wire_bytes(65537), 4u * 32769 + (32769u * 17 + 7) / 8);
  for (const std::string& name : kCodecs) EXPECT_EQ(make_codec(name)->wire_bytes(0), 0u) << name;
}

// The wire formats are what ranks exchange, so they are pinned byte for byte: the
// deterministic ones as codec.h describes them (checked by hand: int8 q = 32 -64 16 127 -8 0 95
// -32 after the scale 4/127; sign 0x92 = negatives at 1, 4, 7; topk values 4 and 3, then the
// indices 3 and 6 in 3 bits each, 0b110'011), the stochastic ones with seed 7, which also pins
// the random number generator (kernel_table.h): no decoder draws, so ranks need not agree on it,
// but a seed's results change with it, and that must be a deliberate change (the last one:
// one lowbias32 round per element instead of two; randk now picks -0.25 and 0 at 4 and 5; and
// qsgd's norms of small buckets summed in float and scaled up: qsgd:2:8's scale 0x40b31072 ->
// 0x40b3107d, its codes unchanged).
TEST(Codec, WireFormatsArePinned) {
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 4.0f, -0.25f, 0.0f, 3.0f, -1.0f};
  const std::pair<const char*, const char*> cases[] = {
      {"fp16", "003c00c00038004400b40000004200bc"}, {"bf16", "803f00c0003f804080be0000404080bf"},
      {"int8:8", "0402013d20c0107ff8005fe0"},       {"sign:8", "0000bc3f92"},
      {"topk:0.25", "000080400000404033"},          {"qsgd:2:8", "7d10b34000100991"},
      {"terngrad:8", "0000804040d3"},               {"randk:0.25", "000080bf000000002c"}};
  for (const auto& [name, hex] : cases) {
    for (const SimdPath simd : {SimdPath::portable, SimdPath::automatic}) {
      const Encoded e = round_trip(*make_codec(name, simd), x, 7);
      std::string got;
      for (const std::byte b : e.wire) {
        char buf[3];
        std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b));
        got += buf;
      }
      EXPECT_EQ(got, hex) << name << " " << to_string(simd);
    }
  }
}

// ---- round trips within the stated bounds ---------------------------------------------------------

void expect_within_bound(const Codec& c, const std::vector<float>& x, const std::vector<float>& d,
                         const char* what) {
  std::vector<double> bounds(x.size());
  c.error_bound(x.data(), x.size(), bounds.data());
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) continue;
    const double bound = bounds[i];
    if (std::isinf(bound)) {  // overflow: documented to become Inf of x's sign (randk: if sent)
      EXPECT_TRUE((std::isinf(d[i]) && std::signbit(d[i]) == std::signbit(x[i])) || (c.sparse() && d[i] == 0.0f))
          << c.name() << " " << what << " i=" << i << " x=" << x[i] << " d=" << d[i];
      continue;
    }
    const double err = std::fabs(static_cast<double>(d[i]) - static_cast<double>(x[i]));
    if (!(err <= bound)) {
      ADD_FAILURE() << c.name() << " " << what << " n=" << x.size() << " i=" << i << " x=" << x[i]
                    << " decoded=" << d[i] << " error " << err << " > bound " << bound;
      return;
    }
  }
}

TEST(Codec, RoundTripsWithinTheStatedBoundOnEveryKindOfInput) {
  for (const std::string& name : kCodecs) {
    const auto c = make_codec(name);
    for (const std::size_t n : sizes_for(*c)) {
      for (const Input kind : kInputs) {
        const std::vector<float> x = make_input(kind, n, static_cast<unsigned>(n) * 7 + static_cast<unsigned>(kind));
        const Encoded e = round_trip(*c, x);
        EXPECT_EQ(e.stats.nonfinite, 0u) << name;
        expect_within_bound(*c, x, e.decoded, "input kind");
        if (kind == Input::zero) {
          for (std::size_t i = 0; i < n && name.rfind("sign", 0) != 0; ++i) {
            ASSERT_EQ(e.decoded[i], 0.0f) << name << " zero input decoded to non-zero at " << i;
          }
        }
      }
    }
  }
}

TEST(Codec, KnownValuesDecodeAsDocumented) {
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 4.0f, -0.25f, 0.0f, 3.0f, -1.0f};
  // int8: scale 4/127, q = round(x * 127/4).
  const Encoded i8 = round_trip(*make_codec("int8:8"), x);
  EXPECT_EQ(i8.decoded[3], 4.0f);
  EXPECT_EQ(i8.decoded[1], -64.0f * (4.0f / 127.0f));
  // sign: mean |x| = 11.75/8; zero decodes to +scale.
  const Encoded s = round_trip(*make_codec("sign:8"), x);
  const std::vector<float> sign_expect = {1.46875f, -1.46875f, 1.46875f, 1.46875f, -1.46875f, 1.46875f, 1.46875f, -1.46875f};
  EXPECT_EQ(s.decoded, sign_expect);
  // topk:0.25 of 8: the two largest, 4 and 3.
  const Encoded t = round_trip(*make_codec("topk:0.25"), x);
  const std::vector<float> topk_expect = {0, 0, 0, 4.0f, 0, 0, 3.0f, 0};
  EXPECT_EQ(t.decoded, topk_expect);
  // Ties go to the lower index: |1| at 0 and 7 with k = 1 of {1, -1}.
  const Encoded tie = round_trip(*make_codec("topk:0.5"), {1.0f, -1.0f});
  EXPECT_EQ(tie.decoded, (std::vector<float>{1.0f, 0.0f}));
  // terngrad decodes to {-absmax, 0, +absmax}; qsgd to multiples of norm/S.
  const Encoded tg = round_trip(*make_codec("terngrad:8"), x, 7);
  for (const float d : tg.decoded) EXPECT_TRUE(d == 0.0f || std::fabs(d) == 4.0f) << d;
  const Encoded q = round_trip(*make_codec("qsgd:2:8"), x, 7);
  const float norm = std::sqrt(1 + 4 + 0.25f + 16 + 0.0625f + 0 + 9 + 1);
  for (const float d : q.decoded) {
    const float level = std::fabs(d) / (norm / 2);
    EXPECT_NEAR(level, std::round(level), 1e-5) << d;
  }
}

// QSGD and TernGrad with buckets smaller than the encoder's chunk (several buckets share one
// pass, stochastic_encode_grouped) and bucket sizes that do not divide it: every element
// decodes to one of the two levels around |x| on its own bucket's scale (its L2 norm over the
// finite elements, or absmax), with x's sign, and NaN/Inf to 0, wherever the bucket sits.
TEST(Codec, SmallBucketsUseEachBucketsOwnScale) {
  for (const std::string name : {"qsgd:4:8", "qsgd:4:24", "qsgd:3:64", "qsgd:4:96", "qsgd:127:248", "qsgd:4:256",
                                 "qsgd:4:264", "terngrad:40", "qsgd:2:1000"}) {
    const auto c = make_codec(name);
    const std::size_t bucket = c->spec().block;
    const float levels = name.rfind("terngrad", 0) == 0 ? 1.0f : std::stof(name.substr(5));
    for (const std::size_t n : {std::size_t{1}, std::size_t{7}, bucket + 3, std::size_t{255}, std::size_t{257},
                                std::size_t{4099}}) {
      // Buckets of very different magnitudes, so a neighbour's scale would be far off.
      std::vector<float> x = make_input(Input::random, n, static_cast<unsigned>(n));
      for (std::size_t i = 0; i < n; ++i) x[i] *= std::ldexp(1.0f, static_cast<int>((i / bucket) % 7) * 9 - 27);
      if (n > 300) x[300] = kNaN;  // one group takes the masked pass
      const Encoded e = round_trip(*c, x, 11);
      for (std::size_t first = 0; first < n; first += bucket) {
        const std::size_t end = std::min(n, first + bucket);
        double norm2 = 0, absmax = 0;
        for (std::size_t i = first; i < end; ++i)
          if (std::isfinite(x[i])) {
            norm2 += static_cast<double>(x[i]) * x[i];
            absmax = std::max(absmax, static_cast<double>(std::fabs(x[i])));
          }
        const double scale = name[0] == 't' ? absmax : std::sqrt(norm2);
        const double step = scale / levels;
        for (std::size_t i = first; i < end; ++i) {
          const float d = e.decoded[i];
          if (!std::isfinite(x[i])) {
            EXPECT_EQ(d, 0.0f) << name << " n=" << n << " i=" << i;
            continue;
          }
          const double r = std::fabs(x[i]) / step;  // the level, between two integers
          const double got = std::fabs(d) / step;
          EXPECT_TRUE(std::fabs(got - std::floor(r)) <= 1e-4 * std::max(1.0, r) ||
                      std::fabs(got - std::ceil(r)) <= 1e-4 * std::max(1.0, r))
              << name << " n=" << n << " i=" << i << ": x=" << x[i] << " decoded " << d << ", level " << got
              << " not next to " << r;
          if (d != 0.0f) {
            EXPECT_EQ(std::signbit(d), std::signbit(x[i])) << name << " n=" << n << " i=" << i;
          }
        }
      }
    }
  }
}

// QSGD's scale of a bucket is never below its L2 norm (so no level exceeds S) and at most a few
// millionths above it: small buckets (a multiple of 8 below 256) sum in float and scale up
// (kernels.h, scale_of_float_sum), others and tiny or huge norms sum in double and round up.
// Checked against the norm in long double on the inputs where float sums go wrong: one element
// alone (its square rounded), equal elements (the most additions of one size), huge elements
// (a square past FLT_MAX), tiny ones (squares turned denormal), and random ones.
TEST(Codec, QsgdScalesAreJustAboveTheNorm) {
  for (const std::string name : {"qsgd:4", "qsgd:4:8", "qsgd:4:16", "qsgd:4:48", "qsgd:127:248", "qsgd:4:256",
                                 "qsgd:4:1000"}) {
    for (const SimdPath simd : {SimdPath::portable, SimdPath::automatic}) {
      const auto c = make_codec(name, simd);
      const std::size_t bucket = c->spec().block, n = 8 * bucket + 5;
      for (const float mag : {1.0f, 3.0f, 1.1e-19f, 1e-25f, 3e-38f, 2e19f, 1.7e38f}) {
        for (const int shape : {0, 1, 2}) {  // one element, all equal, random
          std::vector<float> x(n, 0.0f);
          std::mt19937 gen(static_cast<unsigned>(n) + static_cast<unsigned>(shape));
          std::uniform_real_distribution<float> u(-1.0f, 1.0f);
          for (std::size_t i = 0; i < n; ++i) {
            if (shape == 0) x[i] = i % bucket == 3 ? -mag : 0.0f;
            if (shape == 1) x[i] = mag * (1.0f - 0x1p-23f);
            if (shape == 2) x[i] = mag * u(gen);
          }
          const Encoded e = round_trip(*c, x, 3);
          for (std::size_t i = 0; i < n; ++i)  // a scale of Inf would decode level 0 as NaN
            ASSERT_TRUE(std::isfinite(e.decoded[i])) << name << " mag " << mag << " shape " << shape << " i " << i;
          for (std::size_t b = 0, first = 0; first < n; ++b, first += bucket) {
            long double norm2 = 0;
            for (std::size_t i = first; i < std::min(n, first + bucket); ++i) norm2 += static_cast<long double>(x[i]) * x[i];
            const long double norm = std::sqrt(norm2);
            float scale;
            std::memcpy(&scale, e.wire.data() + 4 * b, 4);
            if (norm < 0x1p-100L) {  // flushed: sent as zeros
              EXPECT_EQ(scale, 0.0f) << name;
              continue;
            }
            const long double limit = std::min<long double>(norm * (1 + 4e-6L), std::numeric_limits<float>::max());
            ASSERT_TRUE(scale >= norm || (norm > std::numeric_limits<float>::max() &&
                                          scale == std::numeric_limits<float>::max()))
                << name << " " << to_string(simd) << " mag " << mag << " shape " << shape << " bucket " << b
                << ": scale " << scale << " below the norm " << static_cast<double>(norm);
            ASSERT_LE(scale, limit) << name << " " << to_string(simd) << " mag " << mag << " shape " << shape
                                    << " bucket " << b << ": norm " << static_cast<double>(norm);
          }
        }
      }
    }
  }
}

// topk keeps exactly the k largest |x| (ties: lower index; NaN and Inf rank as 0 and go as 0),
// on every selection path and with heavy ties.
TEST(Codec, TopKKeepsExactlyTheLargest) {
  enum class Shape { half_zeros, constant, mixed_scale, sparse_above_k, sparse_below_k };
  for (const char* name : {"topk:0.01", "topk:0.1", "topk:0.5"}) {
    const auto c = make_codec(name);
    const double f = c->spec().fraction;
    for (const Shape shape :
         {Shape::half_zeros, Shape::constant, Shape::mixed_scale, Shape::sparse_above_k, Shape::sparse_below_k}) {
      // Every path: the exact method with the small histogram (100; topk:0.5), the sampled one
      // with a strided sample of a small input (1000, 16384), with the full sample (65537 up),
      // and a small input again after a large one (777: the per-thread buffers are larger).
      for (const std::size_t n : {std::size_t{100}, std::size_t{1000}, std::size_t{16384}, std::size_t{65537},
                                  std::size_t{200000}, std::size_t{777}}) {
        std::vector<float> x = make_input(shape == Shape::constant      ? Input::constant
                                          : shape == Shape::mixed_scale ? Input::mixed_scale
                                                                        : Input::random,
                                          n, 21);
        if (shape == Shape::half_zeros) {  // mostly zeros in the first half
          for (std::size_t i = 0; i < n / 2; ++i) x[i] = i % 97 == 0 ? x[i] : 0.0f;
        }
        if (shape == Shape::sparse_above_k || shape == Shape::sparse_below_k) {
          // Non-zero every `stride` elements: a little more than k of them (the sampled
          // threshold is 0: every non-zero one is a candidate), or a third of k (the k are made
          // up with the first zeros; non-finite ones among them rank as zeros).
          const auto stride = static_cast<std::size_t>(shape == Shape::sparse_above_k ? 0.9 / f : 3.0 / f);
          for (std::size_t i = 0; i < n; ++i) x[i] = i % stride == stride / 2 ? x[i] : 0.0f;
          if (shape == Shape::sparse_below_k) x[1] = kNaN, x[2] = -kInf, x[3] = -0.0f;
        }
        const auto key = [&](std::size_t i) { return std::isfinite(x[i]) ? std::fabs(x[i]) : 0.0f; };
        const auto k = static_cast<std::size_t>(std::llround(f * static_cast<double>(n)));
        std::vector<std::size_t> order(n);
        for (std::size_t i = 0; i < n; ++i) order[i] = i;
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(a) > key(b); });
        std::vector<char> want(n, 0);
        for (std::size_t j = 0; j < k; ++j) want[order[j]] = 1;
        const Encoded e = round_trip(*c, x);
        // A kept element decodes to itself, a dropped one to 0: picking any other element than
        // the k wanted (a non-zero one) shows up as a mismatch at it or at the one it displaced.
        for (std::size_t i = 0; i < n; ++i) {
          ASSERT_EQ(e.decoded[i], want[i] && std::isfinite(x[i]) ? x[i] : 0.0f)
              << name << " n=" << n << " shape " << static_cast<int>(shape) << " i=" << i << " x=" << x[i];
        }
        EXPECT_EQ(e.stats.nonfinite, shape == Shape::sparse_below_k ? 2u : 0u) << name << " n=" << n;
      }
    }
  }
}

// ---- non-finite input ------------------------------------------------------------------------------

TEST(Codec, NonFiniteInputIsReportedAndDoesNotPoisonItsBlock) {
  for (const std::string& name : kCodecs) {
    const auto c = make_codec(name);
    std::vector<float> x = make_input(Input::random, 300, 5);
    x[3] = kNaN;
    x[5] = kInf;
    x[200] = -kInf;
    const Encoded e = round_trip(*c, x);
    EXPECT_EQ(e.stats.nonfinite, 3u) << name;
    const CodecKind k = c->spec().kind;
    for (const std::size_t i : {3u, 5u, 200u}) {
      const float d = e.decoded[i];
      if (k == CodecKind::none || k == CodecKind::fp16 || k == CodecKind::bf16) {
        EXPECT_EQ(std::isnan(d), std::isnan(x[i])) << name << " i=" << i;
        if (!std::isnan(x[i])) {
          EXPECT_EQ(d, x[i]) << name;
        }
      } else if (k == CodecKind::sign) {
        EXPECT_TRUE(std::isfinite(d) && d >= 0.0f) << name << " i=" << i << " d=" << d;
      } else {
        EXPECT_EQ(d, 0.0f) << name << " i=" << i;
      }
    }
    // Every finite element is still within the bound computed from the finite ones.
    expect_within_bound(*c, x, e.decoded, "with NaN/Inf");
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (std::isfinite(x[i])) {
        ASSERT_TRUE(std::isfinite(e.decoded[i])) << name << " i=" << i;
      }
    }
  }
}

TEST(Codec, OverflowOfTheSixteenBitFormatsIsCounted) {
  const std::vector<float> x = {65504.0f, 65519.0f, 65520.0f, -1e10f, 3.4e38f, kInf};
  const Encoded h = round_trip(*make_codec("fp16"), x);
  EXPECT_EQ(h.stats.overflow, 3u);
  EXPECT_EQ(h.stats.nonfinite, 1u);
  EXPECT_EQ(h.decoded[1], 65504.0f);
  EXPECT_EQ(h.decoded[3], -kInf);
  const Encoded b = round_trip(*make_codec("bf16"), x);
  EXPECT_EQ(b.stats.overflow, 1u);  // only 3.4e38 rounds up to Inf
  EXPECT_EQ(b.decoded[4], kInf);
}

// ---- decode_add -------------------------------------------------------------------------------------

TEST(Codec, DecodeAddAddsTheDecodedValuesOnce) {
  for (const std::string& name : kCodecs) {
    const auto c = make_codec(name);
    const std::vector<float> x = make_input(Input::random, 1000, 11);
    const Encoded e = round_trip(*c, x);
    std::vector<float> acc = make_input(Input::random, 1000, 12);
    const std::vector<float> before = acc;
    c->decode_add(e.wire.data(), x.size(), acc.data());
    for (std::size_t i = 0; i < x.size(); ++i)
      ASSERT_EQ(bits(acc[i]), bits(before[i] + e.decoded[i])) << name << " i=" << i;
  }
}

TEST(Codec, NullPointersAreRefusedExceptForNoElements) {
  const auto c = make_codec("int8");
  std::vector<std::byte> wire(c->wire_bytes(4));
  float x[4] = {};
  EXPECT_NO_THROW(c->encode(nullptr, 0, nullptr));
  EXPECT_NO_THROW(c->decode(nullptr, 0, nullptr));
  EXPECT_THROW(c->encode(nullptr, 4, wire.data()), std::invalid_argument);
  EXPECT_THROW(c->encode(x, 4, nullptr), std::invalid_argument);
  EXPECT_THROW(c->decode(wire.data(), 4, nullptr), std::invalid_argument);
  EXPECT_THROW(c->decode_add(nullptr, 4, x), std::invalid_argument);
  EXPECT_THROW(encode_with_feedback(*c, x, 4, nullptr, wire.data()), std::invalid_argument);
}

// ---- error feedback ---------------------------------------------------------------------------------

// Five steps of error feedback. Exact codecs: decoded + new residual == v bitwise, and v - d is
// exact (TwoSum's error term is zero). The others: within one rounding of v - d.
TEST(ErrorFeedback, TransmittedPlusResidualIsInputPlusOldResidual) {
  for (const std::string& name : kCodecs) {
    const auto c = make_codec(name);
    for (const std::size_t n : sizes_for(*c)) {
      for (const Input kind : {Input::random, Input::mixed_scale, Input::denormal, Input::constant}) {
        std::vector<float> residual(n, 0.0f), wire_dec(n);
        std::vector<std::byte> wire(c->wire_bytes(n));
        for (unsigned step = 0; step < 5; ++step) {
          const std::vector<float> in = make_input(kind, n, 100 * step + static_cast<unsigned>(n));
          std::vector<float> v(n);
          for (std::size_t i = 0; i < n; ++i) v[i] = in[i] + residual[i];
          const EncodeStats st = encode_with_feedback(*c, in.data(), n, residual.data(), wire.data(), step);
          ASSERT_EQ(st.bytes, c->wire_bytes(n));
          c->decode(wire.data(), n, wire_dec.data());
          for (std::size_t i = 0; i < n; ++i) {
            const float d = wire_dec[i], r = residual[i];
            // Overflow (fp16/bf16/randk on the huge inputs) is counted and leaves a non-finite
            // residual, which the next step reports as non-finite input; a caller zeroes it.
            if (!std::isfinite(d) || !std::isfinite(v[i])) {
              ASSERT_GT(std::isfinite(v[i]) ? st.overflow : st.nonfinite, 0u) << name << " i=" << i;
              residual[i] = 0.0f;
              continue;
            }
            if (c->exact_feedback()) {
              // TwoSum(d, r): s + err == d + r exactly; err == 0 and s == v means no rounding.
              const float s = d + r, bb = s - d, err = (d - (s - bb)) + (r - bb);
              ASSERT_EQ(bits(s), bits(v[i])) << name << " n=" << n << " step " << step << " i=" << i
                                             << " v=" << v[i] << " d=" << d << " residual=" << r;
              ASSERT_EQ(err, 0.0f) << name << " i=" << i;
            } else {
              const double off = std::fabs(static_cast<double>(d) + r - v[i]);
              ASSERT_LE(off, 0x1p-24 * std::fabs(static_cast<double>(v[i]) - d))
                  << name << " n=" << n << " i=" << i << " v=" << v[i] << " d=" << d << " residual=" << r;
            }
          }
        }
      }
    }
  }
}

// The boundary where int8's q switches between 0 and 1 is where exactness is most fragile: a
// q = 1 (d = scale) for an x below scale/2 would leave x - d, which need not be a float. The
// encoder sends |x| < scale/2 as 0 explicitly so the Sterbenz argument holds by construction (a
// search over 10^6 random scales found no x that x * (127/absmax) alone rounds up there, so this
// checks the boundary, and catches a quantizer that rounds up or truncates, rather than a case
// seen to fail without the rule).
TEST(ErrorFeedback, Int8IsExactAtTheHalfStepBoundary) {
  const auto c = make_codec("int8:8");
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> u(1.0f, 2.0f);
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<float> x(8, 0.0f);
    x[0] = u(gen) * 127.0f;
    const float half = 0.5f * (x[0] / 127.0f);
    x[1] = std::nextafter(half, 0.0f);
    x[2] = half;
    x[3] = std::nextafter(half, 1.0f);
    std::vector<float> residual(8, 0.0f), d(8);
    std::vector<std::byte> wire(c->wire_bytes(8));
    encode_with_feedback(*c, x.data(), 8, residual.data(), wire.data());
    c->decode(wire.data(), 8, d.data());
    for (int i = 0; i < 4; ++i) ASSERT_EQ(bits(d[i] + residual[i]), bits(x[i])) << "trial " << trial << " i=" << i;
  }
}

TEST(ErrorFeedback, NonFiniteInputIsReportedAndStaysInTheResidual) {
  const auto c = make_codec("int8");
  std::vector<float> in = {1.0f, kNaN, 2.0f}, residual(3, 0.0f);
  std::vector<std::byte> wire(c->wire_bytes(3));
  const EncodeStats st = encode_with_feedback(*c, in.data(), 3, residual.data(), wire.data());
  EXPECT_EQ(st.nonfinite, 1u);
  EXPECT_TRUE(std::isnan(residual[1]));
  EXPECT_TRUE(std::isfinite(residual[0]) && std::isfinite(residual[2]));
}

// ---- SIMD paths ---------------------------------------------------------------------------------------

TEST(CodecSimd, Avx2AndPortableGiveTheSameBits) {
  if (!simd_available(SimdPath::avx2)) GTEST_SKIP() << "this CPU has no AVX2/FMA/F16C";
  for (const std::string& name : kCodecs) {
    const auto port = make_codec(name, SimdPath::portable);
    const auto avx = make_codec(name, SimdPath::avx2);
    ASSERT_EQ(port->simd(), SimdPath::portable);
    ASSERT_EQ(avx->simd(), SimdPath::avx2);
    for (const std::size_t n : sizes_for(*port)) {
      for (const Input kind : kInputs) {
        std::vector<float> x = make_input(kind, n, 77 + static_cast<unsigned>(n));
        if (n > 10) x[n / 2] = kNaN, x[n / 3] = -kInf, x[n - 1] = 70000.0f;
        for (const std::uint64_t seed : {0ull, 1ull, 0xDEADBEEFCAFEull}) {
          const Encoded a = round_trip(*port, x, seed), b = round_trip(*avx, x, seed);
          ASSERT_EQ(a.wire, b.wire) << name << " n=" << n << " seed " << seed;
          ASSERT_EQ(a.stats.nonfinite, b.stats.nonfinite) << name;
          ASSERT_EQ(a.stats.overflow, b.stats.overflow) << name;
          // n == 0: data() is null, and memcmp's pointers must not be, even for 0 bytes.
          ASSERT_TRUE(n == 0 || std::memcmp(a.decoded.data(), b.decoded.data(), 4 * n) == 0) << name << " n=" << n;
          std::vector<float> acc_a = make_input(Input::random, n, 9), acc_b = acc_a;
          port->decode_add(a.wire.data(), n, acc_a.data());
          avx->decode_add(a.wire.data(), n, acc_b.data());
          ASSERT_TRUE(n == 0 || std::memcmp(acc_a.data(), acc_b.data(), 4 * n) == 0) << name << " n=" << n;
          if (port->deterministic()) break;
        }
      }
    }
  }
}

// Decoding (assign) 2^18 elements or more into a 16-byte aligned buffer takes the AVX2
// kernels' streaming stores, and topk's sampled threshold its candidate kernel: the same bits
// as the portable kernels, at an output offset of 16 bytes (streamed) and of 4 (not).
TEST(CodecSimd, LargeBuffersGiveTheSameBitsOnBothPaths) {
  if (!simd_available(SimdPath::avx2)) GTEST_SKIP() << "this CPU has no AVX2/FMA/F16C";
  const std::size_t n = (std::size_t{1} << 18) + 13;
  std::vector<float> x = make_input(Input::mixed_scale, n, 3);
  x[n / 2] = kNaN, x[n / 3] = -kInf, x[n - 1] = 70000.0f;
  for (const std::string& name : kCodecs) {
    const auto port = make_codec(name, SimdPath::portable);
    const auto avx = make_codec(name, SimdPath::avx2);
    const Encoded a = round_trip(*port, x, 5), b = round_trip(*avx, x, 5);
    ASSERT_EQ(a.wire, b.wire) << name;
    ASSERT_EQ(a.stats.nonfinite, b.stats.nonfinite) << name;
    ASSERT_EQ(a.stats.nonfinite, 2u) << name;
    ASSERT_EQ(a.stats.overflow, b.stats.overflow) << name;
    ASSERT_EQ(std::memcmp(a.decoded.data(), b.decoded.data(), 4 * n), 0) << name;
    for (const std::size_t offset : {4u, 1u}) {  // floats: 16 and 4 bytes past a 64-byte boundary
      std::vector<float> buf(n + 32, -1.0f);
      float* out = buf.data() + (16 - reinterpret_cast<std::uintptr_t>(buf.data()) % 64 / 4) % 16 + offset;
      avx->decode(b.wire.data(), n, out);
      ASSERT_EQ(std::memcmp(a.decoded.data(), out, 4 * n), 0) << name << " offset " << offset;
    }
  }
}

TEST(CodecSimd, StochasticCodecsDependOnTheSeedOnly) {
  for (const char* name : {"qsgd:4", "terngrad", "randk:0.1"}) {
    const auto c = make_codec(name);
    const std::vector<float> x = make_input(Input::random, 5000, 1);
    EXPECT_EQ(round_trip(*c, x, 5).wire, round_trip(*c, x, 5).wire) << name;
    EXPECT_NE(round_trip(*c, x, 5).wire, round_trip(*c, x, 6).wire) << name;
  }
}

class SimdSetting : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("RDMACOLL_SIMD"); }
};

TEST_F(SimdSetting, ChoosesThePathAndRefusesBadValues) {
  setenv("RDMACOLL_SIMD", "portable", 1);
  EXPECT_EQ(make_codec("fp16")->simd(), SimdPath::portable);
  setenv("RDMACOLL_SIMD", "auto", 1);
  EXPECT_EQ(make_codec("fp16")->simd(), simd_available(SimdPath::avx2) ? SimdPath::avx2 : SimdPath::portable);
  setenv("RDMACOLL_SIMD", "sse9", 1);
  try {
    make_codec("fp16");
    ADD_FAILURE() << "RDMACOLL_SIMD=sse9 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RDMACOLL_SIMD='sse9'"), std::string::npos) << e.what();
  }
  // An explicit path overrides the setting.
  EXPECT_EQ(make_codec("fp16", SimdPath::portable)->simd(), SimdPath::portable);
  // avx2 asked for: given where the CPU has it, a ConfigError saying so where it has not.
  setenv("RDMACOLL_SIMD", "avx2", 1);
  if (simd_available(SimdPath::avx2)) {
    EXPECT_EQ(make_codec("fp16")->simd(), SimdPath::avx2);
  } else {
    EXPECT_THROW(make_codec("fp16"), ConfigError);
    EXPECT_THROW(make_codec("fp16", SimdPath::avx2), ConfigError);
  }
}

}  // namespace
}  // namespace rdmacoll::collectives
