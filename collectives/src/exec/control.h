// The communicator's control traffic beside the data: the argument check that travels with
// every collective, and the abort messages that make one rank's failure every rank's at once.
//
// Argument check. Every call has an argument line ("call=allreduce count=1024 type=f32 op=sum
// algorithm=ring_allreduce"; Operation::args) and its 64-bit digest. Each run of a call sends
// {sequence number, digest} ahead of its first data to every peer it sends to, and takes nothing
// from a peer (no notification consumed, no chunk applied) before that peer's check has arrived
// and matched. So whatever a rank uses of a call's data comes from a peer that agreed on the call.
// The check travels one of two ways, decided alike by both sides from the chunk's size:
//   framed:   the run's first chunk to the peer is a message of at most kFramedMax bytes: the
//             check goes in front of its data, in one message (send_framed / expect_framed), on
//             a tag of its own, so a rank that frames never matches one that does not (they
//             disagree about the call, or about RDMACOLL_CHECK_ARGS: both wait, as below)
//   separate: a 24-byte tagged message of its own, tagged with the run's tag (send_check /
//             expect_check), sent just before the first data
// Ranks whose calls differ may choose differently; their messages then never match, each waits,
// and the ring check below names the disagreement.
//
// Ranks that disagree about who sends to whom (a broadcast's root) may never receive from each
// other, so each call also sends one check around a ring (ring_next), to the next rank; that one is not
// waited for, but looked at while the communicator waits (late()), so no disagreement goes
// unseen. Every rank posts the receive of its previous rank's ring check with room for a framed
// chunk: where the call's first run sends its first chunk to the next rank framed, that message
// goes on the ring check's tag and is both (send_ring with data); the receiving run takes the
// chunk from the ring receive (adopt_ring). Ranks that disagree on whether it is framed still
// match on the tag, and the ring check, compared as ever, names the disagreement. Whoever sees one tells everyone through the control messages below. (A message chunk
// received straight into the output may land there before its check is looked at; it is never
// used.)//
// Timeout. Ranks that wait on each other time out together, each naming the rank it waited
// for, which is the missing one only for the rank next to it. So a rank whose deadline passes
// tells every peer which ranks it waits for, and every rank that hears of it does the same;
// each then listens for a moment, and the ranks that never answered are the missing ones, named
// alike on every rank.
//
// Abort. A rank whose call fails (mismatch, timeout, transport error) sends every peer a
// control message; every rank keeps one receive posted per peer for them and looks at them
// while it waits, so peers fail at once with the first rank's reason instead of timing out one
// by one. For a mismatch, every rank that learns of it sends every peer its own argument line
// for that call, so each rank can report every rank's value.
//
// Wire formats (little-endian), parsed by pure functions (fuzzed: tests/fuzz):
//   check:   magic "RCCK" | version u16 | reserved u16 | seq u64 | digest u64           (24 bytes)
//   control: magic "RCAB" | version u16 | kind u16 | seq u64 | text length u32 | text  (<= kMaxControl)
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/transport/transport.h"

