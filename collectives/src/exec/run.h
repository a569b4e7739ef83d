// Runs one schedule (schedule.h) on a transport: the executor's inner loop.
//
// Data path. A sender writes each transfer straight from its buffer (user memory, registered
// through the transport's cache, or its scratch pool) into the receiver's pool at landing(t),
// with an immediate. The receiver learns of each arrival from notification(peer), which is
// per peer and in order; that order is the pairing order of schedule.h (a step's transfers
// between two ranks in list order), so the k-th notification from a peer in a run is the k-th
// chunk this rank expects from it. The immediate carries the run's tag and that index, which
// are checked: a mismatch means the ranks disagree on the call sequence.
//
// Pool layout of a run, identical on every rank (schedule scratch is rank-independent):
//
//   [ schedule scratch: sched.scratch elements | user mirror: sched.count elements ]
//
// Data for the user buffer (overwrite transfers) lands in the mirror at the same offset and is
// copied into the user buffer on arrival: writing into user memory directly would need the
// user's buffer registered and its key exchanged on every call. The mirror inherits the
// schedule's one-sided safety, since it is addressed exactly like the user buffer. A chunk that
// comes as a message (below) is received straight into the user buffer instead: the receiver
// names the place, and nothing else in the step touches it (schedule.h's hazard rule).
//
// Two-sided (Pool::send, where the transport would only emulate writes; and small chunks where
// a message is cheaper than a write, Pool::send_up_to): the sender sends the chunk as a tagged
// message and the receiver posts a receive at the same landing place when the step starts. The
// tag carries the run's tag and the chunk's index in place of the immediate. Such a chunk can
// land only once its receiver has started the step.
//
// Pipelining. Every transfer is cut into chunks (kChunkBytes) posted at once; the receiver
// reduces chunk k as soon as it lands, while chunk k+1 is on the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rdmacoll/collectives/datatype.h"
#include "rdmacoll/transport/transport.h"
#include "exec/control.h"
#include "schedule.h"

namespace rdmacoll::collectives::exec {

// Transfers are cut into chunks of at most this many bytes: large enough that a write's fixed
// cost is small against its payload, small enough that reducing one chunk overlaps the next.
inline constexpr std::size_t kChunkBytes = 256u << 10;

// Where the schedule's user offsets live: [sched, sched + count) is at `base`. One piece for a
// contiguous segment; one per block for a segment of reduce-scatter or allgather.
//
// Out of place, `in` is the caller's input for the same elements, and `base` starts out
// holding nothing: rather than copying the input into the output up front (a whole extra pass
// over the buffer), the run takes each range from `in` the first time it touches it. A send
// reads it from `in`; a reduce into it computes out = in op data a cache-sized block at a time;
// an overwrite just replaces it. Whatever the schedule never touches is copied at the end.
struct UserPiece {
  std::size_t sched = 0;
  char* base = nullptr;
  std::size_t count = 0;
  const char* in = nullptr;  // out of place: the input behind base; nullptr: base holds it already
};

// The registered scratch pool and every peer's (exchanged once by the communicator).
struct Pool {
  char* base = nullptr;
  std::size_t bytes = 0;
  std::vector<transport::RemoteWindow> peers;  // indexed by rank; empty entry for this rank
  std::vector<bool> send;  // indexed by rank: move data to it with send/recv (DataPath), not writes
  // Chunks up to this many bytes go as tagged messages to every peer: one message costs less
  // than a write, a fence and a notification (UCX), or than a write with immediate and the
  // argument checks sent beside it where the message carries them framed (verbs); 0: none.
  std::size_t send_up_to = 0;
};

// Pool bytes a schedule needs: its scratch plus the user mirror.
std::size_t pool_bytes(const schedules::Schedule& s, DataType type);

class Run {
 public:
  // `tag` (16 bits) goes into every immediate of this run, so runs that get out of step are
  // caught. The run uses pool bytes [region, region + region_bytes) on every rank (the
  // communicator alternates two halves so that consecutive runs need no fence). Throws
  // std::length_error if the schedule does not fit the region.
  // `control` (nullptr: no check): the run sends every peer it sends to the check {seq, digest}
  // with or just before its first chunk to it, and uses nothing from a peer before that peer's
  // check matched (control.h); throws CheckFailed if it did not.
  Run(transport::Transport& t, const Pool& pool, std::size_t region, std::size_t region_bytes,
      std::shared_ptr<const schedules::Schedule> schedule, const std::vector<UserPiece>& user, DataType type,
      ReduceOp op, uint16_t tag, Control* control = nullptr, uint64_t seq = 0, uint64_t digest = 0);
  // Starts another run in this one, as the constructor does, keeping the vectors' memory. Only
  // for a run that is done(); throws std::length_error as the constructor does, leaving it as is.
  void restart(std::size_t region, std::size_t region_bytes, std::shared_ptr<const schedules::Schedule> schedule,
               const std::vector<UserPiece>& user, DataType type, ReduceOp op, uint16_t tag, Control* control,
               uint64_t seq, uint64_t digest);
  // Lets go of the requests (and framed receives, which Control then reuses) of a finished run.
  void drop_requests();
  // The call's ring check (control.h), given to the call's first run before it advances: the run
  // sends it to `next`, in front of its first chunk to it where that is framed (else at once),
  // and takes its first framed chunk from `prev` out of `recv` where it has one.
  struct Ring {
    int next = -1, prev = -1;
    std::shared_ptr<Control::Pending> recv;
  };
  void take_ring(Ring ring);
  // Progresses without blocking; true once this rank's part is complete.
  bool advance();
  bool done() const { return step_ >= schedule_->steps.size(); }
  // What this rank still waits for: "step 2/5, waiting for data from ranks 1, 3".
  std::string pending() const;
  // The ranks it waits for: data not arrived from them, or writes to them not complete.
  std::vector<int> waiting_for() const;
  const schedules::Schedule& schedule() const { return *schedule_; }
  // Counts arrivals and completions: waiters spin while it moves and sleep once it stops.
  uint64_t events() const { return events_; }

