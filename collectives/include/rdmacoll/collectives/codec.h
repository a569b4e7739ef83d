// Gradient compression codecs: what a compressed collective does to a float buffer before it
// goes on the wire, and back. No networking here; the compressed allreduce and the trainer
// call these.
//
// A codec is named by a string, the same everywhere (API, tools, trainer):
//
//   name              wire form of n fp32 elements                              ratio (n large)
//   none              n x fp32, verbatim                                         1x
//   fp16              n x IEEE binary16, round to nearest even                   2x
//   bf16              n x bfloat16, round to nearest even                        2x
//   int8[:B]          per block of B (default 256): fp32 scale = absmax/127,     4x * B/(B+4)
//                     then n x int8 q = round(x*127/absmax) (0 where |x| < scale/2)  (3.94x at 256)
//   sign[:B]          per block of B (default 256): fp32 scale = mean |x|,       32x * B/(B+32)
//                     then n sign bits (1 = negative); decodes to +-scale        (28.4x at 256)
//   qsgd:S[:B]        per bucket of B (default 64) : fp32 scale = ||x||_2 of the bucket, then
//                     n codes of W bits (sign + level l in 0..S, W = 2, 4, 8 or 16, the
//                     smallest that holds S): x ~ sign * scale * l / S with stochastic
//                     rounding (Alistarh et al. 2017). S in 1..32767. qsgd:4 7.1x, qsgd:127 3.76x
//   terngrad[:B]      per bucket of B (default 512): fp32 scale = absmax, 2-bit codes in
//                     {-1, 0, +1}: x ~ scale * t, P(t != 0) = |x|/scale (Wen et al. 2017). 15.5x
//   topk:F            the k = max(1, round(F*n)) elements of largest |x| (ties: lower index first),
//                     as k fp32 values then k indices of ceil(log2 n) bits each, ascending.
//   randk:F           k = max(1, round(F*n)) indices drawn uniformly without replacement from the
//                     seed, values scaled by n/k so the codec is unbiased; same wire form.
//   powersgd:R        parses (PowerSGD of rank R runs above the collectives as two
//                     allreduces), but is not an element codec: make_codec refuses it.
//
// B must be a multiple of 8 in [8, 2^24]; F in (0, 1]. Encoded buffers are plain bytes,
// little-endian, with no alignment requirement, and their size depends only on n
// (wire_bytes), so windows can be sized before the data exists.
//
// Non-finite input (NaN, +-Inf) is counted in EncodeStats::nonfinite, never hidden:
//   - none, fp16, bf16 pass it through (NaN stays NaN, Inf stays Inf);
//   - int8, qsgd, terngrad, topk, randk leave it out of every scale, norm and selection and
//     encode it as 0, so one NaN cannot poison the rest of its block;
//   - sign has no zero: a non-finite element is left out of the block's mean and decodes
//     to +scale.
// fp16 (|x| >= 65520) and bf16 (|x| >= 2^128 (1 - 2^-9)) turn finite values too large for the
// format into +-Inf, and so does randk where |x| n/k exceeds FLT_MAX; those are counted in
// EncodeStats::overflow.
//
// Error bounds (for finite input; error_bound() computes them, the tests hold every codec to
// them): fp16 max(2^-11 |x|, 2^-25); bf16 max(2^-8 |x|, 2^-134); int8 scale/2 plus float
// rounding; sign absmax of the block; qsgd scale/S; terngrad scale; topk |x|; randk
// max(1, n/k - 1) |x| (+2^-149 where x n/k is subnormal). int8, qsgd and terngrad send blocks
// whose absmax (int8, terngrad) or norm (qsgd) is below 2^-100 (~7.9e-31) as zeros, so no
// scale is subnormal and no reciprocal overflows. qsgd, terngrad and randk are unbiased (up to
// float rounding of the decoded value, and except in those flushed blocks); qsgd's variance
// obeys E||Q(x) - x||^2 <= min(B/S^2, sqrt(B)/S) ||x||^2 per bucket (variance_bound(), the
// paper's bound; the encoder's scale is ||x|| rounded up, by at most 2e-6 of it, which can
// raise the variance by as much, far inside the bound's slack in practice).
//
// Stochastic codecs draw one 32-bit hash of (seed, element index) per element (a
// counter-based generator), so the result depends only on the input, n and the seed: not on
// the SIMD path or the thread count. Encoding a slice with a different seed per slice (e.g.
// seed ^ slice number) keeps the slices' rounding independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace rdmacoll::collectives {

