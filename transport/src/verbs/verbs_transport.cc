#include "verbs/verbs_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "conn_data.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::transport {
namespace {

using verbs_wire::kEager, verbs_wire::kRts, verbs_wire::kFin;
constexpr size_t kRecvSlotsPerPeer = 64;
constexpr uint64_t kRecvBit = uint64_t{1} << 63;

size_t setting_bytes(const char* name, size_t lo, size_t hi) {
  int64_t v = *settings::get_int(name);
  if (v < static_cast<int64_t>(lo) || v > static_cast<int64_t>(hi))
    throw ConfigError(std::string(name) + "=" + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  return static_cast<size_t>(v);
}

int access_flags(unsigned access) {
  int f = IBV_ACCESS_LOCAL_WRITE;
  if (access & kRemoteWrite) f |= IBV_ACCESS_REMOTE_WRITE;
  if (access & kRemoteRead) f |= IBV_ACCESS_REMOTE_READ;
  return f;
}

struct VerbsMemory : Memory::Impl {
  verbs::MrPtr mr;
};

// Memory the transport allocated: deregistered before it is freed, so the device cannot write
// into pages that have gone back to the allocator.
struct VerbsAllocation : VerbsMemory {
  std::unique_ptr<void, decltype(&std::free)> block{nullptr, &std::free};
  ~VerbsAllocation() override { mr.reset(); }
};

struct VerbsWindow : RemoteWindow::Impl {
  static constexpr char kTag = 0;  // backend_window
  static constexpr const char* kBackend = "verbs";
  VerbsWindow() { backend = &kTag; }
  uint32_t rkey = 0;
};

// The most RDMA READs a QP keeps in flight, as initiator and as responder: the device's limits,
// capped at what rdmacoll always asked for.
constexpr int kMaxRdAtomic = 16;

std::string peer_str(int peer) { return "peer rank " + std::to_string(peer); }

// The first packet sequence number of the QP from rank `from` to rank `to` (24 bits).
uint32_t initial_psn(int from, int to) { return static_cast<uint32_t>((from * 7919 + to * 104729 + 1) & 0xffffff); }

}  // namespace

std::unique_ptr<Transport> make_verbs_transport(bootstrap::World& world, const Options& options) {
  return std::make_unique<VerbsTransport>(world, options);
}

VerbsTransport::VerbsTransport(bootstrap::World& world, const Options& options)
    : Transport(world.info.rank, world.info.world_size, options) {
  auto devices = ib::list_devices();
  sel_ = ib::select_from_settings(devices);
  for (const auto& d : devices)
    if (d.name == sel_.device)
      for (const auto& p : d.ports)
        if (p.port == sel_.port) port_ = p;
  eager_limit_ = setting_bytes("RDMACOLL_IB_EAGER", 64, 1 << 20);
  chunk_ = setting_bytes("RDMACOLL_IB_CHUNK", 4096, size_t{1} << 30);
  max_inflight_ = std::max(chunk_, setting_bytes("RDMACOLL_IB_MAX_INFLIGHT", 4096, size_t{1} << 34));
  ib_timeout_ = static_cast<int>(setting_bytes("RDMACOLL_IB_TIMEOUT", 0, 31));
  ib_retry_ = static_cast<int>(setting_bytes("RDMACOLL_IB_RETRY_CNT", 0, 7));
  ib_rnr_retry_ = static_cast<int>(setting_bytes("RDMACOLL_IB_RNR_RETRY", 0, 7));
  const size_t send_slots_setting = setting_bytes("RDMACOLL_IB_SEND_SLOTS", 1, size_t{1} << 20);
  slot_size_ = sizeof(Header) + eager_limit_;
  recv_slots_per_peer_ = kRecvSlotsPerPeer;

  ctx_ = verbs::open_device(sel_.device);
  ibv_device_attr dev{};
  verbs::check_rc(ibv_query_device(ctx_.get(), &dev), "ibv_query_device(" + sel_.device + ")");
  // RDMA READ (rendezvous receives, read()) needs initiator and responder resources on every QP.
  max_rd_atomic_ = std::min(dev.max_qp_init_rd_atom, kMaxRdAtomic);
  max_dest_rd_atomic_ = std::min(dev.max_qp_rd_atom, kMaxRdAtomic);
  if (max_rd_atomic_ < 1 || max_dest_rd_atomic_ < 1)
    throw DeviceError(sel_.device + " allows no RDMA READ on a queue pair (max_qp_init_rd_atom " +
                      std::to_string(dev.max_qp_init_rd_atom) + ", max_qp_rd_atom " +
                      std::to_string(dev.max_qp_rd_atom) + "); rdmacoll's verbs backend needs it: use another "
                      "device (RDMACOLL_IB_DEVICE) or RDMACOLL_TRANSPORT=ucx");
  pd_ = verbs::alloc_pd(ctx_);
  channel_ = verbs::create_comp_channel(ctx_);
  fcntl(channel_->fd, F_SETFL, fcntl(channel_->fd, F_GETFL) | O_NONBLOCK);
  const size_t n = static_cast<size_t>(size());
  caps_.max_send_wr = 128;
  caps_.max_recv_wr = static_cast<uint32_t>(recv_slots_per_peer_);
  caps_.max_inline_data = 128;
  cq_ = verbs::create_cq(ctx_, static_cast<int>(n * (caps_.max_send_wr + recv_slots_per_peer_) + 16), channel_);
  cache_ = std::make_unique<RegCache>([pd = pd_](void* addr, size_t length, unsigned access) {
    auto m = std::make_shared<VerbsMemory>();
    m->addr = addr;
    m->length = length;
    m->access = access;
    m->mr = verbs::reg_mr(pd, addr, length, access_flags(access));
    return m;
  });
  // Receive slots: kRecvSlotsPerPeer per peer (each QP has its own receive queue). Send slots
  // are shared by all peers: at most one per possible send WR (max_send_wr per peer), and no
  // more than RDMACOLL_IB_SEND_SLOTS, so that the registered send memory stops growing with the
  // rank count (128 slots of 8 KiB per peer would be 512 MiB at 512 ranks). A SEND that finds
  // none free waits in its peer's queue until a completion returns one (slot_waiters_).
  const size_t send_slots = std::min(n * caps_.max_send_wr, send_slots_setting);
  recv_pool_.resize(n * recv_slots_per_peer_ * slot_size_);
  send_pool_.resize(send_slots * slot_size_);
  recv_mr_ = verbs::reg_mr(pd_, recv_pool_.data(), recv_pool_.size(), IBV_ACCESS_LOCAL_WRITE);
  send_mr_ = verbs::reg_mr(pd_, send_pool_.data(), send_pool_.size(), 0);
  for (size_t i = send_slots; i-- > 0;) free_send_slots_.push_back(i);
  wrs_.reserve(n * caps_.max_send_wr);
  free_wrs_.reserve(n * caps_.max_send_wr);
  peers_.resize(n);

  if (pipe2(async_wake_, O_CLOEXEC) != 0 || pipe2(async_notify_, O_CLOEXEC | O_NONBLOCK) != 0)
    throw TransportError("pipe2 failed: " + std::string(std::strerror(errno)));
  fcntl(ctx_->async_fd, F_SETFL, fcntl(ctx_->async_fd, F_GETFL) | O_NONBLOCK);
  async_thread_ = std::thread([this] {
    for (;;) {
      pollfd fds[2] = {{ctx_->async_fd, POLLIN, 0}, {async_wake_[0], POLLIN, 0}};
      if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
      if (fds[1].revents) return;
      ibv_async_event ev{};
      while (ibv_get_async_event(ctx_.get(), &ev) == 0) {
        std::string what = ibv_event_type_str(ev.event_type);
        bool fatal = ev.event_type == IBV_EVENT_QP_FATAL || ev.event_type == IBV_EVENT_QP_REQ_ERR ||
                     ev.event_type == IBV_EVENT_QP_ACCESS_ERR || ev.event_type == IBV_EVENT_PORT_ERR ||
                     ev.event_type == IBV_EVENT_DEVICE_FATAL || ev.event_type == IBV_EVENT_CQ_ERR;
        uint32_t qpn = (ev.event_type == IBV_EVENT_QP_FATAL || ev.event_type == IBV_EVENT_QP_REQ_ERR ||
                        ev.event_type == IBV_EVENT_QP_ACCESS_ERR || ev.event_type == IBV_EVENT_QP_LAST_WQE_REACHED)
                           ? ev.element.qp->qp_num
                           : 0;
        ibv_ack_async_event(&ev);
        RDMACOLL_LOG(Warn, kNet, "async event on %s: %s%s", sel_.device.c_str(), what.c_str(),
                     qpn ? (" (qpn " + std::to_string(qpn) + ")").c_str() : "");
        if (fatal) {
          std::lock_guard lock(async_mu_);
          async_errors_.push_back(what + (qpn ? ":" + std::to_string(qpn) : std::string()));
          async_pending_ = true;
          // A rank blocked in wait_for_event learns of it now, not at its deadline (a port
          // that went down completes nothing more). A full pipe already says so.
          char c = 1;
          (void)!::write(async_notify_[1], &c, 1);
        }
      }
    }
  });
  try {
    connect(world);
  } catch (...) {
    stop_async_thread();  // a constructor that throws runs no destructor
    throw;
  }
}

void VerbsTransport::stop_async_thread() noexcept {
  if (!async_thread_.joinable()) return;
  char c = 1;
  if (::write(async_wake_[1], &c, 1) != 1) RDMACOLL_WARN(kNet, "cannot wake the async-event thread");
  async_thread_.join();
  for (int fd : {async_wake_[0], async_wake_[1], async_notify_[0], async_notify_[1]}) ::close(fd);
}

VerbsTransport::~VerbsTransport() {
  stop_async_thread();
  if (unacked_cq_events_) ibv_ack_cq_events(cq_.get(), unacked_cq_events_);
  // QPs go first (members are destroyed in reverse order, but peers_ holds the QPs and is
  // declared after the pools: clear it explicitly so no work request outlives its buffers).
  peers_.clear();
}

TransportInfo VerbsTransport::info() const {
  TransportInfo i;
  i.backend = Backend::Verbs;
  i.device = sel_.device;
  i.port = sel_.port;
  i.gid_index = sel_.gid_index;
  for (const auto& g : port_.gids)
    if (g.index == sel_.gid_index) i.gid = g.to_string();
  i.mtu = port_.active_mtu;
  i.qp_type = "RC";
  i.max_inline = caps_.max_inline_data;
  i.link_layer = port_.link_layer;
  return i;
}

std::string VerbsTransport::describe() const {
  TransportInfo i = info();
  std::string gid;
  for (const auto& g : port_.gids)
    if (g.index == sel_.gid_index) gid = std::string(ib::to_string(g.type)) + (g.ipv4_mapped() ? " " + g.ipv4() : "");
  return "verbs " + i.device + ":" + std::to_string(i.port) + " gid " + std::to_string(i.gid_index) + " (" + gid +
         "), " + i.qp_type + ", mtu " + std::to_string(i.mtu) + ", inline " + std::to_string(i.max_inline) +
         ", eager " + std::to_string(eager_limit_) + ", " + std::string(to_string(options().progress)) + " progress";
}

// ---- connection setup ----------------------------------------------------------------------

void VerbsTransport::connect(bootstrap::World& world) {
  const int me = rank(), n = size();
  ibv_mtu mtu = verbs::mtu_enum(port_.active_mtu);
  std::array<uint8_t, 16> gid{};
  for (const auto& g : port_.gids)
    if (g.index == sel_.gid_index) gid = g.raw;
  conn::VerbsConnect mine;
  mine.header_size = static_cast<uint32_t>(sizeof(Header));
  mine.lid = port_.lid;
  mine.mtu = static_cast<uint8_t>(mtu);
  mine.dest_rd_atomic = static_cast<uint8_t>(max_dest_rd_atomic_);
  mine.gid = gid;
  for (int p = 0; p < n; ++p) {
    Peer& peer = peers_[static_cast<size_t>(p)];
    if (p != me) {
      verbs::QpCaps caps = caps_;
      peer.qp = verbs::create_rc_qp(pd_, cq_, cq_, caps);
      caps_.max_inline_data = std::min(caps_.max_inline_data, caps.max_inline_data);
      verbs::qp_to_init(peer.qp.get(), sel_.port, IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
      qpn_to_peer_[peer.qp->qp_num] = p;
      for (size_t s = 0; s < recv_slots_per_peer_; ++s) post_recv_slot(p, s);
    }
    mine.qpn.push_back(peer.qp ? peer.qp->qp_num : 0);
    mine.psn.push_back(initial_psn(me, p));
  }
  auto all =
      bootstrap::all_gather(*world.store, "verbs/connect", me, n, conn::encode(mine), bootstrap::default_deadline());
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    conn::VerbsConnect theirs =
        conn::decode_verbs_connect(all[static_cast<size_t>(p)], p, n, static_cast<uint32_t>(sizeof(Header)));
    verbs::RcEndpoint ep;
    ep.lid = theirs.lid;
    ep.mtu = theirs.mtu;
    ep.gid = theirs.gid;
    ep.qpn = theirs.qpn[static_cast<size_t>(me)];
    ep.psn = theirs.psn[static_cast<size_t>(me)];
    // Our QP may keep no more READs in flight than the peer's QP accepts as responder.
    const int peer_dest_rd_atomic = theirs.dest_rd_atomic;
    Peer& peer = peers_[static_cast<size_t>(p)];
    verbs::qp_to_rtr(peer.qp.get(), ep, sel_.port, sel_.gid_index, mtu, port_.link_layer == "Ethernet", p,
                     max_dest_rd_atomic_);
    verbs::qp_to_rts(peer.qp.get(), initial_psn(me, p), ib_timeout_, ib_retry_, ib_rnr_retry_,
                     std::min(max_rd_atomic_, peer_dest_rd_atomic));
  }
  // Nobody may send before every QP is at least in RTR.
  bootstrap::barrier(*world.store, "verbs/connected", me, n, bootstrap::default_deadline());
  RDMACOLL_INFO(kNet, "rank %d connected to %d peers: %s", me, n - 1, describe().c_str());
}

void VerbsTransport::post_recv_slot(int peer, size_t slot) {
  size_t index = static_cast<size_t>(peer) * recv_slots_per_peer_ + slot;
  ibv_sge sge{reinterpret_cast<uintptr_t>(recv_pool_.data() + index * slot_size_), static_cast<uint32_t>(slot_size_),
              recv_mr_->lkey};
  ibv_recv_wr wr{}, *bad = nullptr;
  wr.wr_id = kRecvBit | index;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  // Runs for every message received: the error text is made only on failure.
  if (int rc = ibv_post_recv(peers_[static_cast<size_t>(peer)].qp.get(), &wr, &bad); rc != 0)
    verbs::check_rc(rc, "ibv_post_recv(" + peer_str(peer) + ")");
}

// ---- posting with back-pressure ----------------------------------------------------------

uint64_t VerbsTransport::wr_id(Wr&& w) {
  uint64_t id;
  if (free_wrs_.empty()) {
    id = wrs_.size();
    wrs_.push_back(std::move(w));
  } else {
    id = free_wrs_.back();
    free_wrs_.pop_back();
    wrs_[id] = std::move(w);
  }
  return id;
}

VerbsTransport::Wr VerbsTransport::take_wr(uint64_t id) {
  if (id >= wrs_.size() || wrs_[id].peer < 0) return Wr{};
  Wr w = std::move(wrs_[id]);
  wrs_[id] = Wr{};
  free_wrs_.push_back(id);
  return w;
}

void VerbsTransport::enqueue(int p, PendingWr&& w) {
  Peer& peer = peers_[static_cast<size_t>(p)];
  // The common case posts at once, without a trip through the queue (a deque allocates and
  // frees a block every few requests that pass through it).
  if (peer.pending.empty() && !peer.failed && try_post(p, w)) return;
  peer.pending.push_back(std::move(w));
}

void VerbsTransport::drain(int p) {
  Peer& peer = peers_[static_cast<size_t>(p)];
  while (!peer.pending.empty() && !peer.failed) {
    if (!try_post(p, peer.pending.front())) break;
    if (peer.failed) return;  // the post failed, and fail_peer emptied the queue
    peer.pending.pop_front();
  }
}

bool VerbsTransport::try_post(int p, PendingWr& w) {
  Peer& peer = peers_[static_cast<size_t>(p)];
  size_t bytes = w.opcode == IBV_WR_SEND ? sizeof(Header) + w.length : w.length;
  // Bounds: WRs in the send queue, and bytes in flight (an idle QP always takes one WR).
  if (peer.wr_in_flight + 1 >= caps_.max_send_wr) return false;
  if (peer.wr_in_flight > 0 && peer.bytes_in_flight + bytes > max_inflight_) return false;
  ibv_sge sge{};
  ibv_send_wr wr{}, *bad = nullptr;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = w.opcode;
  wr.send_flags = IBV_SEND_SIGNALED;
  if (w.opcode == IBV_WR_SEND && free_send_slots_.empty()) {
    // Every shared send slot is in flight: wait for a completion to return one.
    if (!peer.waiting_for_slot) peer.waiting_for_slot = true, slot_waiters_.push_back(p);
    return false;
  }
  Wr rec = std::move(w.wr);
  rec.bytes = bytes;
  if (w.opcode == IBV_WR_SEND) {
    size_t slot = free_send_slots_.back();
    free_send_slots_.pop_back();
    uint8_t* buf = send_pool_.data() + slot * slot_size_;
    verbs_wire::encode(w.hdr, {static_cast<const uint8_t*>(w.payload), w.length}, {buf, slot_size_});
    sge = {reinterpret_cast<uintptr_t>(buf), static_cast<uint32_t>(bytes), send_mr_->lkey};
    rec.slot = slot;
  } else {
    sge = {w.local_addr, w.length, w.lkey};
    wr.num_sge = w.length ? 1 : 0;  // a zero-length write still carries its immediate
    wr.wr.rdma.remote_addr = w.remote_addr;
    wr.wr.rdma.rkey = w.rkey;
    if (w.imm) wr.imm_data = htonl(*w.imm);
  }
  if (w.opcode != IBV_WR_RDMA_READ && goes_inline(bytes)) wr.send_flags |= IBV_SEND_INLINE;
  wr.wr_id = wr_id(std::move(rec));
  int rc = ibv_post_send(peer.qp.get(), &wr, &bad);
  if (rc != 0) {
    Wr failed = take_wr(wr.wr_id);
    if (w.opcode == IBV_WR_SEND) free_send_slots_.push_back(failed.slot), slot_freed_ = true;
    auto e = std::make_exception_ptr(
        TransportError("ibv_post_send(" + peer_str(p) + ") failed: " + std::strerror(rc > 0 ? rc : errno)));
    if (failed.op && failed.op->req->pending()) failed.op->req->fail(e);
    fail_peer(p, e);
    return true;
  }
  peer.wr_in_flight++;
  peer.bytes_in_flight += bytes;
  return true;
}

void VerbsTransport::post_rdma(int peer, const std::shared_ptr<Op>& op, WrKind kind, uintptr_t local, uint32_t lkey,
                               size_t length, uint64_t remote, uint32_t rkey, std::optional<uint32_t> imm) {
  // Chunks of at most chunk_ bytes (RDMACOLL_IB_CHUNK), so the in-flight bounds can pace them;
  // a zero-length write is one work request (it may carry an immediate).
  size_t chunks = length == 0 ? 1 : (length + chunk_ - 1) / chunk_;
  op->remaining = chunks;
  for (size_t c = 0; c < chunks; ++c) {
    size_t off = c * chunk_;
    bool last = c + 1 == chunks;
    PendingWr w;
    if (kind == WrKind::Read)
      w.opcode = IBV_WR_RDMA_READ;
    else
      w.opcode = last && imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
    w.local_addr = local + off;
    w.lkey = lkey;
    w.length = static_cast<uint32_t>(std::min(chunk_, length - off));
    w.remote_addr = remote + off;
    w.rkey = rkey;
    if (last && kind == WrKind::Write) w.imm = imm;
    w.wr = Wr{kind, peer, op};
    enqueue(peer, std::move(w));
  }
}

void VerbsTransport::queue_send(int peer, const Header& hdr, const void* payload, size_t length,
                                std::shared_ptr<Op> op) {
  PendingWr w;
  w.opcode = IBV_WR_SEND;
  w.hdr = hdr;
  w.payload = payload;
  w.length = static_cast<uint32_t>(length);
  w.wr = Wr{WrKind::SendSlot, peer, std::move(op)};
  enqueue(peer, std::move(w));
}

std::shared_ptr<Request::State> VerbsTransport::failed_now(int peer, const OpDesc& desc) {
  auto s = make_state(this, peer, desc);
  s->fail(peers_[static_cast<size_t>(peer)].failed);
  return s;
}

// ---- operations ------------------------------------------------------------------------------

Memory VerbsTransport::register_memory(void* addr, size_t length, unsigned access) {
  return cache_->get(addr, length, access);
}

Memory VerbsTransport::allocate_memory(size_t length, unsigned access) {
  if (length == 0) throw std::invalid_argument("allocate_memory: zero length");
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (length > SIZE_MAX - page) throw std::invalid_argument("allocate_memory: " + std::to_string(length) + " bytes");
  auto m = std::make_shared<VerbsAllocation>();
  m->block.reset(std::aligned_alloc(page, (length + page - 1) / page * page));
  if (!m->block) throw std::bad_alloc();
  m->addr = m->block.get();
  m->length = length;
  m->access = access;
  m->mr = verbs::reg_mr(pd_, m->addr, length, access_flags(access));
  cache_->adopt(m);
  return Memory(m, m->addr, length);
}

Request VerbsTransport::send(int peer, uint64_t tag, const void* buf, size_t length) {
  check_peer(*this, peer, "send");
  if (buf == nullptr && length > 0) throw std::invalid_argument("send: null buffer with length " + std::to_string(length));
  const OpDesc desc = OpDesc::send(length, tag);
  if (peers_[static_cast<size_t>(peer)].failed) return Request(failed_now(peer, desc));
  const bool eager = peer == rank() || length <= eager_limit_;
  auto op = eager ? ops_.take(this, peer, desc) : std::make_shared<Op>(this, peer, desc);
  op->length = length;
  Header hdr{};
  hdr.tag = tag;
  hdr.length = length;
  if (peer == rank()) {
    hdr.type = kEager;
    on_message(peer, hdr, static_cast<const uint8_t*>(buf), length);
    op->req->complete(length);
  } else if (eager) {
    hdr.type = kEager;
    op->remaining = 1;
    queue_send(peer, hdr, buf, length, op);
  } else {
    // Rendezvous: the receiver reads straight from this buffer, then answers FIN.
    op->pinned = cache_->get(const_cast<void*>(buf), length, kRemoteRead);
    hdr.type = kRts;
    hdr.addr = reinterpret_cast<uintptr_t>(buf);
    hdr.rkey = static_cast<VerbsMemory&>(*op->pinned.impl()).mr->rkey;
    hdr.id = next_id_++;
    rendezvous_sends_[hdr.id] = op;
    queue_send(peer, hdr, nullptr, 0, nullptr);
  }
  return Request(op);
}

Request VerbsTransport::recv(int peer, uint64_t tag, void* buf, size_t length) {
  check_peer(*this, peer, "recv");
  if (buf == nullptr && length > 0) throw std::invalid_argument("recv: null buffer with length " + std::to_string(length));
  Peer& p = peers_[static_cast<size_t>(peer)];
  auto req = states_.take(this, peer, OpDesc::recv(length, tag));
  for (auto it = p.unexpected.begin(); it != p.unexpected.end(); ++it) {
    if (it->hdr.tag != tag) continue;
    Unexpected u = std::move(*it);
    p.unexpected.erase(it);
    deliver(peer, u.hdr, u.payload.data(), u.payload.size(), buf, length, req);
    return Request(req);
  }
  if (p.failed) return Request(failed_now(peer, req->desc));
  p.posted.push_back({tag, buf, length, req});
  return Request(req);
}

std::vector<uint8_t> VerbsTransport::pack_window(const Memory& window) {
  check_window(window);
  const auto* mem = dynamic_cast<const VerbsMemory*>(window.impl().get());
  if (mem == nullptr) throw std::invalid_argument("pack_window: the memory was not registered by this verbs transport");
  conn::Window desc;
  desc.addr = reinterpret_cast<uintptr_t>(window.addr());
  desc.length = window.length();
  desc.access = window.access() & (kRemoteWrite | kRemoteRead);
  desc.rkey = mem->mr->rkey;
  return conn::encode_verbs_window(desc);
}

RemoteWindow VerbsTransport::unpack_window(int peer, std::span<const uint8_t> packed) {
  check_peer(*this, peer, "unpack_window");
  conn::Window desc = conn::decode_verbs_window(packed, peer);
  auto win = std::make_shared<VerbsWindow>();
  win->rank = peer;
  win->addr = desc.addr;
  win->length = desc.length;
  win->access = desc.access;
  win->rkey = desc.rkey;
  return RemoteWindow(win);
}

Request VerbsTransport::write(int peer, const void* src, size_t length, const RemoteWindow& dst, size_t offset,
                              std::optional<uint32_t> imm) {
  check_write(*this, peer, src, length, dst, offset);
  const OpDesc desc = OpDesc::write(length, imm);
  if (peers_[static_cast<size_t>(peer)].failed) return Request(failed_now(peer, desc));
  // An inline write (try_post) needs no registration of its source.
  const bool pin = peer != rank() && length > 0 && !goes_inline(length);
  auto op = pin ? std::make_shared<Op>(this, peer, desc) : ops_.take(this, peer, desc);
  op->length = length;
  if (peer == rank()) {
    if (length) std::memmove(reinterpret_cast<void*>(dst.addr() + offset), src, length);
    if (imm) notify(peer, *imm);
    op->req->complete(length);
    return Request(op);
  }
  const VerbsWindow& win = backend_window<VerbsWindow>(dst, "write");
  if (pin) op->pinned = cache_->get(const_cast<void*>(src), length, kLocalOnly);
  uint32_t lkey = pin ? static_cast<VerbsMemory&>(*op->pinned.impl()).mr->lkey : 0;
  post_rdma(peer, op, WrKind::Write, reinterpret_cast<uintptr_t>(src), lkey, length, dst.addr() + offset, win.rkey,
            imm);
  return Request(op);
}

Request VerbsTransport::read(int peer, void* dst, size_t length, const RemoteWindow& src, size_t offset) {
  check_read(*this, peer, dst, length, src, offset);
  const OpDesc desc = OpDesc::read(length);
  if (peers_[static_cast<size_t>(peer)].failed) return Request(failed_now(peer, desc));
  auto op = std::make_shared<Op>(this, peer, desc);
  op->length = length;
  if (peer == rank()) {
    if (length) std::memmove(dst, reinterpret_cast<const void*>(src.addr() + offset), length);
    op->req->complete(length);
    return Request(op);
  }
  const VerbsWindow& win = backend_window<VerbsWindow>(src, "read");
  if (length == 0) {  // nothing to move, nothing to ask the peer
    op->req->complete(0);
    return Request(op);
  }
  // The READ lands in the caller's buffer directly: registered (cached) like write's source.
  op->pinned = cache_->get(dst, length, kLocalOnly);
  uint32_t lkey = static_cast<VerbsMemory&>(*op->pinned.impl()).mr->lkey;
  post_rdma(peer, op, WrKind::Read, reinterpret_cast<uintptr_t>(dst), lkey, length, src.addr() + offset, win.rkey,
            std::nullopt);
  return Request(op);
}

Request VerbsTransport::notification(int peer) {
  check_peer(*this, peer, "notification");
  Peer& p = peers_[static_cast<size_t>(peer)];
  auto req = states_.take(this, peer, OpDesc::of(OpDesc::Kind::Notification));
  if (!p.notifications.empty()) {
    req->imm = p.notifications.front();
    p.notifications.pop_front();
    req->complete(0);
  } else if (p.failed) {
    req->fail(p.failed);
  } else {
    p.notify_waiters.push_back(req);
  }
  return Request(req);
}

// ---- receive side --------------------------------------------------------------------------

void VerbsTransport::truncated(Request::State& req, int peer, size_t message, size_t buffer) {
  req.fail(TransportError(req.what() + ": the message from rank " + std::to_string(peer) + " has " +
                          std::to_string(message) + " bytes, more than the buffer's " + std::to_string(buffer)));
}

void VerbsTransport::deliver(int peer, const Header& hdr, const uint8_t* payload, size_t length, void* buf,
                             size_t buf_len, const std::shared_ptr<Request::State>& req) {
  if (hdr.type == kRts) {
    start_read(peer, hdr, buf, buf_len, req);
  } else if (hdr.length > buf_len) {
    truncated(*req, peer, hdr.length, buf_len);
  } else {
    if (length) std::memcpy(buf, payload, length);
    req->complete(length);
  }
}

void VerbsTransport::notify(int peer, uint32_t imm) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.notify_waiters.empty()) {
    p.notifications.push_back(imm);
    return;
  }
  auto w = p.notify_waiters.front();
  p.notify_waiters.pop_front();
  w->imm = imm;
  w->complete(0);
}

