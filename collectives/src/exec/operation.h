// A collective call as the communicator runs it: a prologue (the out-of-place copy), a list of
// runs (one schedule each: the segments, with fences between runs that reuse scratch), and an
// epilogue (avg's division). Runs are built when they start, so a call's schedules are never
// all in memory at once.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exec/control.h"
#include "exec/direct.h"
#include "exec/run.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/collectives/communicator.h"

namespace rdmacoll::collectives {

struct Operation {
  struct Plan {
    std::function<schedules::Schedule()> build;
    std::vector<exec::UserPiece> user;
    bool fence = false;  // a barrier run: no data
    std::size_t region = 0, region_bytes = 0;  // the part of the pool the run uses
    std::function<void()> before, after;  // run just before the run starts, just after it ends
    std::shared_ptr<const schedules::Schedule> schedule;  // made already (not by build): a cached one
    // Overlap of hooks with the transfers (the compressed allreduce's codec work): `before` may
    // run early, while the previous plan's run waits on the wire (it touches nothing that run
    // uses); `after` may run late, while the next plan's run waits, and at the latest when the
    // plan after that starts (nothing before then overwrites what it reads).
    bool before_early = false, after_late = false;
  };

  uint64_t seq = 0;
  std::string name;       // "allreduce"
  // "ring_allreduce", for messages: a static name, or algorithm_storage's (compressed calls).
  std::string_view algorithm;
  std::string algorithm_storage;
  // What the ranks must agree on, as "call=allreduce count=1024 type=f32 op=sum
  // algorithm=ring_allreduce" (control.h), and its digest (0: not computed yet); null when the
  // check is off. Shared: repeated calls reuse one line (Communicator::Impl::last_args).
  std::shared_ptr<const std::string> args;
  uint64_t digest = 0;
  DataType type = DataType::u8;
  ReduceOp op = ReduceOp::sum;
  std::function<void()> prologue, epilogue;
  // The ring check's receive (control.h) while the first run, which sends the ring check, is to
  // come; null once it has it, or where no run checks (a barrier: the ring check went at start).
  std::shared_ptr<exec::Control::Pending> ring;
  std::vector<Plan> plans;

  // Progress state.
  bool started = false, done = false;
  std::size_t current = 0;
  bool next_before_ran = false;     // plans[current + 1].before ran early
  std::function<void()> late;       // a plan's `after` put off (after_late) ...
  std::size_t late_by = 0;          // ... until at the latest plan late_by starts
  std::unique_ptr<exec::Run> run;
  // A direct allreduce (exec/direct.h) instead of plans: no schedule, no pool.
  struct DirectCall {
    const void* in = nullptr;
    void* out = nullptr;
    std::size_t count = 0;
  };
  std::optional<DirectCall> direct_call;
  const exec::Direct* direct = nullptr;  // the communicator's, while the direct call runs
  std::exception_ptr error;
  uint64_t events = 0;  // bumped whenever something moved, for adaptive waiting
  WireStats wire;       // at the start: the transport's totals; at the end: the difference
  uint64_t nonfinite = 0;
  bool compressed = false;

  // Makes it a new, empty call again, keeping the memory of its strings and plan list (a
  // communicator reuses the last call's Operation: small calls would otherwise spend much of
  // their time allocating).
  void reset();
  // "allreduce #12 (ring_allreduce, run 2 of 5: step 3/4, waiting for data from ranks 1, 2)"
  std::string describe() const;
  // The ranks this call waits for now.
  std::vector<int> waiting_for() const;
};

}  // namespace rdmacoll::collectives
