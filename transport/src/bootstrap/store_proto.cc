#include "bootstrap/store_proto.h"

#include <algorithm>

#include "rdmacoll/error.h"
#include "wire.h"

namespace rdmacoll::bootstrap::proto {

std::optional<size_t> complete_frame(std::span<const uint8_t> in, size_t max, const std::string& what) {
  if (in.size() < 4) return std::nullopt;
  size_t len = in[0] | (size_t{in[1]} << 8) | (size_t{in[2]} << 16) | (size_t{in[3]} << 24);
  if (len > max)
    throw ProtocolError(what + ": frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                        std::to_string(max) + " bytes");
  if (in.size() - 4 < len) return std::nullopt;
  return len;
}

std::vector<uint8_t> server_hello(const auth::Nonce& server_nonce) {
  wire::Writer w;
  w.header(kServerHello).raw(server_nonce.data(), server_nonce.size());
  return std::move(w.data());
}

auth::Nonce parse_server_hello(std::span<const uint8_t> message, const std::string& what) {
  throw_if_refused(message, what);
  wire::Reader r(message, what);
  if (r.header() != kServerHello) throw ProtocolError(what + ": expected the store's hello");
  auth::Nonce n{};
  r.raw(n.data(), n.size());
  r.expect_end();
  return n;
}

std::vector<uint8_t> client_hello(const auth::Key& key, const auth::Nonce& server_nonce,
                                  const auth::Nonce& client_nonce) {
  wire::Writer w;
  w.header(kClientHello).raw(client_nonce.data(), client_nonce.size());
  auth::seal(w.data(), key, auth::Direction::ClientToServer, {server_nonce, client_nonce}, 0);
  return std::move(w.data());
}

auth::Context accept_client_hello(std::span<const uint8_t> sealed, const auth::Key& key,
                                  const auth::Nonce& server_nonce, const std::string& what) {
  // The nonce is read before the tag is checked (the tag covers it): it is needed to check it.
  wire::Reader r(sealed, what);
  if (r.header() != kClientHello) throw ProtocolError(what + ": expected a hello before any request");
  auth::Context ctx{server_nonce, {}};
  r.raw(ctx.client_nonce.data(), ctx.client_nonce.size());
  if (r.remaining() != auth::kTagBytes)
    throw ProtocolError(what + ": hello of " + std::to_string(sealed.size()) + " bytes has no authentication tag");
  auth::open(sealed, key, auth::Direction::ClientToServer, ctx, 0, what);
  return ctx;
}

std::vector<uint8_t> refusal(const std::string& reason) {
  wire::Writer w;
  w.header(kRefused).str(reason.substr(0, kMaxReason));
  return std::move(w.data());
}

void throw_if_refused(std::span<const uint8_t> message, const std::string& what) {
  // Peek at the type without trusting the rest: magic (4), version (2), type (2).
  if (message.size() < 8 || (message[6] | message[7] << 8) != kRefused) return;
  wire::Reader r(message, what);
  r.header();
  std::string reason = r.str(kMaxReason);
  throw ProtocolError(what + " refused this process: " + reason +
                      "; every rank of a job needs the same RDMACOLL_JOB_TOKEN and rdmacoll version");
}

Request parse_request(std::span<const uint8_t> message, const std::string& what) {
  wire::Reader r(message, what);
  Request q;
  q.op = static_cast<Type>(r.header());
  switch (q.op) {
    case kSet: {
      q.keys.push_back(r.str(kMaxKey));
      auto v = r.bytes(kMaxValue);
      q.value.assign(v.begin(), v.end());
      break;
    }
    case kAdd:
      q.keys.push_back(r.str(kMaxKey));
      q.delta = r.i64();
      break;
    case kGet:
    case kWait: {
      uint64_t nkeys = q.op == kGet ? 1 : r.u64();
      if (nkeys > kMaxKeys)
        throw ProtocolError(what + ": " + std::to_string(nkeys) + " keys in one wait exceed the limit of " +
                            std::to_string(kMaxKeys));
      // Every key takes at least its 8-byte length: a count the message cannot hold is refused
      // before anything is reserved for it.
      if (nkeys > r.remaining() / 8) throw ProtocolError(what + ": truncated: " + std::to_string(nkeys) + " keys announced");
      for (uint64_t i = 0; i < nkeys; ++i) q.keys.push_back(r.str(kMaxKey));
      q.timeout_ms = std::min(r.u64(), kMaxWaitMs);
      break;
    }
    default:
      throw ProtocolError(what + ": unknown operation " + std::to_string(q.op));
  }
  r.expect_end();
  return q;
}

Reply parse_reply(std::span<const uint8_t> message, const std::string& what) {
  wire::Reader r(message, what);
  Reply p;
  p.type = static_cast<Type>(r.header());
  switch (p.type) {
    case kOk:
      break;
    case kValue: {
      auto v = r.bytes(kMaxValue);
      p.value.assign(v.begin(), v.end());
      break;
    }
    case kInt:
      p.number = r.i64();
      break;
    case kTimedOut: {
      uint64_t n = r.u64();
      if (n > kMaxKeys || n > r.remaining() / 8) throw ProtocolError(what + ": bad count of missing keys");
      for (uint64_t i = 0; i < n; ++i) p.missing.push_back(r.str(kMaxKey));
      break;
    }
    default:
      throw ProtocolError(what + ": unexpected reply type " + std::to_string(p.type));
  }
  r.expect_end();
  return p;
}

}  // namespace rdmacoll::bootstrap::proto
