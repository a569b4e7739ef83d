// PowerSGD (Vogels, Karimireddy and Jaggi, 2019): low-rank compression of matrix-shaped
// gradients, built only on the communicator's public allreduce. For a rows x cols gradient M on
// every rank and rank r:
//
//   M' = M + E                      E: this rank's error feedback (what earlier steps did not send)
//   P  = allreduce_avg(M' Q)        rows x r; Q (cols x r) is the previous step's (warm start)
//   P  = orthonormalize(P)          modified Gram-Schmidt, the same on every rank (same bits in)
//   Q  = allreduce_avg(M'^T P)      cols x r
//   M  <- P Q^T                     the average of the ranks' M', projected on span(P)
//   E  <- M' - P Q^T
//
// Two allreduces of (rows + cols) x r floats instead of one of rows x cols: for a 784 x 256
// layer at r = 4, 4160 floats instead of 200704 (48x). The first step's Q is drawn from a
// seeded normal distribution, the same on every rank. Every rank ends with the same bits.
// Where the ranks' average has rank <= r, the result is that average (up to float rounding);
// 1-D tensors (biases) are not matrices: allreduce them plainly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "rdmacoll/collectives/communicator.h"

namespace rdmacoll::collectives {

// One matrix's state across steps, owned by the caller (one per layer): the warm-started Q and
// the error feedback. Sized on first use; reset() starts over.
struct PowerSgdState {
  std::vector<float> q, residual;
  size_t rows = 0, cols = 0;
  unsigned rank = 0;
  void reset() { q.clear(), residual.clear(), rows = cols = 0, rank = 0; }
};

struct PowerSgdResult {
  WireStats wire;  // both allreduces, from the transport's counters
  size_t floats_sent_per_rank = 0;  // (rows + cols) x rank per matrix (+ plain), the allreduces' payload
};

// Replaces grad (rows x cols, row-major) on every rank by the rank-`rank` approximation of the
// ranks' average. `error_feedback`: false drops E (plain low-rank averaging). Throws
// std::invalid_argument for rank 0, a null grad with rows*cols > 0, or a state made for another
// shape or rank. Collective: every rank calls it with the same shape, rank and seed.
PowerSgdResult powersgd_allreduce(Communicator& comm, float* grad, size_t rows, size_t cols, unsigned rank,
                                  PowerSgdState& state, bool error_feedback = true, uint64_t seed = 0);

// A model's matrices at once, as the paper runs it: one allreduce carries every matrix's P
// (and `plain`, the tensors that are not matrices, such as biases, averaged exactly), one
// carries every Q. Two calls per step instead of two per matrix and one per bias: fewer
// messages, and no per-call overhead on the wire for each small tensor. Matrix i starts from
// the Q a single call with seed `seed + i` would draw, so the results are those of one call per
// matrix plus an allreduce of `plain` (bitwise so under RDMACOLL_DETERMINISTIC=1).
struct PowerSgdMatrix {
  float* grad = nullptr;  // rows x cols, row-major; replaced by the approximation
  size_t rows = 0, cols = 0;
  PowerSgdState* state = nullptr;  // one per matrix, kept across steps
};
PowerSgdResult powersgd_allreduce(Communicator& comm, std::span<const PowerSgdMatrix> matrices, std::span<float> plain,
                                  unsigned rank, bool error_feedback = true, uint64_t seed = 0);

}  // namespace rdmacoll::collectives
