// Private: authentication of bootstrap messages with the job token.
//
// Every process of a job shares a secret, the job token (RDMACOLL_JOB_TOKEN; rdmacoll-run makes
// a fresh random one per job). Messages carry an HMAC-SHA256 tag keyed with it, so a process
// that does not know the token cannot get a message accepted, and cannot read a reply it could
// use: the store refuses it before it has parsed anything but the handshake.
//
// The tag covers a context as well as the message: which direction it travels, both ends'
// random nonces of this connection, and the message's sequence number on it. A message recorded
// on one connection therefore fails on any other (other nonces), and a message replayed,
// dropped or reordered within a connection fails too (other sequence number).
//
// Not protected against: anyone who can read the token (it is in the ranks' environment, which
// the same user and root can read through /proc); eavesdropping (messages are signed, not
// encrypted: the connection data they carry is not secret, and RDMA keys in it only reach
// memory registered as a window); denial of service by a process that floods the store with
// connections or keeps the port from rank 0.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rdmacoll::bootstrap::auth {

constexpr size_t kTagBytes = 32;    // HMAC-SHA256
constexpr size_t kNonceBytes = 16;  // per connection end
using Tag = std::array<uint8_t, kTagBytes>;
using Nonce = std::array<uint8_t, kNonceBytes>;

// The key every tag is made with. With no token the key is a fixed, public string: the tags
// then still catch corruption and a peer using a token where this process has none, but they
// authenticate nothing.
struct Key {
  std::string secret;
  bool from_token = false;
};
// The key for a token; the public key for an empty one.
Key key_of(const std::string& token);
// Logs, once per process, that a job of more than one rank runs without RDMACOLL_JOB_TOKEN.
void warn_without_token();

// Which way a message travels; part of what is signed, so a reply cannot pass as a request.
enum class Direction : uint8_t { ClientToServer = 1, ServerToClient = 2 };

// The context a tag binds a message to.
struct Context {
  Nonce server_nonce{};
  Nonce client_nonce{};
};

Tag tag(const Key& key, Direction dir, const Context& ctx, uint64_t seq, std::span<const uint8_t> message);
// Constant-time comparison (CRYPTO_memcmp); false when `got` is not kTagBytes long.
bool tag_equal(const Tag& want, std::span<const uint8_t> got);
// Appends tag(...) to `message`.
void seal(std::vector<uint8_t>& message, const Key& key, Direction dir, const Context& ctx, uint64_t seq);
// The message without its tag, or throws ProtocolError ("<what>: authentication failed ...")
// when the message is shorter than a tag or the tag does not match.
std::span<const uint8_t> open(std::span<const uint8_t> sealed, const Key& key, Direction dir, const Context& ctx,
                              uint64_t seq, const std::string& what);

// Cryptographically random bytes (OpenSSL's RAND_bytes). Throws TransportError if it fails.
Nonce random_nonce();
// A fresh token for a job: 32 random bytes as 64 hex digits.
std::string random_token();

}  // namespace rdmacoll::bootstrap::auth
