// The stated error bounds (codec.h): error_bound() and variance_bound(), which the tests hold
// every codec to. Plain scalar code: for tests and diagnostics, not for the data path.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "compress/codecs.h"

namespace rdmacoll::collectives {
namespace {

struct BlockStats {
  double absmax = 0;  // over finite elements
  double sumsq = 0;
  std::size_t len = 0;
};

// Over x[first, end).
BlockStats block_stats(const float* x, std::size_t first, std::size_t end) {
  BlockStats s;
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

void Codec::error_bound(const float* x, std::size_t n, double* bound) const {
  const CodecSpec& s = spec_;
  for (std::size_t first = 0; first < n;) {
    // One block at a time (the whole buffer for the codecs without blocks).
    const std::size_t len = s.block ? std::min(s.block, n - first) : n - first;
    const BlockStats b = block_stats(x, first, first + len);
    for (std::size_t i = first; i < first + len; ++i) {
      const double a = std::fabs(static_cast<double>(x[i]));
      double e = kInf;
      switch (s.kind) {
        case CodecKind::none: e = 0; break;
        case CodecKind::fp16: e = a >= 65520.0 ? kInf : std::max(0x1p-11 * a, 0x1p-25); break;
        case CodecKind::bf16: e = a >= 0x1.FEp127 ? kInf : std::max(0x1p-8 * a, 0x1p-134); break;
        case CodecKind::int8:
          e = b.absmax < kFlush ? b.absmax : b.absmax / 127.0 * (0.5 + 0x1p-15) + b.absmax * 0x1p-22;
          break;
        case CodecKind::sign: e = b.absmax * (1 + 0x1p-20); break;
        case CodecKind::qsgd:
        case CodecKind::terngrad: {
          // The scale the encoder uses: the norm (qsgd) or absmax (terngrad). qsgd sends the norm
          // rounded up, by up to 28 x 2^-24 of it for small buckets (kernels.h, scale_of_float_sum).
          const double scale = s.kind == CodecKind::qsgd ? std::sqrt(b.sumsq) : b.absmax;
          e = scale < kFlush ? b.absmax : scale / s.levels + scale * 0x1p-19;
          break;
        }
        case CodecKind::topk: e = a; break;
        case CodecKind::randk: {
          const double nk = static_cast<double>(n) / static_cast<double>(compress::sparse_k(s.fraction, n));
          const double sent = a * static_cast<float>(nk);
          e = sent > std::numeric_limits<float>::max() ? kInf : a * std::max(1.0, nk - 1.0) * (1 + 0x1p-20) + 0x1p-149;
          break;
        }
        case CodecKind::powersgd: break;
      }
      bound[i] = e;
    }
    first += len;
  }
}

double Codec::variance_bound(const float* x, std::size_t n) const {
  const CodecSpec& s = spec_;
  double total = 0;
  switch (s.kind) {
    case CodecKind::qsgd:
      for (std::size_t first = 0; first < n; first += s.block) {
        const BlockStats b = block_stats(x, first, std::min(n, first + s.block));
        const double len = static_cast<double>(b.len), lv = s.levels;
        total += std::min(len / (lv * lv), std::sqrt(len) / lv) * b.sumsq;
      }
      return total;
    case CodecKind::terngrad:  // Var(scale * t) = |x| (scale - |x|) per element
      for (std::size_t first = 0; first < n; first += s.block) {
        const BlockStats b = block_stats(x, first, std::min(n, first + s.block));
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
    default: {  // deterministic: the squared per-element bounds
      std::vector<double> bound(n);
      error_bound(x, n, bound.data());
      for (const double e : bound) total += e * e;
      return total;
    }
  }
}

}  // namespace rdmacoll::collectives
