// Rendezvous: a key-value store every rank can reach, used only at setup time to exchange
// connection data. Every blocking call takes a deadline; a timeout names the keys (and, through
// the helpers below, the ranks) that never showed up.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace rdmacoll::bootstrap {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
Deadline deadline_in(double seconds);
// The deadline RDMACOLL_TIMEOUT gives from now.
Deadline default_deadline();

using Bytes = std::vector<uint8_t>;

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, std::span<const uint8_t> value) = 0;
  // Waits until `key` exists, then returns its value. TimeoutError names the key.
  virtual Bytes get(const std::string& key, Deadline deadline) = 0;
  // Waits until every key exists. TimeoutError lists the keys still missing.
  virtual void wait(const std::vector<std::string>& keys, Deadline deadline) = 0;
  // Atomically adds `delta` to the integer stored at `key` (0 if absent); returns the new value.
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
  // The subset of `keys` that does not exist yet (does not wait).
  virtual std::vector<std::string> missing(const std::vector<std::string>& keys) = 0;
  // Where this store lives, for error messages ("tcp://10.0.0.1:29500").
  virtual std::string describe() const = 0;

  void set(const std::string& key, const std::string& value) {
    set(key, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(value.data()), value.size()));
  }
};

// The job token every message to and from a TcpStoreServer is authenticated with:
// RDMACOLL_JOB_TOKEN, or "" (no authentication; see README's "Bootstrap security").
std::string job_token();

// Serves a store over TCP on a background thread (rank 0 runs it). Binds to exactly the
// address it is given (port 0 picks a free port). Stops and joins in the destructor.
// Only clients that prove they hold `token` are served; others are refused and logged, and
// the server goes on serving the rest.
class TcpStoreServer {
 public:
  TcpStoreServer(const std::string& host, uint16_t port, const std::string& token = job_token());
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;
  uint16_t port() const;
  std::string host() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// A client of TcpStoreServer. Retries the connection until `connect_deadline`, since the
// server may start after its clients. Throws ProtocolError when the server refuses `token`.
class TcpStore : public Store {
 public:
  TcpStore(const std::string& host, uint16_t port, Deadline connect_deadline, const std::string& token = job_token());
  ~TcpStore() override;
  void set(const std::string& key, std::span<const uint8_t> value) override;
  using Store::set;
  Bytes get(const std::string& key, Deadline deadline) override;
  void wait(const std::vector<std::string>& keys, Deadline deadline) override;
  int64_t add(const std::string& key, int64_t delta) override;
  std::vector<std::string> missing(const std::vector<std::string>& keys) override;
  std::string describe() const override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// A store in a directory every rank can see (a shared filesystem, or /tmp on one machine).
// Each key is a file written atomically (write + rename).
class FileStore : public Store {
 public:
  explicit FileStore(std::filesystem::path dir);
  void set(const std::string& key, std::span<const uint8_t> value) override;
  using Store::set;
  Bytes get(const std::string& key, Deadline deadline) override;
  void wait(const std::vector<std::string>& keys, Deadline deadline) override;
  int64_t add(const std::string& key, int64_t delta) override;
  std::vector<std::string> missing(const std::vector<std::string>& keys) override;
  std::string describe() const override;

 private:
  std::filesystem::path path_of(const std::string& key) const;
  std::filesystem::path dir_;
};

// Every rank publishes `mine` under "<prefix>/<rank>" and receives every rank's value.
// On timeout the error names the ranks that did not publish.
std::vector<Bytes> all_gather(Store& store, const std::string& prefix, int rank, int world_size,
                              std::span<const uint8_t> mine, Deadline deadline);
// Returns when all ranks have reached the barrier `name`; the timeout names the missing ranks.
void barrier(Store& store, const std::string& name, int rank, int world_size, Deadline deadline);
// A barrier after which rank 0 returns last: only once every other rank has had its answer and
// said it is done with the store for now. For rank 0, which serves a TCP store, before it may
// stop: a plain barrier lets it leave while the last rank's own wait is still unanswered.
void barrier_rank0_last(Store& store, const std::string& name, int rank, int world_size, Deadline deadline);

}  // namespace rdmacoll::bootstrap
