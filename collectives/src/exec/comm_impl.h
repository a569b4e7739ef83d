// The communicator's state, shared by its methods (communicator.cc), the call builders
// (collectives.cc) and Work.
#pragma once

#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "exec/operation.h"
#include "rdmacoll/collectives/communicator.h"

namespace rdmacoll::collectives {

struct Communicator::Impl {
  Options options;
  // The rendezvous this communicator was made from, kept for split(): the store belongs to the
  // caller's World (or, for a sub-communicator, to own_world, over its parent's store).
  bootstrap::Store* store = nullptr;
  bootstrap::LaunchInfo launch;
  std::unique_ptr<bootstrap::World> own_world;
  // The scratch pool, allocated by the transport. Declared before it, so freed after it: a
  // peer's write may land until the transport is gone (the registration keeps what it needs
  // of the backend alive, and is dropped before the memory is freed).
  transport::Memory pool_registration;
  // The argument checks and abort messages (control.h): its buffers, too, are the transport's
  // to write until it is gone.
  exec::Control control;
  // Outlives everything below (windows and requests refer to it).
  std::unique_ptr<transport::Transport> transport;
  exec::Pool pool;
  // The small allreduce through mapped mailboxes (direct.h), where every peer's pool is mapped.
  exec::Direct direct;
  // The last run that finished, kept to start the next one in (exec::Run::restart): its
  // vectors' memory is reused, so a small call allocates little.
  std::unique_ptr<exec::Run> spare_run;

  CostModel cost;  // what automatic choices are made with
  struct Choice {
    size_t count = static_cast<size_t>(-1), element_size = 0;
    schedules::Algorithm algorithm{};
  } last_choice;  // the automatic allreduce algorithm for the last size asked about

  // How add_contiguous_runs (collectives.cc) last cut a call into segments, with what it was
  // cut from: repeated calls skip the cost model and the scratch search.
  struct Segments {
    schedules::Algorithm algorithm{};
    int n = 0;
    size_t count = static_cast<size_t>(-1), es = 0, pool = 0;
    schedules::CostModel model{};
    size_t pieces = 0, seg = 0, need_seg = 0;  // pieces per run; elements and pool bytes of a full segment
    size_t tail = 0, need_tail = 0;            // the last, shorter segment (0: none)
    bool all_dependent = false;
  } last_segments;

  uint64_t next_seq = 0;
  uint16_t next_run_tag = 0;
  // A peer that has finished run k may start writing run k+1 into scratch this rank still
  // reduces from; add_run() decides where a run goes and whether a fence (a barrier run) must
  // come first.
  bool scratch_dirty = false;     // a data run has used the pool since the last fence
  int last_region = -1;           // the last data run's half of the pool (0, 1), or -1: all of it
  bool last_all_dependent = false;  // every rank's part of it depended on every rank
  std::size_t peak_scratch = 0;
  std::deque<std::shared_ptr<Operation>> queue;
  // The last call made, reused by the next (Operation::reset) once nothing else holds it: its
  // Work is gone and it has left the queue.
  std::shared_ptr<Operation> spare_op;
  std::exception_ptr failed;  // the first error: every later call fails with it
  // The argument lines of the last calls submitted (seq, args), for a peer's mismatch report
  // about a call this rank has already finished.
  std::deque<std::pair<uint64_t, std::shared_ptr<const std::string>>> recent_args;
  // The last argument line made by set_args, with what it was made from and its digest: loops
  // repeat their calls, which then reuse it instead of formatting and hashing it again.
  struct ArgsCache {
    std::string name, algorithm;
    size_t count = 0;
    DataType type = DataType::u8;
    ReduceOp op = ReduceOp::sum;
    bool reduces = false;
    int root = -1;
    std::shared_ptr<const std::string> line;
    uint64_t digest = 0;
  } last_args;
  unsigned idle_turns = 0;  // progress() calls that moved nothing: control is looked at every 16th

