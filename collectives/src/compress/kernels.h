// The codecs' element kernels, compiled once per instruction set (see kernel_table.h). The
// including file defines RDMACOLL_CODEC_ISA (the namespace: portable or avx2) and
// RDMACOLL_CODEC_AVX2 (0 or 1). Loops are written for the auto-vectorizer; the conversions it
// cannot find by itself (F16C, sign-bit masks, 32->16-bit packing) use intrinsics under
// RDMACOLL_CODEC_AVX2, and their partial last vector falls back to the scalar code, which
// computes the same bits.
//
// Everything here is in the ISA's own namespace: an inline function shared between the two
// translation units would let the linker keep the AVX2 copy for the portable callers.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <limits>

#include "compress/kernel_table.h"
#include "rdmacoll/collectives/half.h"

#if RDMACOLL_CODEC_AVX2
#include <immintrin.h>
#endif

static_assert(std::endian::native == std::endian::little, "the wire formats are little-endian");

namespace rdmacoll::collectives::compress::RDMACOLL_CODEC_ISA {
namespace {

constexpr std::uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kExpMask = 0x7F800000u;

inline std::uint32_t bits_of(float x) { return std::bit_cast<std::uint32_t>(x); }
inline float load_f32(const std::byte* p) {
  float f;
  std::memcpy(&f, p, sizeof f);
  return f;
}
inline void store_f32(std::byte* p, float f) { std::memcpy(p, &f, sizeof f); }

// How a decode writes: Mode's three, and stream, the assign of a large output (see stream_to).
enum class Put { assign, add, sub, stream };

template <Put M>
inline void put(float* out, std::size_t i, float d) {
  if constexpr (M == Put::assign || M == Put::stream) out[i] = d;
  else if constexpr (M == Put::add) out[i] += d;
  else out[i] -= d;
}

// Decoding (assign) into a large buffer uses streaming stores: they skip the read for
// ownership of every cache line (a third of the memory traffic of a plain store) and leave the
// caches to the input. The AVX2 kernels only, and only 16-byte aligned outputs (every malloc):
// two 16-byte streaming stores per 8 floats, so 32-byte alignment is not needed.
constexpr std::size_t kStreamFrom = std::size_t{1} << 18;  // elements: 1 MiB of output
inline bool stream_to(const float* out, std::size_t n) {
  return RDMACOLL_CODEC_AVX2 && n >= kStreamFrom && (reinterpret_cast<std::uintptr_t>(out) & 15) == 0;
}

#if RDMACOLL_CODEC_AVX2
template <Put M>
inline void put8(float* o, __m256 d) {
  if constexpr (M == Put::assign) {
    _mm256_storeu_ps(o, d);
  } else if constexpr (M == Put::stream) {
    _mm_stream_ps(o, _mm256_castps256_ps128(d));
    _mm_stream_ps(o + 4, _mm256_extractf128_ps(d, 1));
  } else if constexpr (M == Put::add) {
    _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), d));
  } else {
    _mm256_storeu_ps(o, _mm256_sub_ps(_mm256_loadu_ps(o), d));
  }
}
#endif

// Calls f(std::integral_constant<Put, m>{}) so every decode loop is compiled per mode; assign
// into out[0, n) becomes stream where stream_to(out, n), and then ends with a store fence, so
// the streaming stores are ordered before whatever the caller stores next (a flag, a send).
template <class F>
void with_mode(Mode m, const float* out, std::size_t n, F f) {
  switch (m) {
    case Mode::assign:
      if (stream_to(out, n)) {
        f(std::integral_constant<Put, Put::stream>{});
#if RDMACOLL_CODEC_AVX2
        _mm_sfence();
#endif
        return;
      }
      return f(std::integral_constant<Put, Put::assign>{});
    case Mode::add: return f(std::integral_constant<Put, Put::add>{});
    case Mode::sub: return f(std::integral_constant<Put, Put::sub>{});
  }
}

#if RDMACOLL_CODEC_AVX2
// The sum of 8 lane counts kept as negatives (a lane adds a compare's -1 per hit): counting in
// a register costs one add per 8 elements, against a movemask and a popcount.
inline std::size_t negated_lane_sum(__m256i v) {
  alignas(32) std::int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  std::int64_t sum = 0;
  for (const std::int32_t l : lanes) sum -= l;
  return static_cast<std::size_t>(sum);
}
// All-ones in the lanes whose |x| bits (a) are finite.
inline __m256i finite_lanes(__m256i a) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(kExpMask)), a);
}
inline __m256i abs_bits(const float* x) {
  return _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)),
                          _mm256_set1_epi32(static_cast<int>(kAbsMask)));
}
#endif

// The blocked wire formats (int8, sign, qsgd, terngrad) start with one fp32 scale per block of
// `block` elements; their codes follow at wire + 4 * nblocks. Calls f(scale_slot, first, m) for
// every block: its scale's bytes, its first element and its length (the last may be short).
template <class Wire, class F>
void for_each_block(Wire* wire, std::size_t n, std::size_t block, F f) {
  for (std::size_t b = 0, first = 0; first < n; ++b, first += block) f(wire + 4 * b, first, std::min(block, n - first));
}
// Decoding a blocked format into out: f(integral_constant<Put, ...>, scale, first, m) per block.
template <class F>
void decode_blocks(const std::byte* wire, std::size_t n, std::size_t block, float* out, Mode mode, F f) {
  with_mode(mode, out, n, [&](auto md) {
    for_each_block(wire, n, block, [&](const std::byte* slot, std::size_t first, std::size_t m) {
      f(md, load_f32(slot), first, m);
    });
  });
}
template <class Wire>
Wire* codes_of(Wire* wire, std::size_t n, std::size_t block) { return wire + 4 * ((n + block - 1) / block); }

