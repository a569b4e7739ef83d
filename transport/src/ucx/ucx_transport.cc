#include "ucx/ucx_transport.h"

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <thread>

#include "conn_data.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "ucx/ucx_tags.h"

namespace rdmacoll::transport {

namespace tags = ucx::tags;

namespace {


// The notification a write-with-immediate sends after its data: immediate and the write's
// length, little-endian (the length lets the target count the bytes that landed).
constexpr size_t kNotificationBytes = 12;

void put_le(uint8_t* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// What the registration cache holds: one ucp_mem_map of a page-aligned range (a Memory's
// impl(); the Memory itself carries the caller's exact range).
struct UcxRegistration : Memory::Impl {
  ucx::ContextPtr ctx;  // unmapping needs the context
  ucp_mem_h memh = nullptr;
  ~UcxRegistration() override {
    ucs_status_t st = ucp_mem_unmap(ctx.get(), memh);
    if (st != UCS_OK) RDMACOLL_WARN(kUcx, "ucp_mem_unmap failed: %s", ucs_status_string(st));
  }
};

// Puts up to this size go without a registration (UCX copies them; its zero-copy protocols
// start at kilobytes).
constexpr size_t kUnregisteredPut = 256;

ucp_mem_h memh_of(const Memory& registration) { return static_cast<const UcxRegistration&>(*registration.impl()).memh; }

struct UcxWindow : RemoteWindow::Impl {  // access: the owner's, from its description
  static constexpr char kTag = 0;         // backend_window
  static constexpr const char* kBackend = "UCX";
  UcxWindow() { backend = &kTag; }
  ucx::WorkerPtr worker;  // the rkey lives in the worker's memory: keep it alive
  ucp_rkey_h rkey = nullptr;
  ~UcxWindow() override { ucp_rkey_destroy(rkey); }
};

}  // namespace

// One UCX request of an Op; the callbacks' user_data. `done` may be set by a callback that
// UCX runs inside the *_nbx call itself (receives with UCP_OP_ATTR_FLAG_NO_IMM_CMPL do that),
// before the call returns the (then already released) request.
struct UcxTransport::Part {
  Op* op = nullptr;
  void* request = nullptr;  // set while UCX holds it
  bool done = false;
};

struct UcxTransport::Op {
  enum Kind { Send, Recv, Write, Read, Notification, HelloSend, HelloRecv };
  UcxTransport* transport = nullptr;
  size_t index = 0;  // in ops_
  Kind kind = Send;
  int peer = -1;
  std::shared_ptr<Request::State> state;
  size_t length = 0;    // send, write, read: bytes moved; recv: the buffer's size
  int outstanding = 1;  // parts not yet done, plus one while posting
  Part parts[2];        // write with immediate: the put and the notification
  int nparts = 0;
  ucp_tag_recv_info_t info{};  // receives: what arrived
  std::exception_ptr error;    // the first failure of any part
  Memory pinned;               // write, read: keeps the local buffer's registration alive
  bool imm = false;
  uint8_t small[kNotificationBytes] = {};  // notification payload (send or receive)
  std::vector<uint8_t> payload;            // hello
  // Still in flight when the transport went away: UCX may yet call back while it destroys the
  // worker (which a RemoteWindow may keep alive past the transport), so the record is handed
  // to the worker (ucx::free_after_worker) and its callbacks only free the UCX request.
  bool detached = false;
  // Completed by this side's progress rather than announced by an arrival.
  bool completes_locally() const { return kind == Send || kind == Write || kind == Read || kind == HelloSend; }
};

std::unique_ptr<Transport> make_ucx_transport(bootstrap::World& world, const Options& options) {
  return std::make_unique<UcxTransport>(world, options);
}

UcxTransport::UcxTransport(bootstrap::World& world, const Options& options)
    : Transport(world.info.rank, world.info.world_size, options) {
  if (size() > tags::kMaxRanks)
    throw ConfigError("the UCX backend supports at most " + std::to_string(tags::kMaxRanks) + " ranks");
  check_memlock();
  const bool wakeup = options.progress != ProgressMode::Poll;
  ctx_ = ucx::create_context(UCP_FEATURE_TAG | UCP_FEATURE_RMA | (wakeup ? UCP_FEATURE_WAKEUP : 0));
  // The client id tells a listener which rank is connecting (sockaddr wire-up).
  worker_ = ucx::create_worker(ctx_, static_cast<uint64_t>(rank()));
  if (wakeup) ucx::check(ucp_worker_get_efd(worker_.get(), &efd_), "ucp_worker_get_efd");
  cache_ = std::make_unique<RegCache>([ctx = ctx_](void* addr, size_t length, unsigned access) {
    ucp_mem_map_params_t params{};
    params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
    params.address = addr;
    params.length = length;
    auto m = std::make_shared<UcxRegistration>();
    ucx::check(ucp_mem_map(ctx.get(), &params, &m->memh), "ucp_mem_map(" + std::to_string(length) + " bytes)",
               "registration pins memory: check the locked-memory limit (`ulimit -l`)");
    m->ctx = ctx;
    m->addr = addr;
    m->length = length;
    m->access = access;
    return std::shared_ptr<Memory::Impl>(std::move(m));
  });
  peers_.resize(static_cast<size_t>(size()));
  for (int p = 0; p < size(); ++p) {
    peers_[static_cast<size_t>(p)].transport = this;
    peers_[static_cast<size_t>(p)].rank = p;
  }
  try {
    connect(world);
  } catch (...) {
    shutdown();  // the destructor does not run for a constructor that throws
    throw;
  }
}

UcxTransport::~UcxTransport() { shutdown(); }

void UcxTransport::shutdown() noexcept {
  if (closing_) return;
  closing_ = true;
  try {
    if (abandoned_) {
      // Nothing may be sent any more: queued sends may read memory the caller has freed. An
      // endpoint with peer error handling is force-closed, which drops what is queued on it at
      // once (UCX asserts if an endpoint with requests still queued goes with the worker: a
      // frozen peer over tcp); the others, and what is queued on them, go with the worker.
      if (self_accepted_ && !self_accepted_->handles_peer_failure()) self_accepted_->abandon();
      for (auto& p : peers_)
        if (p.ep && !p.ep->handles_peer_failure()) p.ep->abandon();
    } else {
      say_goodbye();
    }
    // Endpoints first, newest first, all closing together: a flush (what was posted gets
    // delivered) where the peer is healthy, a force where it failed; bounded (ucx::close_all).
    std::vector<ucx::Endpoint*> eps{self_accepted_.get()};
    std::vector<bool> force{abandoned_};
    for (auto it = peers_.rbegin(); it != peers_.rend(); ++it) {
      eps.push_back(it->ep.get());
      force.push_back(abandoned_ || it->failed != nullptr);
    }
    ucx::close_all(worker_, eps, 2.0, force);
    self_accepted_.reset();
    for (auto& p : peers_) p.ep.reset();
    if (listener_)
      for (ucp_conn_request_h r : conn_requests_) listener_->reject(r);
    conn_requests_.clear();
    listener_.reset();
  // Receives still posted belong to the worker, not to an endpoint: cancel them, and let
    // their callbacks run so every UCX request is released before the worker goes.
    std::vector<void*> pending;
    for (const auto& op : ops_)
      for (const Part& part : op->parts)
        if (part.request != nullptr) pending.push_back(part.request);
    for (void* r : pending) ucp_request_cancel(worker_.get(), r);
    auto limit = bootstrap::deadline_in(abandoned_ ? 0.0 : 1.0);
    while (!ops_.empty() && bootstrap::Clock::now() < limit) ucp_worker_progress(worker_.get());
    if (!ops_.empty()) {
      if (!abandoned_) RDMACOLL_WARN(kUcx, "rank %d: %zu operations still in flight at teardown", rank(), ops_.size());
      for (auto& owned : ops_) {
        owned->detached = true;
        if (owned->state->pending())
          owned->state->fail(TransportError(owned->state->what() + ": the transport was destroyed with it in flight"));
      }
      // See Op::detached. (They were leaked until LeakSanitizer counted them.)
      ucx::free_after_worker(worker_, std::make_shared<std::vector<std::unique_ptr<Op>>>(std::move(ops_)));
      ops_.clear();
    }
  } catch (const std::exception& e) {
    RDMACOLL_WARN(kUcx, "rank %d: UCX teardown: %s", rank(), e.what());
  }
}

// Before the endpoints close, every healthy peer is told that this rank is done and is waited
// for, briefly: closing an endpoint that the peer is still using (its last collective still
// draining) stalls the close for its whole timeout and makes UCX warn of unflushed operations
// and unreturned requests on both sides. Raw UCX requests: the Op machinery is closing.
void UcxTransport::say_goodbye() {
  static const uint8_t kBye = 0xb7;
  std::vector<uint8_t> got(static_cast<size_t>(size()));
  std::vector<void*> reqs;
  ucp_request_param_t param{};
  for (Peer& p : peers_) {
    if (p.rank == rank() || p.failed || !p.ep || !p.ep->get()) continue;
    for (ucs_status_ptr_t sp :
         {ucp_tag_recv_nbx(worker_.get(), &got[static_cast<size_t>(p.rank)], 1,
                           tags::internal(tags::Internal::Goodbye, p.rank), tags::kFullMask, &param),
          ucp_tag_send_nbx(p.ep->get(), &kBye, 1, tags::internal(tags::Internal::Goodbye, rank()), &param)}) {
      if (sp != nullptr && !UCS_PTR_IS_ERR(sp)) reqs.push_back(sp);
    }
  }
  const auto limit = bootstrap::deadline_in(2.0);
  auto pending = [&] {
    return std::any_of(reqs.begin(), reqs.end(), [](void* r) { return ucp_request_check_status(r) == UCS_INPROGRESS; });
  };
  while (pending() && bootstrap::Clock::now() < limit) ucp_worker_progress(worker_.get());
  for (void* r : reqs)
    if (ucp_request_check_status(r) == UCS_INPROGRESS) ucp_request_cancel(worker_.get(), r);
  while (pending() && bootstrap::Clock::now() < limit + std::chrono::milliseconds(200)) ucp_worker_progress(worker_.get());
  for (void* r : reqs) ucp_request_free(r);
}

PeerCounters UcxTransport::counters(int peer) const {
  check_peer(*this, peer, "counters");
  return peers_[static_cast<size_t>(peer)].counters;
}

std::string UcxTransport::connection_report(const std::vector<int>& ranks) const {
  std::string out;
  for (int r : ranks) {
    if (r < 0 || r >= size() || r == rank()) continue;
    const Peer& p = peers_[static_cast<size_t>(r)];
    // What this side has posted to or for that rank and UCX has not finished.
    constexpr int kKinds = Op::HelloRecv + 1;  // Op::Kind's values, in order
    static const char* const kNames[kKinds] = {"send", "receive", "write", "read", "notification wait", "hello send",
                                               "hello receive"};
    size_t count[kKinds] = {}, bytes[kKinds] = {};
    for (const auto& op : ops_)
      if (op->peer == r) ++count[op->kind], bytes[op->kind] += op->length;
    std::string held;
    for (int k = 0; k < kKinds; ++k)
      if (count[k])
        held += (held.empty() ? "" : ", ") + std::to_string(count[k]) + " " + kNames[k] + (count[k] == 1 ? "" : "s") +
                (k == Op::Send || k == Op::Write || k == Op::Read ? " (" + std::to_string(bytes[k]) + " bytes)" : "");
    out += (out.empty() ? "" : "; ") + std::string("to rank ") + std::to_string(r) + ": endpoint " +
           (p.failed ? "failed" : p.ep ? "up" : "closed") + ", " + (held.empty() ? "nothing in flight" : held + " in flight");
  }
  if (out.empty()) return out;
  return "ucx " + info_.qp_type + " " + out;
}

// ---- operations: bookkeeping ---------------------------------------------------------------
//
// new_op() makes an Op with one "posting" reference; begin_part() adds one per UCX call and
// end_part() takes the call's result (done at once, failed at once, or a request whose
// callback comes later); release() drops the posting reference once everything is posted. So
// an Op whose parts all complete at once is finished there, and one with requests left is
// finished by the last callback. finish() completes or fails the user's Request and counts.

UcxTransport::Op* UcxTransport::new_op(int kind, int peer, const OpDesc& desc) {
  std::unique_ptr<Op> owned;
  if (!spare_ops_.empty()) {
    owned = std::move(spare_ops_.back());
    spare_ops_.pop_back();
  } else {
    owned = std::make_unique<Op>();
  }
  Op* op = owned.get();
  op->transport = this;
  op->kind = static_cast<Op::Kind>(kind);
  op->peer = peer;
  op->state = states_.take(this, peer, desc);
  op->index = ops_.size();
  ops_.push_back(std::move(owned));
  if (op->completes_locally()) ++local_pending_;
  return op;
}

UcxTransport::Part* UcxTransport::begin_part(Op* op) {
  Part* part = &op->parts[op->nparts++];
  part->op = op;
  ++op->outstanding;
  return part;
}

void UcxTransport::end_part(Part* part, ucs_status_ptr_t sp) {
  if (part->done) return;  // its callback already ran inside the call
  if (sp == nullptr)
    part_done(part, nullptr, UCS_OK);
  else if (UCS_PTR_IS_ERR(sp))
    part_done(part, nullptr, UCS_PTR_STATUS(sp));
  else
    part->request = sp;
}

Request UcxTransport::release(Op* op) {
  Request r(op->state);
  if (--op->outstanding == 0) finish(op);
  return r;
}

void UcxTransport::part_done(Part* part, void* request, ucs_status_t status) {
  Op* op = part->op;
  if (op->detached) {  // the transport is gone or going: touch nothing but the request
    if (request != nullptr) ucp_request_free(request);
    return;
  }
  part->done = true;
  part->request = nullptr;
  if (request != nullptr) {
    ucp_request_free(request);
    ++events_;
  }
  if (status != UCS_OK && !op->error) op->error = op_error(*op, status);
  if (--op->outstanding == 0) finish(op);
}

void UcxTransport::finish(Op* op) {
  std::unique_ptr<Op> owned = std::move(ops_[op->index]);
  if (op->index + 1 != ops_.size()) {
    ops_[op->index] = std::move(ops_.back());
    ops_[op->index]->index = op->index;
  }
  ops_.pop_back();
  if (op->completes_locally()) --local_pending_;
  settle(op);
  constexpr size_t kSpareOps = 64;
  if (spare_ops_.size() < kSpareOps) {
    // Made fresh in place (letting go of the request state, the pinned memory, any error and
    // the hello payload): assigning a temporary Op{} cost 230 instructions of inlined copies
    // and destructors, as much as the rest of receiving an 8-byte message (callgrind, tag_bw
    // over TCP); this costs about half of that.
    std::destroy_at(owned.get());
    std::construct_at(owned.get());
    spare_ops_.push_back(std::move(owned));
  }
}

void UcxTransport::settle(Op* op) {
  Request::State& s = *op->state;
  if (op->error) {
    if (s.pending()) s.fail(op->error);
    return;
  }
  PeerCounters& c = peers_[static_cast<size_t>(op->peer)].counters;
  switch (op->kind) {
    case Op::Send:
      c.bytes_sent += op->length;
      c.messages_sent++;
      s.complete(op->length);
      break;
    case Op::Write:
      c.bytes_sent += op->length + (op->imm ? kNotificationBytes : 0);
      c.messages_sent++;
      s.complete(op->length);
      break;
    case Op::Read:  // the data came off the wire from the peer
      c.bytes_received += op->length;
      c.messages_received++;
      s.complete(op->length);
      break;
    case Op::Recv:
      c.bytes_received += op->info.length;
      c.messages_received++;
      s.complete(op->info.length);
      break;
    case Op::Notification: {
      if (op->info.length != kNotificationBytes) {
        s.fail(ProtocolError("rank " + std::to_string(rank()) + ": notification from rank " + std::to_string(op->peer) +
                             " has " + std::to_string(op->info.length) + " bytes, expected " +
                             std::to_string(kNotificationBytes) + " (mismatched rdmacoll builds?)"));
        break;
      }
      uint64_t written = get_le(op->small + 4, 8);
      c.bytes_received += written + kNotificationBytes;
      c.messages_received++;
      s.imm = static_cast<uint32_t>(get_le(op->small, 4));
      s.complete(static_cast<size_t>(written));
      break;
    }
    case Op::HelloSend:
      s.complete(op->length);
      break;
    case Op::HelloRecv:
      try {
        conn::decode_ucx_hello({op->payload.data(), op->info.length}, key_,
                               {static_cast<uint32_t>(op->peer), static_cast<uint32_t>(rank()),
                                static_cast<uint32_t>(size()), nonces_[static_cast<size_t>(op->peer)],
                                nonces_[static_cast<size_t>(rank())]});
        s.complete(op->info.length);
      } catch (const Error&) {
        s.fail(std::current_exception());
      }
      break;
  }
}

std::exception_ptr UcxTransport::op_error(const Op& op, ucs_status_t status) const {
  std::string msg = "rank " + std::to_string(rank()) + ": " + op.state->what() + " failed: ";
  if (status == UCS_ERR_MESSAGE_TRUNCATED) {
    // UCX reports the sender's length in the receive info, where it knows it.
    msg += op.info.length > op.length
               ? "the message from rank " + std::to_string(op.peer) + " has " + std::to_string(op.info.length) +
                     " bytes, more than the buffer's " + std::to_string(op.length)
               : "the message from rank " + std::to_string(op.peer) + " is longer than the buffer's " +
                     std::to_string(op.length) + " bytes";
    msg += " (UCX: " + std::string(ucs_status_string(status)) + ")";
    return std::make_exception_ptr(TransportError(msg));
  }
  msg += std::string(ucs_status_string(status)) + " (UCX status " + std::to_string(status) + ")";
  const Peer& p = peers_[static_cast<size_t>(op.peer)];
  if (p.failed) {
    try {
      std::rethrow_exception(p.failed);
    } catch (const std::exception& e) {
      msg += "; " + std::string(e.what());
    }
  } else if (status == UCS_ERR_CANCELED && closing_) {
    msg += "; the transport was destroyed";
  }
  return std::make_exception_ptr(TransportError(msg));
}

Request UcxTransport::failed_now(int peer, const OpDesc& desc) {
  auto s = make_state(this, peer, desc);
  s->fail(peers_[static_cast<size_t>(peer)].failed);
  return Request(s);
}

void UcxTransport::on_send_done(void* request, ucs_status_t status, void* user_data) {
  auto* part = static_cast<Part*>(user_data);
  if (part->op->detached) return (void)(request ? ucp_request_free(request) : void());
  part->op->transport->part_done(part, request, status);
}

void UcxTransport::on_recv_done(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data) {
  auto* part = static_cast<Part*>(user_data);
  if (part->op->detached) return (void)(request ? ucp_request_free(request) : void());
  if (info != nullptr) part->op->info = *info;
  part->op->transport->part_done(part, request, status);
}

ucp_request_param_t UcxTransport::send_param(Part* part) {
  ucp_request_param_t p{};
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.cb.send = &on_send_done;
  p.user_data = part;
  return p;
}

ucp_request_param_t UcxTransport::recv_param(Part* part) {
  ucp_request_param_t p{};
  // No immediate completion for receives: UCX 1.13 does not fill recv_info when a receive
  // matches an already-arrived message at once, and the length (and, on truncation, the
  // sender's size) is only known from the callback's info then.
  p.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  p.cb.recv = &on_recv_done;
  p.user_data = part;
  return p;
}

// ---- peer failure --------------------------------------------------------------------------

void UcxTransport::on_ep_error(void* arg, ucp_ep_h /*ep*/, ucs_status_t status) {
  auto* p = static_cast<Peer*>(arg);
  UcxTransport& t = *p->transport;
  if (p->failed) return;
  std::string msg = "rank " + std::to_string(t.rank()) + ": the UCX connection to rank " + std::to_string(p->rank) +
                    " failed: " + ucs_status_string(status) + " (UCX status " + std::to_string(status) + "); ";
  if (status == UCS_ERR_UNREACHABLE)
    msg +=
        "no UCX transport reaches it: check UCX_TLS/UCX_NET_DEVICES (`ucx_info -d`); listener (sockaddr) "
        "wire-up needs transports with peer failure handling (tcp, rc_verbs), which UCX 1.13's shared memory "
        "lacks: use RDMACOLL_UCX_WIREUP=address there";
  else
    msg += "is rank " + std::to_string(p->rank) + " still running?";
  p->failed = std::make_exception_ptr(TransportError(msg));
  if (t.closing_)
    RDMACOLL_DEBUG(kUcx, "%s (during teardown)", msg.c_str());
  else
    RDMACOLL_WARN(kUcx, "%s", msg.c_str());
  // Sends on the endpoint fail through their own callbacks; receives are the worker's and
  // would wait forever: progress() fails them (not from inside UCX's callback).
  t.newly_failed_.push_back(p->rank);
  ++t.events_;
}

void UcxTransport::handle_failed_peers() {
  while (!newly_failed_.empty()) {
    int peer = newly_failed_.back();
    newly_failed_.pop_back();
    const Peer& p = peers_[static_cast<size_t>(peer)];
    std::vector<void*> cancel;
    for (const auto& op : ops_) {
      const bool receive = op->kind == Op::Recv || op->kind == Op::Notification || op->kind == Op::HelloRecv;
      if (op->peer != peer || !receive) continue;
      if (!op->error) op->error = p.failed;
      if (op->state->pending()) op->state->fail(p.failed);
      for (const Part& part : op->parts)
        if (part.request != nullptr) cancel.push_back(part.request);
    }
    // Each cancel completes its request (UCS_ERR_CANCELED) through the callback.
    for (void* r : cancel) ucp_request_cancel(worker_.get(), r);
  }
}

// ---- progress ------------------------------------------------------------------------------

bool UcxTransport::progress() {
  uint64_t before = events_;
  unsigned n = ucp_worker_progress(worker_.get());
  if (!conn_requests_.empty()) accept_connections();
  if (!newly_failed_.empty()) handle_failed_peers();
  return n > 0 || events_ != before;
}

void UcxTransport::wait_for_event(Deadline deadline) {
  if (efd_ < 0) {  // Poll mode: nothing to sleep on
    std::this_thread::yield();
    return;
  }
  // UCX's documented loop: progress until idle, arm, and sleep only if arming says nothing
  // is pending (UCS_ERR_BUSY: events arrived meanwhile; the caller progresses again).
  if (progress()) return;
  if (local_pending_ > 0) {
    std::this_thread::yield();
    return;
  }
  ucs_status_t st = ucp_worker_arm(worker_.get());
  if (st == UCS_ERR_BUSY) return;
  ucx::check(st, "ucp_worker_arm");
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - bootstrap::Clock::now()).count();
  if (left <= 0) return;
  pollfd fd{efd_, POLLIN, 0};
  if (::poll(&fd, 1, static_cast<int>(std::min<long long>(left, 1000 * 1000))) < 0 && errno != EINTR)
    throw TransportError("poll on the UCX worker's event fd failed: " + std::string(std::strerror(errno)));
}

// ---- operations ----------------------------------------------------------------------------

Memory UcxTransport::register_memory(void* addr, size_t length, unsigned access) {
  return cache_->get(addr, length, access);
}

// UCX allocates it (UCP_MEM_MAP_ALLOCATE): with shared-memory transports in the context, as a
// sysv or posix segment whose rkey lets a peer map it, so puts into it are plain copies by the
// writer; elsewhere from ordinary pages, registered with every memory domain in use.
Memory UcxTransport::allocate_memory(size_t length, unsigned access) {
  if (length == 0) throw std::invalid_argument("allocate_memory: zero length");
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS;
  params.address = nullptr;
  params.length = length;
  params.flags = UCP_MEM_MAP_ALLOCATE;
  auto m = std::make_shared<UcxRegistration>();
  ucx::check(ucp_mem_map(ctx_.get(), &params, &m->memh), "ucp_mem_map(allocate " + std::to_string(length) + " bytes)",
             "allocation pins memory: check the locked-memory limit (`ulimit -l`) and, for shared memory, "
             "the space in /dev/shm and kernel.shmmax");
  m->ctx = ctx_;
  ucp_mem_attr_t attr{};
  attr.field_mask = UCP_MEM_ATTR_FIELD_ADDRESS | UCP_MEM_ATTR_FIELD_LENGTH;
  ucx::check(ucp_mem_query(m->memh, &attr), "ucp_mem_query");
  if (attr.length < length)
    throw TransportError("ucp_mem_map allocated " + std::to_string(attr.length) + " bytes where " +
                         std::to_string(length) + " were asked for");
  m->addr = attr.address;
  m->length = length;
  m->access = access;
  cache_->adopt(m);
  return Memory(m, m->addr, length);
}

bool UcxTransport::direct_writes(int peer) const {
  check_peer(*this, peer, "direct_writes");
  return peers_[static_cast<size_t>(peer)].direct_writes;
}

void* UcxTransport::map_window(const RemoteWindow& window) {
  const auto* win = dynamic_cast<const UcxWindow*>(window.impl().get());
  if (win == nullptr || win->rkey == nullptr) return nullptr;
  // Only where the peer's lanes put into its memory directly (shared memory): UCX may map a
  // same-host segment even when the caller chose tcp, and those callers asked for tcp.
  if (!direct_writes(win->rank)) return nullptr;
  void* here = nullptr;
  return ucp_rkey_ptr(win->rkey, win->addr, &here) == UCS_OK ? here : nullptr;
}

Request UcxTransport::send(int peer, uint64_t tag, const void* buf, size_t length) {
  check_peer(*this, peer, "send");
  if (buf == nullptr && length > 0)
    throw std::invalid_argument("send: null buffer with length " + std::to_string(length));
  const uint64_t ucp_tag = tags::user(tag, rank());
  const OpDesc desc = OpDesc::send(length, tag);
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.failed) return failed_now(peer, desc);
  Op* op = new_op(Op::Send, peer, desc);
  op->length = length;
  Part* part = begin_part(op);
  ucp_request_param_t param = send_param(part);
  end_part(part, ucp_tag_send_nbx(p.ep->get(), buf, length, ucp_tag, &param));
  return release(op);
}

