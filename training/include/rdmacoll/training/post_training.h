// Shrinking a trained Mlp: magnitude pruning and int8 weight quantization, each with the
// model size it leads to. Only weight matrices are pruned or quantized; biases stay fp32
// (they are 0.2% of the 784-256-128-10 net).
//
// Sizes counted (bytes, no container overhead):
//   dense fp32:   4 * params().size()
//   pruned CSR:   per weight matrix 4 * nnz values + idx * nnz column indices + 4 * (rows + 1)
//                 row pointers, idx = 2 when cols <= 65536 else 4; plus 4 * biases
//   pruned bitmap: per weight matrix ceil(rows * cols / 8) bytes of bitmap + 4 * nnz values;
//                 plus 4 * biases
//   int8:         1 byte per weight + 4 per scale (one per row, or one per matrix) + 4 * biases
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rdmacoll/training/mlp.h"

namespace rdmacoll::training {

std::size_t dense_size_bytes(const Mlp& model) noexcept;

enum class PruneScope {
  per_layer,  // each weight matrix loses `sparsity` of its own entries
  global,     // the smallest |w| over all weight matrices together, whatever layer they are in
};

struct PruneReport {
  std::size_t weights = 0;       // weight entries considered (biases excluded)
  std::size_t zero_weights = 0;  // weight entries that are 0 afterwards
  double sparsity = 0;           // zero_weights / weights
  std::size_t dense_bytes = 0;
  std::size_t csr_bytes = 0;
  std::size_t bitmap_bytes = 0;
};

// Sets round(sparsity * count) weights with the smallest magnitude to zero (count per layer or
// over all layers, see PruneScope; ties broken by position, so the result is deterministic).
// Weights that were already zero count among the smallest. Throws std::invalid_argument unless
// 0 <= sparsity <= 1. The sizes describe the model as it is afterwards.
PruneReport prune_magnitude(Mlp& model, double sparsity, PruneScope scope);
// The size figures for the model as it is (zeros counted wherever they came from).
PruneReport sparse_size(const Mlp& model);

enum class QuantScale { per_tensor, per_row };

// Symmetric int8: q = round(w / scale) in [-127, 127], scale = max|w| / 127 over the row or the
// matrix (a zero row or matrix gets scale 0 and q 0). Dequantized, w' = q * scale, within
// scale / 2 of w.
struct QuantizedLayer {
  std::size_t rows = 0, cols = 0;
  std::vector<std::int8_t> q;  // rows x cols, row-major
  std::vector<float> scales;   // rows entries (per_row) or 1 (per_tensor)
  std::vector<float> bias;     // fp32
  float scale_of_row(std::size_t r) const noexcept { return scales[scales.size() == 1 ? 0 : r]; }
};

struct QuantizedMlp {
  std::vector<std::size_t> sizes;
  std::vector<QuantizedLayer> layers;

  std::size_t size_bytes() const noexcept;
  // An Mlp holding the dequantized weights, for evaluating with Mlp::accuracy().
  Mlp dequantize() const;
};

QuantizedMlp quantize_int8(const Mlp& model, QuantScale scale);

}  // namespace rdmacoll::training