// Largest finite |x| (as a float: comparing the bits of non-negative floats orders them) and
// the number of non-finite elements. Exact, so the order does not matter.
float finite_absmax(const float* in, std::size_t n, std::size_t& nonfinite) {
  std::uint32_t m = 0;
  std::size_t bad = 0, i = 0;
#if RDMACOLL_CODEC_AVX2
  __m256i vm = _mm256_setzero_si256();
  while (i + 8 <= n) {  // lane counts below 2^31: at most 2^28 elements per round
    const std::size_t stop = std::min(n - (n - i) % 8, i + (std::size_t{1} << 28));
    __m256i vbad = _mm256_setzero_si256();
    for (; i < stop; i += 8) {
      const __m256i a = abs_bits(in + i), ok = finite_lanes(a);
      vm = _mm256_max_epu32(vm, _mm256_and_si256(a, ok));
      vbad = _mm256_add_epi32(vbad, _mm256_cmpeq_epi32(ok, _mm256_setzero_si256()));
    }
    bad += negated_lane_sum(vbad);
  }
  alignas(32) std::uint32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), vm);
  for (const std::uint32_t l : lanes) m = std::max(m, l);
#endif
  for (; i < n; ++i) {
    const std::uint32_t a = bits_of(in[i]) & kAbsMask;
    const bool ok = a < kExpMask;
    m = std::max(m, ok ? a : 0u);
    bad += ok ? 0 : 1;
  }
  nonfinite += bad;
  return std::bit_cast<float>(m);
}

// Sum over the finite elements of |x| (or x^2 with Square) in double, in 16 lanes
// (lane = i % 16, four AVX2 accumulators so no addition waits on the previous one) added in a
// fixed order at the end, so both builds round the same way. Returns the sum and adds the
// count of finite elements to `finite`.
// Masked = false leaves out the finite test (and counts every element): for inputs known to
// be finite, or to try first, as finite_lane_sum does.
template <bool Square, bool Masked>
double lane_sum(const float* in, std::size_t n, std::size_t& finite) {
  constexpr std::size_t kLanes = 16;
  double lane[kLanes] = {};
  std::size_t ok_count = 0, i = 0;
#if RDMACOLL_CODEC_AVX2
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  __m256i vok = _mm256_setzero_si256();  // negated count (Masked; unmasked, every lane counts)
  for (; i + kLanes <= n; i += kLanes) {
    if (Masked && i % (std::size_t{1} << 28) == 0) {  // lane counts stay below 2^31
      ok_count += negated_lane_sum(vok);
      vok = _mm256_setzero_si256();
    }
    for (std::size_t h = 0; h < 2; ++h) {
      const __m256i a = abs_bits(in + i + 8 * h);
      __m256 v = _mm256_castsi256_ps(a);
      if constexpr (Masked) {
        const __m256i ok = finite_lanes(a);
        v = _mm256_castsi256_ps(_mm256_and_si256(a, ok));
        vok = _mm256_add_epi32(vok, ok);
      }
      __m256d v0 = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), v1 = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
      if constexpr (Square) {
        v0 = _mm256_mul_pd(v0, v0);
        v1 = _mm256_mul_pd(v1, v1);
      }
      acc[2 * h] = _mm256_add_pd(acc[2 * h], v0);
      acc[2 * h + 1] = _mm256_add_pd(acc[2 * h + 1], v1);
    }
  }
  ok_count += Masked ? negated_lane_sum(vok) : i;
  if (i == n) {
    // No tail: the pairwise sum below in registers, in the same order (lane j of acc[q] is
    // lane 4q + j): += 8 lanes on, += 4, += 2, += 1.
    finite += ok_count;
    const __m256d s4 = _mm256_add_pd(_mm256_add_pd(acc[0], acc[2]), _mm256_add_pd(acc[1], acc[3]));
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
  }
  for (std::size_t q = 0; q < 4; ++q) _mm256_storeu_pd(lane + 4 * q, acc[q]);
#endif
  const auto add = [&](std::size_t j, float x) {
    const std::uint32_t a = bits_of(x) & kAbsMask;
    const bool ok = !Masked || a < kExpMask;
    const double v = ok ? static_cast<double>(std::bit_cast<float>(a)) : 0.0;
    lane[j] += Square ? v * v : v;
    ok_count += ok ? 1 : 0;
  };
  for (; i + kLanes <= n; i += kLanes)  // (the portable build's main loop)
    for (std::size_t j = 0; j < kLanes; ++j) add(j, in[i + j]);
  for (std::size_t j = 0; i < n; ++i, ++j) add(j, in[i]);
  finite += ok_count;
  for (std::size_t w = kLanes / 2; w > 0; w /= 2)  // pairwise: lane[j] += lane[j + w]
    for (std::size_t j = 0; j < w; ++j) lane[j] += lane[j + w];
  return lane[0];
}

// The sum over the finite elements as above. Inputs are finite nearly always, so the unmasked
// sum goes first: a NaN or Inf makes it NaN or Inf (every term is >= 0, and a finite term is
// at most 2^256 in double), and only then does the masked pass run. When all are finite the
// two add the same terms in the same order: the same bits.
template <bool Square>
double finite_lane_sum(const float* in, std::size_t n, std::size_t& finite) {
  std::size_t all = 0;
  const double sum = lane_sum<Square, false>(in, n, all);
  if (std::isfinite(sum)) {
    finite += all;
    return sum;
  }
  return lane_sum<Square, true>(in, n, finite);
}

// ---- fp16 / bf16 ------------------------------------------------------------------------------

inline std::uint16_t narrow(float x, bool bf16) {
  return bf16 ? float_to_bf16_bits(x) : float_to_half_bits(x);
}
inline float widen(std::uint16_t h, bool bf16) {
  return bf16 ? bf16_bits_to_float(h) : half_bits_to_float(h);
}

// Finite inputs that round to Inf: |x| >= 65520 (fp16), >= 2^128 (1 - 2^-9) (bf16).
inline std::uint32_t overflow_from(bool bf16) { return bf16 ? 0x7F7F8000u : 0x477FF000u; }

Counts half_encode_scalar(const float* in, std::size_t n, std::byte* wire, bool bf16) {
  Counts c;
  const std::uint32_t over = overflow_from(bf16);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t a = bits_of(in[i]) & kAbsMask;
    c.nonfinite += a >= kExpMask ? 1 : 0;
    c.overflow += (a >= over && a < kExpMask) ? 1 : 0;
    const std::uint16_t h = narrow(in[i], bf16);
    std::memcpy(wire + 2 * i, &h, 2);
  }
  return c;
}