enum class CodecKind { none, fp16, bf16, int8, sign, qsgd, terngrad, topk, randk, powersgd };

// A parsed codec name. Only the fields of its kind are meaningful.
struct CodecSpec {
  CodecKind kind = CodecKind::none;
  std::size_t block = 0;   // int8, sign: block; qsgd, terngrad: bucket
  unsigned levels = 0;     // qsgd: S
  double fraction = 0;     // topk, randk: F
  unsigned rank = 0;       // powersgd: R

  // Canonical name with every parameter spelled out ("int8:256", "qsgd:4:512"); parsing it
  // gives the same spec back.
  std::string name() const;
};

inline constexpr std::size_t kDefaultCodecBlock = 256;    // int8, sign
inline constexpr std::size_t kDefaultCodecBucket = 512;   // terngrad
// qsgd: small buckets keep its variance (min(B/S^2, sqrt(B)/S) of the bucket's norm^2) low at
// few levels: qsgd:4 trained the MLP to 0.20 point of fp32 with buckets of 64, 1.42 points off
// with 512 (bench/results/train_compare_ef/extra), for 7.1x instead of 7.9x fewer bytes.
inline constexpr std::size_t kDefaultQsgdBucket = 64;

// Throws std::invalid_argument naming the bad name and listing the valid forms.
CodecSpec parse_codec(std::string_view name);

// Which kernels a codec runs. automatic reads RDMACOLL_SIMD (auto, avx2, portable) and, for
// auto, picks avx2 when the CPU has AVX2, FMA and F16C. Both paths give bitwise identical
// wire bytes and decoded floats for every codec (stochastic ones given the same seed).
enum class SimdPath { automatic, portable, avx2 };
bool simd_available(SimdPath path) noexcept;   // portable and automatic: always
std::string_view to_string(SimdPath path) noexcept;

struct EncodeStats {
  std::size_t bytes = 0;       // bytes written: always wire_bytes(n)
  std::size_t nonfinite = 0;   // NaN or Inf inputs (see the top of this file)
  std::size_t overflow = 0;    // fp16, bf16, randk: finite inputs that became +-Inf
};

// A codec holds only its parameters and kernel table: its const methods may be called from
// any number of threads at once.
class Codec {
 public:
  virtual ~Codec() = default;
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;

  const CodecSpec& spec() const noexcept { return spec_; }
  std::string name() const { return spec_.name(); }
  SimdPath simd() const noexcept { return simd_; }

  // Exact size of the encoded form of n elements.
  virtual std::size_t wire_bytes(std::size_t n) const noexcept = 0;

  // Writes exactly wire_bytes(n) bytes. Deterministic codecs ignore the seed. n == 0 accepts
  // null pointers; otherwise null pointers throw std::invalid_argument. `in` and `wire` must
  // not overlap.
  EncodeStats encode(const float* in, std::size_t n, std::byte* wire, std::uint64_t seed = 0) const;
  // out[i] = decoded element i.
  void decode(const std::byte* wire, std::size_t n, float* out) const;
  // acc[i] += decoded element i (one float addition per element, as in a reduce-scatter).
  void decode_add(const std::byte* wire, std::size_t n, float* acc) const;

