// topk and randk. Wire: k fp32 values, then k indices of index_bits(n) bits each, ascending,
// packed least significant bit first. One implementation for every SIMD path but for the two
// passes over all n elements, which are in the kernel table: topk's candidates above a sampled
// threshold (with their values, and the non-finite count) and the decoding's expansion into
// zeros and values.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "compress/codecs.h"

namespace rdmacoll::collectives::compress {

std::size_t sparse_k(double fraction, std::size_t n) noexcept {
  if (n == 0) return 0;
  const auto k = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(n)));
  return std::clamp<std::size_t>(k, 1, n);
}

std::size_t count_nonfinite(const float* in, std::size_t n) noexcept {
  constexpr std::uint32_t kAbs = 0x7FFFFFFFu, kExp = 0x7F800000u;
  std::size_t bad = 0;
  for (std::size_t first = 0; first < n; first += 4096) {
    std::uint32_t part = 0;  // 32-bit lanes: the loop vectorizes without widening
    const std::size_t end = std::min(n, first + 4096);
    for (std::size_t i = first; i < end; ++i) part += (std::bit_cast<std::uint32_t>(in[i]) & kAbs) >= kExp ? 1u : 0u;
    bad += part;
  }
  return bad;
}

unsigned index_bits(std::size_t n) noexcept {
  return n <= 1 ? 0u : static_cast<unsigned>(std::bit_width(static_cast<std::uint64_t>(n - 1)));
}

namespace {

constexpr std::uint32_t kAbsMask = 0x7FFFFFFFu;
constexpr std::uint32_t kExpMask = 0x7F800000u;

// The magnitude used for selection: |x| as bits (ordered like |x|), 0 for NaN and Inf.
std::uint32_t key_of(float x) {
  const std::uint32_t a = std::bit_cast<std::uint32_t>(x) & kAbsMask;
  return a < kExpMask ? a : 0u;
}

class BitWriter {
 public:
  explicit BitWriter(std::byte* out) : out_(out) {}
  void put(std::uint64_t v, unsigned bits) {
    if (bits == 0) return;
    acc_ |= v << fill_;
    fill_ += bits;
    while (fill_ >= 8) {
      *out_++ = static_cast<std::byte>(acc_);
      acc_ >>= 8;
      fill_ -= 8;
    }
  }
  void flush() {
    if (fill_ > 0) *out_++ = static_cast<std::byte>(acc_);
    acc_ = 0;
    fill_ = 0;
  }

 private:
  std::byte* out_;
  std::uint64_t acc_ = 0;  // fill_ < 8 between calls, bits <= 40: no overflow
  unsigned fill_ = 0;
};

class BitReader {
 public:
  explicit BitReader(const std::byte* in) : in_(in) {}
  std::uint64_t get(unsigned bits) {
    if (bits == 0) return 0;
    while (fill_ < bits) {
      acc_ |= static_cast<std::uint64_t>(*in_++) << fill_;
      fill_ += 8;
    }
    const std::uint64_t v = acc_ & ((std::uint64_t{1} << bits) - 1);
    acc_ >>= bits;
    fill_ -= bits;
    return v;
  }