template <Put M>
void half_decode_scalar(const std::byte* wire, std::size_t n, float* out, bool bf16) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint16_t h;
    std::memcpy(&h, wire + 2 * i, 2);
    put<M>(out, i, widen(h, bf16));
  }
}

#if RDMACOLL_CODEC_AVX2
// bf16 rounding of 8 floats, as float_to_bf16_bits: NaN truncated and quieted, else
// round-to-nearest-even by adding 0x7FFF + the kept lsb. Result in the low 16 bits of each lane.
inline __m256i bf16_round8(__m256i u) {
  const __m256i abs = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(kAbsMask)));
  const __m256i nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(static_cast<int>(kExpMask)));
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
  const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
  return _mm256_srli_epi32(_mm256_blendv_epi8(rounded, quiet, nan), 16);
}
#endif

Counts half_encode(const float* in, std::size_t n, std::byte* wire, bool bf16) {
  std::size_t i = 0;
  Counts c;
#if RDMACOLL_CODEC_AVX2
  const __m256i abs_mask = _mm256_set1_epi32(static_cast<int>(kAbsMask));
  const __m256i finite_max = _mm256_set1_epi32(static_cast<int>(kExpMask - 1));
  const __m256i over_min = _mm256_set1_epi32(static_cast<int>(overflow_from(bf16) - 1));
  __m256i vbad = _mm256_setzero_si256(), vover = _mm256_setzero_si256();  // negated counts
  for (; i + 16 <= n; i += 16) {
    if (i % (std::size_t{1} << 28) == 0) {  // lane counts stay below 2^31
      c.nonfinite += negated_lane_sum(vbad);
      c.overflow += negated_lane_sum(vover);
      vbad = vover = _mm256_setzero_si256();
    }
    const __m256i u0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    const __m256i u1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i + 8));
    const auto count = [&](__m256i u) {
      const __m256i a = _mm256_and_si256(u, abs_mask);
      const __m256i bad = _mm256_cmpgt_epi32(a, finite_max);
      vbad = _mm256_add_epi32(vbad, bad);
      vover = _mm256_add_epi32(vover, _mm256_andnot_si256(bad, _mm256_cmpgt_epi32(a, over_min)));
    };
    count(u0);
    count(u1);
    __m256i packed;
    if (bf16) {
      // packus works per 128-bit lane: [a0-3 b0-3 a4-7 b4-7]; the permute restores order.
      packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bf16_round8(u0), bf16_round8(u1)), 0xD8);
    } else {
      constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
      const __m128i h0 = _mm256_cvtps_ph(_mm256_castsi256_ps(u0), kRound);
      const __m128i h1 = _mm256_cvtps_ph(_mm256_castsi256_ps(u1), kRound);
      packed = _mm256_set_m128i(h1, h0);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(wire + 2 * i), packed);
  }
  c.nonfinite += negated_lane_sum(vbad);
  c.overflow += negated_lane_sum(vover);
#endif
  const Counts tail = half_encode_scalar(in + i, n - i, wire + 2 * i, bf16);
  c.nonfinite += tail.nonfinite;
  c.overflow += tail.overflow;
  return c;
}

void half_decode(const std::byte* wire, std::size_t n, float* out, Mode mode, bool bf16) {
  with_mode(mode, out, n, [&](auto m) {
    constexpr Put M = decltype(m)::value;
    std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wire + 2 * i));
      const __m256 d = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                            : _mm256_cvtph_ps(h);
      put8<M>(out + i, d);
    }
#endif
    half_decode_scalar<M>(wire + 2 * i, n - i, out + i, bf16);
  });
}

// ---- int8 -------------------------------------------------------------------------------------

// q = round(x * inv) clamped to [-127, 127], and 0 where |x| < half or x is not finite.
// |x| < scale/2 goes to 0 even when x * inv rounds up to 0.5+: then a nonzero q always has
// scale*|q|/2 <= |x|, which makes error feedback exact (Sterbenz; see codec.h).
constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23: (y + M) - M rounds |y| < 2^22 to nearest even

// Finite: x has no NaN or Inf, so |x| <= absmax holds and is not tested.
template <bool Finite>
void int8_quantize(const float* x, std::size_t m, float inv, float half, float absmax, std::int8_t* q) {
  std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
  const __m256 vinv = _mm256_set1_ps(inv), vhalf = _mm256_set1_ps(half), vmax = _mm256_set1_ps(absmax);
  const __m256 magic = _mm256_set1_ps(kMagic);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(kAbsMask)));
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  const auto quant8 = [&](const float* p) {  // 8 codes in 32-bit lanes
    const __m256 v = _mm256_loadu_ps(p);
    const __m256 r = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(v, vinv), magic), magic);
    const __m256i qi = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvttps_epi32(r), lo), hi);
    const __m256 ax = _mm256_and_ps(v, abs_mask);
    const __m256 big = _mm256_cmp_ps(ax, vhalf, _CMP_GE_OQ);
    const __m256 keep = Finite ? big : _mm256_and_ps(big, _mm256_cmp_ps(ax, vmax, _CMP_LE_OQ));
    return _mm256_and_si256(qi, _mm256_castps_si256(keep));
  };
  // 32 at a time: the packs work per 128-bit lane, leaving the dwords as a0-3 b0-3 c0-3 d0-3
  // a4-7 b4-7 c4-7 d4-7; one permute puts them in order for a single 32-byte store.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (; i + 32 <= m; i += 32) {
    const __m256i ab = _mm256_packs_epi32(quant8(x + i), quant8(x + i + 8));
    const __m256i cd = _mm256_packs_epi32(quant8(x + i + 16), quant8(x + i + 24));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), bytes);
  }
  for (; i + 8 <= m; i += 8) {
    const __m256i qi = quant8(x + i);
    const __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packs_epi16(q16, q16));
  }
#endif
  for (; i < m; ++i) {
    const float y = x[i] * inv;
    const float r = (y + kMagic) - kMagic;
    const float ax = std::bit_cast<float>(bits_of(x[i]) & kAbsMask);
    // Converted only when kept (false for NaN, Inf): a float to int conversion out of int's
    // range is undefined, not the lane's INT_MIN that _mm256_cvttps_epi32 gives.
    const bool keep = ax >= half && (Finite || ax <= absmax);
    q[i] = static_cast<std::int8_t>(keep ? std::clamp(static_cast<int>(r), -127, 127) : 0);
  }
}