void VerbsTransport::on_message(int peer, const Header& hdr, const uint8_t* payload, size_t length) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (hdr.type == kFin) {
    auto it = rendezvous_sends_.find(hdr.id);
    if (it == rendezvous_sends_.end()) {
      RDMACOLL_WARN(kNet, "FIN for unknown send %llu from rank %d", static_cast<unsigned long long>(hdr.id), peer);
      return;
    }
    auto op = it->second;
    rendezvous_sends_.erase(it);
    // The receiver read the data through this side's NIC: count it as sent.
    if (hdr.status == 0) p.counters.bytes_sent += op->length;
    if (hdr.status != 0)
      op->req->fail(TransportError(op->req->what() + ": rank " + std::to_string(peer) +
                                   "'s receive buffer is shorter than the message"));
    else
      op->req->complete(op->length);
    return;
  }
  for (auto it = p.posted.begin(); it != p.posted.end(); ++it) {
    if (it->tag != hdr.tag) continue;
    PostedRecv r = std::move(*it);
    p.posted.erase(it);
    deliver(peer, hdr, payload, length, r.buf, r.length, r.req);
    return;
  }
  Unexpected u{hdr, {}};
  if (hdr.type == kEager) u.payload.assign(payload, payload + length);
  p.unexpected.push_back(std::move(u));
}

