// Private: the messages the verbs transport SENDs on its queue pairs, as pure functions over
// byte spans (no verbs in here), so that the receive path's parser can be unit-tested and fuzzed
// without a device.
//
//   0      1        2          4      8     16       24     32   40
//   | type | status | reserved | rkey | tag | length | addr | id | payload (eager only) ...
//
//   EAGER  tag, length = payload bytes (<= the eager limit)
//   RTS    tag, length (> 0), addr + rkey of the sender's buffer, id of the send; no payload
//   FIN    id of the send the receiver has read, status (0 ok, 1 its buffer was too short);
//          no payload
//
// Fields a type does not use are zero when sent and ignored when received. The layout is the
// host's (both sides run the same build: the connect exchange checks the header size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

namespace rdmacoll::transport::verbs_wire {

enum Type : uint8_t { kEager = 1, kRts = 2, kFin = 3 };
enum FinStatus : uint8_t { kFinOk = 0, kFinTruncated = 1 };

struct Header {
  uint8_t type;    // Type
  uint8_t status;  // FinStatus on FIN, 0 otherwise
  uint16_t reserved;  // 0
  uint32_t rkey;   // Rts
  uint64_t tag;
  uint64_t length;
  uint64_t addr;  // Rts: sender's buffer
  uint64_t id;    // Rts/Fin: sender's operation id
  bool operator==(const Header&) const = default;
};
static_assert(sizeof(Header) == 40, "the verbs message header is 40 bytes on the wire");
static_assert(offsetof(Header, rkey) == 4 && offsetof(Header, tag) == 8 && offsetof(Header, id) == 32);
static_assert(std::is_trivially_copyable_v<Header>);

// A received message: its header and the payload that follows it (a view into the message).
struct Message {
  Header header;
  std::span<const uint8_t> payload;
};

// Writes `h` then `payload` to the front of `out`; returns the bytes written. `out` must hold
// sizeof(Header) + payload.size() bytes (std::length_error otherwise: a bug in the caller).
size_t encode(const Header& h, std::span<const uint8_t> payload, std::span<uint8_t> out);
std::vector<uint8_t> encode(const Header& h, std::span<const uint8_t> payload = {});

// Parses a message received from rank `from`. Throws ProtocolError ("malformed message from
// rank N: ...") for anything the receive path cannot act on safely: shorter than the header, an
// unknown type, nonzero reserved bits or a status the type does not have, a payload on RTS or
// FIN, an eager payload that differs from its header's length or exceeds `eager_limit`, an RTS
// of zero bytes. What it returns: EAGER has payload.size() == length <= eager_limit; RTS and FIN
// have no payload.
Message decode(std::span<const uint8_t> message, size_t eager_limit, int from);

}  // namespace rdmacoll::transport::verbs_wire