// Wire: ceil(n / block) fp32 scales, then n int8 codes.
Counts int8_encode(const float* in, std::size_t n, std::size_t block, std::byte* wire) {
  Counts c;
  auto* q = reinterpret_cast<std::int8_t*>(codes_of(wire, n, block));
  for_each_block(wire, n, block, [&](std::byte* slot, std::size_t first, std::size_t m) {
    const std::size_t nonfinite_before = c.nonfinite;
    const float absmax = finite_absmax(in + first, m, c.nonfinite);
    if (absmax < kInt8FlushBelow) {
      store_f32(slot, 0.0f);
      std::memset(q + first, 0, m);
      return;
    }
    const float scale = absmax / 127.0f;
    store_f32(slot, scale);
    if (c.nonfinite == nonfinite_before) int8_quantize<true>(in + first, m, 127.0f / absmax, 0.5f * scale, absmax, q + first);
    else int8_quantize<false>(in + first, m, 127.0f / absmax, 0.5f * scale, absmax, q + first);
  });
  return c;
}

void int8_decode(const std::byte* wire, std::size_t n, std::size_t block, float* out, Mode mode) {
  const auto* q = reinterpret_cast<const std::int8_t*>(codes_of(wire, n, block));
  decode_blocks(wire, n, block, out, mode, [&](auto md, float scale, std::size_t first, std::size_t m) {
    constexpr Put M = decltype(md)::value;
    const std::int8_t* qb = q + first;
    float* o = out + first;
    std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
    const __m256 vscale = _mm256_set1_ps(scale);
    for (; i + 8 <= m; i += 8) {
      const __m256i q32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(qb + i)));
      put8<M>(o + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q32), vscale));
    }
#endif
    for (; i < m; ++i) put<M>(o, i, static_cast<float>(qb[i]) * scale);
  });
}

// ---- sign -------------------------------------------------------------------------------------

// Wire: ceil(n / block) fp32 scales (mean |x| over the block's finite elements), then
// ceil(n / 8) bytes of sign bits, element i at bit i % 8 of byte i / 8, 1 = negative. block is a
// multiple of 8, so every block starts on a byte.
inline std::uint8_t sign_byte(const float* x, std::size_t m) {
  unsigned byte = 0;
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint32_t u = bits_of(x[j]);
    const bool neg = (u >> 31) != 0 && (u & kAbsMask) < kExpMask;
    byte |= (neg ? 1u : 0u) << j;
  }
  return static_cast<std::uint8_t>(byte);
}

Counts sign_encode(const float* in, std::size_t n, std::size_t block, std::byte* wire) {
  Counts c;
  auto* bits = reinterpret_cast<std::uint8_t*>(codes_of(wire, n, block));
  for_each_block(wire, n, block, [&](std::byte* slot, std::size_t first, std::size_t m) {
    const float* x = in + first;
    std::size_t finite = 0;
    const double sum = finite_lane_sum<false>(x, m, finite);
    c.nonfinite += m - finite;
    store_f32(slot, finite == 0 ? 0.0f : static_cast<float>(sum / static_cast<double>(finite)));
    std::uint8_t* out = bits + first / 8;
    std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
    if (finite == m) {  // no NaN or Inf in the block: the sign bits themselves
      for (; i + 8 <= m; i += 8) out[i / 8] = static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_loadu_ps(x + i)));
    }
    for (; i + 8 <= m; i += 8) {  // the sign bits of the finite lanes, as the scalar sign_byte
      const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
      const __m256i ok = finite_lanes(abs_bits(x + i));
      out[i / 8] = static_cast<std::uint8_t>(_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(u, ok))));
    }
#endif
    for (; i < m; i += 8) out[i / 8] = sign_byte(x + i, std::min<std::size_t>(8, m - i));
  });
  return c;
}

void sign_decode(const std::byte* wire, std::size_t n, std::size_t block, float* out, Mode mode) {
  const auto* bits = reinterpret_cast<const std::uint8_t*>(codes_of(wire, n, block));
  decode_blocks(wire, n, block, out, mode, [&](auto md, float scale, std::size_t first, std::size_t m) {
    constexpr Put M = decltype(md)::value;
    const std::uint8_t* in = bits + first / 8;
    float* o = out + first;
    std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
    const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256 pos = _mm256_set1_ps(scale), neg = _mm256_set1_ps(-scale);
    for (; i + 8 <= m; i += 8) {
      const __m256i byte = _mm256_set1_epi32(in[i / 8]);
      const __m256i set = _mm256_cmpeq_epi32(_mm256_and_si256(byte, lane_bit), lane_bit);
      put8<M>(o + i, _mm256_blendv_ps(pos, neg, _mm256_castsi256_ps(set)));
    }
#endif
    for (; i + 8 <= m; i += 8) {  // (the portable build's main loop)
      const unsigned byte = in[i / 8];  // read once: stores to o may alias a uint8_t
      for (unsigned j = 0; j < 8; ++j) put<M>(o, i + j, ((byte >> j) & 1u) ? -scale : scale);
    }
    for (; i < m; ++i) put<M>(o, i, ((in[i / 8] >> (i % 8)) & 1u) ? -scale : scale);
  });
}

// ---- qsgd / terngrad --------------------------------------------------------------------------

// Wire: ceil(n / bucket) fp32 scales, then n codes of p.width bits, element i at bits
// [i*w, i*w + w) counting from bit 0 of the first code byte (16-bit codes little-endian).
// A code is the level (0..levels) with the sign in the top bit.

constexpr std::size_t kChunk = 256;  // codes computed per pass, then packed

// Buckets of a multiple of 8 elements below a chunk (qsgd's default of 64) are encoded in
// groups of whole buckets (stochastic_encode_grouped), and their L2 norms are summed in float.
inline bool small_buckets(const StochasticParams& p) { return p.bucket % 8 == 0 && p.bucket < kChunk; }