namespace rdmacoll::collectives::exec {

inline constexpr uint16_t kControlVersion = 1;
inline constexpr std::size_t kCheckBytes = 24;
// The most data bytes a framed message carries (the check in front of a small chunk): above
// this a separate check costs less than copying the chunk behind it.
inline constexpr std::size_t kFramedMax = 2048;
inline constexpr std::size_t kMaxControlText = 2000;
inline constexpr std::size_t kMaxControl = 20 + kMaxControlText;

// The ring the ring check goes round, the same on every rank whatever its call: rank order, or
// where n is a power of two the Gray-code cycle g(0), g(1), ..., g(n-1), g(i) = i ^ (i >> 1),
// whose neighbours differ in one bit, as the partners of recursive doubling, halving-doubling
// and the binomial trees do. There a small allreduce's ring check rides a data message on every
// rank; in rank order the odd ranks of recursive doubling sent it alone, a third message per
// call (4 ranks on 2 cores over UCX TCP, 8 bytes: 61-96 us a call with either ring, alternating
// runs, against 59-60 with RDMACOLL_CHECK_ARGS=0: the fewer messages are within the noise).
int ring_next(int rank, int n);
int ring_prev(int rank, int n);

struct CheckMessage {
  uint64_t seq = 0, digest = 0;
};
std::vector<uint8_t> encode_check(const CheckMessage& m);
void encode_check(const CheckMessage& m, uint8_t* out);  // kCheckBytes at out
// nullopt with `why` set if the bytes are not a check message of this version.
std::optional<CheckMessage> parse_check(std::span<const uint8_t> bytes, std::string* why = nullptr);

struct ControlMessage {
  enum class Kind : uint16_t { failed = 1, args = 2, timeout = 3 };
  Kind kind = Kind::failed;
  uint64_t seq = 0;
  // failed: the reason; args: the sender's argument line for `seq` ("" if it had not reached
  // it); timeout: the ranks the sender waits for, "1,3" (format_ranks).
  std::string text;
};
std::vector<uint8_t> encode_control(const ControlMessage& m);  // text cut at kMaxControlText
std::optional<ControlMessage> parse_control(std::span<const uint8_t> bytes, std::string* why = nullptr);

// "1, 3" <-> {1, 3}. parse_ranks ignores what is not a rank in [0, size).
std::string format_ranks(const std::vector<int>& ranks, const char* sep = ",");
std::vector<int> parse_ranks(std::string_view text, int size);

// Thrown by a run whose peer's check did not match (the communicator then reports the mismatch).
struct CheckFailed {
  int peer;
};

// FNV-1a over the argument line: what the check compares.
uint64_t digest_of(std::string_view args);

// "count: rank 0 = 1024, rank 1 = 1000; op: ..." for the keys whose values differ among the
// argument lines given (rank -> "k=v k=v ..."; an empty line: "had not reached the call").
std::string describe_disagreement(const std::map<int, std::string>& lines, int size);

// The control channel of one communicator. Its buffers are written by the transport: the
// owner destroys it after the transport.
class Control {
 public:
  Control() = default;
  // Posts one control receive per peer.
  void start(transport::Transport& t);
  // A check this rank waits for: from `from`, for a run tagged `tag` of call `seq`.
  struct Pending {
    transport::Request recv;
    std::vector<uint8_t> buffer;
    uint64_t seq = 0, digest = 0;
    int from = 0;
    bool framed = false;  // the check in front of a chunk's data (expect_framed, adopt_ring)
    bool ring = false;    // a ring check: may have a chunk behind it (compared on its check alone)
    std::size_t data_bytes = 0;  // framed: the chunk's bytes this rank expects
    // framed: the data behind the check, once checked() said it matched.
    const char* data() const { return reinterpret_cast<const char*>(buffer.data()) + kCheckBytes; }
  };
  // The call's ring check: post_ring posts the receive of the previous rank's and keeps it
  // (late()); send_ring sends this rank's to the next, with `bytes` of `data` behind it where the
  // call's first run frames its first chunk to it (control.h, above).
  std::shared_ptr<Pending> post_ring(uint64_t seq, uint64_t digest);
  transport::Request send_ring(uint64_t seq, uint64_t digest, const void* data = nullptr, std::size_t bytes = 0);
  // A run's framed receive from the previous rank is the ring check's receive: it expects `bytes`.
  static void adopt_ring(Pending& ring, std::size_t bytes) { ring.framed = true, ring.data_bytes = bytes; }
  // Sends this rank's check for a run of call `seq` to `peer`.
  void send_check(int peer, uint16_t tag, uint64_t seq, uint64_t digest);
  // Posts the receive of `from`'s check for the run tagged `tag`; the caller compares with
  // checked(). Control keeps the buffer alive while the receive is posted.
  std::shared_ptr<Pending> expect_check(int from, uint16_t tag, uint64_t seq, uint64_t digest);
  // Framed: sends `bytes` (<= kFramedMax) of `data` to `peer` with the check in front, on the
  // framed form of the chunk's tag `tag`; Control keeps the copy until the send completes.
  transport::Request send_framed(int peer, uint64_t tag, uint64_t seq, uint64_t digest, const void* data,
                                 std::size_t bytes);
  // Posts the receive of a framed message (any size up to kFramedMax); checked() then also
  // checks its length against `bytes`, and data() holds the chunk.
  std::shared_ptr<Pending> expect_framed(int from, uint64_t tag, uint64_t seq, uint64_t digest, std::size_t bytes);
  // The tag a framed chunk goes with, given its plain chunk tag: never the same as a plain one.
  static uint64_t framed_tag(uint64_t chunk_tag) { return chunk_tag | (uint64_t{1} << 37); }
  // nullopt while it has not arrived, then whether the peer's call matches this rank's (same
  // sequence number and digest). Throws ProtocolError on a malformed message.
  std::optional<bool> checked(Pending& p);
  // Checks not waited for: the ring check, and those a run finished without (a peer that sent it
  // nothing). The communicator tests them while it waits.
  void keep(std::shared_ptr<Pending> p) { late_.push_back(std::move(p)); }
  // Tests the kept checks: the first that arrived and did not match, or nullptr.
  std::shared_ptr<Pending> late_mismatch();
  // Control messages that have arrived, each with its sender (receives re-posted).
  std::vector<std::pair<int, ControlMessage>> poll();
  // Until `done()` or the deadline: hands every control message that arrives to `take`, which
  // says whether it wanted it (the others are dropped); sleeps briefly while none it wants comes.
  void listen(bootstrap::Deadline deadline, const std::function<bool(int, const ControlMessage&)>& take,
              const std::function<bool()>& done);
  // Sends `m` to every peer and waits (at most `grace` seconds) for the sends to leave.
  void broadcast(const ControlMessage& m, double grace);
  // broadcast in two halves, for a rank that listens for the peers' answers meanwhile: a send to
  // a dead peer may never complete (an RC QP to it retries, for ever on soft-RoCE), and waiting
  // for it before listening would add a whole grace period to the error's delay.
  std::vector<transport::Request> send_all(const ControlMessage& m);
  static void flush(std::vector<transport::Request>& sends, bootstrap::Deadline deadline);
  bool started() const { return t_ != nullptr; }

