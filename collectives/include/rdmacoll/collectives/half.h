// 16-bit floating-point storage types: IEEE 754 binary16 (Float16) and bfloat16 (BFloat16).
//
// Values are stored as raw bit patterns and converted to float for arithmetic. The scalar
// conversions are portable (no __fp16/_Float16 needed) and inline so reduction loops can use
// them; the bulk conversions below use the CPU's F16C instructions when it has them and give
// bit-identical results either way.
//
// Rounding (float -> 16 bit) is round-to-nearest, ties-to-even, the IEEE default:
//   - values too large for the format round to +-Inf (for binary16: |x| >= 65520);
//   - values too small become subnormals, or +-0 (binary16: |x| <= 2^-25);
//   - Inf stays Inf; NaN stays NaN with its sign and the top bits of its payload, and is made
//     quiet (the same thing F16C hardware does). So a quiet NaN survives a round trip
//     16 -> float -> 16 unchanged, and a signalling one comes back quiet.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace rdmacoll::collectives {

// ---- scalar conversions on bit patterns -----------------------------------------------------

constexpr float half_bits_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  std::uint32_t mant = h & 0x3FFu;
  if (exp == 0x1F) {  // Inf or NaN; NaN gets the quiet bit, like F16C.
    const std::uint32_t bits = mant == 0 ? 0x7F800000u : 0x7FC00000u | (mant << 13);
    return std::bit_cast<float>(sign | bits);
  }
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    // Subnormal mant * 2^-24: shift the leading 1 up to the implicit-bit position (bit 10);
    // every binary16 subnormal is a normal float.
    const int shift = std::countl_zero(mant) - 21;  // 21 = 32 - 11 bits of significand
    mant = (mant << shift) & 0x3FFu;
    const std::uint32_t fexp = static_cast<std::uint32_t>(113 - shift);  // 127 - 14 - shift
    return std::bit_cast<float>(sign | (fexp << 23) | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));  // 112 = 127 - 15
}

constexpr std::uint16_t float_to_half_bits(float f) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7FFFFFFFu;
  std::uint32_t h = 0;
  if (abs >= 0x7F800000u) {  // Inf, NaN (quieted, top 10 payload bits kept)
    h = abs == 0x7F800000u ? 0x7C00u : 0x7E00u | ((abs >> 13) & 0x3FFu);
  } else if (abs >= 0x477FF000u) {  // >= 65520, halfway between 65504 (odd) and 2^16: Inf
    h = 0x7C00u;
  } else if (abs >= 0x38800000u) {   // >= 2^-14: normal binary16
    h = (abs >> 13) - (112u << 10);  // rebias exponent, keep top 10 mantissa bits
    const std::uint32_t rest = abs & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into exponent
  } else if (abs > 0x33000000u) {         // (2^-25, 2^-14): subnormal binary16, units of 2^-24
    const std::uint32_t exp = abs >> 23;  // 102 .. 112
    const std::uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;  // 24-bit significand
    const std::uint32_t shift = 126u - exp;                    // 14 .. 24
    h = mant >> shift;
    const std::uint32_t rest = mant & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;  // 0x3FF+1 = smallest normal
  }  // else |x| <= 2^-25 (a tie with 0 at exactly 2^-25): +-0
  return static_cast<std::uint16_t>(sign | h);
}

constexpr float bf16_bits_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

constexpr std::uint16_t float_to_bf16_bits(float f) noexcept {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)  // NaN: truncate, set the quiet bit so it stays NaN
    return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  // Round to nearest even on the 16 dropped bits; a carry rolls into the exponent, which
  // turns the largest finite values into Inf exactly when they should.
  const std::uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

// ---- storage types --------------------------------------------------------------------------

// Trivially copyable 2-byte wrappers, so a buffer of them can be sent as raw bytes.
struct Float16 {
  std::uint16_t bits = 0;

  Float16() = default;
  constexpr explicit Float16(float f) noexcept : bits(float_to_half_bits(f)) {}
  static constexpr Float16 from_bits(std::uint16_t b) noexcept {
    Float16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const noexcept { return half_bits_to_float(bits); }
};

struct BFloat16 {
  std::uint16_t bits = 0;

  BFloat16() = default;
  constexpr explicit BFloat16(float f) noexcept : bits(float_to_bf16_bits(f)) {}
  static constexpr BFloat16 from_bits(std::uint16_t b) noexcept {
    BFloat16 h;
    h.bits = b;
    return h;
  }
  constexpr explicit operator float() const noexcept { return bf16_bits_to_float(bits); }
};

static_assert(sizeof(Float16) == 2 && std::is_trivially_copyable_v<Float16>);
static_assert(sizeof(BFloat16) == 2 && std::is_trivially_copyable_v<BFloat16>);

// ---- bulk conversions -----------------------------------------------------------------------

// Convert count elements. Float16 uses F16C when the CPU supports it; the result is identical
// to the scalar functions above. Source and destination must not overlap.
void to_float(const Float16* src, float* dst, std::size_t count) noexcept;
void from_float(const float* src, Float16* dst, std::size_t count) noexcept;
void to_float(const BFloat16* src, float* dst, std::size_t count) noexcept;
void from_float(const float* src, BFloat16* dst, std::size_t count) noexcept;

namespace detail {
// The two Float16 paths, separately, so tests can check they agree bit for bit.
bool have_f16c() noexcept;
void to_float_portable(const Float16* src, float* dst, std::size_t count) noexcept;
void from_float_portable(const float* src, Float16* dst, std::size_t count) noexcept;
// Precondition: have_f16c(). On a build without x86 support these fall back to portable.
void to_float_f16c(const Float16* src, float* dst, std::size_t count) noexcept;
void from_float_f16c(const float* src, Float16* dst, std::size_t count) noexcept;
}  // namespace detail

}  // namespace rdmacoll::collectives
