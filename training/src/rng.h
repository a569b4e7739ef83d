// The random numbers behind initialisation and shuffling: splitmix64 (Steele, Lea and Flood,
// "Fast splittable pseudorandom number generators", 2014) and integer arithmetic only, so the
// same seed gives the same bits with any compiler, standard library and machine (the
// std::*_distribution classes are implementation-defined and would not).
#pragma once

#include <cstdint>

namespace rdmacoll::training::detail {

class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) noexcept : state_(seed) {}

  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, 1) with 24 random bits: exactly representable as a float.
  float uniform01() noexcept {
    return static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }

  // Uniform in [0, bound), bound > 0, without modulo bias: draws below 2^64 mod bound are
  // rejected, leaving a range whose length is a multiple of bound.
  std::uint64_t below(std::uint64_t bound) noexcept {
    const std::uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      const std::uint64_t x = next();
      if (x >= threshold) return x % bound;
    }
  }

 private:
  std::uint64_t state_;
};

}  // namespace rdmacoll::training::detail