void VerbsTransport::start_read(int peer, const Header& rts, void* buf, size_t buf_len,
                                std::shared_ptr<Request::State> req) {
  auto op = std::make_shared<Op>(std::move(req));
  op->rendezvous_recv = true;
  op->sender_id = rts.id;
  op->length = rts.length;
  if (rts.length > buf_len) {
    // Tell the sender, so its send fails too instead of waiting for a FIN forever.
    truncated(*op->req, peer, rts.length, buf_len);
    Header fin{};
    fin.type = kFin;
    fin.status = verbs_wire::kFinTruncated;
    fin.id = rts.id;
    queue_send(peer, fin, nullptr, 0, nullptr);
    return;
  }
  op->pinned = cache_->get(buf, rts.length, kLocalOnly);
  uint32_t lkey = static_cast<VerbsMemory&>(*op->pinned.impl()).mr->lkey;
  post_rdma(peer, op, WrKind::Read, reinterpret_cast<uintptr_t>(buf), lkey, rts.length, rts.addr, rts.rkey,
            std::nullopt);
}

// ---- completions -----------------------------------------------------------------------------

int VerbsTransport::peer_of_qp(uint32_t qpn) const {
  auto it = qpn_to_peer_.find(qpn);
  return it == qpn_to_peer_.end() ? -1 : it->second;
}