 private:
  struct Chunk {
    std::size_t offset, count;  // elements, relative to the transfer
    bool direct;  // received: a message straight into user memory, nothing to copy on arrival
    const char* framed = nullptr;  // received framed (control.h): where its data is, behind the check
  };
  struct Incoming {
    std::vector<Chunk> chunks;
    std::size_t arrived = 0, applied = 0;
    std::vector<std::size_t> blockers;  // earlier reduces into the same elements: applied first
  };
  struct Expected {
    std::size_t transfer, chunk;
    uint32_t imm;               // the immediate (or the tag's low bits) it comes with
    transport::Request recv;    // sent (Run::sends): the receive posted for it
    std::shared_ptr<Control::Pending> framed;  // or the framed receive: the check and the chunk
  };

  void start_step();
  bool poll_step();
  void apply_arrived();
  void run_locals();
  void chunks_of(const schedules::Transfer& t, std::vector<Chunk>& out) const;
  // Whether the run's first chunk to (`sending`) or from `peer` goes framed; false if none.
  bool first_framed(int peer, bool sending) const;
  char* user(std::size_t offset) const;
  char* at(schedules::Place p, std::size_t extra = 0) const;
  std::size_t landing_bytes(const schedules::Transfer& t, std::size_t offset) const;
  void apply(const schedules::Transfer& t, const Chunk& c);
  // Out-of-place bookkeeping (see UserPiece): user ranges, in schedule offsets, whose output
  // does not hold the input yet.
  bool untouched(std::size_t begin, std::size_t end) const;  // all of [begin, end)
  void settle(std::size_t begin, std::size_t end);           // copy what is untouched there
  void forget(std::size_t begin, std::size_t end);           // it is about to be overwritten
  const char* input(std::size_t offset) const;
  void reduce_user(std::size_t offset, const char* data, std::size_t count);

  transport::Transport& t_;
  const Pool& pool_;
  std::shared_ptr<const schedules::Schedule> schedule_;  // shared with later runs of the same spec
  std::vector<UserPiece> user_;
  std::vector<std::size_t> bounds_;  // piece starts in schedule offsets, for chunk cuts
  // The immediate (or tag) of a peer's index-th chunk in this run: the run's tag, the index.
  uint32_t immediate(uint32_t index) const { return (uint32_t{tag_} << 16) | (index & 0xffffu); }
  // Whether a chunk of `bytes` to or from `peer` goes as a tagged message (else a write).
  bool sends(std::size_t peer, std::size_t bytes) const { return pool_.send[peer] || bytes <= pool_.send_up_to; }
  // Whether a run's first chunk of `bytes` to or from `peer` carries the check in front (control.h).
  bool framed(std::size_t peer, std::size_t bytes) const { return sends(peer, bytes) && bytes <= kFramedMax; }
  std::vector<std::pair<std::size_t, std::size_t>> untouched_;  // sorted, disjoint [begin, end)
  DataType type_ = DataType::u8;
  ReduceOp op_ = ReduceOp::sum;
  std::size_t es_ = 1;
  std::size_t region_ = 0;  // byte offset of this run's region in the pool
  std::size_t mirror_ = 0;  // byte offset of the user mirror in the pool
  uint16_t tag_ = 0;

  std::size_t step_ = 0;
  uint64_t events_ = 0;
  bool started_ = false;
  std::vector<std::pair<int, transport::Request>> sends_;
  std::vector<Incoming> incoming_;                 // per recv transfer of the step
  std::vector<std::vector<Expected>> expected_;    // per peer, in arrival order
  std::vector<std::size_t> next_;                  // per peer: index into expected_
  std::vector<transport::Request> note_;           // per peer: the notification being awaited
  std::vector<uint32_t> sent_count_, recv_count_;  // per peer, across the run: immediates' index
  Control* control_ = nullptr;
  uint64_t seq_ = 0, digest_ = 0;  // the call's check
  std::vector<std::shared_ptr<Control::Pending>> checks_;  // per peer: its separate check, until it matched
  Ring ring_;
  bool ring_send_ = false;                   // the ring check is still to go with a chunk to ring_.next
  std::vector<Chunk> send_chunks_;          // start_step's, kept for their memory
  mutable std::vector<std::size_t> cuts_;  // chunks_of's
  mutable std::vector<Chunk> probe_;        // first_framed's
};

}  // namespace rdmacoll::collectives::exec
