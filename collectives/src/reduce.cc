// The reduction kernels. Built with -O3 (see CMakeLists.txt): at -O2 GCC only vectorizes
// loops whose trip count is a known multiple of the vector width, and ours never is.
#include "rdmacoll/collectives/reduce.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "rdmacoll/collectives/half.h"

namespace rdmacoll::collectives {
namespace {

// What a kernel combines: dst = dst op b (a == nullptr, in place), or dst = a op b.
template <class T>
struct Operands {
  T* dst;
  const T* a;
  const T* b;
};

// One element-wise loop for every (type, op): the combine function is a lambda, inlined, and
// __restrict tells the compiler the arrays do not overlap (the entry points check that), so
// f32/f64 loops become packed SIMD. Two loops, as restrict forbids dst and a to be one array.
template <class T, class F>
void combine(Operands<T> x, std::size_t count, F f) {
  T* __restrict dst = x.dst;
  const T* __restrict b = x.b;
  if (x.a == nullptr) {
    for (std::size_t i = 0; i < count; ++i) dst[i] = f(dst[i], b[i]);
    return;
  }
  const T* __restrict a = x.a;
  for (std::size_t i = 0; i < count; ++i) dst[i] = f(a[i], b[i]);
}

// Calls run(f) with the floating-point combine function of op, one definition shared by
// f32, f64 and both 16-bit types. `a != a` is the NaN test: unlike std::isnan it vectorizes
// without -ffast-math (which we must not use: it would make NaN handling undefined).
template <class Run>
void with_float_op(ReduceOp op, Run run) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return run([](auto a, auto b) { return a + b; });
    case ReduceOp::prod: return run([](auto a, auto b) { return a * b; });
    case ReduceOp::min: return run([](auto a, auto b) { return (a < b || a != a) ? a : b; });
    case ReduceOp::max: return run([](auto a, auto b) { return (a > b || a != a) ? a : b; });
  }
}

template <class T>
void reduce_float(ReduceOp op, Operands<T> x, std::size_t count) {
  with_float_op(op, [&](auto f) { combine(x, count, f); });
}

// Integers: sum and prod in the unsigned type of at least int's width, so the operation wraps
// instead of overflowing (uint8_t alone would be promoted to signed int). Converting back to
// a signed type is modular since C++20.
template <class T>
void reduce_int(ReduceOp op, Operands<T> x, std::size_t count) {
  using U = std::make_unsigned_t<T>;
  using W = std::conditional_t<(sizeof(U) < sizeof(unsigned)), unsigned, U>;
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:
      return combine(x, count, [](T a, T b) { return static_cast<T>(static_cast<W>(a) + static_cast<W>(b)); });
    case ReduceOp::prod:
      return combine(x, count, [](T a, T b) { return static_cast<T>(static_cast<W>(a) * static_cast<W>(b)); });
    case ReduceOp::min: return combine(x, count, [](T a, T b) { return std::min(a, b); });
    case ReduceOp::max: return combine(x, count, [](T a, T b) { return std::max(a, b); });
  }
}

// bfloat16 widens with a shift and narrows with a rounding add, so a single fused loop
// vectorizes; for sum it measured ~1.5x faster than staging through float buffers as f16
// does (min/max: about the same), and it needs no buffers.
void reduce_bf16(ReduceOp op, Operands<BFloat16> x, std::size_t count) {
  with_float_op(op, [&](auto f) {
    combine(x, count, [f](BFloat16 a, BFloat16 b) { return BFloat16(f(static_cast<float>(a), static_cast<float>(b))); });
  });
}

// binary16 conversion is branchy in portable code and a single instruction with F16C, which
// the compiler cannot pick at run time by itself; so widen both operands into float blocks
// small enough to stay in L1 (bulk conversion dispatches to F16C), run the f32 kernel, and
// narrow the result. Rounds exactly once per element.
constexpr std::size_t kBlock = 1024;

void reduce_f16(ReduceOp op, Operands<Float16> x, std::size_t count) {
  float a[kBlock];
  float b[kBlock];
  for (std::size_t done = 0; done < count; done += kBlock) {
    const std::size_t n = std::min(kBlock, count - done);
    to_float((x.a ? x.a : x.dst) + done, a, n);
    to_float(x.b + done, b, n);
    reduce_float<float>(op, {a, nullptr, b}, n);
    from_float(a, x.dst + done, n);
  }
}

template <class H>
void divide_16(H* buf, std::size_t count, float divisor) {
  float a[kBlock];
  for (std::size_t done = 0; done < count; done += kBlock) {
    const std::size_t n = std::min(kBlock, count - done);
    to_float(buf + done, a, n);
    for (std::size_t i = 0; i < n; ++i) a[i] /= divisor;
    from_float(a, buf + done, n);
  }
}

template <class T>
void divide_float(T* buf, std::size_t count, T divisor) {
  for (std::size_t i = 0; i < count; ++i) buf[i] /= divisor;
}

// Integer division truncating toward zero, done on the magnitude in 64-bit unsigned so that
// any size_t divisor works and the most negative value needs no special case
// (INT64_MIN / 1 has magnitude 2^63, which negates back to INT64_MIN modulo 2^64).
static_assert(sizeof(std::size_t) <= sizeof(std::uint64_t));