// Scale of a bucket: the L2 norm or the absmax, never below any |x| in the bucket (so levels
// never exceed p.levels). Buckets whose scale is below kInt8FlushBelow are sent as zeros.
// The norm of a large bucket is summed in double and rounded up to float (capped at FLT_MAX);
// that of a small bucket in float (float_sumsq, half the work), then scaled up past the norm
// (scale_of_float_sum), unless the float sum is not usable (below).
inline float flushed(float scale) { return scale < kInt8FlushBelow ? 0.0f : scale; }
inline float scale_of_norm(double norm) {
  constexpr float kMax = std::numeric_limits<float>::max();
  float scale = static_cast<float>(std::min(norm, static_cast<double>(kMax)));
  // The next float up, short of Inf: a norm past FLT_MAX keeps FLT_MAX, still above every
  // element (each is a finite float), where Inf would decode level 0 as 0 * Inf = NaN.
  if (static_cast<double>(scale) < norm && scale < kMax) scale = std::bit_cast<float>(bits_of(scale) + 1);
  return flushed(scale);
}

// Sum of squares in float over 16 lanes (lane j: elements i = j mod 16, in order; products and
// sums rounded apart, as -ffp-contract=off keeps them), then lane[j] += lane[j + w] for w = 8,
// 4, 2, 1: both builds add in this order.
#if RDMACOLL_CODEC_AVX2
// The last additions of 16 lanes held as (lanes 0-7, lanes 8-15), four sums at a time: lane q
// of the result is float_sumsq's total of the lanes in a[q], b[q].
inline __m128 sumsq_tails(const __m256* a, const __m256* b) {
  __m128 t[4];
  for (std::size_t q = 0; q < 4; ++q) {
    const __m256 s8 = _mm256_add_ps(a[q], b[q]);                                      // += 8
    t[q] = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));      // += 4
  }
  _MM_TRANSPOSE4_PS(t[0], t[1], t[2], t[3]);  // t[j] = lane j of every sum
  return _mm_add_ps(_mm_add_ps(t[0], t[2]), _mm_add_ps(t[1], t[3]));                 // += 2, += 1
}
#endif
float float_sumsq(const float* x, std::size_t m) {
  float lane[16] = {};
  std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
  __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
  for (; i + 16 <= m; i += 16) {
    const __m256 u = _mm256_loadu_ps(x + i), v = _mm256_loadu_ps(x + i + 8);
    a = _mm256_add_ps(a, _mm256_mul_ps(u, u));
    b = _mm256_add_ps(b, _mm256_mul_ps(v, v));
  }
  if (i == m) {
    const __m256 z = _mm256_setzero_ps(), as[4] = {a, z, z, z}, bs[4] = {b, z, z, z};
    return _mm_cvtss_f32(sumsq_tails(as, bs));
  }
  _mm256_storeu_ps(lane, a);
  _mm256_storeu_ps(lane + 8, b);
#endif
  for (; i + 16 <= m; i += 16)
    for (std::size_t j = 0; j < 16; ++j) lane[j] += x[i + j] * x[i + j];
  for (std::size_t j = 0; i < m; ++i, ++j) lane[j] += x[i] * x[i];
  for (std::size_t w = 8; w > 0; w /= 2)
    for (std::size_t j = 0; j < w; ++j) lane[j] += lane[j + w];
  return lane[0];
}
// A float sum of squares S is usable where it is finite (no NaN or Inf in the bucket, no square
// past FLT_MAX) and at least 2^-60 (squares that turned denormal lose bits, but at most 2^-142
// in all against it). In a bucket below kChunk every lane adds at most 16 squares, so S went
// through at most 20 roundings (one product, 15 additions, 4 pairwise), each of at most
// u = 2^-24: S >= (1 - u)^20 * sum, sqrt(S) rounded >= (1 - u)^11 * norm, and times (1 + 16u)
// rounded the scale is >= (1 - u)^12 (1 + 16u) * norm > (1 + 3u) * norm: above the norm, by
// less than 2 millionths (28u) at most.
constexpr float kNormUp = 1.0f + 0x1p-20f;
inline bool float_sum_usable(float s) { return s >= 0x1p-60f && s <= std::numeric_limits<float>::max(); }
inline float scale_of_float_sum(float s) { return std::sqrt(s) * kNormUp; }

float bucket_scale(const float* x, std::size_t m, const StochasticParams& p, std::size_t& nonfinite) {
  if (!p.l2) return flushed(finite_absmax(x, m, nonfinite));
  if (small_buckets(p)) {
    const float s = float_sumsq(x, m);
    if (float_sum_usable(s)) return scale_of_float_sum(s);  // never flushed: s >= 2^-60
  }
  std::size_t finite = 0;
  const double norm = std::sqrt(finite_lane_sum<true>(x, m, finite));
  nonfinite += m - finite;
  return scale_of_norm(norm);
}

#if RDMACOLL_CODEC_AVX2
// The L2 scales of k <= 4 whole small buckets of b elements (b a multiple of 16) at x, x + b,
// ...: bucket_scale's bits, with the last additions and the square roots four buckets at a
// time (with 64-element buckets, bucket_scale's own per-bucket steps took as long as the sums).
void l2_scales(const float* x, std::size_t b, std::size_t k, float* scale, std::size_t& nonfinite,
               const StochasticParams& p) {
  __m256 lo[4], hi[4];
  for (std::size_t q = 0; q < 4; ++q) {
    lo[q] = hi[q] = _mm256_setzero_ps();
    for (std::size_t i = 0; q < k && i < b; i += 16) {
      const __m256 u = _mm256_loadu_ps(x + q * b + i), v = _mm256_loadu_ps(x + q * b + i + 8);
      lo[q] = _mm256_add_ps(lo[q], _mm256_mul_ps(u, u));
      hi[q] = _mm256_add_ps(hi[q], _mm256_mul_ps(v, v));
    }
  }
  alignas(16) float sum[4], got[4];
  const __m128 s = sumsq_tails(lo, hi);
  _mm_store_ps(sum, s);
  _mm_store_ps(got, _mm_mul_ps(_mm_sqrt_ps(s), _mm_set1_ps(kNormUp)));
  for (std::size_t q = 0; q < k; ++q)  // not usable (a NaN or Inf, a tiny norm): in double
    scale[q] = float_sum_usable(sum[q]) ? got[q] : bucket_scale(x + q * b, b, p, nonfinite);
}
#endif

