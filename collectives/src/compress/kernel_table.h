// The codecs' element kernels, once per instruction set: kernels.h is compiled twice, by
// kernels_portable.cc (baseline x86-64 or any other CPU) and kernels_avx2.cc (-mavx2 -mfma
// -mf16c), each into its own namespace, and the codec picks a table at creation.
// Both translation units are built with -ffp-contract=off and without -ffast-math, and the
// kernels fix the order of every floating-point sum, so the two tables give identical bits.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rdmacoll/collectives/codec.h"

namespace rdmacoll::collectives::compress {

using Mode = Codec::Mode;

struct Counts {
  std::size_t nonfinite = 0;
  std::size_t overflow = 0;
};

// qsgd and terngrad share one kernel: per bucket a scale (the L2 norm, or the absmax), then
// `width`-bit codes: the top bit is the sign, the rest the level 0..levels.
struct StochasticParams {
  std::size_t bucket;
  unsigned levels;
  unsigned width;  // 2, 4, 8 or 16
  bool l2;         // scale = ||x||_2 (qsgd) or max |x| (terngrad)
};

struct KernelTable {
  const char* name;
  Counts (*half_encode)(const float* in, std::size_t n, std::byte* wire, bool bf16);
  void (*half_decode)(const std::byte* wire, std::size_t n, float* out, Mode mode, bool bf16);
  Counts (*int8_encode)(const float* in, std::size_t n, std::size_t block, std::byte* wire);
  void (*int8_decode)(const std::byte* wire, std::size_t n, std::size_t block, float* out, Mode mode);
  Counts (*sign_encode)(const float* in, std::size_t n, std::size_t block, std::byte* wire);
  void (*sign_decode)(const std::byte* wire, std::size_t n, std::size_t block, float* out, Mode mode);
  Counts (*stochastic_encode)(const float* in, std::size_t n, const StochasticParams& p,
                              std::uint64_t seed, std::byte* wire);
  void (*stochastic_decode)(const std::byte* wire, std::size_t n, const StochasticParams& p,
                            float* out, Mode mode);
  // topk's candidate pass over in[first, end) (end <= 2^32): appends topk_candidate(x's bits, i)
  // for every element whose selection key (|x| as bits, 0 for NaN and Inf) is >= low (> 0), in
  // index order, to out (room for end - first), returns how many, and adds the number of
  // non-finite elements to nonfinite.
  std::size_t (*topk_candidates)(const float* in, std::size_t first, std::size_t end, std::uint32_t low,
                                 std::uint64_t* out, std::size_t& nonfinite);
  // Sparse decoding: out[0, n) = 0 except out[idx[j]] = value j (fp32 at val + 4j) for the k
  // strictly ascending indices idx[j] < n, in one pass.
  void (*sparse_expand)(const std::byte* val, const std::size_t* idx, std::size_t k, std::size_t n, float* out);
};

// topk's candidates as one integer each: x's sign in bit 63, then its key (|x| as bits, 31 bits),
// then 2^32 - 1 - i, so that without the sign (c << 1) the selection order (larger key, then
// lower index) is simply "larger", and the value comes back without reading x again
// (topk_value_bits); needs i < 2^32.
constexpr std::uint64_t topk_candidate(std::uint32_t bits, std::size_t i) noexcept {
  return (std::uint64_t{bits >> 31} << 63) | (std::uint64_t{bits & 0x7FFFFFFFu} << 32) |
         (0xFFFFFFFFull - static_cast<std::uint64_t>(i));
}
constexpr std::uint32_t topk_value_bits(std::uint64_t c) noexcept { return static_cast<std::uint32_t>(c >> 32); }
constexpr std::uint64_t topk_order(std::uint64_t c) noexcept { return c << 1; }

namespace portable {
extern const KernelTable kTable;
}
#if defined(__x86_64__)
namespace avx2 {
extern const KernelTable kTable;
}
#endif

// Blocks whose largest finite magnitude is below this are sent as zeros by int8 (so
// 127/absmax never overflows and the scale is never subnormal).
inline constexpr float kInt8FlushBelow = 0x1p-100f;

// The per-element random number of the stochastic codecs: a counter-based hash of the seed
// and the element index, 32-bit integer operations only so it vectorizes with AVX2. The
// seed's splitmix64 gives two 32-bit keys; the index's upper half (constant over 2^32
// elements) is folded into the first key once (chunk_key), and each element's number is
// one round of Chris Wellons' lowbias32 (a bijection with near-ideal avalanche) of its
// lower half XOR that key: two multiplies per element. (Two rounds per element, as before,
// held QSGD's encoder to 1.9 GB/s with buckets of 8192 on this VM; one round: 3.5-3.8.)
struct HashKey {
  std::uint32_t k0, k1;
};

constexpr HashKey hash_key(std::uint64_t seed) noexcept {
  std::uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return {static_cast<std::uint32_t>(z), static_cast<std::uint32_t>(z >> 32)};
}

constexpr std::uint32_t mix32(std::uint32_t x) noexcept {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// hi is index >> 32 (the same for every element of a call below 2^32 elements).
constexpr std::uint32_t chunk_key(HashKey key, std::uint32_t hi) noexcept { return key.k0 ^ mix32(hi ^ key.k1); }

constexpr std::uint32_t element_hash(std::uint32_t chunk, std::uint32_t lo) noexcept { return mix32(lo ^ chunk); }

// A uniform float in [0, 1) with 24 random bits: exact, so both paths compare the same value.
constexpr float hash_uniform(std::uint32_t h) noexcept {
  return static_cast<float>(h >> 8) * 0x1p-24f;
}

}  // namespace rdmacoll::collectives::compress
