// Reader for IDX files, the format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/):
//
//   offset  size      content
//   0       2         0x00 0x00
//   2       1         element type: 0x08 = unsigned byte (the only one supported here)
//   3       1         number of dimensions, n
//   4       4 * n     each dimension, big-endian uint32, outermost first
//   4 + 4n  product   the elements, row-major
//
// Files may be gzip-compressed or plain; zlib reads both transparently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <vector>

namespace rdmacoll::training {

// A training data file is missing, unreadable or corrupt. The message names the file and
// what is wrong with it.
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct IdxArray {
  std::vector<std::uint32_t> dims;  // outermost first, e.g. {60000, 28, 28}
  std::vector<std::uint8_t> data;   // product(dims) bytes, row-major
};

// Upper bound on the data a header may declare, so a corrupt header is reported instead of
// attempting a huge allocation. Fashion-MNIST's largest file holds 47,040,000 bytes.
inline constexpr std::size_t kMaxIdxBytes = std::size_t{1} << 30;
// IDX allows up to 255 dimensions; real files use 1 to 4.
inline constexpr std::size_t kMaxIdxDims = 16;

// Reads a whole unsigned-byte IDX file. Throws DataError if the file cannot be opened, is not
// an IDX file, has another element type, declares no or too many dimensions or more than
// max_bytes of data, ends early, has bytes after the declared data, or fails to decompress.
IdxArray read_idx(const std::filesystem::path& file, std::size_t max_bytes = kMaxIdxBytes);

}  // namespace rdmacoll::training
