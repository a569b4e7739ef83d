// Private: the binary encoding of everything rdmacoll sends between processes outside the data
// path (rendezvous messages, connection data). Little-endian, length-checked, versioned:
// a Reader never reads past its buffer and reports truncation as a ProtocolError.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/error.h"

namespace rdmacoll::wire {

constexpr uint32_t kMagic = 0x434d4452;  // "RDMC" in little-endian byte order
// Bumped whenever a message's layout changes; ranks of different versions refuse each other.
//   1  first version
//   2  window descriptions (verbs, UCX) carry the access the owner granted (u32 after the
//      length); verbs connection data carries the QP's responder resources for RDMA READ (u8)
//   3  the TCP store's connections start with a handshake and every message carries an
//      HMAC-SHA256 tag (bootstrap/store_proto.h); UCX wire-up messages carry a nonce, and the
//      wire-up hello the receiving rank and a tag (conn_data.h)
constexpr uint16_t kVersion = 3;

class Writer {
 public:
  Writer& u8(uint8_t v) { return put(&v, 1); }
  Writer& u16(uint16_t v) { return le(v, 2); }
  Writer& u32(uint32_t v) { return le(v, 4); }
  Writer& u64(uint64_t v) { return le(v, 8); }
  Writer& i64(int64_t v) { return le(static_cast<uint64_t>(v), 8); }
  Writer& bytes(std::span<const uint8_t> b) {
    u64(b.size());
    return put(b.data(), b.size());
  }
  Writer& str(std::string_view s) { return bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  Writer& raw(const void* p, size_t n) { return put(p, n); }
  // Header every message starts with: magic, version, message type.
  Writer& header(uint16_t type) { return u32(kMagic).u16(kVersion).u16(type); }
  std::vector<uint8_t>& data() { return buf_; }

 private:
  Writer& put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    return *this;
  }
  Writer& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) buf_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<uint8_t> buf_;
};

class Reader {
 public:
  // `what` names the message in errors ("TCP store request from 10.0.0.2:4242").
  Reader(std::span<const uint8_t> buf, std::string what) : buf_(buf), what_(std::move(what)) {}

  uint8_t u8() { return static_cast<uint8_t>(le(1)); }
  uint16_t u16() { return static_cast<uint16_t>(le(2)); }
  uint32_t u32() { return static_cast<uint32_t>(le(4)); }
  uint64_t u64() { return le(8); }
  int64_t i64() { return static_cast<int64_t>(le(8)); }
  // A length-prefixed byte string, at most `max` bytes.
  std::span<const uint8_t> bytes(size_t max) {
    uint64_t n = u64();
    if (n > max) fail("field of " + std::to_string(n) + " bytes exceeds the limit of " + std::to_string(max));
    return take(static_cast<size_t>(n));
  }
  std::string str(size_t max) {
    auto b = bytes(max);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
  }
  void raw(void* out, size_t n) { std::memcpy(out, take(n).data(), n); }
  // Checks magic and version; returns the message type.
  uint16_t header() {
    uint32_t magic = u32();
    if (magic != kMagic) fail("bad magic 0x" + hex(magic) + " (not an rdmacoll peer, or a corrupted stream)");
    uint16_t version = u16();
    if (version != kVersion)
      fail("protocol version " + std::to_string(version) + ", this build speaks " + std::to_string(kVersion) +
           "; run the same rdmacoll version on every rank");
    return u16();
  }
  void expect_end() const {
    if (pos_ != buf_.size()) fail(std::to_string(buf_.size() - pos_) + " unexpected trailing bytes");
  }
  size_t remaining() const { return buf_.size() - pos_; }

 private:
  [[noreturn]] void fail(const std::string& why) const { throw ProtocolError(what_ + ": " + why); }
  static std::string hex(uint32_t v) {
    char b[16];
    std::snprintf(b, sizeof b, "%08x", v);
    return b;
  }
  std::span<const uint8_t> take(size_t n) {
    if (n > buf_.size() - pos_)
      fail("truncated: need " + std::to_string(n) + " bytes at offset " + std::to_string(pos_) + " of " +
           std::to_string(buf_.size()));
    auto s = buf_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t le(int n) {
    auto b = take(static_cast<size_t>(n));
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(b[static_cast<size_t>(i)]) << (8 * i);
    return v;
  }
  std::span<const uint8_t> buf_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace rdmacoll::wire