  // Properties (constant per codec).
  bool unbiased() const noexcept;        // E[decode(encode(x))] = x over seeds
  bool deterministic() const noexcept;   // needs no seed
  bool sparse() const noexcept;          // topk, randk: sends a subset of the elements
  // Whether encode_with_feedback's invariant holds without rounding (see below).
  bool exact_feedback() const noexcept;

  // bound[i] = the bound on |decode(encode(x))[i] - x[i]| for finite x[i] stated at the top
  // of this file (blocks' scales taken over their finite elements); +Inf where the codec gives
  // no bound (overflow to Inf). bound has n elements.
  void error_bound(const float* x, std::size_t n, double* bound) const;
  // A bound on E||decode(encode(x)) - x||^2 over seeds (the exact value's bound for
  // deterministic codecs), for finite x.
  double variance_bound(const float* x, std::size_t n) const;

  // How an implementation's do_decode combines a decoded value d with out[i]: out = d
  // (decode), out += d (decode_add), out -= d (encode_with_feedback's new residual).
  enum class Mode { assign, add, sub };

 protected:
  Codec(CodecSpec spec, SimdPath simd) : spec_(spec), simd_(simd) {}
  virtual EncodeStats do_encode(const float* in, std::size_t n, std::byte* wire,
                                std::uint64_t seed) const = 0;
  virtual void do_decode(const std::byte* wire, std::size_t n, float* out, Mode mode) const = 0;

 private:
  friend EncodeStats encode_with_feedback(const Codec&, const float*, std::size_t, float*,
                                          std::byte*, std::uint64_t);
  CodecSpec spec_;
  SimdPath simd_;
};

// Throws std::invalid_argument for a bad name, for powersgd (not an element codec), and
// rdmacoll::ConfigError when avx2 is requested (argument or RDMACOLL_SIMD) on a CPU without it.
std::unique_ptr<Codec> make_codec(std::string_view name, SimdPath simd = SimdPath::automatic);
std::unique_ptr<Codec> make_codec(const CodecSpec& spec, SimdPath simd = SimdPath::automatic);

// Error feedback (EF-SGD, 1-bit Adam): the caller owns `residual` (n floats, zero at the
// start) and passes it to every step:
//   v = in + residual            computed in float: v[i] = fl(in[i] + residual[i])
//   wire = encode(v)
//   residual = v - decode(wire)  computed in float: residual[i] = fl(v[i] - d[i])
// v is "input + old residual" by definition. The invariant "transmitted + new residual =
// input + old residual", d[i] + residual[i] == v[i], then holds:
//   - exactly (no rounding: v - d is a representable float, so the subtraction is exact and
//     d + residual == v bitwise) for none, fp16, bf16 (where v does not overflow the format),
//     int8 and topk. Why: fp16/bf16 round v to fewer significant bits, so d is a multiple of
//     ulp(v) and |v - d| <= |v|: v - d is a multiple of ulp(v) no larger than |v|, a float;
//     int8 sends q = 0 (d = 0)
//     or a d with d/2 <= |v| <= 2d of v's sign (Sterbenz), it rounds |v| < scale/2 to 0 to
//     guarantee that; topk sends v itself or 0.
//   - within one rounding, |d + residual - v| <= 2^-24 |v - d|, for sign, qsgd, terngrad and
//     randk: they send values unrelated to v's exponent (+-scale, n/k * v), so v - d can
//     need more than 24 bits (v = 1e-10 sent as 1.0 leaves 1e-10 - 1, not a float).
// Non-finite v is reported (nonfinite), and so is a finite v the codec turns into +-Inf
// (overflow); either leaves a non-finite residual: skip the step and zero the residual, as
// loss scaling does. residual and in may alias; wire must not.
EncodeStats encode_with_feedback(const Codec& codec, const float* in, std::size_t n,
                                 float* residual, std::byte* wire, std::uint64_t seed = 0);

}  // namespace rdmacoll::collectives
