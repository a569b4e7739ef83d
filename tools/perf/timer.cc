#include "timer.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace rdmacoll::perf {

namespace {

using Steady = std::chrono::steady_clock;

uint64_t steady_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now().time_since_epoch()).count());
}

#if defined(__x86_64__)
// Cycles per second over one short sleep.
double tsc_rate() {
  uint64_t t0 = steady_ns(), c0 = __rdtsc();
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  uint64_t t1 = steady_ns(), c1 = __rdtsc();
  if (c1 <= c0 || t1 <= t0) return 0;
  return static_cast<double>(c1 - c0) * 1e9 / static_cast<double>(t1 - t0);
}
#endif

}  // namespace

Timer::Timer() {
#if defined(__x86_64__)
  // Usable when it ticks at a constant rate: two calibrations must agree within 1% (the
  // kernel's constant_tsc/nonstop_tsc flags are missing in some guests whose TSC is fine).
  double a = tsc_rate(), b = tsc_rate();
  if (a > 0 && b > 0 && a / b > 0.99 && a / b < 1.01) {
    tsc_ = true;
    hz_ = (a + b) / 2;
    char buf[64];
    std::snprintf(buf, sizeof buf, "TSC, %.2f GHz", hz_ / 1e9);
    source_ = buf;
    return;
  }
#endif
  source_ = "steady_clock";
}

uint64_t Timer::now() const {
#if defined(__x86_64__)
  if (tsc_) return __rdtsc();
#endif
  return steady_ns();
}

}  // namespace rdmacoll::perf
