#include "collperf/data.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <type_traits>

#include "rdmacoll/collectives/half.h"

namespace rdmacoll::collperf {

namespace {

namespace c = collectives;

// The storage of each DataType, how a small integer is stored in it, and avg's last step.
template <class T>
struct Int {
  using S = T;
  static constexpr bool is_unsigned = std::is_unsigned_v<T>;
  static S enc(int64_t v) { return static_cast<S>(static_cast<uint64_t>(v)); }  // wraps
  static S avg(int64_t sum, int n) {
    const int64_t wrapped = static_cast<int64_t>(enc(sum));  // the kernel sums in T
    return static_cast<S>(wrapped / n);                     // truncates toward zero
  }
};
struct F32 {
  using S = float;
  static constexpr bool is_unsigned = false;
  static S enc(int64_t v) { return static_cast<float>(v); }
  static S avg(int64_t sum, int n) { return static_cast<float>(sum) / static_cast<float>(n); }
};
struct F64 {
  using S = double;
  static constexpr bool is_unsigned = false;
  static S enc(int64_t v) { return static_cast<double>(v); }
  static S avg(int64_t sum, int n) { return static_cast<double>(sum) / static_cast<double>(n); }
};
struct F16 {
  using S = uint16_t;
  static constexpr bool is_unsigned = false;
  static S enc(int64_t v) { return c::float_to_half_bits(static_cast<float>(v)); }
  static S avg(int64_t sum, int n) { return c::float_to_half_bits(static_cast<float>(sum) / static_cast<float>(n)); }
};
struct BF16 {
  using S = uint16_t;
  static constexpr bool is_unsigned = false;
  static S enc(int64_t v) { return c::float_to_bf16_bits(static_cast<float>(v)); }
  static S avg(int64_t sum, int n) { return c::float_to_bf16_bits(static_cast<float>(sum) / static_cast<float>(n)); }
};

template <class F>
auto dispatch(DataType t, F&& f) {
  switch (t) {
    case DataType::f32: return f(F32{});
    case DataType::f64: return f(F64{});
    case DataType::f16: return f(F16{});
    case DataType::bf16: return f(BF16{});
    case DataType::i8: return f(Int<int8_t>{});
    case DataType::u8: return f(Int<uint8_t>{});
    case DataType::i32: return f(Int<int32_t>{});
    case DataType::i64: return f(Int<int64_t>{});
  }
  throw std::invalid_argument("collperf: bad DataType");
}

enum class Pattern { sum, prod, wide };

Pattern pattern(std::optional<ReduceOp> op) {
  if (!op || *op == ReduceOp::min || *op == ReduceOp::max) return Pattern::wide;
  return *op == ReduceOp::prod ? Pattern::prod : Pattern::sum;
}

uint64_t mix(uint64_t i, int rank) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(rank) + 1) * 0xC2B2AE3D27D4EB4Full;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  return x ^ (x >> 29);
}

int64_t value(Pattern p, bool is_unsigned, uint64_t i, int rank) {
  const uint64_t h = mix(i, rank);
  switch (p) {
    case Pattern::sum: return is_unsigned ? static_cast<int64_t>(h % 4) : static_cast<int64_t>(h % 5) - 2;
    case Pattern::prod: return h % 3 == 0 ? (is_unsigned ? 3 : -1) : 1;
    case Pattern::wide: return is_unsigned ? static_cast<int64_t>(h % 97) : static_cast<int64_t>(h % 97) - 48;
  }
  return 0;
}

// The reference result at element i, in the storage type.
template <class Ty>
typename Ty::S reduced(ReduceOp op, int nranks, uint64_t i) {
  const Pattern p = pattern(op);
  uint64_t acc = static_cast<uint64_t>(value(p, Ty::is_unsigned, i, 0));  // unsigned: sum and prod wrap
  int64_t best = value(p, Ty::is_unsigned, i, 0);
  for (int r = 1; r < nranks; ++r) {
    const int64_t v = value(p, Ty::is_unsigned, i, r);
    switch (op) {
      case ReduceOp::sum:
      case ReduceOp::avg: acc += static_cast<uint64_t>(v); break;
      case ReduceOp::prod: acc *= static_cast<uint64_t>(v); break;
      case ReduceOp::min: best = std::min(best, v); break;
      case ReduceOp::max: best = std::max(best, v); break;
    }
  }
  if (op == ReduceOp::min || op == ReduceOp::max) return Ty::enc(best);
  if (op == ReduceOp::avg) return Ty::avg(static_cast<int64_t>(acc), nranks);
  return Ty::enc(static_cast<int64_t>(acc));
}

template <class S>
bool same(S a, S b) {  // bitwise, so -0.0 != 0.0 and NaN (an unwritten element) never matches
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}

}  // namespace

void fill_input(DataType type, std::optional<ReduceOp> op, int rank, void* buf, size_t begin, size_t end) {
  dispatch(type, [&](auto ty) {
    using Ty = decltype(ty);
    auto* p = static_cast<typename Ty::S*>(buf);
    const Pattern pat = pattern(op);
    for (size_t i = begin; i < end; ++i) p[i] = Ty::enc(value(pat, Ty::is_unsigned, i, rank));
    return 0;
  });
}

uint64_t count_wrong_reduced(DataType type, ReduceOp op, int nranks, const void* buf, size_t begin, size_t end) {
  return dispatch(type, [&](auto ty) {
    using Ty = decltype(ty);
    const auto* p = static_cast<const typename Ty::S*>(buf);
    uint64_t wrong = 0;
    for (size_t i = begin; i < end; ++i) wrong += !same(p[i], reduced<Ty>(op, nranks, i));
    return wrong;
  });
}

uint64_t count_wrong_copied(DataType type, int source, const void* buf, size_t begin, size_t end) {
  return dispatch(type, [&](auto ty) {
    using Ty = decltype(ty);
    const auto* p = static_cast<const typename Ty::S*>(buf);
    uint64_t wrong = 0;
    for (size_t i = begin; i < end; ++i) wrong += !same(p[i], Ty::enc(value(Pattern::wide, Ty::is_unsigned, i, source)));
    return wrong;
  });
}

std::pair<size_t, size_t> block(size_t count, int n, int r) {
  const size_t parts = static_cast<size_t>(n), rr = static_cast<size_t>(r), base = count / parts,
               extra = count % parts;
  return {rr * base + std::min(rr, extra), base + (rr < extra ? 1 : 0)};
}

}  // namespace rdmacoll::collperf
