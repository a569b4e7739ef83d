#include "ucx/ucx.h"

#include <arpa/inet.h>
#include <ucs/config/global_opts.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "rdmacoll/transport/ib_info.h"
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

ContextPtr create_context() { return create_context(UCP_FEATURE_TAG | UCP_FEATURE_RMA); }

bool tls_allows(const char* tls, bool (*matches)(std::string_view token)) {
  std::string_view t = tls == nullptr ? std::string_view{} : std::string_view(tls);
  if (t.empty() || t == "all") return true;
  const bool exclude = t.starts_with('^');
  if (exclude) t.remove_prefix(1);
  bool listed = false;
  while (!t.empty() && !listed) {
    const size_t comma = t.find(',');
    std::string_view token = t.substr(0, comma);
    t = comma == std::string_view::npos ? std::string_view{} : t.substr(comma + 1);
    token = token.substr(0, token.find(':'));
    listed = matches(token);
  }
  return exclude != listed;
}

bool names_rc(std::string_view token) { return token == "ib" || token.starts_with("rc"); }

bool names_tcp(std::string_view token) { return token == "tcp"; }

namespace {

// RC over verbs with UCX's defaults waits 1 s for a lost packet's ACK and keeps any number of
// RDMA READ bytes in flight. Soft-RoCE drops packets under deep queues, so a large transfer
// then crawls from timeout to timeout. Apply rdmacoll's own RC settings (RDMACOLL_IB_TIMEOUT,
// RDMACOLL_IB_RETRY_CNT, RDMACOLL_IB_MAX_INFLIGHT, RDMACOLL_IB_CHUNK) through UCX's environment
// variables, never overriding one the user set. (ucp_config_modify does not reach transport
// settings in UCX 1.13: it reports them as "invalid configurations".)
//
// Only where rc_verbs can be chosen at all (an RDMA device exists and UCX_TLS allows rc):
// elsewhere UCX would print "unused env variables" for them, on stdout, at every start.
bool rc_verbs_possible() { return tls_allows(std::getenv("UCX_TLS"), names_rc) && !ib::list_devices().empty(); }

void apply_rc_defaults() {
  if (!rc_verbs_possible()) return;
  auto set = [](const char* name, const std::string& value) { setenv(name, value.c_str(), /*overwrite=*/0); };
  double timeout_us = 4.096 * static_cast<double>(uint64_t{1} << *settings::get_int("RDMACOLL_IB_TIMEOUT"));
  set("UCX_RC_VERBS_TIMEOUT", std::to_string(static_cast<long long>(timeout_us)) + "us");
  set("UCX_RC_VERBS_RETRY_COUNT", std::to_string(*settings::get_int("RDMACOLL_IB_RETRY_CNT")));
  set("UCX_RC_VERBS_TX_NUM_GET_BYTES", std::to_string(*settings::get_int("RDMACOLL_IB_MAX_INFLIGHT")));
  set("UCX_RC_VERBS_MAX_GET_ZCOPY", std::to_string(*settings::get_int("RDMACOLL_IB_CHUNK")));
}

// Over TCP, UCX receives into segments of 64 KiB by default, and that also bounds its
// zero-copy messages (the receiver must hold a whole one): a rendezvous transfer of a 256 KiB
// chunk of a collective goes as four fragments, each its own header, system calls and copy.
// With 512 KiB receive segments a chunk is one fragment: allreduce busbw at 4 and 16 MiB over
// TCP loopback, 2 ranks, 2.1-2.7 and 1.6-1.9 GB/s against 1.4-1.8 and 1.3-1.4 with UCX's
// defaults (alternating runs, 2026-11-30). The send segment (8 KiB, the largest message UCX
// copies whole and sends eagerly) stays: 512 KiB send segments made messages up to that size go
// eagerly, which slowed the 4-rank pairwise exchanges behind a 100 Mbit/s link by 1.7x (an fp16
// allreduce of 4 MiB: 490 ms against 290); the receive segment alone leaves them as they were.
// Set unless the user set it, and only where UCX may use tcp (else it reports it unused).
void apply_tcp_defaults() {
  if (tls_allows(std::getenv("UCX_TLS"), names_tcp)) setenv("UCX_TCP_RX_SEG_SIZE", "512k", /*overwrite=*/0);
}

// Destroys the worker, then what was handed to free_after_worker (UCX may run callbacks on
// it during ucp_worker_destroy), then lets go of the context.
struct WorkerDeleter {
  ContextPtr ctx;
  std::vector<std::shared_ptr<void>> after;
  void operator()(ucp_worker_h w) {
    ucp_worker_destroy(w);
    after.clear();
    ctx.reset();
  }
};

}  // namespace

