// Private: the libibverbs backend of Transport.
//
// One RC queue pair per peer, all sharing one completion queue (and one completion channel for
// the Block/Adaptive progress modes). Protocols on each QP:
//
//   tagged message <= eager limit   SEND [hdr EAGER tag len | payload]      (copied once on each side)
//   tagged message >  eager limit   SEND [hdr RTS tag len addr rkey id] -> receiver RDMA READs the
//                                   sender's buffer straight into its own, then SEND [hdr FIN id]
//                                   (zero-copy rendezvous; the send completes on FIN)
//   write(..., imm)                 RDMA WRITE chunks, the last one WRITE_WITH_IMM
//   read(...)                       RDMA READ chunks into the caller's buffer (the peer's CPU
//                                   takes no part)
//
// The send queue is bounded twice: in work requests (the QP's max_send_wr) and in bytes in
// flight per QP (RDMACOLL_IB_MAX_INFLIGHT), because soft-RoCE drops packets when a sender keeps
// many large requests outstanding and RC then waits for retransmit timeouts. Work beyond either
// bound waits in a per-peer queue and is posted as completions free room (back-pressure).
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <thread>
#include <unordered_map>
#include <vector>

#include "regcache.h"
#include "transport_impl.h"
#include "verbs/verbs.h"
#include "verbs/verbs_wire.h"

namespace rdmacoll::transport {

class VerbsTransport final : public Transport {
 public:
  VerbsTransport(bootstrap::World& world, const Options& options);
  ~VerbsTransport() override;

  TransportInfo info() const override;
  std::string describe() const override;
  Memory register_memory(void* addr, size_t length, unsigned access) override;
  CacheStats cache_stats() const override { return cache_->stats(); }
  Memory allocate_memory(size_t length, unsigned access) override;
  bool direct_writes(int) const override { return true; }
  Request send(int peer, uint64_t tag, const void* buf, size_t length) override;
  Request recv(int peer, uint64_t tag, void* buf, size_t length) override;
  std::vector<uint8_t> pack_window(const Memory& window) override;
  RemoteWindow unpack_window(int peer, std::span<const uint8_t> packed) override;
  Request write(int peer, const void* src, size_t length, const RemoteWindow& dst, size_t offset,
                std::optional<uint32_t> imm) override;
  Request read(int peer, void* dst, size_t length, const RemoteWindow& src, size_t offset) override;
  Request notification(int peer) override;
  bool progress() override;
  void wait_for_event(Deadline deadline) override;
  PeerCounters counters(int peer) const override { return peers_[static_cast<size_t>(peer)].counters; }
  std::string connection_report(const std::vector<int>& peers) const override;

  // Wire header of every SEND on the QPs (verbs_wire.h; same build on both sides: checked at
  // connect time).
  using Header = verbs_wire::Header;

 private:
  enum class WrKind : uint8_t { SendSlot, Write, Read, Recv };
  // An operation that may span several work requests (chunks). It is its own request's state
  // (one allocation per operation), except for a rendezvous receive's READs, which complete
  // the receive's request: `req` points at whichever it is, and `recv_req` keeps the latter alive.
  struct Op : Request::State {
    Op(Transport* t, int to, const OpDesc& d) : Request::State(t, to, d), req(this) {}
    explicit Op(std::shared_ptr<Request::State> recv)
        : Request::State(recv->transport, recv->peer, recv->desc), req(recv.get()), recv_req(std::move(recv)) {}
    Op(const Op&) = delete;
    Op& operator=(const Op&) = delete;
    // For StatePool: only operations that pin nothing are pooled (an idle pooled Op must not
    // hold a registration), so `pinned` and `recv_req` are empty here already.
    void rearm(int to, const OpDesc& d) {
      Request::State::rearm(to, d);
      req = this;
      remaining = 0;
      length = 0;
      rendezvous_recv = false;
      sender_id = 0;
    }
    Request::State* req;
    std::shared_ptr<Request::State> recv_req;
    size_t remaining = 0;  // work requests not yet completed
    size_t length = 0;  // the operation's bytes (State::bytes is what completed)
    // A rendezvous receive: after the READs, tell the sender (FIN) and complete.
    bool rendezvous_recv = false;
    uint64_t sender_id = 0;
    Memory pinned;  // keeps the user buffer's registration alive while in flight
  };
  struct Wr {
    WrKind kind = WrKind::SendSlot;
    int peer = -1;
    std::shared_ptr<Op> op;
    size_t slot = 0;   // send or receive slot
    size_t bytes = 0;  // bytes in flight for this request
  };
  // A send work request waiting for room in the send queue. A SEND carries `hdr` plus
  // `payload` (the caller's buffer, valid until the request completes), copied into a send
  // slot only when posted; WRITE and READ move [local_addr, +length) directly.
  struct PendingWr {
    ibv_wr_opcode opcode;
    Header hdr{};
    const void* payload = nullptr;
    uint64_t local_addr = 0;
    uint32_t lkey = 0;
    uint32_t length = 0;
    uint64_t remote_addr = 0;
    uint32_t rkey = 0;
    std::optional<uint32_t> imm;
    Wr wr;
  };
  struct PostedRecv {
    uint64_t tag;
    void* buf;
    size_t length;
    std::shared_ptr<Request::State> req;
  };
  struct Unexpected {
    Header hdr;
    std::vector<uint8_t> payload;  // eager only
  };
  struct Peer {
    verbs::QpPtr qp;
    std::deque<PendingWr> pending;
    size_t wr_in_flight = 0, bytes_in_flight = 0;
    std::deque<PostedRecv> posted;          // receives waiting for a message
    std::deque<Unexpected> unexpected;      // messages waiting for a receive
    std::deque<std::shared_ptr<Request::State>> notify_waiters;
    std::deque<uint32_t> notifications;     // immediates that arrived first
    std::exception_ptr failed;              // set once the QP is in error
    PeerCounters counters;
    bool waiting_for_slot = false;          // in slot_waiters_
  };