bool VerbsTransport::progress() {
  if (async_pending_.load(std::memory_order_relaxed)) check_async_events();
  ibv_wc wcs[32];
  int n = ibv_poll_cq(cq_.get(), 32, wcs);
  if (n < 0) throw TransportError("ibv_poll_cq(" + sel_.device + ") failed: " + std::to_string(n));
  for (int i = 0; i < n; ++i) on_completion(wcs[i]);
  if (slot_freed_ && !slot_waiters_.empty()) drain_slot_waiters();
  return n > 0;
}

void VerbsTransport::on_completion(const ibv_wc& wc) {
  if (wc.wr_id & kRecvBit) {
    // The receive slot's index names the peer (post_recv_slot): no lookup of the QP number.
    size_t index = wc.wr_id & ~kRecvBit;
    if (index >= peers_.size() * recv_slots_per_peer_) return;
    int peer = static_cast<int>(index / recv_slots_per_peer_);
    Peer& p = peers_[static_cast<size_t>(peer)];
    if (wc.status != IBV_WC_SUCCESS) {
      fail_peer(peer, std::make_exception_ptr(TransportError(
                          std::string("receive completion error from rank ") + std::to_string(peer) + ": " +
                          ibv_wc_status_str(wc.status) + " (opcode " + verbs::opcode_name(wc.opcode) +
                          ", vendor_err " + std::to_string(wc.vendor_err) + ")" + port_down_note())));
      return;
    }
    p.counters.bytes_received += wc.byte_len;
    p.counters.messages_received++;
    if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
      notify(peer, ntohl(wc.imm_data));
    } else {
      verbs_wire::Message m;
      try {
        m = verbs_wire::decode({recv_pool_.data() + index * slot_size_, wc.byte_len}, eager_limit_, peer);
      } catch (const ProtocolError&) {
        fail_peer(peer, std::current_exception());
        return;
      }
      on_message(peer, m.header, m.payload.data(), m.payload.size());
    }
    post_recv_slot(peer, index % recv_slots_per_peer_);
    return;
  }
  Wr w = take_wr(wc.wr_id);
  if (w.peer < 0) return;
  Peer& p = peers_[static_cast<size_t>(w.peer)];
  p.wr_in_flight--;
  p.bytes_in_flight -= w.bytes;
  if (w.kind == WrKind::SendSlot) free_send_slots_.push_back(w.slot), slot_freed_ = true;
  if (wc.status != IBV_WC_SUCCESS) {
    auto e = std::make_exception_ptr(TransportError(
        std::string("completion error: ") + ibv_wc_status_str(wc.status) + ", opcode " +
        (w.kind == WrKind::Write ? "RDMA_WRITE" : w.kind == WrKind::Read ? "RDMA_READ" : "SEND") + ", peer rank " +
        std::to_string(w.peer) + ", vendor_err " + std::to_string(wc.vendor_err) +
        (wc.status == IBV_WC_RETRY_EXC_ERR
             ? " (the peer stopped answering: dead, or the link is down; RDMACOLL_IB_TIMEOUT, RDMACOLL_IB_RETRY_CNT)"
         : wc.status == IBV_WC_RNR_RETRY_EXC_ERR
             ? " (the peer posted no receive buffer in time: stopped or stuck; RDMACOLL_IB_RNR_RETRY)"
             : "") +
        port_down_note()));
    if (w.op && w.op->req->pending()) w.op->req->fail(e);
    fail_peer(w.peer, e);
    return;
  }
  if (w.kind == WrKind::Read) {
    p.counters.bytes_received += w.bytes;
  } else {
    p.counters.bytes_sent += w.bytes;
    p.counters.messages_sent++;
  }
  if (w.op && --w.op->remaining == 0 && w.op->req->pending()) {
    if (w.kind == WrKind::Read && !w.op->rendezvous_recv) p.counters.messages_received++;  // a read()
    if (w.op->rendezvous_recv) {
      Header fin{};
      fin.type = kFin;
      fin.id = w.op->sender_id;
      queue_send(w.peer, fin, nullptr, 0, nullptr);
    }
    w.op->req->complete(w.op->length);
  }
  drain(w.peer);
}