// Whole bytes in a loop the vectorizer can take (no bounds test inside), then the partial one.
template <unsigned W>
void pack_codes(const std::uint16_t* code, std::size_t m, std::byte* out) {
  if constexpr (W == 16) {
    std::memcpy(out, code, 2 * m);
  } else {
    constexpr unsigned kPer = 8 / W;
    const std::size_t full = m / kPer;
    auto* o = reinterpret_cast<std::uint8_t*>(out);
    std::size_t b = 0;
#if RDMACOLL_CODEC_AVX2
    if constexpr (W == 4) {  // 16 codes into 8 bytes: each 32-bit lane holds a pair, low first
      const __m256i low = _mm256_set1_epi32(0xF), high = _mm256_set1_epi32(0xF0);
      for (; b + 8 <= full; b += 8) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(code + 2 * b));
        const __m256i pair = _mm256_or_si256(_mm256_and_si256(x, low), _mm256_and_si256(_mm256_srli_epi32(x, 12), high));
        const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(pair), _mm256_extracti128_si256(pair, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(o + b), _mm_packus_epi16(w16, w16));
      }
    }
#endif
    for (; b < full; ++b) {
      unsigned byte = 0;
      for (unsigned j = 0; j < kPer; ++j) byte |= static_cast<unsigned>(code[b * kPer + j]) << (j * W);
      o[b] = static_cast<std::uint8_t>(byte);
    }
    if (m % kPer != 0) {
      unsigned byte = 0;
      for (std::size_t i = full * kPer; i < m; ++i) byte |= static_cast<unsigned>(code[i]) << ((i % kPer) * W);
      o[full] = static_cast<std::uint8_t>(byte);
    }
  }
}

template <unsigned W>
void unpack_codes(const std::byte* in, std::size_t m, std::uint16_t* code) {
  if constexpr (W == 16) {
    std::memcpy(code, in, 2 * m);
  } else {
    constexpr unsigned kPer = 8 / W, kMask = (1u << W) - 1;
    const std::size_t full = m / kPer;
    const auto* p = reinterpret_cast<const std::uint8_t*>(in);
    std::size_t b = 0;
#if RDMACOLL_CODEC_AVX2
    if constexpr (W == 4) {  // 8 bytes into 16 codes: byte k's low nibble, then its high one
      const __m256i low = _mm256_set1_epi32(0xF), high = _mm256_set1_epi32(0xF0);
      for (; b + 8 <= full; b += 8) {
        const __m256i x = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + b)));
        const __m256i pair = _mm256_or_si256(_mm256_and_si256(x, low), _mm256_slli_epi32(_mm256_and_si256(x, high), 12));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(code + 2 * b), pair);
      }
    }
#endif
    for (; b < full; ++b)
      for (unsigned j = 0; j < kPer; ++j) code[b * kPer + j] = static_cast<std::uint16_t>((p[b] >> (j * W)) & kMask);
    for (std::size_t i = full * kPer; i < m; ++i)
      code[i] = static_cast<std::uint16_t>((p[full] >> ((i % kPer) * W)) & kMask);
  }
}

template <class F>
void with_width(unsigned width, F f) {
  switch (width) {
    case 2: return f(std::integral_constant<unsigned, 2>{});
    case 4: return f(std::integral_constant<unsigned, 4>{});
    case 8: return f(std::integral_constant<unsigned, 8>{});
    default: return f(std::integral_constant<unsigned, 16>{});
  }
}

// Levels of m elements x[0..m) whose global indices are index0.. (same upper 32 bits).
// Element i is scaled by mult[i / per]: one bucket's (per >= m), or several whole buckets'
// (per a multiple of 8, the last bucket possibly short), so that small buckets share one pass.
// Masked = false: x has no NaN or Inf, so the test that sends them to level 0 is left out.
template <bool Masked>
void stochastic_levels(const float* x, std::size_t m, const float* mult, std::size_t per, unsigned levels,
                       unsigned width, HashKey key, std::uint64_t index0, std::uint16_t* code) {
  const std::uint32_t lo0 = static_cast<std::uint32_t>(index0);
  const std::uint32_t hi = static_cast<std::uint32_t>(index0 >> 32);
  const std::uint32_t sign_bit = 1u << (width - 1);
  const std::uint32_t chunk = chunk_key(key, hi);
  const float top = static_cast<float>(levels);
  std::size_t i = 0;
#if RDMACOLL_CODEC_AVX2
  // The scalar loop below, 8 lanes at a time; the hash's multiplies are vpmulld.
  const __m256 vtop = _mm256_set1_ps(top), unit = _mm256_set1_ps(0x1p-24f);
  const __m256i ck = _mm256_set1_epi32(static_cast<int>(chunk));
  const __m256i m1 = _mm256_set1_epi32(0x7FEB352D), m2 = _mm256_set1_epi32(static_cast<int>(0x846CA68Bu));
  const __m256i vsign = _mm256_set1_epi32(static_cast<int>(sign_bit)), zero = _mm256_setzero_si256();
  const auto mix = [&](__m256i v) {
    v = _mm256_xor_si256(v, _mm256_srli_epi32(v, 16));
    v = _mm256_mullo_epi32(v, m1);
    v = _mm256_xor_si256(v, _mm256_srli_epi32(v, 15));
    v = _mm256_mullo_epi32(v, m2);
    return _mm256_xor_si256(v, _mm256_srli_epi32(v, 16));
  };
  __m256i idx = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(lo0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (std::size_t g = 0; i + 8 <= m; ++g) {
    const std::size_t stop = std::min(m, (g + 1) * per) & ~std::size_t{7};
    const __m256 vmult = _mm256_set1_ps(mult[g]);
    for (; i < stop; i += 8, idx = _mm256_add_epi32(idx, _mm256_set1_epi32(8))) {
      const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
      const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(static_cast<int>(kAbsMask)));
      const __m256 ax = _mm256_castsi256_ps(Masked ? _mm256_and_si256(a, finite_lanes(a)) : a);
      const __m256 r = _mm256_min_ps(_mm256_mul_ps(ax, vmult), vtop);
      const __m256i l = _mm256_cvttps_epi32(r);
      const __m256 p = _mm256_sub_ps(r, _mm256_cvtepi32_ps(l));
      const __m256i h = mix(_mm256_xor_si256(idx, ck));
      const __m256 rnd = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(h, 8)), unit);
      const __m256i level = _mm256_sub_epi32(l, _mm256_castps_si256(_mm256_cmp_ps(rnd, p, _CMP_LT_OQ)));
      const __m256i neg = _mm256_andnot_si256(_mm256_cmpeq_epi32(level, zero), _mm256_srai_epi32(u, 31));
      const __m256i c = _mm256_or_si256(level, _mm256_and_si256(neg, vsign));
      const __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(code + i), c16);
    }
  }
