#include "verbs/verbs_wire.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "rdmacoll/error.h"

namespace rdmacoll::transport::verbs_wire {
namespace {

const char* type_name(uint8_t type) {
  switch (type) {
    case kEager: return "eager";
    case kRts: return "RTS";
    case kFin: return "FIN";
    default: return "unknown";
  }
}

[[noreturn]] void malformed(int from, const std::string& what) {
  throw ProtocolError("malformed message from rank " + std::to_string(from) + ": " + what);
}

// The checks that need only the header.
void check_header(const Header& h, int from) {
  if (h.type != kEager && h.type != kRts && h.type != kFin)
    malformed(from, "type " + std::to_string(h.type) + " is not eager, RTS or FIN");
  if (h.reserved != 0) malformed(from, "reserved field is " + std::to_string(h.reserved) + ", not 0");
  if (h.type == kFin && h.status != kFinOk && h.status != kFinTruncated)
    malformed(from, "FIN status " + std::to_string(h.status) + " is not 0 (ok) or 1 (receive buffer too short)");
  if (h.type != kFin && h.status != 0)
    malformed(from, std::string(type_name(h.type)) + " status " + std::to_string(h.status) + " is not 0");
  if (h.type == kRts && h.length == 0) malformed(from, "RTS for 0 bytes (a rendezvous is for large messages)");
}

void check_payload(const Header& h, size_t payload, size_t eager_limit, int from) {
  if (h.type != kEager) {
    if (payload != 0)
      malformed(from, std::string(type_name(h.type)) + " carries " + std::to_string(payload) +
                          " payload bytes (it carries none)");
    return;
  }
  if (h.length > eager_limit)
    malformed(from, "eager length " + std::to_string(h.length) + " is over the eager limit " +
                        std::to_string(eager_limit));
  if (payload != h.length)
    malformed(from, "eager header says " + std::to_string(h.length) + " bytes, the payload has " +
                        std::to_string(payload));
}

}  // namespace

size_t encode(const Header& h, std::span<const uint8_t> payload, std::span<uint8_t> out) {
  const size_t size = sizeof(Header) + payload.size();
  if (out.size() < size)
    throw std::length_error("verbs_wire::encode: " + std::to_string(size) + "-byte message, " +
                            std::to_string(out.size()) + "-byte buffer");
  std::memcpy(out.data(), &h, sizeof(Header));
  if (!payload.empty()) std::memcpy(out.data() + sizeof(Header), payload.data(), payload.size());
  return size;
}

std::vector<uint8_t> encode(const Header& h, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out(sizeof(Header) + payload.size());
  encode(h, payload, out);
  return out;
}

Message decode(std::span<const uint8_t> message, size_t eager_limit, int from) {
  if (message.size() < sizeof(Header))
    malformed(from, std::to_string(message.size()) + " bytes, shorter than the " + std::to_string(sizeof(Header)) +
                        "-byte header");
  Message m{};
  std::memcpy(&m.header, message.data(), sizeof(Header));
  m.payload = message.subspan(sizeof(Header));
  check_header(m.header, from);
  check_payload(m.header, m.payload.size(), eager_limit, from);
  return m;
}

}  // namespace rdmacoll::transport::verbs_wire