ContextPtr create_context(uint64_t features) {
  ucp_config_t* config = nullptr;
  apply_rc_defaults();
  apply_tcp_defaults();
  check(ucp_config_read(nullptr, nullptr, &config), "ucp_config_read", "check the UCX_* environment variables");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = features;
  ucp_context_h ctx = nullptr;
  ucs_status_t st = ucp_init(&params, config, &ctx);
  ucp_config_release(config);
  std::string call = "ucp_init(TAG|RMA";
  if (features & UCP_FEATURE_WAKEUP) call += "|WAKEUP";
  check(st, call + ")", "UCX_TLS may name transports this host lacks; `ucx_info -d` lists them");
  return ContextPtr(ctx, [](ucp_context_h c) { ucp_cleanup(c); });
}

WorkerPtr create_worker(const ContextPtr& ctx, std::optional<uint64_t> client_id) {
  ucp_worker_params_t params{};
  params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  params.thread_mode = UCS_THREAD_MODE_SINGLE;
  if (client_id) {
    params.field_mask |= UCP_WORKER_PARAM_FIELD_CLIENT_ID;
    params.client_id = *client_id;
  }
  ucp_worker_h w = nullptr;
  check(ucp_worker_create(ctx.get(), &params, &w), "ucp_worker_create");
  return WorkerPtr(w, WorkerDeleter{ctx, {}});
}

void free_after_worker(const WorkerPtr& worker, std::shared_ptr<void> keep) {
  auto* d = std::get_deleter<WorkerDeleter>(worker);
  if (d == nullptr) throw std::logic_error("free_after_worker: not a worker from create_worker");
  d->after.push_back(std::move(keep));
}

std::vector<uint8_t> worker_address(const WorkerPtr& worker) {
  ucp_address_t* addr = nullptr;
  size_t len = 0;
  check(ucp_worker_get_address(worker.get(), &addr, &len), "ucp_worker_get_address");
  std::vector<uint8_t> out(reinterpret_cast<uint8_t*>(addr), reinterpret_cast<uint8_t*>(addr) + len);
  ucp_worker_release_address(worker.get(), addr);
  return out;
}

namespace {
ucp_ep_params_t address_params(const std::vector<uint8_t>& remote_address) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  params.address = reinterpret_cast<const ucp_address_t*>(remote_address.data());
  return params;
}
}  // namespace

Endpoint::Endpoint(WorkerPtr worker, const std::vector<uint8_t>& remote_address, int peer_rank)
    : Endpoint(std::move(worker), address_params(remote_address), peer_rank,
               "check that UCX_TLS/UCX_NET_DEVICES leave a transport both ranks have (`ucx_info -d`); on "
               "soft-RoCE, address-based wire-up needs UD, which times out on rxe, so connect through a "
               "listener instead") {}

