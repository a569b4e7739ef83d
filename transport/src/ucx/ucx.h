// Private: owning handles for UCP objects and a wrapper for the three outcomes of a *_nbx call
// (done at once, failed at once, or a request to progress). Nothing here may be included from
// a public header.
#pragma once

#include <ucp/api/ucp.h>

#include <memory>
#include <string>
#include <vector>

#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::ucx {

// Throws TransportError "CALL failed: ucs_status_string (status N); hint".
[[noreturn]] void fail(const std::string& call, ucs_status_t status, const std::string& hint = "");
void check(ucs_status_t status, const std::string& call, const std::string& hint = "");

using ContextPtr = std::shared_ptr<ucp_context>;
using WorkerPtr = std::shared_ptr<ucp_worker>;

// A UCP context with the tag and RMA features. UCX reads UCX_TLS / UCX_NET_DEVICES itself.
ContextPtr create_context();
WorkerPtr create_worker(const ContextPtr& ctx);
// The worker's address, for peers to connect to.
std::vector<uint8_t> worker_address(const WorkerPtr& worker);

// An endpoint; closing it flushes (bounded by a deadline) and then forces.
class Endpoint {
 public:
  Endpoint(WorkerPtr worker, const std::vector<uint8_t>& remote_address, int peer_rank);
  ~Endpoint();
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;
  ucp_ep_h get() const { return ep_; }
  int peer() const { return peer_; }

 private:
  WorkerPtr worker_;
  ucp_ep_h ep_ = nullptr;
  int peer_;
};

// Progresses `worker` until the *_nbx result `sp` completes or the deadline passes.
// A NULL `sp` means it completed at once; an error pointer throws; a request is freed here.
// `what` names the operation and peer for messages.
void wait_nbx(const WorkerPtr& worker, ucs_status_ptr_t sp, bootstrap::Deadline deadline, const std::string& what);

}  // namespace rdmacoll::ucx
