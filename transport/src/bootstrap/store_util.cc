#include <string>

#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::bootstrap {

Deadline deadline_in(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

Deadline default_deadline() { return deadline_in(settings::get_seconds("RDMACOLL_TIMEOUT")); }

std::string job_token() { return settings::raw("RDMACOLL_JOB_TOKEN").value_or(""); }

namespace {
std::vector<std::string> rank_keys(const std::string& prefix, int world_size) {
  std::vector<std::string> keys;
  for (int r = 0; r < world_size; ++r) keys.push_back(prefix + "/" + std::to_string(r));
  return keys;
}

// Waits for every rank's key; on timeout, names the ranks rather than the keys.
void wait_ranks(Store& store, const std::string& what, const std::vector<std::string>& keys, int rank,
                Deadline deadline) {
  try {
    store.wait(keys, deadline);
  } catch (const TimeoutError&) {
    std::vector<std::string> left = store.missing(keys);
    std::string ranks;
    for (const auto& k : left) ranks += (ranks.empty() ? "" : ", ") + k.substr(k.rfind('/') + 1);
    throw TimeoutError("rank " + std::to_string(rank) + ": timed out in " + what + " waiting for rank(s) " +
                       (ranks.empty() ? "?" : ranks) + " of " + std::to_string(keys.size()) + " at " +
                       store.describe() + "; are they running? (RDMACOLL_TIMEOUT sets the wait)");
  }
}
}  // namespace

std::vector<Bytes> all_gather(Store& store, const std::string& prefix, int rank, int world_size,
                              std::span<const uint8_t> mine, Deadline deadline) {
  std::vector<std::string> keys = rank_keys(prefix, world_size);
  store.set(keys[static_cast<size_t>(rank)], mine);
  wait_ranks(store, "rendezvous '" + prefix + "'", keys, rank, deadline);
  std::vector<Bytes> out;
  for (const auto& k : keys) out.push_back(store.get(k, deadline));
  return out;
}

void barrier(Store& store, const std::string& name, int rank, int world_size, Deadline deadline) {
  std::vector<std::string> keys = rank_keys("barrier/" + name, world_size);
  store.set(keys[static_cast<size_t>(rank)], std::string());
  wait_ranks(store, "barrier '" + name + "'", keys, rank, deadline);
}

void barrier_rank0_last(Store& store, const std::string& name, int rank, int world_size, Deadline deadline) {
  barrier(store, name, rank, world_size, deadline);
  if (rank != 0) {
    store.set("barrier/" + name + "/done/" + std::to_string(rank), std::string());
    return;
  }
  std::vector<std::string> keys;
  for (int r = 1; r < world_size; ++r) keys.push_back("barrier/" + name + "/done/" + std::to_string(r));
  store.wait(keys, deadline);
}

}  // namespace rdmacoll::bootstrap
