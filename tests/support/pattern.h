// Data patterns for transfer tests: every byte depends on its position, the size and the two
// ranks, so a misplaced, stale or crossed-over byte is caught.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rdmacoll::testing {

// The sizes every transfer test covers: empty, one byte, around a page, odd and large.
inline const std::vector<size_t> kTransferSizes = {0, 1, 4095, 4096, (size_t{1} << 20) + 3, size_t{64} << 20};

inline uint8_t pattern(size_t i, size_t size, int from, int to) {
  return static_cast<uint8_t>(
      (i * 193 + size * 5 + static_cast<size_t>(from) * 31 + static_cast<size_t>(to) * 7 + (i >> 10)) & 0xff);
}

inline void fill_pattern(uint8_t* p, size_t size, int from, int to) {
  for (size_t i = 0; i < size; ++i) p[i] = pattern(i, size, from, to);
}

// How many of p[0..size) differ from the pattern.
inline size_t count_wrong(const uint8_t* p, size_t size, int from, int to) {
  size_t wrong = 0;
  for (size_t i = 0; i < size; ++i) wrong += p[i] != pattern(i, size, from, to);
  return wrong;
}

}  // namespace rdmacoll::testing