void VerbsTransport::drain_slot_waiters() {
  slot_freed_ = false;
  while (!free_send_slots_.empty() && !slot_waiters_.empty()) {
    const int p = slot_waiters_.front();
    slot_waiters_.pop_front();
    peers_[static_cast<size_t>(p)].waiting_for_slot = false;
    drain(p);  // may put p back at the end when the slots run out again
  }
}

void VerbsTransport::fail_peer(int peer, std::exception_ptr e) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (p.failed) return;
  p.failed = e;
  RDMACOLL_LOG(Error, kNet, "rank %d: connection to rank %d failed", rank(), peer);
  for (auto& r : p.posted) r.req->fail(e);
  p.posted.clear();
  for (auto& w : p.notify_waiters) w->fail(e);
  p.notify_waiters.clear();
  for (auto& w : p.pending)
    if (w.wr.op && w.wr.op->req->pending()) w.wr.op->req->fail(e);
  p.pending.clear();
  for (auto it = rendezvous_sends_.begin(); it != rendezvous_sends_.end();) {
    if (it->second->req->peer == peer) {
      it->second->req->fail(e);
      it = rendezvous_sends_.erase(it);
    } else {
      ++it;
    }
  }
}

namespace {

const char* qp_state_name(ibv_qp_state s) {
  switch (s) {
    case IBV_QPS_RESET: return "RESET";
    case IBV_QPS_INIT: return "INIT";
    case IBV_QPS_RTR: return "RTR";
    case IBV_QPS_RTS: return "RTS";
    case IBV_QPS_SQD: return "SQD";
    case IBV_QPS_SQE: return "SQE";
    case IBV_QPS_ERR: return "ERR";
    default: return "unknown";
  }
}

// The port's hardware counters that speak of trouble (retries, sequence errors, duplicates,
// NAKs, timeouts, errors), where nonzero: "name value, ...". Empty where the device exposes none.
std::string trouble_counters(const std::string& device, int port) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path("/sys/class/infiniband") / device / "ports" / std::to_string(port) / "hw_counters";
  std::error_code ec;
  std::vector<std::pair<std::string, unsigned long long>> found;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    static const char* const kWords[] = {"err", "retr", "seq", "dup", "timeout", "nak", "deferred", "drop"};
    bool trouble = false;
    for (const char* w : kWords) trouble = trouble || name.find(w) != std::string::npos;
    if (!trouble) continue;
    std::ifstream in(e.path());
    unsigned long long v = 0;
    if (in >> v && v != 0) found.emplace_back(name, v);
  }
  std::sort(found.begin(), found.end());
  std::string out;
  for (const auto& [name, v] : found) out += (out.empty() ? "" : ", ") + name + " " + std::to_string(v);
  return out;
}

}  // namespace

