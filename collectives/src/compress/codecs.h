// Private: the codec classes' shared pieces, between codecs.cc and sparse.cc.
#pragma once

#include <memory>

#include "compress/kernel_table.h"

namespace rdmacoll::collectives::compress {

// The sparse codecs (topk, randk): one implementation for every SIMD path, but for the two
// memory-bound passes in the kernel table (topk's candidates, the decoding's expansion).
std::unique_ptr<Codec> make_sparse_codec(const CodecSpec& spec, SimdPath simd);

// The kernels of a resolved path (portable or avx2).
const KernelTable& kernel_table(SimdPath simd) noexcept;

// k of a sparse codec for n elements: max(1, round(F*n)), at most n; 0 for n == 0.
std::size_t sparse_k(double fraction, std::size_t n) noexcept;

// The number of NaN and Inf in in[0, n), on the bits so the loop vectorizes.
std::size_t count_nonfinite(const float* in, std::size_t n) noexcept;

// Bits per index: ceil(log2 n), 0 for n <= 1.
unsigned index_bits(std::size_t n) noexcept;

}  // namespace rdmacoll::collectives::compress
