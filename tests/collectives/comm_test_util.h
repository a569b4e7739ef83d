// Inputs and reference results for the communicator tests. Inputs are small integers (or
// powers of two for prod) in every datatype, so every reduction order gives exactly the same
// result: the reference is rank 0's input reduced with ranks 1..n-1's in order by the same
// kernels, and results compare bitwise.
#pragma once

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "rdmacoll/collectives/datatype.h"
#include "rdmacoll/collectives/half.h"
#include "rdmacoll/collectives/reduce.h"

namespace rdmacoll::collectives::testing {

inline void store(DataType type, char* p, double v) {
  switch (type) {
    case DataType::f32: { float f = static_cast<float>(v); std::memcpy(p, &f, 4); break; }
    case DataType::f64: std::memcpy(p, &v, 8); break;
    case DataType::f16: { uint16_t h = float_to_half_bits(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
    case DataType::bf16: { uint16_t h = float_to_bf16_bits(static_cast<float>(v)); std::memcpy(p, &h, 2); break; }
    case DataType::i8: { auto x = static_cast<int8_t>(v); std::memcpy(p, &x, 1); break; }
    case DataType::u8: { auto x = static_cast<uint8_t>(v); std::memcpy(p, &x, 1); break; }
    case DataType::i32: { auto x = static_cast<int32_t>(v); std::memcpy(p, &x, 4); break; }
    case DataType::i64: { auto x = static_cast<int64_t>(v); std::memcpy(p, &x, 8); break; }
  }
}

// Rank `rank`'s input: exact in every type, and for prod powers of two (and -1) so products
// of up to 8 ranks stay exact in f16.
inline std::vector<char> input(DataType type, ReduceOp op, int rank, size_t count) {
  const size_t es = dtype_size(type);
  const bool unsigned_type = type == DataType::u8;
  std::vector<char> out(count * es);
  for (size_t i = 0; i < count; ++i) {
    const auto k = static_cast<int64_t>(i * 7 + static_cast<size_t>(rank) * 13);
    double v;
    if (op == ReduceOp::prod) {
      static constexpr double kSigned[] = {1, 2, -1}, kUnsigned[] = {1, 2, 3};
      v = (unsigned_type ? kUnsigned : kSigned)[k % 3];
    } else {
      v = static_cast<double>(k % 11) - (unsigned_type ? 0 : 5);
    }
    store(type, out.data() + i * es, v);
  }
  return out;
}

// ((x_0 op x_1) op x_2) ... op x_{n-1}, then avg's division.
inline std::vector<char> reference(DataType type, ReduceOp op, int nranks, size_t count) {
  std::vector<char> acc = input(type, op, 0, count);
  for (int q = 1; q < nranks; ++q) {
    std::vector<char> x = input(type, op, q, count);
    reduce_into(type, op, acc.data(), x.data(), count);
  }
  if (op == ReduceOp::avg) finalize_avg(type, acc.data(), count, static_cast<size_t>(nranks));
  return acc;
}

// (offset, count) of rank r's block: even_blocks' partition, the first count % n blocks one
// element longer.
inline std::pair<size_t, size_t> schedules_blocks(size_t count, int n, int r) {
  const size_t parts = static_cast<size_t>(n), rr = static_cast<size_t>(r), base = count / parts, extra = count % parts;
  return {rr * base + std::min(rr, extra), base + (rr < extra ? 1 : 0)};
}

// Index of the first element that differs, or -1.
inline long first_difference(const char* a, const char* b, size_t count, size_t es) {
  for (size_t i = 0; i < count; ++i)
    if (std::memcmp(a + i * es, b + i * es, es) != 0) return static_cast<long>(i);
  return -1;
}

}  // namespace rdmacoll::collectives::testing
