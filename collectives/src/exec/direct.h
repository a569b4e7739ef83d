// The small allreduce through mailboxes, with none of the schedule machinery: each rank's
// input reaches every peer's mailbox, marked with the call's number, and each rank folds the n
// inputs: out = x0 op x1 op ... op x(n-1), left to right in rank order. That is the ordered
// allreduce's order (schedules/ordered.cc), so every rank gets the same bits, in reproducible
// mode as well. Two ways to get the inputs there:
//
//   mapped (UCX shared memory, where every peer's pool is mapped into this process:
//     Transport::map_window): each rank copies its input into its own mailbox and reads
//     everyone else's; no message at all.
//   pushed (verbs, up to kPushMaxRanks ranks): each rank copies its input into its own slot of
//     its mailbox (registered memory) and writes it from there, with a plain RDMA WRITE, into
//     its slot of every peer's mailbox: one work request per peer, and nothing for the peer's
//     CPU or its completion queue to do. The peer polls the slot. A write lands in whatever
//     order the responder stores its bytes (a string copy keeps none), so a pushed slot ends in
//     a check word, a hash of the mark, the digest and the data: a slot whose mark is the call's
//     and whose check matches has landed whole (a slot still landing mixes old and new words,
//     which the hash tells apart). Against a write with immediate, whose notification follows
//     the data: 2 ranks, 8 bytes, one soft-RoCE guest: about 25% less time an exchange (no
//     receive to consume, no completion to post and poll).
//     Under the guests' emulated CPUs an 8-byte call through the schedule machinery spent most
//     of its time in that machinery's own instructions.
//
// Mailbox (mailbox_bytes(n), at the end of each rank's pool allocation, past the pool's bytes):
//   line 0    the call this rank is on, any call (announce): one 64-bit word, (seq + 1) in the
//             top 24 bits and the low 40 bits of the call's digest, so it is read whole
//   mapped: slot 0/1 from byte 64, this rank's input for alternate calls
//   pushed: line 1, where this rank reads its peers' line 0 (8 bytes each) to compare; then
//             from byte 128, slot (c mod 2, r): rank r's input for direct call c
//   A slot: mark (u64: the direct call's number + 1) | digest (u64) | up to kDirectMaxBytes
//           | pushed: the check (u64, at the first multiple of 8 past the data)
//
// Direct calls use the slots alternately. Writing slot (k mod 2) for direct call k is safe: this
// rank finished call k-1, so it saw every peer's mark for k-1, and a peer marks a call only once
// it has finished every call before it, call k-2 included, whose slot of this rank it read.
//
// Argument check: a slot carries the call's digest (control.h) beside the data, compared before
// the data is used. A peer that took another path for the same call (its count too large for a
// mailbox, another collective) shows its digest in its call line: disagreeing() finds it while
// this rank waits (pushed: by reading the peers' call lines with RDMA READs now and then), and
// the communicator reports the mismatch as ever.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rdmacoll/collectives/datatype.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::collectives::exec {

// The largest allreduce (bytes) taken this way. Each rank reads n - 1 whole inputs; still, at
// 16 KiB 2 ranks took 2.0 us this way against 7.9 us for 32 KiB through UCX's messages, 4 ranks
// (on 2 cores) 16 us against 32 us.
inline constexpr std::size_t kDirectMaxBytes = 16384;
inline constexpr std::size_t kMailboxLine = 64;
inline constexpr std::size_t kSlotHeader = 16;
// What a pushed call writes to each peer for `bytes` of input: the header, the data (padded to
// 8 bytes) and the check word.
inline constexpr std::size_t pushed_slot_bytes(std::size_t bytes) { return kSlotHeader + (bytes + 7) / 8 * 8 + 8; }
inline constexpr std::size_t kSlotBytes = (pushed_slot_bytes(kDirectMaxBytes) + kMailboxLine - 1) / kMailboxLine * kMailboxLine;
// Pushed mailboxes are taken up to this many ranks: each rank writes its input to every peer.
inline constexpr int kPushMaxRanks = 8;
// The mailbox's bytes for n ranks: room for pushed slots where n allows them.
inline constexpr std::size_t mailbox_bytes(int n) {
  const std::size_t senders = n >= 2 && n <= kPushMaxRanks ? static_cast<std::size_t>(n) : 1;
  return 2 * kMailboxLine + 2 * senders * kSlotBytes;
}

class Direct {
 public:
  // Mapped: boxes[r] is rank r's mailbox as this process sees it (boxes[me]: this rank's own).
  // Every mailbox must be zero already, before any peer could see it (a peer may be on its
  // first call, reading it or writing into it, while this rank still attaches).
  void attach(int me, std::vector<char*> boxes);
  // Pushed: `box` is this rank's mailbox; every rank's ends its pool allocation, whose peers'
  // windows are `windows` (indexed by rank; they outlive this object). Zero already, as above.
  void attach_push(transport::Transport& t, char* box, const std::vector<transport::RemoteWindow>* windows);
  bool usable() const { return n_ > 0; }
  bool pushed() const { return t_ != nullptr; }

  // Every call, as it starts: this rank is on call `seq`, whose digest is `digest` (0: no check).
  void announce(uint64_t seq, uint64_t digest);
  // A peer that announced call `seq` with another digest (both checked), or -1. Pushed: the
  // peers' call lines are read with RDMA READs, posted by one look and compared by a later one
  // once they are back (-1 meanwhile).
  int disagreeing(uint64_t seq, uint64_t digest);

  // Starts a direct allreduce of count elements (count * size <= kDirectMaxBytes; in may be out).
  void start(const void* in, void* out, std::size_t count, DataType type, ReduceOp op, uint64_t digest);
  // Progresses without blocking; true once out holds the result. Throws CheckFailed (control.h)
  // when a peer's digest for the call differs.
  bool advance();
  // The ranks whose input has not appeared yet; "waiting for the inputs of ranks 1, 3 (shared
  // memory)", or "(RDMA mailbox)".
  std::vector<int> waiting_for() const;
  std::string pending() const;
  uint64_t events() const { return events_; }
  // Idle turns of the current call: the communicator looks at the call lines every so often.
  unsigned idle_turns() const { return idle_; }

 private:
  char* slot(int rank, uint64_t call) const;
  // Pushed: whether rank q's input for `call` has landed whole in its slot (mark and check);
  // rethrows the failure of this rank's write to q, if it failed.
  bool landed(std::size_t q, uint64_t call);
  int me_ = 0, n_ = 0;
  std::vector<char*> boxes_;  // mapped: every rank's; pushed: this rank's only
  transport::Transport* t_ = nullptr;
  const std::vector<transport::RemoteWindow>* windows_ = nullptr;
  std::vector<std::size_t> offsets_;  // pushed: where each peer's mailbox starts in its window
  std::vector<transport::Request> writes_, reads_;  // pushed: per peer (this rank's: empty)
  unsigned looks_ = 0;
  std::vector<uint8_t> seen_;
  std::size_t missing_ = 0;
  uint64_t calls_ = 0, events_ = 0;
  unsigned idle_ = 0;
  void* out_ = nullptr;
  std::size_t count_ = 0, bytes_ = 0;
  DataType type_ = DataType::f32;
  ReduceOp op_ = ReduceOp::sum;
  uint64_t digest_ = 0;
};

}  // namespace rdmacoll::collectives::exec