std::string VerbsTransport::connection_report(const std::vector<int>& ranks) const {
  std::string out;
  bool held = false;  // some connection in RTS holds work requests the device has not finished
  for (int r : ranks) {
    if (r < 0 || r >= size() || r == rank()) continue;
    const Peer& p = peers_[static_cast<size_t>(r)];
    if (!p.qp) continue;
    ibv_qp_attr attr{};
    ibv_qp_init_attr init{};
    std::string state = "state unknown";
    if (ibv_query_qp(p.qp.get(), &attr, IBV_QP_STATE, &init) == 0) {
      state = std::string("in ") + qp_state_name(attr.qp_state);
      held = held || (attr.qp_state == IBV_QPS_RTS && p.wr_in_flight > 0);
    }
    const std::string held_here =
        p.wr_in_flight == 0 && p.pending.empty()
            ? "nothing at the device or queued"
            : std::to_string(p.wr_in_flight) + " work request" + (p.wr_in_flight == 1 ? "" : "s") + " (" +
                  std::to_string(p.bytes_in_flight) + " bytes) at the device, " + std::to_string(p.pending.size()) +
                  " queued behind";
    out += (out.empty() ? "" : "; ") + std::string("to rank ") + std::to_string(r) + ": QP " +
           std::to_string(p.qp->qp_num) + " " + state + ", " + held_here + (p.failed ? ", connection failed" : "");
  }
  if (out.empty()) return out;
  out = "verbs " + sel_.device + ":" + std::to_string(sel_.port) + " " + out;
  if (held) {
    // RC either completes a work request or fails it once its retries run out; one that stays
    // at the device past that is the device's or driver's doing, not the peer's silence.
    char budget[96];
    std::snprintf(budget, sizeof budget, "%.2g s", 4.096e-6 * static_cast<double>(1ull << ib_timeout_) * (ib_retry_ + 1));
    out += std::string(" (work requests held past RC's retries, about ") +
           (ib_timeout_ == 0 ? std::string("unbounded at RDMACOLL_IB_TIMEOUT=0") : std::string(budget)) +
           " at RDMACOLL_IB_TIMEOUT=" + std::to_string(ib_timeout_) + " RDMACOLL_IB_RETRY_CNT=" +
           std::to_string(ib_retry_) + ", were neither acknowledged nor failed: the device or driver is stuck" +
           (ib_retry_ == 7 ? ", or soft-RoCE is retrying for ever, as it does at 7 (6 or less makes that an error)" : "") +
           ")";
  }
  const std::string counters = trouble_counters(sel_.device, sel_.port);
  if (!counters.empty()) out += "; device counters since it came up: " + counters;
  return out;
}