 private:
  void post(int peer);
  void send_check_tagged(int peer, uint64_t tag, uint64_t seq, uint64_t digest);
  std::shared_ptr<Pending> post_check_recv(int from, uint64_t tag, uint64_t seq, uint64_t digest,
                                           std::size_t room = kCheckBytes + 8);
  void prune_expected();
  transport::Request send_tagged(int peer, uint64_t tag, uint64_t seq, uint64_t digest, const void* data,
                                 std::size_t bytes);
  void recycle(std::shared_ptr<Pending>&& p);  // keeps p for reuse if nobody else holds it
  static constexpr std::size_t kSpares = 64;
  transport::Transport* t_ = nullptr;
  std::vector<std::vector<uint8_t>> buffers_;  // per peer
  std::vector<transport::Request> recvs_;      // per peer
  struct Sent {
    std::vector<uint8_t> bytes;
    transport::Request req;
  };
  std::deque<Sent> sent_;  // checks and control messages in flight: kept until their sends complete
  std::deque<std::shared_ptr<Pending>> expected_;  // check receives posted, kept until complete
  std::vector<std::shared_ptr<Pending>> late_;
  // Finished buffers kept for the next checks: a small call makes a few, every call.
  std::vector<std::vector<uint8_t>> spare_bytes_;
  std::vector<std::shared_ptr<Pending>> spare_pending_;
};

}  // namespace rdmacoll::collectives::exec
