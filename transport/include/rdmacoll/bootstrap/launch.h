// Who am I, how many are we, and where is the rendezvous? Read from whatever launched us:
// rdmacoll-run / explicit RDMACOLL_* variables, Open MPI's mpirun, Slurm's srun, or torchrun.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::bootstrap {

constexpr uint16_t kDefaultPort = 29500;  // torchrun's default MASTER_PORT

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  std::string host;  // rendezvous host (rank 0 serves the store there)
  uint16_t port = kDefaultPort;
  std::string source;  // which variables it came from, for messages
  // When no address is given (Open MPI without RDMACOLL_ADDR): rank 0 serves on a free port and
  // writes "HOST:PORT" to this file, which the other ranks read (RDMACOLL_STORE_DIR must be
  // shared between the nodes of a multi-node job; /tmp is enough on one machine).
  std::string addr_file;
};

// Reads, in order: RDMACOLL_RANK/RDMACOLL_WORLD_SIZE/RDMACOLL_ADDR; OMPI_COMM_WORLD_RANK/SIZE;
// SLURM_PROCID/SLURM_NTASKS with the first host of SLURM_JOB_NODELIST; RANK/WORLD_SIZE with
// MASTER_ADDR/MASTER_PORT. RDMACOLL_ADDR overrides the address whatever the source.
// Returns nullopt when no launcher variables are set. Throws ConfigError on inconsistent values.
std::optional<LaunchInfo> detect_launch();

// "host:port", "[v6addr]:port" or "host" (default port). Throws ConfigError naming `what`.
std::pair<std::string, uint16_t> parse_host_port(std::string_view s, std::string_view what);

// The first host of a Slurm node list: "node[01-04,07],gpu1" -> "node01".
std::string first_host_in_nodelist(std::string_view nodelist);

// The connected job: rank 0 also serves the store.
struct World {
  LaunchInfo info;
  std::unique_ptr<TcpStoreServer> server;  // rank 0 only
  std::unique_ptr<Store> store;
  std::shared_ptr<void> cleanup;  // rank 0: removes info.addr_file
};
World connect_world(const LaunchInfo& info, Deadline deadline);

// The last collective step of a job: a barrier, after which every other rank tells rank 0 it
// will not use the store again, so rank 0 can shut the store down without cutting off a rank
// still waiting for the barrier's answer. Call it on every rank before the World goes away.
void finalize(World& world, Deadline deadline);

}  // namespace rdmacoll::bootstrap
