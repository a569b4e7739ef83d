// Element-wise reduction kernels: what a collective does with a chunk it has received.
#pragma once

#include <cstddef>

#include "rdmacoll/collectives/datatype.h"

namespace rdmacoll::collectives {

// dst[i] = dst[i] op src[i] for every i < count (elements, not bytes).
//
//  - avg accumulates exactly like sum; call finalize_avg() once all ranks are in.
//  - Integers: sum and prod wrap around modulo 2^bits (computed in the unsigned type, so no
//    undefined behaviour); min and max are the usual ones.
//  - f32/f64 min and max propagate NaN: if either operand is NaN the result is NaN (dst's
//    own NaN if dst is NaN, else src's). Ranks that reduce in different orders therefore
//    agree on which elements are NaN. +0.0 and -0.0 compare equal; which one a min or max
//    of the two returns depends on operand order.
//  - f16/bf16: each element is widened to float (exact), combined, and rounded back once to
//    nearest-even; NaN behaves as for f32.
//
// count == 0 accepts null pointers. Throws std::invalid_argument if a pointer is null with
// count > 0, if the two ranges overlap (src == dst included), if count * element size
// overflows, or if type/op is not a valid enum value.
void reduce_into(DataType type, ReduceOp op, void* dst, const void* src, std::size_t count);

// dst[i] = a[i] op b[i]: the same reduction out of place, a's elements in dst's role above:
// the result of copying a into dst and calling reduce_into(dst, b), bit for bit except which
// payload a sum or product of two NaNs carries (the compiler may order the operands either way).
// Throws std::invalid_argument as reduce_into does, and if dst is a or overlaps a or b
// (a and b may overlap each other).
void reduce_to(DataType type, ReduceOp op, void* dst, const void* a, const void* b, std::size_t count);

// Turns an avg accumulated by reduce_into() into the average: buf[i] = buf[i] / nranks.
//
//  - Floating types: IEEE division (f16/bf16 through float, rounded once).
//  - Integers: C++ integer division, which truncates toward zero (-7 / 2 == -3). It divides
//    the accumulated sum as it is, so a sum that wrapped gives the average of the wrapped
//    value; use a wider type if the sum can overflow.
//
// Throws std::invalid_argument for nranks == 0, a null buf with count > 0, or an invalid type.
void finalize_avg(DataType type, void* buf, std::size_t count, std::size_t nranks);

}  // namespace rdmacoll::collectives
