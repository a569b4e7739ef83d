// Timestamps for the measurement loops. perftest reads the cycle counter; so do we where there
// is an invariant one (x86-64 TSC), calibrated once against the steady clock. clock_gettime is
// not always cheap: in a TCG guest the clock source is the emulated HPET and every call is a
// system call of several microseconds, which would be measured along with the operation.
#pragma once

#include <cstdint>
#include <string>

namespace rdmacoll::perf {

class Timer {
 public:
  Timer();  // calibrates (about 20 ms) when the cycle counter is usable
  uint64_t now() const;                 // ticks
  double seconds(uint64_t ticks) const { return static_cast<double>(ticks) / hz_; }
  uint64_t ticks(double seconds) const { return static_cast<uint64_t>(seconds * hz_); }
  double micros(uint64_t ticks) const { return static_cast<double>(ticks) * 1e6 / hz_; }
  const std::string& source() const { return source_; }  // "TSC, 2.90 GHz" or "steady_clock"

 private:
  bool tsc_ = false;
  double hz_ = 1e9;
  std::string source_;
};

}  // namespace rdmacoll::perf
