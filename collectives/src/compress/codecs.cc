// The dense codecs (none, fp16, bf16, int8, sign, qsgd, terngrad), the factory, the SIMD
// choice and error feedback.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "compress/codecs.h"
#include "rdmacoll/collectives/half.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::collectives {
namespace compress {
namespace {

std::size_t blocks(std::size_t n, std::size_t block) { return (n + block - 1) / block; }

class NoneCodec final : public Codec {
 public:
  NoneCodec(const CodecSpec& s, SimdPath simd) : Codec(s, simd) {}
  std::size_t wire_bytes(std::size_t n) const noexcept override { return 4 * n; }

 protected:
  // memcpy's pointers must not be null even for 0 bytes, and an empty vector's data() may be.
  EncodeStats do_encode(const float* in, std::size_t n, std::byte* wire, std::uint64_t) const override {
    if (n > 0) std::memcpy(wire, in, 4 * n);
    return {0, count_nonfinite(in, n), 0};
  }
  void do_decode(const std::byte* wire, std::size_t n, float* out, Mode mode) const override {
    if (mode == Mode::assign) {
      if (n > 0) std::memcpy(out, wire, 4 * n);
      return;
    }
    for (std::size_t i = 0; i < n; ++i) {
      float d;
      std::memcpy(&d, wire + 4 * i, 4);
      out[i] = mode == Mode::add ? out[i] + d : out[i] - d;
    }
  }
};

// The codecs whose kernels are in the per-ISA table.
class TableCodec final : public Codec {
 public:
  TableCodec(const CodecSpec& s, SimdPath simd, const KernelTable& k) : Codec(s, simd), k_(k) {
    if (s.kind == CodecKind::qsgd || s.kind == CodecKind::terngrad) {
      unsigned width = 2;
      while ((1u << (width - 1)) - 1 < s.levels) width *= 2;
      stochastic_ = {s.block, s.levels, width, s.kind == CodecKind::qsgd};
    }
  }

  std::size_t wire_bytes(std::size_t n) const noexcept override {
    const CodecSpec& s = spec();
    switch (s.kind) {
      case CodecKind::fp16:
      case CodecKind::bf16: return 2 * n;
      case CodecKind::int8: return 4 * blocks(n, s.block) + n;
      case CodecKind::sign: return 4 * blocks(n, s.block) + (n + 7) / 8;
      default: return 4 * blocks(n, s.block) + (n * stochastic_.width + 7) / 8;
    }
  }

 protected:
  EncodeStats do_encode(const float* in, std::size_t n, std::byte* wire, std::uint64_t seed) const override {
    const CodecSpec& s = spec();
    Counts c;
    switch (s.kind) {
      case CodecKind::fp16:
      case CodecKind::bf16: c = k_.half_encode(in, n, wire, s.kind == CodecKind::bf16); break;
      case CodecKind::int8: c = k_.int8_encode(in, n, s.block, wire); break;
      case CodecKind::sign: c = k_.sign_encode(in, n, s.block, wire); break;
      default: c = k_.stochastic_encode(in, n, stochastic_, seed, wire); break;
    }
    return {0, c.nonfinite, c.overflow};
  }
  void do_decode(const std::byte* wire, std::size_t n, float* out, Mode mode) const override {
    const CodecSpec& s = spec();
    switch (s.kind) {
      case CodecKind::fp16:
      case CodecKind::bf16: return k_.half_decode(wire, n, out, mode, s.kind == CodecKind::bf16);
      case CodecKind::int8: return k_.int8_decode(wire, n, s.block, out, mode);
      case CodecKind::sign: return k_.sign_decode(wire, n, s.block, out, mode);
      default: return k_.stochastic_decode(wire, n, stochastic_, out, mode);
    }
  }

 private:
  const KernelTable& k_;
  StochasticParams stochastic_{};
};

bool cpu_has_avx2() noexcept {
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::have_f16c();
#else
  return false;
#endif
}

SimdPath resolve(SimdPath requested) {
  if (requested == SimdPath::automatic) {
    const std::string v = settings::get_string("RDMACOLL_SIMD");
    if (v == "auto") return cpu_has_avx2() ? SimdPath::avx2 : SimdPath::portable;
    if (v == "portable") return SimdPath::portable;
    if (v != "avx2")
      throw ConfigError("RDMACOLL_SIMD='" + v + "' is not auto, avx2 or portable; fix or unset it");
    requested = SimdPath::avx2;
  }
  if (requested == SimdPath::avx2 && !cpu_has_avx2())
    throw ConfigError("codec kernels: avx2 requested (RDMACOLL_SIMD or the caller) but this CPU lacks "
                      "AVX2, FMA or F16C; use RDMACOLL_SIMD=auto or portable");
  return requested;
}

void require(bool ok, const char* fn, const char* what, std::size_t n) {
  if (!ok)
    throw std::invalid_argument(std::string("Codec::") + fn + ": " + what + " is null with n = " + std::to_string(n));
}

}  // namespace

const KernelTable& kernel_table(SimdPath simd) noexcept {
#if defined(__x86_64__)
  if (simd == SimdPath::avx2) return avx2::kTable;
#endif
  return portable::kTable;
}

}  // namespace compress

