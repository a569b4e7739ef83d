#include "rdmacoll/bootstrap/launch.h"

#include <cstdlib>

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
  } else {
    throw ConfigError(info.source + " gives rank and size but no rendezvous address; set RDMACOLL_ADDR=HOST:PORT "
                      "to an address of the host running rank 0");
  }
  return info;
}

World connect_world(const LaunchInfo& info, Deadline deadline) {
  World w;
  w.info = info;
  log::set_rank(info.rank);
  if (info.rank == 0) w.server = std::make_unique<TcpStoreServer>(info.host, info.port);
  uint16_t port = w.server ? w.server->port() : info.port;
  w.store = std::make_unique<TcpStore>(info.host, port, deadline);
  RDMACOLL_INFO(kBoot, "rank %d of %d connected to store %s:%u (from %s)", info.rank, info.world_size,
                info.host.c_str(), port, info.source.c_str());
  return w;
}

}  // namespace rdmacoll::bootstrap