Request UcxTransport::recv(int peer, uint64_t tag, void* buf, size_t length) {
  check_peer(*this, peer, "recv");
  if (buf == nullptr && length > 0)
    throw std::invalid_argument("recv: null buffer with length " + std::to_string(length));
  const uint64_t ucp_tag = tags::user(tag, peer);
  const OpDesc desc = OpDesc::recv(length, tag);
  if (peers_[static_cast<size_t>(peer)].failed) return failed_now(peer, desc);
  Op* op = new_op(Op::Recv, peer, desc);
  op->length = length;
  Part* part = begin_part(op);
  ucp_request_param_t param = recv_param(part);
  end_part(part, ucp_tag_recv_nbx(worker_.get(), buf, length, ucp_tag, tags::kFullMask, &param));
  return release(op);
}

std::vector<uint8_t> UcxTransport::pack_window(const Memory& window) {
  check_window(window);
  if (dynamic_cast<const UcxRegistration*>(window.impl().get()) == nullptr)
    throw std::invalid_argument("pack_window: the memory was not registered by this UCX transport");
  void* rkey = nullptr;
  size_t rkey_size = 0;
  ucx::check(ucp_rkey_pack(ctx_.get(), memh_of(window), &rkey, &rkey_size), "ucp_rkey_pack");
  conn::Window desc;
  desc.addr = reinterpret_cast<uintptr_t>(window.addr());
  desc.length = window.length();
  desc.access = window.access() & (kRemoteWrite | kRemoteRead);
  desc.packed_rkey.assign(static_cast<const uint8_t*>(rkey), static_cast<const uint8_t*>(rkey) + rkey_size);
  ucp_rkey_buffer_release(rkey);
  return conn::encode_ucx_window(desc);
}