bool simd_available(SimdPath path) noexcept {
  return path != SimdPath::avx2 || compress::cpu_has_avx2();
}

std::string_view to_string(SimdPath path) noexcept {
  switch (path) {
    case SimdPath::automatic: return "automatic";
    case SimdPath::portable: return "portable";
    case SimdPath::avx2: return "avx2";
  }
  return "unknown";
}

EncodeStats Codec::encode(const float* in, std::size_t n, std::byte* wire, std::uint64_t seed) const {
  compress::require(n == 0 || in, "encode", "in", n);
  compress::require(n == 0 || wire, "encode", "wire", n);
  EncodeStats st = do_encode(in, n, wire, seed);
  st.bytes = wire_bytes(n);
  return st;
}

void Codec::decode(const std::byte* wire, std::size_t n, float* out) const {
  compress::require(n == 0 || wire, "decode", "wire", n);
  compress::require(n == 0 || out, "decode", "out", n);
  do_decode(wire, n, out, Mode::assign);
}

void Codec::decode_add(const std::byte* wire, std::size_t n, float* acc) const {
  compress::require(n == 0 || wire, "decode_add", "wire", n);
  compress::require(n == 0 || acc, "decode_add", "acc", n);
  do_decode(wire, n, acc, Mode::add);
}

bool Codec::unbiased() const noexcept {
  const CodecKind k = spec_.kind;
  return k == CodecKind::none || k == CodecKind::qsgd || k == CodecKind::terngrad || k == CodecKind::randk;
}

bool Codec::deterministic() const noexcept {
  const CodecKind k = spec_.kind;
  return k != CodecKind::qsgd && k != CodecKind::terngrad && k != CodecKind::randk;
}

bool Codec::sparse() const noexcept { return spec_.kind == CodecKind::topk || spec_.kind == CodecKind::randk; }

bool Codec::exact_feedback() const noexcept {
  const CodecKind k = spec_.kind;
  return k == CodecKind::none || k == CodecKind::fp16 || k == CodecKind::bf16 || k == CodecKind::int8 ||
         k == CodecKind::topk;
}

std::unique_ptr<Codec> make_codec(const CodecSpec& spec, SimdPath simd) {
  if (spec.kind == CodecKind::powersgd)
    throw std::invalid_argument("codec '" + spec.name() +
                                "': PowerSGD is not an element codec (it runs above the collectives as "
                                "two allreduces of low-rank factors); make_codec cannot build it");
  const SimdPath path = compress::resolve(simd);
  switch (spec.kind) {
    case CodecKind::none: return std::make_unique<compress::NoneCodec>(spec, path);
    case CodecKind::topk:
    case CodecKind::randk: return compress::make_sparse_codec(spec, path);
    default: return std::make_unique<compress::TableCodec>(spec, path, compress::kernel_table(path));
  }
}

std::unique_ptr<Codec> make_codec(std::string_view name, SimdPath simd) {
  return make_codec(parse_codec(name), simd);
}

EncodeStats encode_with_feedback(const Codec& codec, const float* in, std::size_t n, float* residual,
                                 std::byte* wire, std::uint64_t seed) {
  compress::require(n == 0 || in, "encode_with_feedback", "in", n);
  compress::require(n == 0 || residual, "encode_with_feedback", "residual", n);
  compress::require(n == 0 || wire, "encode_with_feedback", "wire", n);
  for (std::size_t i = 0; i < n; ++i) residual[i] = in[i] + residual[i];  // v
  EncodeStats st = codec.do_encode(residual, n, wire, seed);
  st.bytes = codec.wire_bytes(n);
  codec.do_decode(wire, n, residual, Codec::Mode::sub);  // v - d, one rounding
  return st;
}

}  // namespace rdmacoll::collectives