  void connect(bootstrap::World& world);
  void post_recv_slot(int peer, size_t slot);
  // Posts `w` at once when nothing waits before it and the bounds allow, else queues it.
  void enqueue(int peer, PendingWr&& w);
  void drain(int peer);
  // Drains the peers whose queue waits for a shared send slot, while slots are free.
  void drain_slot_waiters();
  // Posts one work request if the bounds allow; false if it must wait. On a post failure
  // the peer is failed (and true returned: `w` is consumed either way).
  bool try_post(int peer, PendingWr& w);
  // A SEND or WRITE work request of `bytes` goes inline (as perftest's small ones do): the data
  // is copied into the work request at the post, so a write's source needs no registration.
  bool goes_inline(size_t bytes) const { return bytes > 0 && bytes <= caps_.max_inline_data; }
  // Queues RDMA WRITE or READ chunks of [local, local+length) <-> [remote, remote+length).
  void post_rdma(int peer, const std::shared_ptr<Op>& op, WrKind kind, uintptr_t local, uint32_t lkey,
                 size_t length, uint64_t remote, uint32_t rkey, std::optional<uint32_t> imm);
  // Queues a SEND of `hdr` followed by `length` bytes of `payload`.
  void queue_send(int peer, const Header& hdr, const void* payload, size_t length, std::shared_ptr<Op> op);
  void on_completion(const ibv_wc& wc);
  void on_message(int peer, const Header& hdr, const uint8_t* payload, size_t length);
  void start_read(int peer, const Header& rts, void* buf, size_t buf_len, std::shared_ptr<Request::State> req);
  // Hands a matched message to its receive: copy (eager), READ (rendezvous) or truncation error.
  void deliver(int peer, const Header& hdr, const uint8_t* payload, size_t length, void* buf, size_t buf_len,
               const std::shared_ptr<Request::State>& req);
  static void truncated(Request::State& req, int peer, size_t message, size_t buffer);
  // Completes the oldest notification(peer) waiter with `imm`, or queues it.
  void notify(int peer, uint32_t imm);
  void fail_peer(int peer, std::exception_ptr e);
  void check_async_events();
  // For a completion error: "; port rxe0:1 is DOWN (port error: ...)" when the port is not
  // active, which is then the likely cause (its async event may still be on its way); else "".
  std::string port_down_note() const;
  void stop_async_thread() noexcept;
  std::shared_ptr<Request::State> failed_now(int peer, const OpDesc& desc);
  int peer_of_qp(uint32_t qpn) const;
  // Work request records live in wrs_, reused through a free list (no allocation per post):
  // wr_id is the index.
  uint64_t wr_id(Wr&& w);
  Wr take_wr(uint64_t id);

  ib::Selection sel_;
  ib::PortInfo port_;
  verbs::ContextPtr ctx_;
  verbs::PdPtr pd_;
  verbs::ChannelPtr channel_;
  verbs::CqPtr cq_;
  std::unique_ptr<RegCache> cache_;
  verbs::QpCaps caps_;
  size_t slot_size_ = 0, eager_limit_ = 0, recv_slots_per_peer_ = 0;
  size_t chunk_ = 0, max_inflight_ = 0;
  int ib_timeout_ = 14, ib_retry_ = 7, ib_rnr_retry_ = 7;
  std::vector<uint8_t> recv_pool_, send_pool_;
  verbs::MrPtr recv_mr_, send_mr_;
  std::vector<size_t> free_send_slots_;
  std::deque<int> slot_waiters_;  // peers whose next SEND waits for a free send slot, in order
  bool slot_freed_ = false;       // a slot came back since slot_waiters_ was last drained
  std::vector<Peer> peers_;
  std::unordered_map<uint32_t, int> qpn_to_peer_;
  std::map<uint64_t, std::shared_ptr<Op>> rendezvous_sends_;  // waiting for FIN, by id
  // Reused request states: inline writes and eager sends (Op), receives and notifications.
  StatePool<Op> ops_;
  StatePool<Request::State> states_;
  uint64_t next_id_ = 1;
  std::vector<Wr> wrs_;          // by wr_id; a free record has no peer (peer < 0)
  std::vector<uint64_t> free_wrs_;
  int max_rd_atomic_ = 16, max_dest_rd_atomic_ = 16;  // READs in flight per QP (device limits)
  unsigned unacked_cq_events_ = 0;
  // Async events: a thread drains ibv_get_async_event; progress() acts on what it recorded.
  std::thread async_thread_;
  int async_wake_[2] = {-1, -1};    // the destructor wakes the thread to stop it
  int async_notify_[2] = {-1, -1};  // the thread wakes wait_for_event after a fatal event
  std::mutex async_mu_;
  std::vector<std::string> async_errors_;
  std::atomic<bool> async_pending_{false};
};

}  // namespace rdmacoll::transport