Endpoint::Endpoint(WorkerPtr worker, ucp_ep_params_t params, int peer_rank, const std::string& hint,
                   bool try_peer_errors)
    : worker_(std::move(worker)), peer_(peer_rank) {
  params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
  // Peer failure handling makes a dead peer fail requests instead of hanging them. UCX 1.13's
  // shared-memory transports cannot do it, so there we rely on our own deadlines alone. (Only
  // an address-based endpoint can retry: a failed ucp_ep_create consumes a conn_request.)
  const bool by_address = (params.field_mask & UCP_EP_PARAM_FIELD_REMOTE_ADDRESS) != 0;
  params.err_mode = try_peer_errors || !by_address ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  peer_errors_ = params.err_mode == UCP_ERR_HANDLING_MODE_PEER;
  ucs_status_t st;
  if (by_address && peer_errors_) {
    // A first try that may fail: UCX logs "no active messages transport ... no peer failure
    // handler" as an ERROR for it, which would alarm users for nothing. Quiet it for this call;
    // the retry below logs as usual.
    ucs_log_level_t& level = ucs_global_opts.log_component.log_level;
    const ucs_log_level_t saved = level;
    level = std::min(level, UCS_LOG_LEVEL_FATAL);
    st = ucp_ep_create(worker_.get(), &params, &ep_);
    level = saved;
  } else {
    st = ucp_ep_create(worker_.get(), &params, &ep_);
  }
  if (st == UCS_ERR_UNREACHABLE && by_address && peer_errors_) {
    RDMACOLL_DEBUG(kUcx, "no transport to rank %d supports peer failure handling; connecting without it", peer_rank);
    params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    peer_errors_ = false;
    st = ucp_ep_create(worker_.get(), &params, &ep_);
  }
  if (st != UCS_OK) ep_ = nullptr;
  check(st, "ucp_ep_create(peer rank " + std::to_string(peer_rank) + ")", hint);
}

Endpoint::~Endpoint() {
  Endpoint* self = this;
  close_all(worker_, {&self, 1}, 2.0);
}

ucs_status_ptr_t Endpoint::start_close(bool force) {
  if (ep_ == nullptr) return nullptr;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  // UCX closes an endpoint once: a flush that never finishes cannot be followed by a force.
  // Force is only allowed with peer error handling.
  param.flags = force && peer_errors_ ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t sp = ucp_ep_close_nbx(ep_, &param);
  ep_ = nullptr;
  if (UCS_PTR_IS_ERR(sp)) {
    RDMACOLL_DEBUG(kUcx, "closing the endpoint to rank %d: %s", peer_, ucs_status_string(UCS_PTR_STATUS(sp)));
    return nullptr;
  }
  return sp;
}

void close_all(const WorkerPtr& worker, std::span<Endpoint* const> endpoints, double seconds,
               const std::vector<bool>& force) {
  // Start every close first, so that peers closing towards each other all make progress.
  std::vector<std::pair<ucs_status_ptr_t, int>> pending;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (endpoints[i] == nullptr) continue;
    ucs_status_ptr_t sp = endpoints[i]->start_close(i < force.size() && force[i]);
    if (sp != nullptr) pending.emplace_back(sp, endpoints[i]->peer());
  }
  auto deadline = bootstrap::deadline_in(seconds);
  auto busy = [&] {
    for (const auto& [sp, peer] : pending)
      if (ucp_request_check_status(sp) == UCS_INPROGRESS) return true;
    return false;
  };
  while (busy() && bootstrap::Clock::now() < deadline) ucp_worker_progress(worker.get());
  for (const auto& [sp, peer] : pending) {
    // A flush that did not finish (the peer is gone, or not progressing): released here, the
    // endpoint itself goes with the worker (ucp_worker_destroy discards what is left).
    if (ucp_request_check_status(sp) == UCS_INPROGRESS)
      RDMACOLL_DEBUG(kUcx, "closing the endpoint to rank %d did not finish within %.1f s; abandoned", peer, seconds);
    ucp_request_free(sp);
  }
}

