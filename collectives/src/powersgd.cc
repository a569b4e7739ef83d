// PowerSGD over the public allreduce (see powersgd.h). Plain loops: r is small, and the two
// products are rows x cols x r multiply-adds each, a few per gradient element.
#include "rdmacoll/collectives/powersgd.h"

#include <algorithm>
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
  const PowerSgdMatrix m{grad, rows, cols, &state};
  return powersgd_allreduce(comm, std::span<const PowerSgdMatrix>(&m, 1), {}, rank, error_feedback, seed);
}

PowerSgdResult powersgd_allreduce(Communicator& comm, std::span<const PowerSgdMatrix> matrices, std::span<float> plain,
                                  unsigned rank, bool error_feedback, uint64_t seed) {
  if (rank == 0) throw std::invalid_argument("powersgd_allreduce: rank 0 (the approximation's rank must be >= 1)");
  PowerSgdResult out;
  // Matrix m's P at p_at[m] in one buffer (the plain tensors after them), its Q at q_at[m] in another.
  std::vector<size_t> p_at(matrices.size()), q_at(matrices.size());
  size_t p_floats = 0, q_floats = 0;
  for (size_t m = 0; m < matrices.size(); ++m) {
    const PowerSgdMatrix& x = matrices[m];
    PowerSgdState* state = x.state;
    const std::string which = matrices.size() > 1 ? " (matrix " + std::to_string(m) + ")" : "";
    if (state == nullptr) throw std::invalid_argument("powersgd_allreduce: no state" + which);
    if (x.grad == nullptr && x.rows * x.cols > 0) throw std::invalid_argument("powersgd_allreduce: null gradient" + which);
    if (!state->q.empty() && (state->rows != x.rows || state->cols != x.cols || state->rank != rank))
      throw std::invalid_argument("powersgd_allreduce: the state is for a " + std::to_string(state->rows) + " x " +
                                  std::to_string(state->cols) + " matrix at rank " + std::to_string(state->rank) +
                                  ", the call has " + std::to_string(x.rows) + " x " + std::to_string(x.cols) +
                                  " at rank " + std::to_string(rank) + which + ": keep one state per layer");
    p_at[m] = p_floats, q_at[m] = q_floats;
    p_floats += x.rows * rank, q_floats += x.cols * rank;
  }
  if (plain.data() == nullptr && !plain.empty()) throw std::invalid_argument("powersgd_allreduce: null plain tensors");
  out.floats_sent_per_rank = p_floats + q_floats + plain.size();

  // M' = M + E, in place (grad holds M' until the result replaces it); P = M' Q.
  std::vector<float> ps(p_floats + plain.size(), 0.0f);
  for (size_t m = 0; m < matrices.size(); ++m) {
    const auto& [grad, rows, cols, state] = matrices[m];
    const size_t n = rows * cols;
    if (state->q.empty()) {
      state->rows = rows, state->cols = cols, state->rank = rank;
      state->q.resize(cols * rank);
      std::mt19937_64 gen((seed + m) ^ 0x50575253ull);  // the same on every rank
      std::normal_distribution<float> normal;
      for (float& x : state->q) x = normal(gen);
      state->residual.assign(error_feedback ? n : 0, 0.0f);
    }
    if (error_feedback) {
      if (state->residual.size() != n) state->residual.assign(n, 0.0f);
      for (size_t i = 0; i < n; ++i) grad[i] += state->residual[i];
    }
    float* p = ps.data() + p_at[m];
    for (size_t i = 0; i < rows; ++i)
      for (size_t k = 0; k < cols; ++k) {
        const float g = grad[i * cols + k];
        for (unsigned j = 0; j < rank; ++j) p[i * rank + j] += g * state->q[k * rank + j];
      }
  }
  std::copy(plain.begin(), plain.end(), ps.begin() + static_cast<std::ptrdiff_t>(p_floats));
  Work wp = comm.allreduce_async(ps.data(), ps.data(), ps.size(), DataType::f32, ReduceOp::avg);
  wp.wait();
  accumulate(out, wp);
  std::copy(ps.begin() + static_cast<std::ptrdiff_t>(p_floats), ps.end(), plain.begin());

  // Orthonormalize each P; Q = M'^T P, all in one buffer.
  std::vector<float> qs(q_floats, 0.0f);
  for (size_t m = 0; m < matrices.size(); ++m) {
    const auto& [grad, rows, cols, state] = matrices[m];
    float* p = ps.data() + p_at[m];
    float* q = qs.data() + q_at[m];
    orthonormalize(p, rows, rank);
    for (size_t i = 0; i < rows; ++i)
      for (size_t k = 0; k < cols; ++k) {
        const float g = grad[i * cols + k];
        for (unsigned j = 0; j < rank; ++j) q[k * rank + j] += g * p[i * rank + j];
      }
  }
  if (q_floats > 0) {
    Work wq = comm.allreduce_async(qs.data(), qs.data(), qs.size(), DataType::f32, ReduceOp::avg);
    wq.wait();
    accumulate(out, wq);
  }

  // grad <- P Q^T, and E <- M' - P Q^T; Q is kept for the next step's warm start.
  for (size_t m = 0; m < matrices.size(); ++m) {
    const auto& [grad, rows, cols, state] = matrices[m];
    const float* p = ps.data() + p_at[m];
    std::copy_n(qs.begin() + static_cast<std::ptrdiff_t>(q_at[m]), cols * rank, state->q.begin());
    const float* q = state->q.data();
    for (size_t i = 0; i < rows; ++i)
      for (size_t k = 0; k < cols; ++k) {
        float a = 0;
        for (unsigned j = 0; j < rank; ++j) a += p[i * rank + j] * q[k * rank + j];
        if (error_feedback) state->residual[i * cols + k] = grad[i * cols + k] - a;
        grad[i * cols + k] = a;
      }
  }
  return out;
}

}  // namespace rdmacoll::collectives