 private:
  const std::byte* in_;
  std::uint64_t acc_ = 0;
  unsigned fill_ = 0;
};

// The k-th largest (key, lower index first) as a threshold: element i is kept iff
// key > t.key or (key == t.key and i <= t.index). A histogram of the keys' top bits finds the
// bucket that holds the k-th; only that bucket's elements are sorted. The top 16 bits (2^15
// bins: four interleaved histograms of 128 KiB) from 32 Ki elements up; below that the top 12
// (2^11 bins, 32 KiB), which for a small input costs less than the larger histograms' clearing
// and summing (768 KiB: 23 us for 1 Ki elements, 30 times the rest of the encode).
struct Threshold {
  std::uint32_t key;
  std::size_t index;
};

// The selection order: larger key first, then lower index.
bool ranks_before(const Threshold& a, const Threshold& b) {
  return a.key != b.key ? a.key > b.key : a.index < b.index;
}

Threshold kth_largest(const float* in, std::size_t n, std::size_t k) {
  // Four interleaved histograms, summed after: runs of elements in the same bin (common, the
  // keys of a gradient bunch up) would otherwise wait on each other's increments.
  const unsigned shift = n < (std::size_t{1} << 15) ? 20 : 16;
  const std::size_t kBins = std::size_t{1} << (31 - shift);  // keys < 0x7F800000 < 2^31
  std::vector<std::uint32_t> sub(4 * kBins, 0);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (std::size_t j = 0; j < 4; ++j) ++sub[j * kBins + (key_of(in[i + j]) >> shift)];
  for (; i < n; ++i) ++sub[key_of(in[i]) >> shift];
  std::vector<std::size_t> hist(kBins);
  for (std::size_t b = 0; b < kBins; ++b)
    hist[b] = std::size_t{sub[b]} + sub[kBins + b] + sub[2 * kBins + b] + sub[3 * kBins + b];
  std::size_t above = 0, bin = hist.size();
  while (bin > 0 && above + hist[bin - 1] < k) above += hist[--bin];
  --bin;  // above < k <= above + hist[bin]
  std::vector<Threshold> cand;
  cand.reserve(hist[bin]);
  for (std::size_t e = 0; e < n; ++e) {
    const std::uint32_t key = key_of(in[e]);
    if ((key >> shift) == bin) cand.push_back({key, e});
  }
  const auto nth = cand.begin() + static_cast<std::ptrdiff_t>(k - above - 1);
  std::nth_element(cand.begin(), nth, cand.end(), ranks_before);
  return *nth;
}

// The fast path's candidates: topk_candidate(bits, index) (kernel_table.h); needs n <= 2^32.
std::size_t index_of(std::uint64_t c) { return static_cast<std::size_t>(0xFFFFFFFFull - (c & 0xFFFFFFFFull)); }

// The fast path's sample and selection buffers, kept per thread between calls: allocated per
// call they made a 64 KiB encode take 20 us (4 of them the selection), in fresh pages each
// time glibc trimmed the heap's top. The candidates' buffer is allocated per call all the same:
// reused, it made a 16 MiB encode 8% slower (cold in cache, where a fresh one was just zeroed).
struct TopkScratch {
  std::vector<std::uint32_t> sample;
  std::vector<std::uint64_t> order;
};
TopkScratch& topk_scratch() {
  thread_local TopkScratch s;
  return s;
}

// The top k, as emit(i, x_i) in ascending i, and the count of non-finite elements. Fast path: a
// fixed-stride sample of keys gives a threshold that a little over k elements pass, one
// pass (the kernel table's topk_candidates, which also counts the non-finite elements)
// collects them in index order, each with its value, and the exact top k is selected among
// them and emitted from the candidates (no second look at the input, whose kept elements are
// scattered cache misses). A sampled threshold of 0 becomes the smallest non-zero key: when
// fewer than k elements are non-zero, the lowest-index zeros make up the k. That gives the same
// answer as the exact method (kth_largest), which runs instead for inputs under 256 elements,
// k above n/8, or when fewer than k pass a threshold above 0 (rare: the sample missed).
template <class Emit>
void top_k(const KernelTable& kt, const float* in, std::size_t n, std::size_t k, std::size_t& nonfinite, Emit emit) {
  // 8192 keys, or every 4th of a smaller input (no fewer than 64: k <= n/8 then keeps the
  // rank below kSample).
  const std::size_t kSample = std::min<std::size_t>(8192, n / 4);
  bool counted = false;
  if (kSample >= 64 && k <= n / 8 && n <= 0xFFFFFFFFull) {
    TopkScratch& scratch = topk_scratch();
    std::vector<std::uint32_t>& sample = scratch.sample;
    sample.resize(kSample);
    for (std::size_t j = 0; j < kSample; ++j) sample[j] = key_of(in[j * (n / kSample)]);
    // The sample's expected count above the k-th largest is e = kSample k / n; taking rank
    // e + 4 sqrt(e) + 16 makes fewer than k pass (and the exact method run) rare, while the
    // candidates stay near k. k <= n/8 keeps the rank below kSample.
    const double e = static_cast<double>(kSample) * static_cast<double>(k) / static_cast<double>(n);
    const auto rank = static_cast<std::size_t>(e + 4 * std::sqrt(e) + 16);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(rank), sample.end(),
                     std::greater<>());
    // A sampled threshold of 0 (an input mostly zeros) takes every non-zero element instead.
    const std::uint32_t low = std::max<std::uint32_t>(sample[rank], 1);
    // In chunks (none larger than the input), with room for a whole chunk after the
    // candidates so far.
    const std::size_t kChunk = std::min<std::size_t>(std::size_t{1} << 16, n);
    std::vector<std::uint64_t> cand(k + k / 2 + kChunk);
    std::size_t m = 0;
    for (std::size_t first = 0; first < n; first += kChunk) {
      if (cand.size() < m + kChunk) cand.resize(2 * cand.size());
      m += kt.topk_candidates(in, first, std::min(n, first + kChunk), low, cand.data() + m, nonfinite);
    }
    counted = true;
    if (m >= k) {
      // The k-th largest in selection order (the sign left out), then every candidate from it up.
      std::vector<std::uint64_t>& order = scratch.order;
      order.resize(m);
      for (std::size_t j = 0; j < m; ++j) order[j] = topk_order(cand[j]);
      std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k - 1), order.end(), std::greater<>());
      const std::uint64_t t = order[k - 1];
      for (std::size_t j = 0; j < m; ++j)
        if (topk_order(cand[j]) >= t) emit(index_of(cand[j]), std::bit_cast<float>(topk_value_bits(cand[j])));
      return;
    }
    if (low == 1) {
      // Fewer than k non-zero elements: all of them, and the first k - m of the others (key 0:
      // zeros, NaN and Inf; lower index first), merged in index order.
      std::size_t need = k - m, j = 0;
      for (std::size_t i = 0; i < n && (j < m || need > 0); ++i) {
        if (j < m && index_of(cand[j]) == i) {
          emit(i, std::bit_cast<float>(topk_value_bits(cand[j++])));
        } else if (need > 0) {
          emit(i, in[i]);
          --need;
        }
      }
      return;
    }
  }
  if (!counted) nonfinite += count_nonfinite(in, n);
  const Threshold t = kth_largest(in, n, k);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t key = key_of(in[i]);
    if (key > t.key || (key == t.key && i <= t.index)) emit(i, in[i]);
  }
}

