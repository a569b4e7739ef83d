#include "rdmacoll/bootstrap/launch.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "bootstrap/auth.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::bootstrap {
namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, const std::string& value) {
  int64_t v = settings::parse_int(name, value);
  if (v < 0 || v > (1 << 24)) throw ConfigError(std::string(name) + "=" + value + " is out of range");
  return static_cast<int>(v);
}

}  // namespace

std::pair<std::string, uint16_t> parse_host_port(std::string_view s, std::string_view what) {
  std::string host;
  std::string_view port_s;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) throw ConfigError(std::string(what) + "='" + std::string(s) + "': missing ']'");
    host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':') throw ConfigError(std::string(what) + "='" + std::string(s) + "': expected ':' after ']'");
      port_s = s.substr(close + 2);
    }
  } else {
    size_t colon = s.rfind(':');
    host = s.substr(0, colon);
    if (colon != std::string_view::npos) port_s = s.substr(colon + 1);
  }
  if (host.empty()) throw ConfigError(std::string(what) + "='" + std::string(s) + "' has no host; expected HOST:PORT");
  uint16_t port = kDefaultPort;
  if (!port_s.empty()) {
    int64_t p = settings::parse_int(std::string(what) + " port", port_s);
    if (p < 0 || p > 65535) throw ConfigError(std::string(what) + "='" + std::string(s) + "': port out of range");
    port = static_cast<uint16_t>(p);
  }
  return {host, port};
}

std::string first_host_in_nodelist(std::string_view list) {
  // Grammar: host[,host...], where host = prefix[ranges]suffix; ranges = a[-b][,c...].
  std::string_view first = list;
  int depth = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i] == '[') ++depth;
    if (list[i] == ']') --depth;
    if (list[i] == ',' && depth == 0) {
      first = list.substr(0, i);
      break;
    }
  }
  // Each bracket group stands for a list of ranges; the first host takes the first value of each.
  std::string host;
  for (size_t i = 0; i < first.size(); ++i) {
    if (first[i] != '[') {
      host += first[i];
      continue;
    }
    size_t close = first.find(']', i);
    if (close == std::string_view::npos) throw ConfigError("SLURM_JOB_NODELIST='" + std::string(list) + "' is malformed");
    std::string_view range = first.substr(i + 1, close - i - 1);
    host += range.substr(0, std::min(range.find(','), range.find('-')));
    i = close;
  }
  return host;
}

std::optional<LaunchInfo> detect_launch() {
  LaunchInfo info;
  std::optional<std::string> rank, size, host, port;
  if ((rank = env("RDMACOLL_RANK"))) {
    size = env("RDMACOLL_WORLD_SIZE");
    info.source = "RDMACOLL_RANK/RDMACOLL_WORLD_SIZE";
  } else if ((rank = env("OMPI_COMM_WORLD_RANK"))) {
    size = env("OMPI_COMM_WORLD_SIZE");
    info.source = "Open MPI (OMPI_COMM_WORLD_RANK/SIZE)";
  } else if ((rank = env("SLURM_PROCID"))) {
    size = env("SLURM_NTASKS");
    if (auto nl = env("SLURM_JOB_NODELIST")) host = first_host_in_nodelist(*nl);
    info.source = "Slurm (SLURM_PROCID/SLURM_NTASKS)";
  } else if ((rank = env("RANK"))) {
    size = env("WORLD_SIZE");
    host = env("MASTER_ADDR");
    port = env("MASTER_PORT");
    info.source = "torchrun (RANK/WORLD_SIZE/MASTER_ADDR)";
  } else {
    return std::nullopt;
  }
  if (!size) throw ConfigError(info.source + ": the rank is set but the world size is not");
  info.rank = env_int("rank", *rank);
  info.world_size = env_int("world size", *size);
  if (info.world_size < 1 || info.rank >= info.world_size)
    throw ConfigError(info.source + ": rank " + std::to_string(info.rank) + " is not below world size " +
                      std::to_string(info.world_size));
  if (auto addr = settings::raw("RDMACOLL_ADDR")) {
    std::tie(info.host, info.port) = parse_host_port(*addr, "RDMACOLL_ADDR");
  } else if (host) {
    info.host = *host;
    if (port) info.port = static_cast<uint16_t>(env_int("MASTER_PORT", *port));
  } else if (info.world_size == 1) {
    info.host = "127.0.0.1";
  } else if (auto jobid = env("OMPI_MCA_ess_base_jobid"); jobid && info.source.starts_with("Open MPI")) {
    // mpirun gives no address: rank 0 publishes one in a file named after the job.
    info.addr_file = settings::get_string("RDMACOLL_STORE_DIR") + "/rdmacoll-ompi-" + *jobid + ".addr";
    auto local = env("OMPI_COMM_WORLD_LOCAL_SIZE");
    bool one_node = local && *local == *size;
    info.host = one_node ? "127.0.0.1" : "";
    info.port = 0;
  } else {
    throw ConfigError(info.source + " gives rank and size but no rendezvous address; set RDMACOLL_ADDR=HOST:PORT "
                      "to an address of the host running rank 0");
  }
  return info;
}

