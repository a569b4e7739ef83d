// progress_bench: ranks pass small messages round a ring; prints microseconds per round trip of
// the ring for the progress mode in RDMACOLL_PROGRESS. bench/progress_modes.sh runs it for each
// mode with more ranks than cores and prints the ratios.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"

using namespace rdmacoll;

int main(int argc, char** argv) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : 2000;
  size_t size = argc > 2 ? static_cast<size_t>(std::atol(argv[2])) : 8;
  try {
    auto info = bootstrap::detect_launch();
    if (!info) throw ConfigError("run under a launcher, e.g. rdmacoll-run -n 4 -- progress_bench");
    auto world = bootstrap::connect_world(*info, bootstrap::default_deadline());
    auto t = transport::Transport::create(world);
    const int me = t->rank(), n = t->size(), right = (me + 1) % n, left = (me + n - 1) % n;
    std::vector<char> out(size, 1), in(size);
    auto round = [&](int i) {
      // Rank 0 starts each lap; everyone else forwards: a lap costs n one-way latencies.
      if (me == 0) {
        t->send(right, static_cast<uint64_t>(i), out.data(), size).wait();
        t->recv(left, static_cast<uint64_t>(i), in.data(), size).wait();
      } else {
        t->recv(left, static_cast<uint64_t>(i), in.data(), size).wait();
        t->send(right, static_cast<uint64_t>(i), out.data(), size).wait();
      }
    };
    for (int i = 0; i < rounds / 10; ++i) round(i);  // warm-up
    bootstrap::barrier(*world.store, "bench/start", me, n, bootstrap::default_deadline());
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < rounds; ++i) round(rounds + i);
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / rounds;
    bootstrap::barrier(*world.store, "bench/end", me, n, bootstrap::default_deadline());
    if (me == 0)
      std::printf("ranks %d size %zu mode %s: %.1f us per lap (%s)\n", n, size,
                  std::string(transport::to_string(t->options().progress)).c_str(), us, t->describe().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "progress_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