RemoteWindow UcxTransport::unpack_window(int peer, std::span<const uint8_t> packed) {
  check_peer(*this, peer, "unpack_window");
  conn::Window desc = conn::decode_ucx_window(packed, peer);
  auto win = std::make_shared<UcxWindow>();
  win->rank = peer;
  win->addr = desc.addr;
  win->length = desc.length;
  win->access = desc.access;
  const auto& rkey = desc.packed_rkey;
  const Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.failed) std::rethrow_exception(p.failed);
  ucx::check(ucp_ep_rkey_unpack(p.ep->get(), rkey.data(), &win->rkey),
             "ucp_ep_rkey_unpack(window of rank " + std::to_string(peer) + ")");
  win->worker = worker_;
  return RemoteWindow(win);
}

Request UcxTransport::write(int peer, const void* src, size_t length, const RemoteWindow& dst, size_t offset,
                            std::optional<uint32_t> imm) {
  check_write(*this, peer, src, length, dst, offset);
  const UcxWindow& win = backend_window<UcxWindow>(dst, "write");
  const OpDesc desc = OpDesc::write(length, imm);
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.failed) return failed_now(peer, desc);
  // Registered through the cache, so the put is zero-copy and repeated writes are free. A
  // small put is copied (UCX's short and bcopy protocols): it needs no registration, and the
  // cache's lookup was a measurable part of an 8-byte write's latency.
  const bool small = length <= kUnregisteredPut;
  Memory pinned = small ? Memory() : cache_->get(const_cast<void*>(src), length, kLocalOnly);
  Op* op = new_op(Op::Write, peer, desc);
  op->length = length;
  op->imm = imm.has_value();
  op->pinned = std::move(pinned);
  if (length > 0) {
    Part* part = begin_part(op);
    ucp_request_param_t param = send_param(part);
    if (!small) {
      param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
      param.memh = memh_of(op->pinned);
    }
    end_part(part, ucp_put_nbx(p.ep->get(), src, length, dst.addr() + offset, win.rkey, &param));
  }
  if (imm && !op->error) {
    // The fence orders the notification after the put on this endpoint, so the peer sees it
    // only once the data has landed.
    ucs_status_t st = length > 0 ? ucp_worker_fence(worker_.get()) : UCS_OK;
    if (st != UCS_OK) {
      op->error = op_error(*op, st);
    } else {
      put_le(op->small, *imm, 4);
      put_le(op->small + 4, length, 8);
      Part* part = begin_part(op);
      ucp_request_param_t param = send_param(part);
      end_part(part, ucp_tag_send_nbx(p.ep->get(), op->small, kNotificationBytes,
                                      tags::internal(tags::Internal::Notification, rank()), &param));
    }
  }
  return release(op);
}

