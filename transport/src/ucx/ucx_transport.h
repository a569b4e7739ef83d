// Private: the UCX backend of Transport.
//
// One UCP context (TAG | RMA, plus WAKEUP unless progress is pure polling), one worker
// (UCS_THREAD_MODE_SINGLE, progressed only by this thread) and one endpoint per rank,
// including this rank itself. UCX picks the protocols (eager, rendezvous, zero-copy) per
// message size and transport; rdmacoll maps its operations onto UCP calls:
//
//   send / recv            ucp_tag_send_nbx / ucp_tag_recv_nbx, tag = [user tag | source rank]
//                          (see ucx_tags.h: a receive matches exactly one peer)
//   write                  ucp_put_nbx into the peer's window (rkey from pack/unpack_window)
//   read                   ucp_get_nbx from the peer's window into the caller's buffer
//   write with immediate   put, ucp_worker_fence, then a 12-byte tagged notification on the
//                          internal tag space: the fence keeps it from overtaking the data
//   notification(peer)     a tagged receive of that notification
//
// Every *_nbx call has three outcomes (done at once, failed at once, a request); requests
// complete through callbacks, so progress() (ucp_worker_progress) alone completes them.
//
// Wire-up (RDMACOLL_UCX_WIREUP) is either by worker address exchanged through the store, or
// client-server through a ucp_listener per rank (the lower rank connects to the higher one),
// which is what works on soft-RoCE: see ucx_wireup.cc.
#pragma once

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bootstrap/auth.h"
#include "regcache.h"
#include "transport_impl.h"
#include "ucx/ucx.h"

namespace rdmacoll::transport {

enum class UcxWireup { Address, Sockaddr };
std::string_view to_string(UcxWireup w);

// What RDMACOLL_UCX_WIREUP=`setting` ("address" | "sockaddr" | "auto") means given UCX's own
// variables and the RDMA devices present (names in /sys/class/infiniband). auto picks sockaddr
// when UCX would drive a soft-RoCE device, whose UD transport (needed by address wire-up for
// rc_verbs) times out: UCX_NET_DEVICES names an rxe* device; or UCX_NET_DEVICES is unset/"all",
// UCX_TLS is unset/"all"/an exclusion list or names an RC transport (rc, rc_v, rc_verbs, rc_x,
// rc_mlx5, ib), and an rxe* device exists. Otherwise address. Throws ConfigError on a bad value.
UcxWireup choose_ucx_wireup(std::string_view setting, const std::optional<std::string>& ucx_tls,
                            const std::optional<std::string>& ucx_net_devices,
                            const std::vector<std::string>& rdma_devices);

// Whether UCX would drive an RDMA device (and so pin memory for its own buffers):
// UCX_NET_DEVICES names one of `rdma_devices`, or it is unset/"all" while RDMA devices exist and
// UCX_TLS is unset/"all"/an exclusion list or names an InfiniBand transport (rc*, ud*, dc*, ib).
bool ucx_uses_rdma(const std::optional<std::string>& ucx_tls, const std::optional<std::string>& ucx_net_devices,
                   const std::vector<std::string>& rdma_devices);

// UCX 1.13's RDMA transports pin tens of MiB of their own buffers per process, and when the
// locked-memory limit stops them they retry forever inside ucp_worker_progress (seen on rxe:
// 32 MiB hangs or aborts with three ranks, 64 MiB works). So below this limit, without
// CAP_IPC_LOCK, creating the transport fails at once with a ulimit hint instead.
constexpr uint64_t kUcxMinMemlock = uint64_t{64} << 20;

class UcxTransport final : public Transport {
 public:
  UcxTransport(bootstrap::World& world, const Options& options);
  ~UcxTransport() override;

  TransportInfo info() const override { return info_; }
  std::string describe() const override { return describe_; }
  Memory register_memory(void* addr, size_t length, unsigned access) override;
  CacheStats cache_stats() const override { return cache_->stats(); }
  Memory allocate_memory(size_t length, unsigned access) override;
  bool direct_writes(int peer) const override;
  void* map_window(const RemoteWindow& window) override;
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
  PeerCounters counters(int peer) const override;
  std::string connection_report(const std::vector<int>& peers) const override;

