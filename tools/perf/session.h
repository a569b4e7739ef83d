// The setup rdmacoll-bw and rdmacoll-lat share: who talks to whom, agreeing on the measurement,
// the transport, the buffers and windows, and carrying each size's results to the rank that
// prints them.
//
//   server mode    rdmacoll-bw                 rank 0 of 2, serves the rendezvous on --bind:--port
//   client mode    rdmacoll-bw HOST            rank 1 of 2, the active side (measures)
//   launched       rdmacoll-run -n N ...       rank r < N/2 measures against rank r + N/2
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "options.h"
#include "timer.h"
#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::perf {

using bootstrap::Clock;
using bootstrap::Deadline;

// Tags of the control messages between the two ranks of a pair.
constexpr uint64_t kTagReady = 1;  // "my buffers are reset and receives posted: go"
constexpr uint64_t kTagDone = 2;   // "this size is finished"
constexpr uint64_t kTagData = 3;   // send/recv payloads

// Page-aligned memory, freed on destruction.
class Buffer {
 public:
  explicit Buffer(size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  uint8_t* data() const { return p_; }
  size_t size() const { return n_; }

 private:
  uint8_t* p_ = nullptr;
  size_t n_ = 0;
};

class Session {
 public:
  // Connects (or waits for the client), agrees on the measurement, creates the transport and
  // exchanges windows. The options' measurement fields may change to the client's in server mode.
  explicit Session(Options options);
  ~Session();

  const Options& options() const { return o_; }
  transport::Transport& transport() { return *t_; }
  int rank() const { return rank_; }
  int partner() const { return partner_; }
  bool active() const { return active_; }
  bool printer() const { return printer_; }  // prints the report
  int pairs() const { return pairs_; }
  const std::string& mode() const { return mode_; }
  int world_size() const;

  uint8_t* local() const { return local_->data(); }    // source of writes/sends, target of reads
  uint8_t* window() const { return static_cast<uint8_t*>(window_mem_.addr()); }  // the partner writes into / reads from this
  const transport::RemoteWindow& partner_window() const { return partner_window_; }

  Deadline deadline() const;  // now + the timeout
  const Timer& timer() const { return timer_; }
  double timeout_seconds() const { return timeout_; }

  // One pair-wide handshake before timing a size: the passive side resets its buffers and
  // posts what it must, then sends kTagReady; the active side waits for it.
  void ready();
  // The active side tells the passive one the size is finished (and the passive waits for it).
  void done();
  // The active side calls this while measuring: every quarter of the timeout it sends the
  // passive side an "alive" message, so the passive one's wait for done() has a deadline that
  // a long measurement does not hit.
  void keepalive(Clock::time_point now);

  // Every rank publishes its record for size index `i`; the printer(s) collect those of all
  // ranks (indexed by rank). Records are doubles: wrong-byte count first, then the tool's data.
  std::vector<std::vector<double>> exchange(size_t i, const std::vector<double>& mine);

  // Last step: every rank checks out of the rendezvous before anyone leaves.
  void finish();

 private:
  Options o_;
  bootstrap::World world_;
  std::unique_ptr<transport::Transport> t_;
  int rank_ = 0, partner_ = 1, pairs_ = 1;
  bool active_ = false, printer_ = false;
  std::string mode_;
  double timeout_ = 0;
  std::unique_ptr<Buffer> local_;
  transport::Memory local_mem_, window_mem_;
  transport::RemoteWindow partner_window_;
  Timer timer_;
  std::vector<transport::Request> alive_;
  Clock::time_point last_alive_ = Clock::now();
};

// The bytes a size's data should hold: a pattern that depends on the size and the direction, so
// a stale buffer from an earlier size or the other direction does not pass the check.
void fill(uint8_t* p, size_t n, uint64_t seed);
uint64_t count_wrong(const uint8_t* p, size_t n, uint64_t seed);

// The deadline of a measurement loop's waits. It reads the steady clock only once per 100 ms
// of cycle-counter time (reading it can cost microseconds: see timer.h), and then also tells
// the partner that this (active) rank is alive.
class LoopDeadline {
 public:
  explicit LoopDeadline(Session& s);
  Deadline get() const { return dl_; }
  void tick(uint64_t now_ticks) {  // cheap: call it every iteration
    if (now_ticks - last_ >= period_) reset(now_ticks);
  }

 private:
  void reset(uint64_t now_ticks);
  Session& s_;
  uint64_t last_ = 0, period_ = 0;
  Deadline dl_;
};

[[noreturn]] void throw_spin_timeout(const transport::Transport& t, const char* what, int peer);

// Spins on `done()` driving the transport, until it is true or the deadline passes.
template <class F>
void spin(transport::Transport& t, F&& done, Deadline deadline, const char* what, int peer) {
  for (uint32_t k = 1; !done(); ++k) {
    t.progress();
    if ((k & 255) == 0 && Clock::now() >= deadline) throw_spin_timeout(t, what, peer);
  }
}

}  // namespace rdmacoll::perf
