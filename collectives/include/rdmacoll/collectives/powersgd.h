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
  size_t floats_sent_per_rank = 0;  // (rows + cols) x rank, the two allreduces' payload
};

// Replaces grad (rows x cols, row-major) on every rank by the rank-`rank` approximation of the
// ranks' average. `error_feedback`: false drops E (plain low-rank averaging). Throws
// std::invalid_argument for rank 0, a null grad with rows*cols > 0, or a state made for another
// shape or rank. Collective: every rank calls it with the same shape, rank and seed.
PowerSgdResult powersgd_allreduce(Communicator& comm, float* grad, size_t rows, size_t cols, unsigned rank,
                                  PowerSgdState& state, bool error_feedback = true, uint64_t seed = 0);

}  // namespace rdmacoll::collectives