Listener::Listener(WorkerPtr worker, const std::string& ip, uint16_t port, ucp_listener_conn_callback_t on_conn,
                   void* arg)
    : worker_(std::move(worker)), ip_(ip) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1)
    throw TransportError("UCX listener: '" + ip + "' is not an IPv4 address (set RDMACOLL_UCX_LISTEN_ADDR)");
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&sa);
  params.sockaddr.addrlen = sizeof sa;
  params.conn_handler.cb = on_conn;
  params.conn_handler.arg = arg;
  check(ucp_listener_create(worker_.get(), &params, &listener_),
        "ucp_listener_create(" + ip + ":" + std::to_string(port) + ")",
        "the address must belong to an interface of this host that a UCX connection manager can use (rdmacm "
        "needs `modprobe rdma_ucm` and an RDMA device on that interface; tcp works on any); RDMACOLL_UCX_LISTEN_ADDR "
        "picks it");
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  ucs_status_t st = ucp_listener_query(listener_, &attr);
  if (st != UCS_OK) {
    ucp_listener_destroy(listener_);
    fail("ucp_listener_query", st);
  }
  port_ = ntohs(reinterpret_cast<const sockaddr_in*>(&attr.sockaddr)->sin_port);
}

Listener::~Listener() {
  if (listener_ != nullptr) ucp_listener_destroy(listener_);
}

void Listener::reject(ucp_conn_request_h request) const {
  ucs_status_t st = ucp_listener_reject(listener_, request);
  if (st != UCS_OK) RDMACOLL_WARN(kUcx, "ucp_listener_reject failed: %s", ucs_status_string(st));
}

std::vector<Lane> endpoint_lanes(ucp_ep_h ep) {
  char* text = nullptr;
  size_t size = 0;
  FILE* f = open_memstream(&text, &size);
  if (f == nullptr) return {};
  ucp_ep_print_info(ep, f);
  std::fclose(f);
  std::istringstream in(text ? std::string(text, size) : std::string());
  std::free(text);
  // Lines look like "#  lane[1]:  1:tcp/lo.0 md[1]  -> md[1]/tcp/sysdev[255] rma_bw#0 am am_bw#0 wireup".
  std::vector<Lane> out;
  std::string line;
  while (std::getline(in, line)) {
    auto lane = line.find("lane[");
    if (lane == std::string::npos) continue;
    std::istringstream words(line.substr(line.find(':', lane) + 1));
    std::string resource, word;
    words >> resource;
    if (resource == "cm") {  // "lane[2]: cm rdmacm": the connection manager of a client-server endpoint
      words >> word;
      out.push_back({"cm", word, {}});
      continue;
    }
    resource = resource.substr(resource.find(':') + 1);  // drop the resource index
    if (auto dot = resource.rfind('.'); dot != std::string::npos) resource.erase(dot);  // and the path index
    if (resource.empty()) continue;
    Lane l;
    auto slash = resource.find('/');
    l.transport = resource.substr(0, slash);
    if (slash != std::string::npos) l.device = resource.substr(slash + 1);
    bool after_arrow = false;
    while (words >> word) {
      if (word == "->") {
        after_arrow = true;
        words >> word;  // the remote md
        continue;
      }
      if (!after_arrow) continue;
      word = word.substr(0, word.find('#'));
      bool known = word == "am" || word == "rma" || word == "rma_bw" || word == "amo" || word == "tag";
      if (known && std::find(l.roles.begin(), l.roles.end(), word) == l.roles.end()) l.roles.push_back(word);
    }
    out.push_back(std::move(l));
  }
  return out;
}

bool puts_directly(const std::vector<Lane>& lanes) {
  static const char* const kDirect[] = {"rc_verbs", "rc_mlx5", "dc_mlx5", "sysv", "posix", "xpmem", "self"};
  return std::any_of(lanes.begin(), lanes.end(), [](const Lane& l) {
    return std::find(std::begin(kDirect), std::end(kDirect), l.transport) != std::end(kDirect);
  });
}

std::string to_string(const std::vector<Lane>& lanes) {
  std::string out;
  for (const Lane& l : lanes) {
    if (!out.empty()) out += ' ';
    if (l.transport == "cm") {
      out += "cm:" + l.device;
      continue;
    }
    std::string joined;
    for (const auto& r : l.roles) joined += (joined.empty() ? "" : ",") + r;
    out += l.transport + (l.device.empty() ? "" : "/" + l.device) + (joined.empty() ? "" : "(" + joined + ")");
  }
  return out;
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
