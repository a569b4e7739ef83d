// Private: owning handles for UCP objects and a wrapper for the three outcomes of a *_nbx call
// (done at once, failed at once, or a request to progress). Nothing here may be included from
// a public header.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::ucx {

// Throws TransportError "CALL failed: ucs_status_string (status N); hint".
[[noreturn]] void fail(const std::string& call, ucs_status_t status, const std::string& hint = "");
void check(ucs_status_t status, const std::string& call, const std::string& hint = "");

using ContextPtr = std::shared_ptr<ucp_context>;
using WorkerPtr = std::shared_ptr<ucp_worker>;

// A UCP context with the tag and RMA features. UCX reads UCX_TLS / UCX_NET_DEVICES itself.
// Whether UCX_TLS (as `tls`: null or empty when unset) lets UCX use a transport named by a
// token that `matches` accepts: unset, empty or "all": yes; an exclusion list ("^a,b"): yes
// unless a listed token matches; a list: yes if a listed token matches. A token's ":aux"
// suffix is ignored.
bool tls_allows(const char* tls, bool (*matches)(std::string_view token));
// The tokens that name rc over verbs: "rc", "rc_verbs", "rc_v", ... and "ib" (every IB transport).
bool names_rc(std::string_view token);
bool names_tcp(std::string_view token);

ContextPtr create_context();
// The same with any UCP_FEATURE_* set (e.g. plus UCP_FEATURE_WAKEUP to sleep on the worker).
ContextPtr create_context(uint64_t features);
// A single-threaded worker. `client_id` is what a listener's conn_request reports for
// endpoints this worker connects with UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID.
WorkerPtr create_worker(const ContextPtr& ctx, std::optional<uint64_t> client_id = std::nullopt);
// The worker's address, for peers to connect to.
std::vector<uint8_t> worker_address(const WorkerPtr& worker);
// Keeps `keep` alive until the worker is destroyed (by its last owner), then frees it: for
// records that UCX callbacks may still touch while ucp_worker_destroy runs.
void free_after_worker(const WorkerPtr& worker, std::shared_ptr<void> keep);

// An endpoint. Closing flushes it (bounded by a deadline; see close_all), or forces it once
// its peer failed.
class Endpoint {
 public:
  Endpoint(WorkerPtr worker, const std::vector<uint8_t>& remote_address, int peer_rank);
  // From prepared parameters: one of REMOTE_ADDRESS, SOCK_ADDR or CONN_REQUEST, plus anything
  // else the caller sets (error handler, flags). Peer error handling is requested; an
  // address-based endpoint falls back to none where no transport supports it (shared memory).
  // `hint` is appended to the error message when creation fails. With `try_peer_errors`
  // false an address-based endpoint goes straight to no error handling (the caller already
  // learned that the transports lack it; each failed attempt makes UCX log an error).
  Endpoint(WorkerPtr worker, ucp_ep_params_t params, int peer_rank, const std::string& hint,
           bool try_peer_errors = true);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  ucp_ep_h get() const { return ep_; }
  int peer() const { return peer_; }
  // Starts closing (flush: posted operations complete first; force: discard them, only with
  // peer error handling) and returns the request to wait for, or nullptr if already done.
  // Afterwards get() is null. The destructor closes an endpoint still open (flush, up to 2 s).
  ucs_status_ptr_t start_close(bool force);
  // Whether peer failure handling is on (off only after the fallback above).
  bool handles_peer_failure() const { return peer_errors_; }
  // Forgets the endpoint without closing it: ucp_worker_destroy discards it and what is queued
  // on it, without sending anything (closing would progress the worker, which sends).
  void abandon() { ep_ = nullptr; }

 private:
  WorkerPtr worker_;
  ucp_ep_h ep_ = nullptr;
  int peer_;
  bool peer_errors_ = true;
};

// Closes endpoints together: starts every close (force where `force[i]`), then progresses
// until all finish or `seconds` pass; a close still running then is abandoned (released; the
// endpoint is discarded with the worker). Null entries are skipped.
void close_all(const WorkerPtr& worker, std::span<Endpoint* const> endpoints, double seconds,
               const std::vector<bool>& force = {});

// A listener for client-server connection establishment on ip:port (port 0 picks a free
// one). Connection requests go to `on_conn(conn_request, arg)` from ucp_worker_progress.
class Listener {
 public:
  Listener(WorkerPtr worker, const std::string& ip, uint16_t port, ucp_listener_conn_callback_t on_conn, void* arg);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  uint16_t port() const { return port_; }
  const std::string& ip() const { return ip_; }
  // Turns a connection request down (the client's endpoint then fails).
  void reject(ucp_conn_request_h request) const;

 private:
  WorkerPtr worker_;
  ucp_listener_h listener_ = nullptr;
  std::string ip_;
  uint16_t port_ = 0;
};

// One lane of an endpoint, from ucp_ep_print_info: transport "rc_verbs", device "rxe0:1",
// roles "am", "rma_bw", ...; a connection manager lane has transport "cm" (device "rdmacm").
struct Lane {
  std::string transport, device;
  std::vector<std::string> roles;
};
// Empty if UCX prints something this parser does not understand.
std::vector<Lane> endpoint_lanes(ucp_ep_h ep);
// Whether puts over these lanes reach remote memory without the remote worker: one of them is
// an RDMA transport or a shared-memory one that maps the target (memory UCX allocated). Over
// tcp (and ud) UCX emulates puts with active messages the target copies in.
bool puts_directly(const std::vector<Lane>& lanes);
// The lanes as text, e.g. "rc_verbs/rxe0:1(am,rma) cm:rdmacm".
std::string to_string(const std::vector<Lane>& lanes);

// Progresses `worker` until the *_nbx result `sp` completes or the deadline passes.
// A NULL `sp` means it completed at once; an error pointer throws; a request is freed here.
// `what` names the operation and peer for messages.
void wait_nbx(const WorkerPtr& worker, ucs_status_ptr_t sp, bootstrap::Deadline deadline, const std::string& what);

}  // namespace rdmacoll::ucx