std::string VerbsTransport::port_down_note() const {
  ibv_port_attr attr{};
  if (ibv_query_port(ctx_.get(), static_cast<uint8_t>(sel_.port), &attr) != 0 || attr.state == IBV_PORT_ACTIVE) return "";
  return std::string("; port ") + sel_.device + ":" + std::to_string(sel_.port) + " is " +
         ibv_port_state_str(attr.state) + " (port error: its link is down or the device failed)";
}

void VerbsTransport::check_async_events() {
  std::vector<std::string> errs;
  {
    std::lock_guard lock(async_mu_);
    errs.swap(async_errors_);
    async_pending_ = false;
  }
  for (const auto& e : errs) {
    auto colon = e.find(':');
    std::string event = e.substr(0, colon);
    if (colon != std::string::npos) {
      int peer = peer_of_qp(static_cast<uint32_t>(std::stoul(e.substr(colon + 1))));
      if (peer >= 0)
        fail_peer(peer, std::make_exception_ptr(TransportError("async event " + event + " on the queue pair to rank " +
                                                              std::to_string(peer))));
    } else {
      auto ex = std::make_exception_ptr(TransportError("async event " + event + " on " + sel_.device + ":" +
                                                        std::to_string(sel_.port) + " (port down or device failed)"));
      for (int p = 0; p < size(); ++p)
        if (p != rank()) fail_peer(p, ex);
    }
  }
}

void VerbsTransport::wait_for_event(Deadline deadline) {
  // Arm, then poll once more: a completion that arrived before arming raises no event.
  if (int rc = ibv_req_notify_cq(cq_.get(), 0); rc != 0) verbs::check_rc(rc, "ibv_req_notify_cq");
  if (progress()) return;
  int ms = static_cast<int>(std::max<long long>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - bootstrap::Clock::now()).count()));
  pollfd fds[2] = {{channel_->fd, POLLIN, 0}, {async_notify_[0], POLLIN, 0}};
  if (poll(fds, 2, ms) > 0) {
    if (fds[1].revents) {  // a fatal async event: progress() fails the peers it concerns
      char drain[16];
      while (::read(async_notify_[0], drain, sizeof drain) > 0) {
      }
      check_async_events();
    }
    ibv_cq* cq = nullptr;
    void* ctx = nullptr;
    while (ibv_get_cq_event(channel_.get(), &cq, &ctx) == 0) ++unacked_cq_events_;
    if (unacked_cq_events_ >= 64) {
      ibv_ack_cq_events(cq_.get(), unacked_cq_events_);
      unacked_cq_events_ = 0;
    }
  }
}

}  // namespace rdmacoll::transport