#endif
  for (std::size_t g = i / per, next = (g + 1) * per; i < m; ++i) {
    if (i == next) {
      ++g;
      next += per;
    }
    const std::uint32_t u = bits_of(x[i]);
    const std::uint32_t a = u & kAbsMask;
    const float ax = !Masked || a < kExpMask ? std::bit_cast<float>(a) : 0.0f;
    const float r = std::min(ax * mult[g], top);  // |x| <= scale, so r <= levels up to rounding
    const float fl = static_cast<float>(static_cast<std::int32_t>(r));
    const float p = r - fl;
    const float rnd = hash_uniform(element_hash(chunk, lo0 + static_cast<std::uint32_t>(i)));
    const float level = rnd < p ? fl + 1.0f : fl;  // fl + 1 <= levels: p > 0 means r < levels
    const std::uint32_t l = static_cast<std::uint32_t>(static_cast<std::int32_t>(level));
    code[i] = static_cast<std::uint16_t>(l | ((u >> 31) != 0 && l != 0 ? sign_bit : 0u));
  }
}

// Buckets smaller than a chunk, in groups of whole buckets of up to kChunk elements: each
// group's scales first, then one levels pass and one pack over the group (per bucket, the
// setup of those passes cost as much as the work of a 64-element bucket). The same codes as
// bucket by bucket: the masked pass, taken when the group has a NaN or Inf, gives finite
// elements the levels the unmasked one does. For n <= 2^32 (one upper index half throughout).
// grouped_buckets: the bucket sizes that take this path (and the grouped decode).
inline bool grouped_buckets(const StochasticParams& p) { return small_buckets(p); }
template <unsigned W>
void stochastic_encode_grouped(const float* in, std::size_t n, const StochasticParams& p, HashKey key,
                               std::byte* wire, std::byte* codes, std::uint16_t* code, Counts& c) {
  const std::size_t group = kChunk / p.bucket * p.bucket;
  float mult[kChunk / 8];
  for (std::size_t first = 0, slot = 0; first < n; first += group) {
    const std::size_t m = std::min(group, n - first);
    const std::size_t nonfinite_before = c.nonfinite;
    std::size_t b = 0, off = 0;
    const auto put_scale = [&](float scale) {
      store_f32(wire + 4 * slot++, scale);
      mult[b++] = scale == 0.0f ? 0.0f : static_cast<float>(p.levels) / scale;
      off += p.bucket;
    };
#if RDMACOLL_CODEC_AVX2
    if (p.l2 && p.bucket % 16 == 0)
      while (off + p.bucket <= m) {
        float scale[4];
        const std::size_t k = std::min<std::size_t>(4, (m - off) / p.bucket);
        l2_scales(in + first + off, p.bucket, k, scale, c.nonfinite, p);
        for (std::size_t q = 0; q < k; ++q) put_scale(scale[q]);
      }
#endif
    while (off < m) put_scale(bucket_scale(in + first + off, std::min(p.bucket, m - off), p, c.nonfinite));
    if (c.nonfinite == nonfinite_before)
      stochastic_levels<false>(in + first, m, mult, p.bucket, p.levels, W, key, first, code);
    else
      stochastic_levels<true>(in + first, m, mult, p.bucket, p.levels, W, key, first, code);
    pack_codes<W>(code, m, codes + first * W / 8);
  }
}

Counts stochastic_encode(const float* in, std::size_t n, const StochasticParams& p, std::uint64_t seed,
                         std::byte* wire) {
  Counts c;
  const HashKey key = hash_key(seed);
  std::byte* codes = codes_of(wire, n, p.bucket);
  std::uint16_t code[kChunk];
  with_width(p.width, [&](auto w) {
    constexpr unsigned W = decltype(w)::value;
    if (grouped_buckets(p) && n <= (std::size_t{1} << 32))
      return stochastic_encode_grouped<W>(in, n, p, key, wire, codes, code, c);
    for_each_block(wire, n, p.bucket, [&](std::byte* slot, std::size_t first, std::size_t len) {
      const std::size_t end = first + len;
      const std::size_t nonfinite_before = c.nonfinite;
      const float scale = bucket_scale(in + first, len, p, c.nonfinite);
      const bool finite = c.nonfinite == nonfinite_before;
      store_f32(slot, scale);
      const float mult = scale == 0.0f ? 0.0f : static_cast<float>(p.levels) / scale;
      for (std::size_t i = first; i < end;) {
        // A chunk is byte-aligned (first is a multiple of 8, kChunk too) and does not cross a
        // multiple of 2^32, so the index's upper half is constant in it.
        const std::uint64_t next32 = (static_cast<std::uint64_t>(i) | 0xFFFFFFFFull) + 1;
        const std::size_t m = static_cast<std::size_t>(std::min<std::uint64_t>({kChunk, end - i, next32 - i}));
        if (finite) stochastic_levels<false>(in + i, m, &mult, m, p.levels, W, key, i, code);
        else stochastic_levels<true>(in + i, m, &mult, m, p.levels, W, key, i, code);
        pack_codes<W>(code, m, codes + i * W / 8);
        i += m;
      }
    });
  });
  return c;
}

