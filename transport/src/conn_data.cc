#include "conn_data.h"

#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"
#include "wire.h"

namespace rdmacoll::transport::conn {
namespace {

std::string rank_s(int r) { return "rank " + std::to_string(r); }

void expect_type(wire::Reader& r, uint16_t type, const std::string& what) {
  uint16_t got = r.header();
  if (got != type)
    throw ProtocolError(what + ": message type " + std::to_string(got) + ", expected " + std::to_string(type) +
                        " (do all ranks use the same RDMACOLL_TRANSPORT and RDMACOLL_UCX_WIREUP?)");
}

void expect_rank(uint32_t rank, uint32_t world, int from, int expected_world, const std::string& what) {
  if (rank != static_cast<uint32_t>(from) || world != static_cast<uint32_t>(expected_world))
    throw ProtocolError(what + " claims rank " + std::to_string(rank) + " of " + std::to_string(world) + ", expected " +
                        std::to_string(from) + " of " + std::to_string(expected_world));
}

Window decode_window(wire::Reader& r, const std::string& what) {
  Window w;
  w.addr = r.u64();
  w.length = r.u64();
  w.access = r.u32();
  if (w.length == 0 || w.addr + w.length < w.addr)
    throw ProtocolError(what + ": window of " + std::to_string(w.length) + " bytes at " + std::to_string(w.addr) +
                        " is empty or wraps around");
  if (w.access == 0 || (w.access & ~unsigned{kRemoteWrite | kRemoteRead}) != 0)
    throw ProtocolError(what + ": window access bits " + std::to_string(w.access) + " are not kRemoteWrite/kRemoteRead");
  return w;
}

}  // namespace

std::vector<uint8_t> encode(const VerbsConnect& c) {
  wire::Writer w;
  w.header(kVerbsConnect).u32(c.header_size).u16(c.lid).u8(c.mtu).u8(c.dest_rd_atomic);
  w.raw(c.gid.data(), c.gid.size()).u32(static_cast<uint32_t>(c.qpn.size()));
  for (size_t p = 0; p < c.qpn.size(); ++p) w.u32(c.qpn[p]).u32(c.psn[p]);
  return std::move(w.data());
}

VerbsConnect decode_verbs_connect(std::span<const uint8_t> b, int from, int world, uint32_t header_size) {
  const std::string what = "verbs connection data from " + rank_s(from);
  wire::Reader r(b, what);
  expect_type(r, kVerbsConnect, what);
  VerbsConnect c;
  c.header_size = r.u32();
  if (c.header_size != header_size)
    throw ProtocolError(what + ": an incompatible rdmacoll build (message header of " + std::to_string(c.header_size) +
                        " bytes, this build's is " + std::to_string(header_size) + ")");
  c.lid = r.u16();
  c.mtu = r.u8();
  c.dest_rd_atomic = r.u8();
  if (c.dest_rd_atomic < 1) throw ProtocolError(what + ": that rank accepts no RDMA READ on its queue pairs");
  r.raw(c.gid.data(), c.gid.size());
  uint32_t n = r.u32();
  if (n != static_cast<uint32_t>(world))
    throw ProtocolError(what + ": world size " + std::to_string(n) + ", this rank's is " + std::to_string(world));
  if (r.remaining() != size_t{n} * 8) throw ProtocolError(what + ": " + std::to_string(r.remaining()) +
                                                          " bytes of queue pairs for " + std::to_string(n) + " ranks");
  for (uint32_t q = 0; q < n; ++q) c.qpn.push_back(r.u32()), c.psn.push_back(r.u32());
  r.expect_end();
  return c;
}

std::vector<uint8_t> encode_verbs_window(const Window& win) {
  wire::Writer w;
  w.header(kVerbsWindow).u64(win.addr).u64(win.length).u32(win.access).u32(win.rkey);
  return std::move(w.data());
}

std::vector<uint8_t> encode_ucx_window(const Window& win) {
  wire::Writer w;
  w.header(kUcxWindow).u64(win.addr).u64(win.length).u32(win.access).bytes(win.packed_rkey);
  return std::move(w.data());
}

Window decode_verbs_window(std::span<const uint8_t> b, int from) {
  const std::string what = "verbs window description from " + rank_s(from);
  wire::Reader r(b, what);
  expect_type(r, kVerbsWindow, what);
  Window w = decode_window(r, what);
  w.rkey = r.u32();
  r.expect_end();
  return w;
}

Window decode_ucx_window(std::span<const uint8_t> b, int from) {
  const std::string what = "UCX window description from " + rank_s(from);
  wire::Reader r(b, what);
  expect_type(r, kUcxWindow, what);
  Window w = decode_window(r, what);
  auto rkey = r.bytes(kMaxRkey);
  w.packed_rkey.assign(rkey.begin(), rkey.end());
  r.expect_end();
  return w;
}

std::vector<uint8_t> encode(const UcxAddress& a) {
  wire::Writer w;
  w.header(kUcxAddress).u32(a.rank).u32(a.world).raw(a.nonce.data(), a.nonce.size()).bytes(a.address);
  return std::move(w.data());
}

UcxAddress decode_ucx_address(std::span<const uint8_t> b, int from, int world) {
  const std::string what = "UCX worker address of " + rank_s(from);
  wire::Reader r(b, what);
  expect_type(r, kUcxAddress, what);
  UcxAddress a;
  a.rank = r.u32();
  a.world = r.u32();
  expect_rank(a.rank, a.world, from, world, what);
  r.raw(a.nonce.data(), a.nonce.size());
  auto addr = r.bytes(kMaxUcxAddress);
  if (addr.empty()) throw ProtocolError(what + ": empty worker address");
  a.address.assign(addr.begin(), addr.end());
  r.expect_end();
  return a;
}

std::vector<uint8_t> encode(const UcxListen& l) {
  wire::Writer w;
  w.header(kUcxListen).u32(l.rank).u32(l.world).raw(l.nonce.data(), l.nonce.size()).str(l.ip).u16(l.port);
  return std::move(w.data());
}

UcxListen decode_ucx_listen(std::span<const uint8_t> b, int from, int world) {
  const std::string what = "UCX listener address of " + rank_s(from);
  wire::Reader r(b, what);
  expect_type(r, kUcxListen, what);
  UcxListen l;
  l.rank = r.u32();
  l.world = r.u32();
  expect_rank(l.rank, l.world, from, world, what);
  r.raw(l.nonce.data(), l.nonce.size());
  l.ip = r.str(kMaxIp);
  l.port = r.u16();
  r.expect_end();
  if (l.port == 0) throw ProtocolError(what + ": port 0");
  return l;
}

uint16_t peek_type(std::span<const uint8_t> b, const std::string& what) {
  wire::Reader r(b, what);
  return r.header();
}

std::vector<uint8_t> encode_ucx_hello(const bootstrap::auth::Key& key, const UcxHello& h) {
  wire::Writer w;
  w.header(kUcxHello).u32(h.from).u32(h.to).u32(h.world);
  // The receiver's nonce as the "server's": the hello travels towards the rank that published it.
  bootstrap::auth::seal(w.data(), key, bootstrap::auth::Direction::ClientToServer, {h.to_nonce, h.from_nonce}, 0);
  return std::move(w.data());
}

void decode_ucx_hello(std::span<const uint8_t> b, const bootstrap::auth::Key& key, const UcxHello& expected) {
  const std::string what = "UCX wire-up hello on rank " + std::to_string(expected.from) + "'s tag";
  auto message = bootstrap::auth::open(b, key, bootstrap::auth::Direction::ClientToServer,
                                       {expected.to_nonce, expected.from_nonce}, 0, what);
  wire::Reader r(message, what);
  expect_type(r, kUcxHello, what);
  uint32_t from = r.u32(), to = r.u32(), world = r.u32();
  r.expect_end();
  if (to != expected.to) throw ProtocolError(what + " is addressed to rank " + std::to_string(to));
  expect_rank(from, world, static_cast<int>(expected.from), static_cast<int>(expected.world), what);
}

}  // namespace rdmacoll::transport::conn
