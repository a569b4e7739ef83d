#include "verbs/verbs.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "rdmacoll/error.h"
#include "rdmacoll/log.h"

namespace rdmacoll::verbs {
namespace {

std::string memlock_hint() {
  return "registered memory counts against the memlock limit: check `ulimit -l` (set it to "
         "unlimited, or raise memlock in /etc/security/limits.conf or the container's settings)";
}

// Logs instead of throwing: used in deleters.
void log_destroy(int rc, const char* call) {
  if (rc != 0)
    RDMACOLL_WARN(kNet, "%s failed during teardown: %s (errno %d)", call, std::strerror(rc < 0 ? errno : rc),
                  rc < 0 ? errno : rc);
}

}  // namespace

void fail(const std::string& call, int err, const std::string& hint) {
  std::string msg = call + " failed: " + std::strerror(err) + " (errno " + std::to_string(err) + ")";
  if (!hint.empty()) msg += "; " + hint;
  throw DeviceError(msg);
}

void check_rc(int rc, const std::string& call, const std::string& hint) {
  if (rc == 0) return;
  fail(call, rc > 0 ? rc : errno, hint);
}

ContextPtr open_device(const std::string& name) {
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  if (list == nullptr)
    fail("ibv_get_device_list()", errno, "is the RDMA stack loaded (ib_uverbs, a provider such as rdma_rxe)?");
  std::unique_ptr<ibv_device*, void (*)(ibv_device**)> guard(list, ibv_free_device_list);
  std::string names;
  for (int i = 0; i < num; ++i) {
    if (name == ibv_get_device_name(list[i])) {
      ibv_context* ctx = ibv_open_device(list[i]);
      if (ctx == nullptr) fail("ibv_open_device(" + name + ")", errno, "check permissions on /dev/infiniband/uverbs*");
      return ContextPtr(ctx, [](ibv_context* c) { log_destroy(ibv_close_device(c), "ibv_close_device"); });
    }
    names += std::string(names.empty() ? "" : ", ") + ibv_get_device_name(list[i]);
  }
  throw DeviceError("RDMA device '" + name + "' not found; devices present: " +
                    (names.empty() ? "none (no RDMA device on this host)" : names));
}

PdPtr alloc_pd(const ContextPtr& ctx) {
  ibv_pd* pd = ibv_alloc_pd(ctx.get());
  if (pd == nullptr) fail(std::string("ibv_alloc_pd(") + ctx->device->name + ")", errno);
  return PdPtr(pd, [ctx](ibv_pd* p) { log_destroy(ibv_dealloc_pd(p), "ibv_dealloc_pd"); });
}

ChannelPtr create_comp_channel(const ContextPtr& ctx) {
  ibv_comp_channel* ch = ibv_create_comp_channel(ctx.get());
  if (ch == nullptr) fail(std::string("ibv_create_comp_channel(") + ctx->device->name + ")", errno);
  return ChannelPtr(ch, [ctx](ibv_comp_channel* c) { log_destroy(ibv_destroy_comp_channel(c), "ibv_destroy_comp_channel"); });
}

CqPtr create_cq(const ContextPtr& ctx, int cqe, const ChannelPtr& channel) {
  ibv_cq* cq = ibv_create_cq(ctx.get(), cqe, nullptr, channel.get(), 0);
  if (cq == nullptr)
    fail(std::string("ibv_create_cq(") + ctx->device->name + ", cqe=" + std::to_string(cqe) + ")", errno,
         "the device's max_cqe may be lower; see rdmacoll-info");
  return CqPtr(cq, [ctx, channel](ibv_cq* c) { log_destroy(ibv_destroy_cq(c), "ibv_destroy_cq"); });
}

MrPtr reg_mr(const PdPtr& pd, void* addr, size_t len, int access) {
  ibv_mr* mr = ibv_reg_mr(pd.get(), addr, len, access);
  if (mr == nullptr) {
    int err = errno;
    char buf[160];
    std::snprintf(buf, sizeof buf, "ibv_reg_mr(addr=%p, length=%zu, access=0x%x)", addr, len, access);
    fail(buf, err, err == ENOMEM || err == EPERM || err == EAGAIN ? memlock_hint() : "");
  }
  return MrPtr(mr, [pd](ibv_mr* m) { log_destroy(ibv_dereg_mr(m), "ibv_dereg_mr"); });
}

QpPtr create_rc_qp(const PdPtr& pd, const CqPtr& send_cq, const CqPtr& recv_cq, QpCaps& caps) {
  ibv_qp_init_attr attr{};
  attr.send_cq = send_cq.get();
  attr.recv_cq = recv_cq.get();
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;
  attr.cap.max_send_wr = caps.max_send_wr;
  attr.cap.max_recv_wr = caps.max_recv_wr;
  attr.cap.max_send_sge = caps.max_send_sge;
  attr.cap.max_recv_sge = caps.max_recv_sge;
  attr.cap.max_inline_data = caps.max_inline_data;
  ibv_qp* qp = ibv_create_qp(pd.get(), &attr);
  if (qp == nullptr)
    fail("ibv_create_qp(RC, max_send_wr=" + std::to_string(caps.max_send_wr) +
             ", max_recv_wr=" + std::to_string(caps.max_recv_wr) +
             ", max_inline=" + std::to_string(caps.max_inline_data) + ")",
         errno, "the device may not support these queue sizes; see rdmacoll-info");
  caps.max_send_wr = attr.cap.max_send_wr;
  caps.max_recv_wr = attr.cap.max_recv_wr;
  caps.max_inline_data = attr.cap.max_inline_data;
  return QpPtr(qp, [pd, send_cq, recv_cq](ibv_qp* q) { log_destroy(ibv_destroy_qp(q), "ibv_destroy_qp"); });
}

void qp_to_init(ibv_qp* qp, int port, int access) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_INIT;
  a.pkey_index = 0;
  a.port_num = static_cast<uint8_t>(port);
  a.qp_access_flags = static_cast<unsigned>(access);
  check_rc(ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS),
           "ibv_modify_qp(qpn=" + std::to_string(qp->qp_num) + ", INIT, port=" + std::to_string(port) + ")");
}

