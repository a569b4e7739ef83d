// rdmacoll-allreduce-perf --compress: its inputs, how far a compressed result is from the exact
// allreduce, and the limit the -c 1 check holds that distance to. No network here: the tool
// sums the per-rank budgets with an allreduce of its own.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/collectives/communicator.h"

namespace rdmacoll::collperf {

// Rank `rank`'s input: gradient-like pseudo-random floats, a function of (element, rank) alone.
// Element i is scale(i) * (0.5 c(i) + g(i, rank)), c and g roughly normal (sums of four
// uniforms); c is shared by every rank (what the ranks agree on), g is each rank's own noise;
// scale(i) is constant over runs of 1024 elements (a "layer") and spread over 2^-16..2^-4.
void fill_gradient(int rank, float* buf, size_t count);

// ||out - exact||_2 / ||exact||_2, in double: 0 when both are zero, +inf when only exact is, NaN
// when out holds a NaN.
double relative_error(const float* out, const float* exact, size_t count);

// A 64-bit hash of the bytes: ranks compare their results' hashes, not the results.
uint64_t result_hash(const float* buf, size_t count);

// Whether a compressed allreduce with `codec` runs the two-phase scheme (communicator.h:
// automatic picks allgather for sparse codecs).
bool uses_two_phase(const collectives::Codec& codec, collectives::Compression::Scheme scheme);

// The -c 1 limit on relerr, in two steps around the call.
// 1. Before its call, each rank's budget per element: what the codec may lose of what this rank
//    encodes, error_bound(v) for v = in + worker residual, plus what error feedback holds back
//    (|v - in| and the server residual), plus float rounding of the sums (1e-6 |in|).
void local_error_budget(const collectives::Codec& codec, const float* in, size_t count,
                        const collectives::ErrorFeedback* feedback, float* budget);
// 2. With e1 the budgets reduced over ranks by the call's op (avg divides the error too):
//    2 ||e1 + b2||_2 / ||exact||_2 + 1e-6, where b2 (two-phase only) is error_bound(|exact| + e1), what the owners' re-encoding of the reduced
//    blocks may lose. Twice: the bounds are taken over the whole buffer, the call encodes each
//    block (and segment) on its own, so its codec blocks start elsewhere. +inf when exact is 0.
double relerr_limit(const collectives::Codec& codec, bool two_phase, const float* exact, const float* e1,
                    size_t count);

}  // namespace rdmacoll::collperf
