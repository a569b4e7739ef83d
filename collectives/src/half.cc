#include "rdmacoll/collectives/half.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define RDMACOLL_HAVE_X86_F16C 1
#else
#define RDMACOLL_HAVE_X86_F16C 0
#endif

namespace rdmacoll::collectives {

namespace detail {

void to_float_portable(const Float16* src, float* dst, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) dst[i] = half_bits_to_float(src[i].bits);
}

void from_float_portable(const float* src, Float16* dst, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) dst[i].bits = float_to_half_bits(src[i]);
}

#if RDMACOLL_HAVE_X86_F16C

// F16C needs the CPU feature bit and, being VEX-encoded, an OS that saves the YMM registers
// (OSXSAVE set and XCR0 enabling SSE and AVX state). Asked directly because
// __builtin_cpu_supports("f16c") is GCC-only.
namespace {
bool detect_f16c() noexcept {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx) == 0) return false;
  constexpr unsigned kOsxsave = 1u << 27, kAvx = 1u << 28, kF16c = 1u << 29;
  if ((ecx & (kOsxsave | kAvx | kF16c)) != (kOsxsave | kAvx | kF16c)) return false;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  return (xcr0_lo & 0x6u) == 0x6u;
}
}  // namespace

// CPUID traps to the hypervisor in a VM (microseconds), too slow to ask per reduction, so the
// answer is computed once. It is a fact about the machine, not state.
bool have_f16c() noexcept {
  static const bool has = detect_f16c();
  return has;
}

// The function-level target attribute lets this file be compiled for baseline x86-64 and
// still use VCVTPH2PS/VCVTPS2PH where the CPU has them. A partial last vector goes through a
// small zero-padded buffer so every element is converted by the same instruction.
__attribute__((target("avx,f16c"))) void to_float_f16c(const Float16* src, float* dst,
                                                       std::size_t count) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  if (i < count) {
    alignas(16) Float16 in[8] = {};
    alignas(32) float out[8];
    std::copy(src + i, src + count, in);
    _mm256_store_ps(out, _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(in))));
    std::copy(out, out + (count - i), dst + i);
  }
}

__attribute__((target("avx,f16c"))) void from_float_f16c(const float* src, Float16* dst,
                                                         std::size_t count) noexcept {
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), kRound);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  if (i < count) {
    alignas(32) float in[8] = {};
    alignas(16) Float16 out[8];
    std::copy(src + i, src + count, in);
    _mm_store_si128(reinterpret_cast<__m128i*>(out), _mm256_cvtps_ph(_mm256_load_ps(in), kRound));
    std::copy(out, out + (count - i), dst + i);
  }
}

#else  // no x86: the portable code is the only path

bool have_f16c() noexcept { return false; }
void to_float_f16c(const Float16* src, float* dst, std::size_t count) noexcept {
  to_float_portable(src, dst, count);
}
void from_float_f16c(const float* src, Float16* dst, std::size_t count) noexcept {
  from_float_portable(src, dst, count);
}

#endif

}  // namespace detail

void to_float(const Float16* src, float* dst, std::size_t count) noexcept {
  if (detail::have_f16c())
    detail::to_float_f16c(src, dst, count);
  else
    detail::to_float_portable(src, dst, count);
}

void from_float(const float* src, Float16* dst, std::size_t count) noexcept {
  if (detail::have_f16c())
    detail::from_float_f16c(src, dst, count);
  else
    detail::from_float_portable(src, dst, count);
}

// bfloat16 is a shift plus a rounding add: plain loops that the compiler vectorizes.
void to_float(const BFloat16* src, float* dst, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) dst[i] = bf16_bits_to_float(src[i].bits);
}

void from_float(const float* src, BFloat16* dst, std::size_t count) noexcept {
  for (std::size_t i = 0; i < count; ++i) dst[i].bits = float_to_bf16_bits(src[i]);
}

}  // namespace rdmacoll::collectives
