// Inputs and their check. Every rank fills its buffers from (element index, rank) alone, so any
// rank can compute what any element of a result must be without receiving anything, and a
// result is checked element by element, bitwise, against that reference.
//
// The values are small integers (in every type), so every reduction order gives the same exact
// result and there is no tolerance to state, for floats included:
//   sum, avg      -2..2 (uint8: 0..3): sums stay exact in half and bfloat16 up to 63 ranks;
//                 avg is that sum divided once (integers truncate toward zero, as finalize_avg)
//   prod          1 or -1 (uint8: 1 or 3, wrapping modulo 256 as the kernel's integer prod does)
//   min, max      -48..48 (uint8: 0..96)
//   no reduction  -48..48 (uint8: 0..96), a hash of (index, rank): blocks from the wrong rank or
//                 at the wrong offset do not match
// With more than 63 ranks int8 sums wrap (still exact: wrapping is what the kernel does), and
// half/bfloat16 sums may round, which the check would report as wrong elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "rdmacoll/collectives/datatype.h"

namespace rdmacoll::collperf {

using collectives::DataType;
using collectives::ReduceOp;

// Elements [begin, end) of `buf` get rank `rank`'s input for `op` (nullopt: no reduction).
void fill_input(DataType type, std::optional<ReduceOp> op, int rank, void* buf, size_t begin, size_t end);

// How many of elements [begin, end) of `buf` differ from `op` over ranks 0..nranks-1's inputs.
uint64_t count_wrong_reduced(DataType type, ReduceOp op, int nranks, const void* buf, size_t begin, size_t end);

// How many of elements [begin, end) of `buf` differ from rank `source`'s input (no reduction).
uint64_t count_wrong_copied(DataType type, int source, const void* buf, size_t begin, size_t end);

// (offset, count) of rank r's block of `count` elements over n ranks, the communicator's
// partition (communicator.h): the first count % n blocks are one element longer.
std::pair<size_t, size_t> block(size_t count, int n, int r);

}  // namespace rdmacoll::collperf
