// rdmacoll-hello: the first thing to run on a new cluster. Checks that the launcher gave every
// rank a consistent rank and world size and that all of them reach rank 0's rendezvous store:
//   rdmacoll-run -n 4 rdmacoll-hello
//   mpirun -np 4 -x RDMACOLL_ADDR=node0:29500 rdmacoll-hello --expect 4
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace {

namespace bs = rdmacoll::bootstrap;

int usage(std::ostream& out, int code) {
  out << "usage: rdmacoll-hello [--expect N]\n"
         "Run under a launcher (rdmacoll-run, mpirun, srun, torchrun). Every rank connects to rank 0's\n"
         "rendezvous store, exchanges (rank, host, pid) with all others, and passes a barrier.\n"
         "  --expect N  fail unless the world size is N\n"
         "Exits 0 when all ranks met; 1 on a timeout (naming the missing ranks, RDMACOLL_TIMEOUT sets\n"
         "the wait) or another error; 2 on bad usage.\n";
  return code;
}

// What each rank publishes: rank and pid as fixed 32-bit fields, then the host name.
struct Hello {
  int32_t rank = 0;
  int32_t pid = 0;
  std::string host;
};

bs::Bytes encode(const Hello& h) {
  bs::Bytes b(8 + h.host.size());
  std::memcpy(b.data(), &h.rank, 4);
  std::memcpy(b.data() + 4, &h.pid, 4);
  std::memcpy(b.data() + 8, h.host.data(), h.host.size());
  return b;
}

Hello decode(const bs::Bytes& b, int from) {
  if (b.size() < 8) throw rdmacoll::ProtocolError("rank " + std::to_string(from) + " sent a short hello");
  Hello h;
  std::memcpy(&h.rank, b.data(), 4);
  std::memcpy(&h.pid, b.data() + 4, 4);
  h.host.assign(b.begin() + 8, b.end());
  return h;
}

std::string hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int expect = 0;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "-h" || a == "--help") return usage(std::cout, 0);
    try {
      if (a != "--expect") throw rdmacoll::ConfigError("unknown argument '" + std::string(a) + "'");
      if (i + 1 == argc) throw rdmacoll::ConfigError("--expect needs a value");
      int64_t v = rdmacoll::settings::parse_int("--expect", argv[++i]);
      if (v < 1 || v > (1 << 24)) throw rdmacoll::ConfigError("--expect must be a positive world size");
      expect = static_cast<int>(v);
    } catch (const rdmacoll::ConfigError& e) {
      std::cerr << "rdmacoll-hello: " << e.what() << "\n";
      return usage(std::cerr, 2);
    }
  }

  int rank = -1;
  try {
    auto info = bs::detect_launch();
    if (!info)
      throw rdmacoll::ConfigError(
          "not started by a launcher: none of RDMACOLL_RANK, OMPI_COMM_WORLD_RANK, SLURM_PROCID or RANK is set; "
          "try `rdmacoll-run -n 2 rdmacoll-hello`");
    rank = info->rank;
    const int n = info->world_size;
    if (expect != 0 && n != expect)
      throw rdmacoll::ConfigError("world size is " + std::to_string(n) + " (from " + info->source + "), expected " +
                                  std::to_string(expect));

    bs::World world = bs::connect_world(*info, bs::default_deadline());
    bs::Store& store = *world.store;
    const uint16_t port = world.server ? world.server->port() : info->port;
    Hello me{rank, static_cast<int32_t>(getpid()), hostname()};
    std::vector<bs::Bytes> all = bs::all_gather(store, "hello", rank, n, encode(me), bs::default_deadline());
    std::vector<Hello> hellos;
    for (int r = 0; r < n; ++r) {
      hellos.push_back(decode(all[static_cast<size_t>(r)], r));
      if (hellos.back().rank != r)
        throw rdmacoll::ProtocolError("the hello stored for rank " + std::to_string(r) + " came from rank " +
                                      std::to_string(hellos.back().rank) + "; two ranks share a rank number?");
    }
    bs::barrier(store, "hello", rank, n, bs::default_deadline());

    std::cout << "rank " << rank << " of " << n << " on " << me.host << " (pid " << me.pid << ") [launcher: "
              << info->source << "]: rendezvous " << info->host << ":" << port << ", reached all " << n
              << " ranks\n";
    if (rank == 0) {
      size_t width = 4;
      for (const Hello& h : hellos) width = std::max(width, h.host.size());
      std::cout << "rank  " << std::left << std::setw(static_cast<int>(width)) << "host" << "  pid\n";
      for (const Hello& h : hellos)
        std::cout << std::left << std::setw(4) << h.rank << "  " << std::setw(static_cast<int>(width)) << h.host
                  << "  " << h.pid << "\n";
    }
    std::cout.flush();

    // Rank 0 serves the store: it must not exit while another rank may still need it.
    bs::finalize(world, bs::default_deadline());
  } catch (const rdmacoll::Error& e) {
    // Name the rank, unless the message already starts with it (the store's timeouts do).
    std::string who = rank >= 0 ? "rank " + std::to_string(rank) + ": " : "";
    if (std::string_view(e.what()).starts_with(who)) who.clear();
    std::cerr << "rdmacoll-hello: " << who << e.what() << "\n";
    return 1;
  }
  return 0;
}