  // Fails the communicator with `error`: every queued call fails with it, and with
  // abort_on_error every peer is told (unless the error came from a peer, or was already
  // reported to them).
  void fail(std::exception_ptr error, bool tell_peers);
  // Handles control messages that have arrived: throws PeerFailedError for a peer's failure,
  // ArgumentMismatchError for a peer's mismatch report.
  void check_control();
  // The ranks disagree on call `seq`: tells every peer this rank's argument line for it, gathers
  // theirs (`lines` holds those already known) and throws ArgumentMismatchError.
  [[noreturn]] void mismatch(uint64_t seq, std::map<int, std::string> lines);
  // Some rank's collective deadline passed (this one's: `own` set, the message so far; or a
  // peer's: its report is in `reports`). Tells every peer which ranks this one waits for, listens
  // briefly for theirs, and throws TimeoutError naming the ranks that never answered.
  [[noreturn]] void timed_out(std::map<int, std::vector<int>> reports, const std::string& own);
  // "; rank R's connections: ..." with the transport's report on its connections to `ranks`
  // (Transport::connection_report), or "" where it has none to give.
  std::string connections_note(const std::vector<int>& ranks) const;
  // This rank's argument line for call `seq`: "" if it has not reached it.
  std::string args_of(uint64_t seq) const;

  // Appends a data run needing `bytes` of the pool to `op`, with a fence before it where a
  // peer could otherwise write into scratch this rank still uses. `all_dependent`: every
  // rank's part of the run receives data that every rank sent in it (see add_run).
  void add_run(Operation& op, bool all_dependent, std::size_t bytes, std::function<schedules::Schedule()> build,
               std::vector<exec::UserPiece> user);
  // The schedule `spec` builds, made once: repeated calls (a training loop's, a benchmark's)
  // share it rather than building and freeing the same vectors every call.
  std::shared_ptr<const schedules::Schedule> schedule(const schedules::Spec& spec);
  std::map<std::tuple<schedules::Algorithm, int, int, std::size_t, int, std::size_t>,
           std::shared_ptr<const schedules::Schedule>>
      schedule_cache;
  Work submit(Communicator* self, std::shared_ptr<Operation> op);
  // Advances the queue head(s) without blocking; true once `op` is done.
  bool progress(const Operation& op);
  bool advance(Operation& op);
  // calibrate.cc: runs a few collectives on `c` (whose impl this is); collective.
  static CostModel measure_cost_model(Communicator& c);
  // `cost` as schedules::estimate takes it.
  schedules::CostModel model() const { return {cost.alpha_s, cost.beta_s_per_byte, cost.gamma_s_per_byte}; }
  // A barrier run: the fence before a run whose scratch a peer may still be using.
  Operation::Plan fence() const;
  // The transport's counters summed over peers.
  WireStats wire_totals() const;
  // compressed.cc: what the compressed allreduce encodes into and receives into. Kept across
  // calls (which run one at a time), so their registrations stay cached; a call that needs
  // more makes a larger set, and the calls still queued keep the old one alive.
  struct CompressBuffers {
    std::vector<std::byte> send, recv, gather;
    std::vector<float> acc;
  };
  std::shared_ptr<CompressBuffers> compress;
  std::map<std::string, bool> codec_pays;  // compression_pays' measured answers, by codec, scheme and size class
};

// Sets op.args and op.digest, the line of what the ranks must agree on (control.h), from op's name, type, op
// and algorithm and the call's count, op (`reduces`) and root (>= 0); nothing when the check is
// off or there is one rank.
void set_args(Communicator::Impl& c, Operation& op, size_t count, bool reduces, int root = -1);

// The allgather algorithm for n ranks (collectives.cc); calibration needs to know it.
schedules::Algorithm allgather_algorithm(int n);

// Segmenting a call to fit the pool: the largest x in [1, hi] with fits(x) (fits is monotone:
// scratch never shrinks as counts grow), hi itself without a search when it fits (the common
// case), or 0 if not even 1 fits.
template <class F>
size_t largest_fitting(size_t hi, F fits) {
  if (hi == 0) return 0;
  if (fits(hi)) return hi;
  if (!fits(1)) return 0;
  size_t lo = 1;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
// "NAME: RDMACOLL_BUFFSIZE (N bytes) is too small for even one element per segment".
std::length_error pool_too_small(std::string_view what, size_t pool);

}  // namespace rdmacoll::collectives
