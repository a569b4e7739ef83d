#include "bootstrap/auth.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <atomic>
#include <memory>

#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::bootstrap::auth {
namespace {

// Public, so it authenticates nothing; see Key.
constexpr const char* kPublicKey = "rdmacoll: no RDMACOLL_JOB_TOKEN";

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

struct MacDeleter {
  void operator()(EVP_MAC* m) const { EVP_MAC_free(m); }
  void operator()(EVP_MAC_CTX* c) const { EVP_MAC_CTX_free(c); }
};

EVP_MAC* hmac_algorithm() {
  // Fetched once; EVP_MAC objects are reference counted and safe to share between threads.
  static std::unique_ptr<EVP_MAC, MacDeleter> mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  if (!mac) throw TransportError("OpenSSL has no HMAC: " + openssl_error());
  return mac.get();
}

}  // namespace

Key key_of(const std::string& token) {
  if (token.empty()) return Key{kPublicKey, false};
  return Key{token, true};
}

void warn_without_token() {
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    RDMACOLL_WARN(kBoot,
                    "RDMACOLL_JOB_TOKEN is not set: the rendezvous is not authenticated, and any process that can "
                    "reach the store's address can join or disturb this job. rdmacoll-run sets a token itself; "
                    "under mpirun/srun/torchrun export the same random token to every rank "
                  "(RDMACOLL_JOB_TOKEN=$(openssl rand -hex 32))");
}

Tag tag(const Key& key, Direction dir, const Context& ctx, uint64_t seq, std::span<const uint8_t> message) {
  std::unique_ptr<EVP_MAC_CTX, MacDeleter> c(EVP_MAC_CTX_new(hmac_algorithm()));
  if (!c) throw TransportError("EVP_MAC_CTX_new: " + openssl_error());
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  // What is signed: direction, the two nonces, the sequence number (8 bytes, little-endian), then
  // the message. Every part before the message has a fixed size, so no two contexts and
  // messages concatenate to the same bytes.
  uint8_t head[1 + 2 * kNonceBytes + 8];
  head[0] = static_cast<uint8_t>(dir);
  std::copy(ctx.server_nonce.begin(), ctx.server_nonce.end(), head + 1);
  std::copy(ctx.client_nonce.begin(), ctx.client_nonce.end(), head + 1 + kNonceBytes);
  for (int i = 0; i < 8; ++i) head[1 + 2 * kNonceBytes + i] = static_cast<uint8_t>(seq >> (8 * i));
  Tag out{};
  size_t n = 0;
  if (EVP_MAC_init(c.get(), reinterpret_cast<const unsigned char*>(key.secret.data()), key.secret.size(), params) != 1 ||
      EVP_MAC_update(c.get(), head, sizeof head) != 1 ||
      (!message.empty() && EVP_MAC_update(c.get(), message.data(), message.size()) != 1) ||
      EVP_MAC_final(c.get(), out.data(), &n, out.size()) != 1 || n != out.size())
    throw TransportError("HMAC-SHA256 failed: " + openssl_error());
  return out;
}

bool tag_equal(const Tag& want, std::span<const uint8_t> got) {
  return got.size() == want.size() && CRYPTO_memcmp(want.data(), got.data(), want.size()) == 0;
}

void seal(std::vector<uint8_t>& message, const Key& key, Direction dir, const Context& ctx, uint64_t seq) {
  Tag t = tag(key, dir, ctx, seq, message);
  message.insert(message.end(), t.begin(), t.end());
}

std::span<const uint8_t> open(std::span<const uint8_t> sealed, const Key& key, Direction dir, const Context& ctx,
                              uint64_t seq, const std::string& what) {
  if (sealed.size() < kTagBytes)
    throw ProtocolError(what + ": message of " + std::to_string(sealed.size()) +
                        " bytes is too short to carry an authentication tag");
  auto message = sealed.first(sealed.size() - kTagBytes);
  if (!tag_equal(tag(key, dir, ctx, seq, message), sealed.last(kTagBytes)))
    throw ProtocolError(what + ": authentication failed (a different or missing RDMACOLL_JOB_TOKEN, or a replayed "
                               "or altered message)");
  return message;
}

Nonce random_nonce() {
  Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) throw TransportError("RAND_bytes: " + openssl_error());
  return n;
}

std::string random_token() {
  uint8_t b[32];
  if (RAND_bytes(b, sizeof b) != 1) throw TransportError("RAND_bytes: " + openssl_error());
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) s += hex[x >> 4], s += hex[x & 15];
  return s;
}

}  // namespace rdmacoll::bootstrap::auth