  // An operation in flight: one user Request made of one or two UCX requests (Parts).
  struct Op;
  struct Part;

 private:
  struct Peer {
    UcxTransport* transport = nullptr;
    int rank = -1;
    std::unique_ptr<ucx::Endpoint> ep;
    std::exception_ptr failed;  // set once its endpoint reported an error
    PeerCounters counters;
    bool direct_writes = false;  // its lanes put into remote memory without the peer's worker
  };

  // Wire-up (ucx_wireup.cc).
  void check_memlock() const;
  void connect(bootstrap::World& world);
  void connect_by_address(bootstrap::World& world, const std::string& prefix, bootstrap::Deadline deadline);
  void connect_by_sockaddr(bootstrap::World& world, const std::string& prefix, bootstrap::Deadline deadline);
  void accept_connections();
  void exchange_hellos(bootstrap::Deadline deadline, const std::vector<std::string>& where);
  ucp_ep_params_t ep_params(int peer);
  static void on_conn_request(ucp_conn_request_h request, void* arg);

  // Closes endpoints (newest first), the listener, and cancels what is still posted.
  void shutdown() noexcept;
  void say_goodbye();
  void abandon() override { abandoned_ = true; }

  // Operations (ucx_transport.cc).
  Op* new_op(int kind, int peer, const OpDesc& desc);
  Part* begin_part(Op* op);
  void end_part(Part* part, ucs_status_ptr_t sp);
  void part_done(Part* part, void* request, ucs_status_t status);
  void finish(Op* op);
  void settle(Op* op);  // finish's part: completes or fails the user's Request, and counts
  Request release(Op* op);
  Request failed_now(int peer, const OpDesc& desc);
  std::shared_ptr<Request::State> post_hello_recv(int peer);
  std::shared_ptr<Request::State> post_hello_send(int peer);
  void handle_failed_peers();
  std::exception_ptr op_error(const Op& op, ucs_status_t status) const;
  static ucp_request_param_t send_param(Part* part);
  static ucp_request_param_t recv_param(Part* part);
  static void on_send_done(void* request, ucs_status_t status, void* user_data);
  static void on_recv_done(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info, void* user_data);
  static void on_ep_error(void* arg, ucp_ep_h ep, ucs_status_t status);

  // Declaration order is teardown order in reverse: the context and worker go last.
  ucx::ContextPtr ctx_;
  ucx::WorkerPtr worker_;
  int efd_ = -1;  // the worker's event fd (WAKEUP only)
  UcxWireup wireup_ = UcxWireup::Address;
  bootstrap::auth::Key key_;                // the job token: signs the wire-up hellos
  std::vector<bootstrap::auth::Nonce> nonces_;  // each rank's wire-up nonce, from the store
  std::unique_ptr<RegCache> cache_;
  std::unique_ptr<ucx::Listener> listener_;
  std::vector<ucp_conn_request_h> conn_requests_;  // from on_conn_request, handled in progress
  bool accepting_ = false;                         // only during sockaddr wire-up
  std::vector<Peer> peers_;                        // sized once: callbacks hold &peers_[i]
  std::unique_ptr<ucx::Endpoint> self_accepted_;   // sockaddr: the server side of our own connection
  std::vector<int> newly_failed_;                  // peers whose receives still need failing
  // Operations in flight; an Op knows its index here, so finishing one is a swap with the last
  // (no allocation per operation, unlike a node-based map).
  std::vector<std::unique_ptr<Op>> ops_;
  // Finished records, reused by new_op: a small collective posts several operations per call.
  std::vector<std::unique_ptr<Op>> spare_ops_;
  StatePool<Request::State> states_;  // the Requests' states, reused
  uint64_t events_ = 0;  // callbacks run: progress() reports them as activity
  // Sends, writes and reads in flight. UCX signals the event fd for arrivals, not for these
  // completing (a put over shared memory may sit in a pending queue until progressed), so
  // wait_for_event() does not sleep while any is outstanding.
  size_t local_pending_ = 0;
  bool closing_ = false;
  bool abandoned_ = false;  // teardown force-closes: queued sends may point at freed memory
  TransportInfo info_;
  std::string describe_;
};

}  // namespace rdmacoll::transport
