// PowerSGD over the public allreduce (see powersgd.h). Plain loops: r is small, and the two
// products are rows x cols x r multiply-adds each, a few per gradient element.
#include "rdmacoll/collectives/powersgd.h"

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

namespace rdmacoll::collectives {
namespace {

// Columns of a (rows x r, row-major) made orthonormal, in order (modified Gram-Schmidt). A
// column that vanishes (norm below 1e-30 after projection) is set to zero rather than divided.
void orthonormalize(float* a, size_t rows, unsigned r) {
  for (unsigned j = 0; j < r; ++j) {
    for (unsigned k = 0; k < j; ++k) {
      double dot = 0;
      for (size_t i = 0; i < rows; ++i) dot += static_cast<double>(a[i * r + k]) * a[i * r + j];
      for (size_t i = 0; i < rows; ++i) a[i * r + j] -= static_cast<float>(dot) * a[i * r + k];
    }
    double norm = 0;
    for (size_t i = 0; i < rows; ++i) norm += static_cast<double>(a[i * r + j]) * a[i * r + j];
    norm = std::sqrt(norm);
    const float scale = norm > 1e-30 ? static_cast<float>(1.0 / norm) : 0.0f;
    for (size_t i = 0; i < rows; ++i) a[i * r + j] *= scale;
  }
}

void accumulate(PowerSgdResult& out, const Work& w) {
  const WireStats s = w.wire();
  out.wire.bytes_sent += s.bytes_sent, out.wire.bytes_received += s.bytes_received;
  out.wire.messages_sent += s.messages_sent, out.wire.messages_received += s.messages_received;
}

}  // namespace

PowerSgdResult powersgd_allreduce(Communicator& comm, float* grad, size_t rows, size_t cols, unsigned rank,
                                  PowerSgdState& state, bool error_feedback, uint64_t seed) {
  if (rank == 0) throw std::invalid_argument("powersgd_allreduce: rank 0 (the approximation's rank must be >= 1)");
  if (grad == nullptr && rows * cols > 0) throw std::invalid_argument("powersgd_allreduce: null gradient");
  if (!state.q.empty() && (state.rows != rows || state.cols != cols || state.rank != rank))
    throw std::invalid_argument("powersgd_allreduce: the state is for a " + std::to_string(state.rows) + " x " +
                                std::to_string(state.cols) + " matrix at rank " + std::to_string(state.rank) +
                                ", the call has " + std::to_string(rows) + " x " + std::to_string(cols) + " at rank " +
                                std::to_string(rank) + ": keep one state per layer");
  const size_t n = rows * cols;
  if (state.q.empty()) {
    state.rows = rows, state.cols = cols, state.rank = rank;
    state.q.resize(cols * rank);
    std::mt19937_64 gen(seed ^ 0x50575253ull);  // the same on every rank
    std::normal_distribution<float> normal;
    for (float& x : state.q) x = normal(gen);
    state.residual.assign(error_feedback ? n : 0, 0.0f);
  }
  // M' = M + E, in place: grad holds M' until the result replaces it.
  if (error_feedback) {
    if (state.residual.size() != n) state.residual.assign(n, 0.0f);
    for (size_t i = 0; i < n; ++i) grad[i] += state.residual[i];
  }
  PowerSgdResult out;
  out.floats_sent_per_rank = (rows + cols) * rank;

  std::vector<float> p(rows * rank, 0.0f);
  for (size_t i = 0; i < rows; ++i)
    for (size_t k = 0; k < cols; ++k) {
      const float m = grad[i * cols + k];
      for (unsigned j = 0; j < rank; ++j) p[i * rank + j] += m * state.q[k * rank + j];
    }
  Work wp = comm.allreduce_async(p.data(), p.data(), p.size(), DataType::f32, ReduceOp::avg);
  wp.wait();
  accumulate(out, wp);
  orthonormalize(p.data(), rows, rank);

  std::fill(state.q.begin(), state.q.end(), 0.0f);
  for (size_t i = 0; i < rows; ++i)
    for (size_t k = 0; k < cols; ++k) {
      const float m = grad[i * cols + k];
      for (unsigned j = 0; j < rank; ++j) state.q[k * rank + j] += m * p[i * rank + j];
    }
  Work wq = comm.allreduce_async(state.q.data(), state.q.data(), state.q.size(), DataType::f32, ReduceOp::avg);
  wq.wait();
  accumulate(out, wq);

  // grad <- P Q^T, and E <- M' - P Q^T.
  for (size_t i = 0; i < rows; ++i)
    for (size_t k = 0; k < cols; ++k) {
      float a = 0;
      for (unsigned j = 0; j < rank; ++j) a += p[i * rank + j] * state.q[k * rank + j];
      if (error_feedback) state.residual[i * cols + k] = grad[i * cols + k] - a;
      grad[i * cols + k] = a;
    }
  return out;
}

}  // namespace rdmacoll::collectives
