// Private: owning handles for verbs objects, and wrappers that know each verbs call's error
// convention. Nothing here may be included from a public header.
//
// Ownership: each handle is a smart pointer whose deleter holds the parent's handle, so a QP
// keeps its PD and CQs alive and a PD keeps its device context alive. Teardown therefore runs
// in reverse order of creation however the owners are destroyed. Deleters never throw; a
// failing destroy call is logged.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <memory>
#include <string>

#include "rdmacoll/transport/ib_info.h"

namespace rdmacoll::verbs {

using ContextPtr = std::shared_ptr<ibv_context>;
using PdPtr = std::shared_ptr<ibv_pd>;
using ChannelPtr = std::shared_ptr<ibv_comp_channel>;
using CqPtr = std::shared_ptr<ibv_cq>;
using MrPtr = std::shared_ptr<ibv_mr>;
using QpPtr = std::shared_ptr<ibv_qp>;

// Throws DeviceError "CALL(args) failed: strerror (errno N); hint".
[[noreturn]] void fail(const std::string& call, int err, const std::string& hint = "");
// For calls that return 0 or an errno value (older providers: -1 and errno).
void check_rc(int rc, const std::string& call, const std::string& hint = "");

ContextPtr open_device(const std::string& name);
PdPtr alloc_pd(const ContextPtr& ctx);
ChannelPtr create_comp_channel(const ContextPtr& ctx);
CqPtr create_cq(const ContextPtr& ctx, int cqe, const ChannelPtr& channel = nullptr);
// Registers [addr, addr+len). Failure messages carry the memlock hint.
MrPtr reg_mr(const PdPtr& pd, void* addr, size_t len, int access);

struct QpCaps {
  uint32_t max_send_wr = 64, max_recv_wr = 64;
  uint32_t max_send_sge = 1, max_recv_sge = 1;
  uint32_t max_inline_data = 64;
};
// Creates an RC QP; `caps` is updated with what the device actually granted.
QpPtr create_rc_qp(const PdPtr& pd, const CqPtr& send_cq, const CqPtr& recv_cq, QpCaps& caps);

// What a peer needs to connect an RC QP to ours. Sent over the bootstrap in wire.h's format.
struct RcEndpoint {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  std::array<uint8_t, 16> gid{};
  uint16_t lid = 0;
  uint8_t mtu = 0;  // enum ibv_mtu value of the sender's active MTU
};

// The RC state machine, each step with the explicit attribute mask the spec requires.
void qp_to_init(ibv_qp* qp, int port, int access);
// RTR needs the peer's endpoint. The path MTU is the smaller of ours and the peer's.
// `max_dest_rd_atomic`: RDMA READs the peer may have in flight against this QP (responder
// resources; at most the device's max_qp_rd_atom).
void qp_to_rtr(ibv_qp* qp, const RcEndpoint& remote, int port, int gid_index, ibv_mtu our_mtu,
               bool is_roce, int peer_rank, int max_dest_rd_atomic = 16);
// RTS: `timeout` is the ACK timeout exponent (4.096 us * 2^timeout), `retry_cnt` 0..7.
// `max_rd_atomic`: RDMA READs this QP keeps in flight (at most the device's
// max_qp_init_rd_atom and the peer's max_dest_rd_atomic).
void qp_to_rts(ibv_qp* qp, uint32_t psn, int timeout, int retry_cnt, int rnr_retry, int max_rd_atomic = 16);

ibv_mtu mtu_enum(int bytes);
int mtu_bytes(ibv_mtu mtu);
const char* opcode_name(ibv_wc_opcode op);

}  // namespace rdmacoll::verbs
