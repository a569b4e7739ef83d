// Fuzzes the verbs transport's receive-side parser (verbs/verbs_wire.h): the message a peer
// SENDs into a receive slot, a 40-byte header then the payload. The first two bytes pick the
// eager limit (64 + a 16-bit value), the third the sender's rank; the rest is the message.
// Any exception other than ProtocolError, any crash, sanitizer report or abort() (an invariant
// of an accepted message, below) is a finding.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "rdmacoll/error.h"
#include "verbs/verbs_wire.h"

namespace wire = rdmacoll::transport::verbs_wire;

namespace {

// What the receive path relies on: it copies an eager payload into a buffer checked against
// the header's length, and treats everything else as a payload-less RTS or FIN.
void check_accepted(const wire::Message& m, size_t eager_limit) {
  const wire::Header& h = m.header;
  switch (h.type) {
    case wire::kEager:
      if (m.payload.size() != h.length || h.length > eager_limit) abort();
      break;
    case wire::kRts:
      if (!m.payload.empty() || h.length == 0) abort();
      break;
    case wire::kFin:
      if (!m.payload.empty() || (h.status != wire::kFinOk && h.status != wire::kFinTruncated)) abort();
      break;
    default: abort();
  }
  // What the send path would encode from it decodes to the same message (and is not refused:
  // a ProtocolError here must not reach the caller's catch).
  const auto again = wire::encode(h, m.payload);
  try {
    const wire::Message back = wire::decode(again, eager_limit, 0);
    if (!(back.header == h) || !std::equal(back.payload.begin(), back.payload.end(), m.payload.begin(), m.payload.end()))
      abort();
  } catch (const rdmacoll::ProtocolError&) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const size_t eager_limit = 64 + (size_t{data[0]} | size_t{data[1]} << 8);
  const int from = data[2];
  try {
    check_accepted(wire::decode(std::span<const uint8_t>(data + 3, size - 3), eager_limit, from), eager_limit);
  } catch (const rdmacoll::ProtocolError&) {
  }
  return 0;
}
