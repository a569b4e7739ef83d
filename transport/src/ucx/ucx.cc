#include "ucx/ucx.h"

#include "rdmacoll/error.h"
#include "rdmacoll/log.h"

namespace rdmacoll::ucx {

void fail(const std::string& call, ucs_status_t status, const std::string& hint) {
  std::string msg = call + " failed: " + ucs_status_string(status) + " (status " + std::to_string(status) + ")";
  if (!hint.empty()) msg += "; " + hint;
  throw TransportError(msg);
}

void check(ucs_status_t status, const std::string& call, const std::string& hint) {
  if (status != UCS_OK) fail(call, status, hint);
}

ContextPtr create_context() {
  ucp_config_t* config = nullptr;
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read", "check the UCX_* environment variables");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_RMA;
  ucp_context_h ctx = nullptr;
  ucs_status_t st = ucp_init(&params, config, &ctx);
  ucp_config_release(config);
  check(st, "ucp_init(TAG|RMA)", "UCX_TLS may name transports this host lacks; `ucx_info -d` lists them");
  return ContextPtr(ctx, [](ucp_context_h c) { ucp_cleanup(c); });
}

WorkerPtr create_worker(const ContextPtr& ctx) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  ucp_worker_h w = nullptr;
  check(ucp_worker_create(ctx.get(), &params, &w), "ucp_worker_create");
  return WorkerPtr(w, [ctx](ucp_worker_h p) { ucp_worker_destroy(p); });
}

std::vector<uint8_t> worker_address(const WorkerPtr& worker) {
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  check(ucp_worker_get_address(worker.get(), &addr, &len), "ucp_worker_get_address");
  std::vector<uint8_t> out(reinterpret_cast<uint8_t*>(addr), reinterpret_cast<uint8_t*>(addr) + len);
  ucp_worker_release_address(worker.get(), addr);
  return out;
}

Endpoint::Endpoint(WorkerPtr worker, const std::vector<uint8_t>& remote_address, int peer_rank)
    : worker_(std::move(worker)), peer_(peer_rank) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  params.address = reinterpret_cast<const ucp_address_t*>(remote_address.data());
  // Peer failure handling makes a dead peer fail requests instead of hanging them. UCX 1.13's
  // shared-memory transports cannot do it, so there we rely on our own deadlines alone.
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ucs_status_t st = ucp_ep_create(worker_.get(), &params, &ep_);
  if (st == UCS_ERR_UNREACHABLE) {
    RDMACOLL_DEBUG(kUcx, "no transport to rank %d supports peer failure handling; connecting without it", peer_rank);
    params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    st = ucp_ep_create(worker_.get(), &params, &ep_);
  }
  check(st, "ucp_ep_create(peer rank " + std::to_string(peer_rank) + ")",
        "check that UCX_TLS/UCX_NET_DEVICES leave a transport both ranks have (`ucx_info -d`); on soft-RoCE, "
        "address-based wire-up needs UD, which times out on rxe, so connect through a listener instead");
}

Endpoint::~Endpoint() {
  if (ep_ == nullptr) return;
  // Flush first, so sends already posted are delivered; if that does not finish in time (the
  // peer is gone), force the close. Destructors never throw.
  for (uint32_t flags : {0u, static_cast<uint32_t>(UCP_EP_CLOSE_FLAG_FORCE)}) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = flags;
    ucs_status_ptr_t sp = ucp_ep_close_nbx(ep_, &param);
    if (sp == nullptr) return;
    if (UCS_PTR_IS_ERR(sp)) continue;
    auto deadline = bootstrap::deadline_in(flags == 0 ? 2.0 : 1.0);
    while (ucp_request_check_status(sp) == UCS_INPROGRESS && bootstrap::Clock::now() < deadline)
      ucp_worker_progress(worker_.get());
    bool done = ucp_request_check_status(sp) != UCS_INPROGRESS;
    ucp_request_free(sp);
    if (done) return;
    RDMACOLL_DEBUG(kUcx, "closing the endpoint to rank %d did not finish in time", peer_);
  }
}

void wait_nbx(const WorkerPtr& worker, ucs_status_ptr_t sp, bootstrap::Deadline deadline, const std::string& what) {
  if (sp == nullptr) return;  // completed in place
  if (UCS_PTR_IS_ERR(sp)) fail(what, UCS_PTR_STATUS(sp));
  ucs_status_t st;
  while ((st = ucp_request_check_status(sp)) == UCS_INPROGRESS) {
    ucp_worker_progress(worker.get());
    if (bootstrap::Clock::now() > deadline) {
      ucp_request_cancel(worker.get(), sp);
      while (ucp_request_check_status(sp) == UCS_INPROGRESS) ucp_worker_progress(worker.get());
      ucp_request_free(sp);
      throw TimeoutError(what + " did not complete before the deadline (RDMACOLL_TIMEOUT)");
    }
  }
  ucp_request_free(sp);
  check(st, what);
}

}  // namespace rdmacoll::ucx
