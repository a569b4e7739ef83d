// Private: the TCP store's messages, as pure functions over byte spans (what the server and the
// client send, what they accept), so that they can be unit-tested and fuzzed without sockets.
//
// A connection, and what travels on it (every frame is a u32 little-endian length, then that
// many bytes; every message starts with wire.h's header: magic "RDMC", version, type):
//
//   server                                   client
//     |-- ServerHello: nonce_s ---------------->|   not signed: no shared state yet
//     |<-- ClientHello: nonce_c, tag ------------|   tag: HMAC(token, c2s, nonce_s, nonce_c, seq 0, msg)
//     |-- Ok, tag ------------------------------>|   proves the server knows the token too
//     |<-- Set/Get/Wait/Add, tag ----------------|   seq 1, 2, ... in each direction
//     |-- Ok/Value/TimedOut/Int, tag ----------->|
//
// Before the ClientHello is verified a frame may be at most kMaxHandshakeFrame bytes, so a
// process without the token cannot make the server buffer more than that. A message that fails
// anywhere gets one unsigned Refused message naming why (so a rank with the wrong token is told
// so), and the connection is closed; the server goes on serving everyone else.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bootstrap/auth.h"
#include "bootstrap/socket.h"

namespace rdmacoll::bootstrap::proto {

enum Type : uint16_t {
  kSet = 1,
  kGet = 2,
  kWait = 3,
  kAdd = 4,
  kClientHello = 5,
  kOk = 100,
  kValue = 101,
  kTimedOut = 102,
  kInt = 103,
  kServerHello = 104,
  kRefused = 105,
};

constexpr size_t kMaxKey = 4096;
constexpr size_t kMaxKeys = 1 << 16;
constexpr size_t kMaxHandshakeFrame = 256;
constexpr size_t kMaxValue = net::kMaxFrame - kMaxKey - 64 - auth::kTagBytes;
constexpr size_t kMaxReason = 1024;
constexpr uint64_t kMaxWaitMs = 86400000;  // a day: longer waits are cut to this

// The length of the frame at the start of `in` when all of it has arrived (its payload is
// in[4, 4 + length)); nullopt while more bytes are needed. Throws ProtocolError naming `what`
// when the announced length exceeds `max`, before any of the payload is buffered.
std::optional<size_t> complete_frame(std::span<const uint8_t> in, size_t max, const std::string& what);

std::vector<uint8_t> server_hello(const auth::Nonce& server_nonce);
// The server's nonce; a Refused message throws ProtocolError with the server's reason.
auth::Nonce parse_server_hello(std::span<const uint8_t> message, const std::string& what);

// The client's first message, signed with sequence number 0.
std::vector<uint8_t> client_hello(const auth::Key& key, const auth::Nonce& server_nonce,
                                  const auth::Nonce& client_nonce);
// Checks a ClientHello; returns the connection's context. Throws ProtocolError (bad framing,
// version, or tag).
auth::Context accept_client_hello(std::span<const uint8_t> sealed, const auth::Key& key,
                                  const auth::Nonce& server_nonce, const std::string& what);

std::vector<uint8_t> refusal(const std::string& reason);
// Throws ProtocolError carrying the reason when `message` is a Refused message; else returns.
void throw_if_refused(std::span<const uint8_t> message, const std::string& what);

struct Request {
  Type op = kSet;
  std::vector<std::string> keys;  // one for Set, Get and Add
  std::vector<uint8_t> value;     // Set
  int64_t delta = 0;              // Add
  uint64_t timeout_ms = 0;        // Get and Wait, at most kMaxWaitMs
};
// An opened (tag already checked and removed) request. Throws ProtocolError.
Request parse_request(std::span<const uint8_t> message, const std::string& what);

struct Reply {
  Type type = kOk;
  std::vector<uint8_t> value;        // Value
  int64_t number = 0;                // Int
  std::vector<std::string> missing;  // TimedOut
};
// An opened reply. Throws ProtocolError.
Reply parse_reply(std::span<const uint8_t> message, const std::string& what);

}  // namespace rdmacoll::bootstrap::proto