void qp_to_rtr(ibv_qp* qp, const RcEndpoint& remote, int port, int gid_index, ibv_mtu our_mtu, bool is_roce,
               int peer_rank, int max_dest_rd_atomic) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTR;
  a.path_mtu = std::min(our_mtu, static_cast<ibv_mtu>(remote.mtu));
  a.dest_qp_num = remote.qpn;
  a.rq_psn = remote.psn;
  a.max_dest_rd_atomic = static_cast<uint8_t>(max_dest_rd_atomic);
  a.min_rnr_timer = 12;  // 0.64 ms
  a.ah_attr.port_num = static_cast<uint8_t>(port);
  a.ah_attr.dlid = remote.lid;
  if (is_roce || remote.lid == 0) {
    a.ah_attr.is_global = 1;
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(gid_index);
    a.ah_attr.grh.hop_limit = 64;
    std::memcpy(a.ah_attr.grh.dgid.raw, remote.gid.data(), 16);
  }
  int rc = ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                             IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
  check_rc(rc,
           "ibv_modify_qp(qpn=" + std::to_string(qp->qp_num) + ", RTR, peer rank " + std::to_string(peer_rank) +
               " qpn=" + std::to_string(remote.qpn) + ", gid_index=" + std::to_string(gid_index) +
               ", path_mtu=" + std::to_string(mtu_bytes(a.path_mtu)) +
               ", max_dest_rd_atomic=" + std::to_string(max_dest_rd_atomic) + ")",
           "check the GID index (RDMACOLL_IB_GID_INDEX; RoCEv2 needs a GID with an IP on an up interface) "
           "and that both sides use a compatible MTU");
}

void qp_to_rts(ibv_qp* qp, uint32_t psn, int timeout, int retry_cnt, int rnr_retry, int max_rd_atomic) {
  ibv_qp_attr a{};
  a.qp_state = IBV_QPS_RTS;
  a.sq_psn = psn;
  a.timeout = static_cast<uint8_t>(timeout);
  a.retry_cnt = static_cast<uint8_t>(retry_cnt);
  // 7: infinite RNR retries. Receivers repost their buffers as they progress, so a busy peer
  // is late, not wrong; the collective's deadline bounds the wait.
  a.rnr_retry = static_cast<uint8_t>(rnr_retry);
  a.max_rd_atomic = static_cast<uint8_t>(max_rd_atomic);
  check_rc(ibv_modify_qp(qp, &a,
                         IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                             IBV_QP_MAX_QP_RD_ATOMIC),
           "ibv_modify_qp(qpn=" + std::to_string(qp->qp_num) + ", RTS, timeout=" + std::to_string(timeout) +
               ", retry_cnt=" + std::to_string(retry_cnt) + ", rnr_retry=" + std::to_string(rnr_retry) +
               ", max_rd_atomic=" + std::to_string(max_rd_atomic) + ")",
           "RDMACOLL_IB_TIMEOUT must be 0-31, RDMACOLL_IB_RETRY_CNT and RDMACOLL_IB_RNR_RETRY 0-7");
}

ibv_mtu mtu_enum(int bytes) {
  switch (bytes) {
    case 256: return IBV_MTU_256;
    case 512: return IBV_MTU_512;
    case 1024: return IBV_MTU_1024;
    case 2048: return IBV_MTU_2048;
    case 4096: return IBV_MTU_4096;
  }
  throw std::invalid_argument("invalid IB MTU " + std::to_string(bytes));
}

int mtu_bytes(ibv_mtu mtu) { return 128 << static_cast<int>(mtu); }

const char* opcode_name(ibv_wc_opcode op) {
  switch (op) {
    case IBV_WC_SEND: return "SEND";
    case IBV_WC_RDMA_WRITE: return "RDMA_WRITE";
    case IBV_WC_RDMA_READ: return "RDMA_READ";
    case IBV_WC_COMP_SWAP: return "COMP_SWAP";
    case IBV_WC_FETCH_ADD: return "FETCH_ADD";
    case IBV_WC_BIND_MW: return "BIND_MW";
    case IBV_WC_RECV: return "RECV";
    case IBV_WC_RECV_RDMA_WITH_IMM: return "RECV_RDMA_WITH_IMM";
    default: return "UNKNOWN";
  }
}

}  // namespace rdmacoll::verbs
