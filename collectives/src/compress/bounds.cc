// The stated error bounds (codec.h): error_bound() and variance_bound(), which the tests hold
// every codec to. Plain scalar code: for tests and diagnostics, not for the data path.
#include <algorithm>
#include <cmath>
#include <limits>

#include "compress/codecs.h"

namespace rdmacoll::collectives {
namespace {

struct BlockStats {
  double absmax = 0;  // over finite elements
  double sumsq = 0;
  std::size_t len = 0;
};

BlockStats block_stats(const float* x, std::size_t n, std::size_t block, std::size_t i) {
  BlockStats s;
  const std::size_t first = i / block * block, end = std::min(n, first + block);
  s.len = end - first;
  for (std::size_t j = first; j < end; ++j) {
    if (!std::isfinite(x[j])) continue;
    const double a = std::fabs(static_cast<double>(x[j]));
    s.absmax = std::max(s.absmax, a);
    s.sumsq += a * a;
  }
  return s;
}

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kFlush = static_cast<double>(compress::kInt8FlushBelow);

}  // namespace

double Codec::error_bound(const float* x, std::size_t n, std::size_t i) const {
  const double a = std::fabs(static_cast<double>(x[i]));
  const CodecSpec& s = spec_;
  switch (s.kind) {
    case CodecKind::none: return 0;
    case CodecKind::fp16: return a >= 65520.0 ? kInf : std::max(0x1p-11 * a, 0x1p-25);
    case CodecKind::bf16: return a >= 0x1.FEp127 ? kInf : std::max(0x1p-8 * a, 0x1p-134);
    case CodecKind::int8: {
      const double m = block_stats(x, n, s.block, i).absmax;
      if (m < kFlush) return m;
      return m / 127.0 * (0.5 + 0x1p-15) + m * 0x1p-22;
    }
    case CodecKind::sign: return block_stats(x, n, s.block, i).absmax * (1 + 0x1p-20);
    case CodecKind::qsgd:
    case CodecKind::terngrad: {
      const BlockStats b = block_stats(x, n, s.block, i);
      // The scale the encoder uses: the norm (qsgd) or absmax (terngrad).
      const double scale = s.kind == CodecKind::qsgd ? std::sqrt(b.sumsq) : b.absmax;
      if (scale < kFlush) return b.absmax;
      return scale / s.levels + scale * 0x1p-20;
    }
    case CodecKind::topk: return a;
    case CodecKind::randk: {
      const double nk = static_cast<double>(n) / static_cast<double>(compress::sparse_k(s.fraction, n));
      return a * std::max(1.0, nk - 1.0) * (1 + 0x1p-20);
    }
    case CodecKind::powersgd: break;
  }
  return kInf;
}

double Codec::variance_bound(const float* x, std::size_t n) const {
  const CodecSpec& s = spec_;
  double total = 0;
  switch (s.kind) {
    case CodecKind::qsgd:
      for (std::size_t first = 0; first < n; first += s.block) {
        const BlockStats b = block_stats(x, n, s.block, first);
        const double len = static_cast<double>(b.len), lv = s.levels;
        total += std::min(len / (lv * lv), std::sqrt(len) / lv) * b.sumsq;
      }
      return total;
    case CodecKind::terngrad:  // Var(scale * t) = |x| (scale - |x|) per element
      for (std::size_t first = 0; first < n; first += s.block) {
        const BlockStats b = block_stats(x, n, s.block, first);
        for (std::size_t j = first; j < first + b.len; ++j)
          if (std::isfinite(x[j])) total += std::fabs(static_cast<double>(x[j])) * (b.absmax - std::fabs(static_cast<double>(x[j])));
      }
      return total;
    case CodecKind::randk: {  // kept with probability k/n and scaled by n/k: Var = x^2 (n/k - 1)
      const double nk = n == 0 ? 1.0 : static_cast<double>(n) / static_cast<double>(compress::sparse_k(s.fraction, n));
      for (std::size_t j = 0; j < n; ++j)
        if (std::isfinite(x[j])) total += static_cast<double>(x[j]) * static_cast<double>(x[j]) * (nk - 1.0);
      return total;
    }
    default:  // deterministic: the squared per-element bounds
      for (std::size_t j = 0; j < n; ++j) {
        const double e = error_bound(x, n, j);
        total += e * e;
      }
      return total;
  }
}

}  // namespace rdmacoll::collectives