namespace {

// This host's name as the other nodes resolve it: where rank 0 listens in a multi-node job
// that gave no address.
std::string own_host() {
  char h[256] = {};
  if (gethostname(h, sizeof h - 1) != 0) throw TransportError("gethostname failed");
  return h;
}

void publish_addr(const std::string& file, const std::string& addr) {
  std::string tmp = file + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << addr << "\n";
    if (!out) throw TransportError("cannot write the rendezvous address file " + tmp + " (RDMACOLL_STORE_DIR)");
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0)
    throw TransportError("cannot rename " + tmp + " to " + file + ": " + std::strerror(errno));
}

std::string read_addr(const std::string& file, Deadline deadline) {
  auto backoff = std::chrono::milliseconds(2);
  for (;;) {
    std::ifstream in(file);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) return line;
    if (Clock::now() >= deadline)
      throw TimeoutError("rank 0 did not publish its rendezvous address in " + file +
                         " before the deadline; is rank 0 running, and is RDMACOLL_STORE_DIR shared by all nodes? "
                         "(or set RDMACOLL_ADDR=HOST:PORT)");
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(100));
  }
}

}  // namespace

World connect_world(const LaunchInfo& info, Deadline deadline) {
  World w;
  w.info = info;
  log::set_rank(info.rank);
  if (info.world_size > 1 && job_token().empty()) auth::warn_without_token();
  if (!info.addr_file.empty()) {
    if (info.rank == 0) {
      if (w.info.host.empty()) w.info.host = own_host();
      w.server = std::make_unique<TcpStoreServer>(w.info.host, 0);
      w.info.port = w.server->port();
      publish_addr(info.addr_file, w.info.host + ":" + std::to_string(w.info.port));
      w.cleanup = std::shared_ptr<void>(nullptr, [file = info.addr_file](void*) { std::remove(file.c_str()); });
    } else {
      std::tie(w.info.host, w.info.port) = parse_host_port(read_addr(info.addr_file, deadline), info.addr_file);
    }
  } else if (info.rank == 0) {
    w.server = std::make_unique<TcpStoreServer>(info.host, info.port);
  }
  uint16_t port = w.server ? w.server->port() : w.info.port;
  w.store = std::make_unique<TcpStore>(w.info.host, port, deadline);
  RDMACOLL_INFO(kBoot, "rank %d of %d connected to store %s:%u (from %s)", info.rank, info.world_size,
                w.info.host.c_str(), port, info.source.c_str());
  return w;
}

void finalize(World& world, Deadline deadline) {
  const int rank = world.info.rank, n = world.info.world_size;
  barrier(*world.store, "finalize", rank, n, deadline);
  if (rank != 0) {
    world.store->set("finalize/done/" + std::to_string(rank), std::string());
    return;
  }
  std::vector<std::string> keys;
  for (int r = 1; r < n; ++r) keys.push_back("finalize/done/" + std::to_string(r));
  world.store->wait(keys, deadline);
}

}  // namespace rdmacoll::bootstrap