template <class T>
void divide_int(T* buf, std::size_t count, std::size_t nranks) {
  const std::uint64_t n = nranks;
  for (std::size_t i = 0; i < count; ++i) {
    const T x = buf[i];
    if constexpr (std::is_signed_v<T>) {
      const std::uint64_t mag =
          x < 0 ? 0 - static_cast<std::uint64_t>(x) : static_cast<std::uint64_t>(x);
      const std::uint64_t q = mag / n;
      buf[i] = static_cast<T>(x < 0 ? 0 - q : q);
    } else {
      buf[i] = static_cast<T>(x / n);
    }
  }
}

bool valid(ReduceOp op) {
  return std::find(std::begin(kAllReduceOps), std::end(kAllReduceOps), op) !=
         std::end(kAllReduceOps);
}

std::invalid_argument bad_enum(const char* fn, const char* what, int value) {
  return std::invalid_argument(std::string(fn) + ": invalid " + what + " value " +
                               std::to_string(value));
}

// Byte length of count elements, refusing counts that would wrap size_t.
std::size_t byte_length(const char* fn, DataType type, std::size_t count) {
  const std::size_t size = dtype_size(type);
  if (count > std::numeric_limits<std::size_t>::max() / size)
    throw std::invalid_argument(std::string(fn) + ": count " + std::to_string(count) + " of " +
                                std::string(to_string(type)) + " overflows the address space");
  return count * size;
}

// The checks both entry points make, then the kernel for `type`.
void reduce(const char* fn, DataType type, ReduceOp op, void* dst, const void* a, const void* b, std::size_t count) {
  if (!valid(op)) throw bad_enum(fn, "ReduceOp", static_cast<int>(op));
  const std::size_t bytes = byte_length(fn, type, count);
  if (count == 0) return;
  const bool in_place = a == nullptr;
  const char* null = dst == nullptr ? "dst" : b == nullptr ? (in_place ? "src" : "b") : nullptr;
  if (null != nullptr)
    throw std::invalid_argument(std::string(fn) + ": " + null + " is null with count " + std::to_string(count));
  const auto d = reinterpret_cast<std::uintptr_t>(dst);
  for (const void* in : {a, b}) {
    if (in == nullptr) continue;
    const auto s = reinterpret_cast<std::uintptr_t>(in);
    if (d < s + bytes && s < d + bytes)
      throw std::invalid_argument(std::string(fn) + ": dst and " + (in_place ? "src" : in == a ? "a" : "b") + " overlap (" +
                                  std::to_string(bytes) + " bytes each, " + std::to_string(d > s ? d - s : s - d) +
                                  " bytes apart)");
  }
  auto ops = [&]<class T>(T*) {
    return Operands<T>{static_cast<T*>(dst), static_cast<const T*>(a), static_cast<const T*>(b)};
  };
  switch (type) {
    case DataType::f32: return reduce_float(op, ops(static_cast<float*>(nullptr)), count);
    case DataType::f64: return reduce_float(op, ops(static_cast<double*>(nullptr)), count);
    case DataType::f16: return reduce_f16(op, ops(static_cast<Float16*>(nullptr)), count);
    case DataType::bf16: return reduce_bf16(op, ops(static_cast<BFloat16*>(nullptr)), count);
    case DataType::i8: return reduce_int(op, ops(static_cast<std::int8_t*>(nullptr)), count);
    case DataType::u8: return reduce_int(op, ops(static_cast<std::uint8_t*>(nullptr)), count);
    case DataType::i32: return reduce_int(op, ops(static_cast<std::int32_t*>(nullptr)), count);
    case DataType::i64: return reduce_int(op, ops(static_cast<std::int64_t*>(nullptr)), count);
  }
  throw bad_enum(fn, "DataType", static_cast<int>(type));  // unreachable: checked
}

}  // namespace

void reduce_into(DataType type, ReduceOp op, void* dst, const void* src, std::size_t count) {
  reduce("reduce_into", type, op, dst, nullptr, src, count);
}

void reduce_to(DataType type, ReduceOp op, void* dst, const void* a, const void* b, std::size_t count) {
  if (a == nullptr && count > 0) throw std::invalid_argument("reduce_to: a is null with count " + std::to_string(count));
  reduce("reduce_to", type, op, dst, a, b, count);
}

void finalize_avg(DataType type, void* buf, std::size_t count, std::size_t nranks) {
  if (nranks == 0) throw std::invalid_argument("finalize_avg: nranks is 0");
  byte_length("finalize_avg", type, count);
  if (count == 0) return;
  if (buf == nullptr)
    throw std::invalid_argument("finalize_avg: buf is null with count " + std::to_string(count));

  switch (type) {
    case DataType::f32:
      return divide_float(static_cast<float*>(buf), count, static_cast<float>(nranks));
    case DataType::f64:
      return divide_float(static_cast<double*>(buf), count, static_cast<double>(nranks));
    case DataType::f16:
      return divide_16(static_cast<Float16*>(buf), count, static_cast<float>(nranks));
    case DataType::bf16:
      return divide_16(static_cast<BFloat16*>(buf), count, static_cast<float>(nranks));
    case DataType::i8: return divide_int(static_cast<std::int8_t*>(buf), count, nranks);
    case DataType::u8: return divide_int(static_cast<std::uint8_t*>(buf), count, nranks);
    case DataType::i32: return divide_int(static_cast<std::int32_t*>(buf), count, nranks);
    case DataType::i64: return divide_int(static_cast<std::int64_t*>(buf), count, nranks);
  }
  throw bad_enum("finalize_avg", "DataType", static_cast<int>(type));
}

}  // namespace rdmacoll::collectives
