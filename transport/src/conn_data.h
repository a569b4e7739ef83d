// Private: the connection data ranks exchange (through the authenticated store, or, for the UCX
// wire-up hello, over a fresh UCX endpoint), as pure encode/decode functions over byte spans so
// that they can be unit-tested and fuzzed without a device. A decode checks every field it can
// without the transport (sizes, world size, who it claims to come from, access bits, ranges
// that wrap) and throws ProtocolError naming the message and the peer.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bootstrap/auth.h"

namespace rdmacoll::transport::conn {

using Nonce = bootstrap::auth::Nonce;

// wire.h message types of the connection data (the store's own are in bootstrap/store_proto.h).
enum Type : uint16_t {
  kVerbsConnect = 0x10,
  kVerbsWindow = 0x11,
  kUcxAddress = 0x20,
  kUcxListen = 0x21,
  kUcxHello = 0x22,
  kUcxWindow = 0x23,
};

constexpr size_t kMaxUcxAddress = 1 << 20;  // a UCX worker address (a few hundred bytes in practice)
constexpr size_t kMaxRkey = 1 << 20;         // a packed UCX rkey
constexpr size_t kMaxIp = 64;
constexpr uint32_t kMaxWorld = 1 << 24;

// Verbs: one rank's QPs, one per peer (0 for itself), and what its port is.
struct VerbsConnect {
  uint32_t header_size = 0;  // sizeof the verbs transport's message header: builds must agree
  uint16_t lid = 0;
  uint8_t mtu = 0;
  uint8_t dest_rd_atomic = 0;  // RDMA READs its QPs accept as responder
  std::array<uint8_t, 16> gid{};
  std::vector<uint32_t> qpn, psn;  // indexed by peer rank
};
std::vector<uint8_t> encode(const VerbsConnect& c);
// `world`: the reader's world size, which the message must match.
VerbsConnect decode_verbs_connect(std::span<const uint8_t> b, int from, int world, uint32_t header_size);

// A window's description, as pack_window makes it. Verbs carries a 32-bit rkey, UCX a packed one.
struct Window {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t access = 0;  // kRemoteWrite | kRemoteRead, nothing else
  uint32_t rkey = 0;
  std::vector<uint8_t> packed_rkey;
};
std::vector<uint8_t> encode_verbs_window(const Window& w);
std::vector<uint8_t> encode_ucx_window(const Window& w);
Window decode_verbs_window(std::span<const uint8_t> b, int from);
Window decode_ucx_window(std::span<const uint8_t> b, int from);

// UCX address wire-up: a rank's worker address, and the nonce its peers' hellos must sign.
struct UcxAddress {
  uint32_t rank = 0, world = 0;
  Nonce nonce{};
  std::vector<uint8_t> address;
};
std::vector<uint8_t> encode(const UcxAddress& a);
UcxAddress decode_ucx_address(std::span<const uint8_t> b, int from, int world);

// UCX sockaddr wire-up: where a rank listens, and the nonce its peers' hellos must sign.
struct UcxListen {
  uint32_t rank = 0, world = 0;
  Nonce nonce{};
  std::string ip;
  uint16_t port = 0;
};
std::vector<uint8_t> encode(const UcxListen& l);
UcxListen decode_ucx_listen(std::span<const uint8_t> b, int from, int world);

// The message type a published UCX wire-up message has (to tell the two modes apart), or
// throws ProtocolError when it has no valid header.
uint16_t peek_type(std::span<const uint8_t> b, const std::string& what);

// The UCX wire-up hello, the first message on a new endpoint: the sender's rank, the receiver's,
// the world size, signed with the job token over both ranks' nonces (which each published through
// the authenticated store). A process without the token that connects to a rank's listener
// cannot pass for a rank, and a hello recorded in another job or transport does not check out.
struct UcxHello {
  uint32_t from = 0, to = 0, world = 0;
  Nonce from_nonce{}, to_nonce{};
};
std::vector<uint8_t> encode_ucx_hello(const bootstrap::auth::Key& key, const UcxHello& h);
// Throws ProtocolError when the hello is not `expected`, or its tag does not check out.
void decode_ucx_hello(std::span<const uint8_t> b, const bootstrap::auth::Key& key, const UcxHello& expected);
constexpr size_t kUcxHelloBytes = 8 + 12 + bootstrap::auth::kTagBytes;

}  // namespace rdmacoll::transport::conn