Request UcxTransport::read(int peer, void* dst, size_t length, const RemoteWindow& src, size_t offset) {
  check_read(*this, peer, dst, length, src, offset);
  const UcxWindow& win = backend_window<UcxWindow>(src, "read");
  const OpDesc desc = OpDesc::read(length);
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.failed) return failed_now(peer, desc);
  if (peer == rank()) {  // one's own window: a copy, as the verbs backend does
    if (length) std::memmove(dst, reinterpret_cast<const void*>(src.addr() + offset), length);
    auto s = make_state(this, peer, desc);
    s->complete(length);
    return Request(s);
  }
  // Registered through the cache, so the get lands zero-copy in the caller's buffer.
  Memory pinned = cache_->get(dst, length, kLocalOnly);
  Op* op = new_op(Op::Read, peer, desc);
  op->length = length;
  op->pinned = std::move(pinned);
  if (length > 0) {
    Part* part = begin_part(op);
    ucp_request_param_t param = send_param(part);  // a get completes through the send callback type
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = memh_of(op->pinned);
    end_part(part, ucp_get_nbx(p.ep->get(), dst, length, src.addr() + offset, win.rkey, &param));
  }
  return release(op);
}

Request UcxTransport::notification(int peer) {
  check_peer(*this, peer, "notification");
  const OpDesc desc = OpDesc::of(OpDesc::Kind::Notification);
  if (peers_[static_cast<size_t>(peer)].failed) return failed_now(peer, desc);
  Op* op = new_op(Op::Notification, peer, desc);
  op->length = kNotificationBytes;
  Part* part = begin_part(op);
  ucp_request_param_t param = recv_param(part);
  end_part(part, ucp_tag_recv_nbx(worker_.get(), op->small, kNotificationBytes,
                                  tags::internal(tags::Internal::Notification, peer), tags::kFullMask, &param));
  return release(op);
}