class SparseCodec final : public Codec {
 public:
  SparseCodec(const CodecSpec& s, SimdPath simd) : Codec(s, simd), k_(kernel_table(simd)) {}

  std::size_t wire_bytes(std::size_t n) const noexcept override {
    const std::size_t k = sparse_k(spec().fraction, n);
    return 4 * k + (k * index_bits(n) + 7) / 8;
  }

 protected:
  EncodeStats do_encode(const float* in, std::size_t n, std::byte* wire, std::uint64_t seed) const override {
    EncodeStats st;
    const std::size_t k = sparse_k(spec().fraction, n);
    if (k == 0) return st;  // n == 0
    const unsigned bits = index_bits(n);
    BitWriter idx(wire + 4 * k);
    std::byte* val = wire;
    // Element i goes as `v` (x_i, or randk's scaled x_i), or as 0 where x_i is not finite (or -0).
    const auto emit = [&](std::size_t i, float x, float v) {
      const float send = key_of(x) == 0 ? 0.0f : v;
      std::memcpy(val, &send, 4);
      val += 4;
      idx.put(i, bits);
    };
    if (spec().kind == CodecKind::topk) {
      top_k(k_, in, n, k, st.nonfinite, [&](std::size_t i, float x) { emit(i, x, x); });
    } else {
      st.nonfinite += count_nonfinite(in, n);
      // Selection sampling (Knuth's Algorithm S): element i is taken with probability
      // needed / remaining, which draws every k-subset with equal probability (up to the 2^-32
      // resolution of the hash) and yields the indices in order. The kept values are scaled by
      // n/k, so E[decoded] = x.
      const float scale = static_cast<float>(static_cast<double>(n) / static_cast<double>(k));
      const HashKey key = hash_key(seed);
      std::size_t needed = k;
      for (std::size_t i = 0; i < n && needed > 0; ++i) {
        const std::uint32_t h = element_hash(chunk_key(key, static_cast<std::uint32_t>(i >> 32)), static_cast<std::uint32_t>(i));
        const double u = static_cast<double>(h) * 0x1p-32;
        if (u * static_cast<double>(n - i) < static_cast<double>(needed)) {
          const float v = in[i] * scale;
          st.overflow += std::isinf(v) && key_of(in[i]) != 0 ? 1 : 0;
          emit(i, in[i], v);
          --needed;
        }
      }
    }
    idx.flush();
    return st;
  }

  void do_decode(const std::byte* wire, std::size_t n, float* out, Mode mode) const override {
    const std::size_t k = sparse_k(spec().fraction, n);
    const unsigned bits = index_bits(n);
    BitReader reader(wire + 4 * k);
    std::vector<std::size_t> idx(k);
    bool ascending = true;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t i = static_cast<std::size_t>(reader.get(bits));
      if (i >= n)
        throw std::invalid_argument("Codec::decode(" + spec().name() + "): index " + std::to_string(i) +
                                    " >= n = " + std::to_string(n) + ": the wire bytes are not an encoding of n elements");
      ascending = ascending && (j == 0 || i > idx[j - 1]);
      idx[j] = i;
    }
    // An encoder's indices ascend; other bytes decode as a fill with zeros and then the values
    // in wire order (a repeated index keeps its last value).
    if (mode == Mode::assign && ascending) return k_.sparse_expand(wire, idx.data(), k, n, out);
    if (mode == Mode::assign) std::fill(out, out + n, 0.0f);
    for (std::size_t j = 0; j < k; ++j) {
      float v;
      std::memcpy(&v, wire + 4 * j, 4);
      const std::size_t i = idx[j];
      if (mode == Mode::add) out[i] += v;
      else if (mode == Mode::sub) out[i] -= v;
      else out[i] = v;
    }
  }

 private:
  const KernelTable& k_;
};

}  // namespace

std::unique_ptr<Codec> make_sparse_codec(const CodecSpec& spec, SimdPath simd) {
  return std::make_unique<SparseCodec>(spec, simd);
}

}  // namespace rdmacoll::collectives::compress
