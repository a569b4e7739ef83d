// The small allreduce over shared memory, with no message at all: where every peer's pool is
// mapped into this process (UCX shared memory: Transport::map_window), each rank copies its
// input into a mailbox behind its own pool, marks it with the call's number, and reads every
// rank's mailbox: out = x0 op x1 op ... op x(n-1), left to right in rank order. That is the
// ordered allreduce's order (schedules/ordered.cc), so every rank gets the same bits, in
// reproducible mode as well.
//
// Mailbox (kMailboxBytes, at the end of each rank's pool allocation, past the pool's bytes):
//   line 0    the call this rank is on, any call (announce): one 64-bit word, (seq + 1) in the
//             top 24 bits and the low 40 bits of the call's digest, so it is read whole
//   slot 0/1  mark (u64: the direct call's number + 1) | digest (u64) | up to kDirectMaxBytes
//
// Direct calls use the slots alternately. Writing slot (k mod 2) for direct call k is safe: this
// rank finished call k-1, so it saw every peer's mark for k-1, and a peer marks a call only once
// it has finished every call before it, call k-2 included, whose slot of this rank it read.
//
// Argument check: a slot carries the call's digest (control.h) beside the data, compared before
// the data is used. A peer that took another path for the same call (its count too large for a
// mailbox, another collective) shows its digest in its call line: disagreeing() finds it while
// this rank waits, and the communicator reports the mismatch as ever.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rdmacoll/collectives/datatype.h"

namespace rdmacoll::collectives::exec {

// The largest allreduce (bytes) taken this way. Each rank reads n - 1 whole inputs; still, at
// 16 KiB 2 ranks took 2.0 us this way against 7.9 us for 32 KiB through UCX's messages, 4 ranks
// (on 2 cores) 16 us against 32 us.
inline constexpr std::size_t kDirectMaxBytes = 16384;
inline constexpr std::size_t kMailboxLine = 64;
inline constexpr std::size_t kSlotHeader = 16;
inline constexpr std::size_t kSlotBytes = (kSlotHeader + kDirectMaxBytes + kMailboxLine - 1) / kMailboxLine * kMailboxLine;
inline constexpr std::size_t kMailboxBytes = kMailboxLine + 2 * kSlotBytes;

class Direct {
 public:
  // boxes[r]: rank r's mailbox as this process sees it (boxes[me]: this rank's own). Empty:
  // the communicator cannot use direct calls. Zeroes this rank's mailbox.
  void attach(int me, std::vector<char*> boxes);
  bool usable() const { return !boxes_.empty(); }

  // Every call, as it starts: this rank is on call `seq`, whose digest is `digest` (0: no check).
  void announce(uint64_t seq, uint64_t digest);
  // A peer that announced call `seq` with another digest (both checked), or -1.
  int disagreeing(uint64_t seq, uint64_t digest) const;

  // Starts a direct allreduce of count elements (count * size <= kDirectMaxBytes; in may be out).
  void start(const void* in, void* out, std::size_t count, DataType type, ReduceOp op, uint64_t digest);
  // Progresses without blocking; true once out holds the result. Throws CheckFailed (control.h)
  // when a peer's digest for the call differs.
  bool advance();
  // The ranks whose input has not appeared yet; "waiting for the inputs of ranks 1, 3 (shared memory)".
  std::vector<int> waiting_for() const;
  std::string pending() const;
  uint64_t events() const { return events_; }
  // Idle turns of the current call: the communicator looks at the call lines every so often.
  unsigned idle_turns() const { return idle_; }

 private:
  char* slot(int rank, uint64_t call) const;
  int me_ = 0;
  std::vector<char*> boxes_;
  std::vector<uint8_t> seen_;
  std::size_t missing_ = 0;
  uint64_t calls_ = 0, events_ = 0;
  unsigned idle_ = 0;
  void* out_ = nullptr;
  std::size_t count_ = 0;
  DataType type_ = DataType::f32;
  ReduceOp op_ = ReduceOp::sum;
  uint64_t digest_ = 0;
};

}  // namespace rdmacoll::collectives::exec