// Wire-up hellos: tagged messages on the internal tag space, carried by the same machinery.
std::shared_ptr<Request::State> UcxTransport::post_hello_recv(int peer) {
  Op* op = new_op(Op::HelloRecv, peer, OpDesc::of(OpDesc::Kind::HelloRecv));
  op->payload.resize(2 * conn::kUcxHelloBytes);  // room to see (and refuse) a longer one
  op->length = op->payload.size();
  Part* part = begin_part(op);
  ucp_request_param_t param = recv_param(part);
  end_part(part, ucp_tag_recv_nbx(worker_.get(), op->payload.data(), op->payload.size(),
                                  tags::internal(tags::Internal::Hello, peer), tags::kFullMask, &param));
  auto state = op->state;
  release(op);
  return state;
}

std::shared_ptr<Request::State> UcxTransport::post_hello_send(int peer) {
  Op* op = new_op(Op::HelloSend, peer, OpDesc::of(OpDesc::Kind::HelloSend));
  op->payload = conn::encode_ucx_hello(key_, {static_cast<uint32_t>(rank()), static_cast<uint32_t>(peer),
                                              static_cast<uint32_t>(size()), nonces_[static_cast<size_t>(rank())],
                                              nonces_[static_cast<size_t>(peer)]});
  op->length = op->payload.size();
  Part* part = begin_part(op);
  ucp_request_param_t param = send_param(part);
  end_part(part, ucp_tag_send_nbx(peers_[static_cast<size_t>(peer)].ep->get(), op->payload.data(), op->payload.size(),
                                  tags::internal(tags::Internal::Hello, rank()), &param));
  auto state = op->state;
  release(op);
  return state;
}

}  // namespace rdmacoll::transport