// out[0, m) (put as M) = the values of m codes: level * step, negated where the sign bit is set.
template <unsigned W, Put M>
void decode_levels(const std::uint16_t* code, std::size_t m, float step, float* o) {
  constexpr std::uint32_t kSign = 1u << (W - 1);
  std::size_t j = 0;
#if RDMACOLL_CODEC_AVX2
  const __m256 vstep = _mm256_set1_ps(step);
  const __m256i level_mask = _mm256_set1_epi32(static_cast<int>(kSign - 1));
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(kSign));
  for (; j + 8 <= m; j += 8) {  // as below: the sign flips the product's sign bit
    const __m256i cj = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(code + j)));
    const __m256 d = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(cj, level_mask)), vstep);
    const __m256i neg = _mm256_slli_epi32(_mm256_cmpeq_epi32(_mm256_and_si256(cj, sign), sign), 31);
    put8<M>(o + j, _mm256_xor_ps(d, _mm256_castsi256_ps(neg)));
  }
#endif
  for (; j < m; ++j) {
    const std::uint32_t cj = code[j];
    const float d = static_cast<float>(static_cast<std::int32_t>(cj & (kSign - 1))) * step;
    put<M>(o, j, (cj & kSign) ? -d : d);
  }
}

void stochastic_decode(const std::byte* wire, std::size_t n, const StochasticParams& p, float* out,
                       Mode mode) {
  const std::byte* codes = codes_of(wire, n, p.bucket);
  std::uint16_t code[kChunk];
  with_width(p.width, [&](auto w) {
    constexpr unsigned W = decltype(w)::value;
    if (grouped_buckets(p)) {
      // Small buckets in groups of whole buckets, as stochastic_encode_grouped: one unpack per group.
      const std::size_t group = kChunk / p.bucket * p.bucket;
      with_mode(mode, out, n, [&](auto md) {
        constexpr Put M = decltype(md)::value;
        for (std::size_t first = 0, slot = 0; first < n; first += group) {
          const std::size_t m = std::min(group, n - first);
          unpack_codes<W>(codes + first * W / 8, m, code);
          for (std::size_t off = 0; off < m; off += p.bucket, ++slot)
            decode_levels<W, M>(code + off, std::min(p.bucket, m - off),
                                load_f32(wire + 4 * slot) / static_cast<float>(p.levels), out + first + off);
        }
      });
      return;
    }
    decode_blocks(wire, n, p.bucket, out, mode, [&](auto md, float scale, std::size_t first, std::size_t len) {
      constexpr Put M = decltype(md)::value;
      const std::size_t end = first + len;
      const float step = scale / static_cast<float>(p.levels);
      for (std::size_t i = first; i < end; i += kChunk) {
        const std::size_t m = std::min(kChunk, end - i);
        unpack_codes<W>(codes + i * W / 8, m, code);
        decode_levels<W, M>(code, m, step, out + i);
      }
    });
  });
}

// ---- topk / randk -----------------------------------------------------------------------------

// The candidates of topk's sampled threshold (kernel_table.h). Few elements pass (a little
// over k), so the AVX2 loop tests 8 at a time and only a lane that passes takes the scalar path.
std::size_t topk_candidates(const float* in, std::size_t first, std::size_t end, std::uint32_t low,
                            std::uint64_t* out, std::size_t& nonfinite) {
  std::size_t m = 0, bad = 0, i = first;
#if RDMACOLL_CODEC_AVX2
  const __m256i below = _mm256_set1_epi32(static_cast<int>(low - 1)), finite_max = _mm256_set1_epi32(static_cast<int>(kExpMask - 1));
  __m256i vbad = _mm256_setzero_si256();  // -1 per non-finite lane; at most 2^28 per lane below
  while (i + 8 <= end) {
    const std::size_t stop = std::min(end - (end - i) % 8, i + (std::size_t{1} << 28));
    for (; i < stop; i += 8) {
      const __m256i a = abs_bits(in + i);
      const __m256i nf = _mm256_cmpgt_epi32(a, finite_max);
      vbad = _mm256_add_epi32(vbad, nf);
      unsigned pass = static_cast<unsigned>(
          _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_andnot_si256(nf, _mm256_cmpgt_epi32(a, below)))));
      while (pass != 0) {
        const std::size_t e = i + static_cast<unsigned>(std::countr_zero(pass));
        out[m++] = topk_candidate(bits_of(in[e]), e);
        pass &= pass - 1;
      }
    }
    bad += negated_lane_sum(vbad);
    vbad = _mm256_setzero_si256();
  }
#endif
  for (; i < end; ++i) {  // branch-free: every element is written at out[m], kept by advancing m
    const std::uint32_t b = bits_of(in[i]), a = b & kAbsMask;
    const bool ok = a < kExpMask;
    bad += ok ? 0 : 1;
    out[m] = topk_candidate(b, i);
    m += ok && a >= low ? 1 : 0;
  }
  nonfinite += bad;
  return m;
}

// One pass over out; with stream_to(out, n), 8 floats at a time by streaming stores: an 8-float
// group with no index in it is zeros, one with some is built in registers' worth of memory.
void sparse_expand(const std::byte* val, const std::size_t* idx, std::size_t k, std::size_t n, float* out) {
  std::size_t i = 0, j = 0;
#if RDMACOLL_CODEC_AVX2
  if (stream_to(out, n)) {
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      if (j == k || idx[j] >= i + 8) {
        put8<Put::stream>(out + i, zero);
        continue;
      }
      alignas(32) float group[8] = {};
      for (; j < k && idx[j] < i + 8; ++j) group[idx[j] - i] = load_f32(val + 4 * j);
      put8<Put::stream>(out + i, _mm256_load_ps(group));
    }
    _mm_sfence();
  }
#endif
  for (; j < k; ++j) {
    std::fill(out + i, out + idx[j], 0.0f);
    out[idx[j]] = load_f32(val + 4 * j);
    i = idx[j] + 1;
  }
  std::fill(out + i, out + n, 0.0f);
}

}  // namespace

extern const KernelTable kTable;
const KernelTable kTable = {
#if RDMACOLL_CODEC_AVX2
    "avx2",
#else
    "portable",
#endif
    half_encode, half_decode, int8_encode, int8_decode, sign_encode, sign_decode,
    stochastic_encode, stochastic_decode, topk_candidates, sparse_expand};

}  // namespace rdmacoll::collectives::compress::RDMACOLL_CODEC_ISA
