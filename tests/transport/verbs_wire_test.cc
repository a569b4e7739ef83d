// The verbs transport's message format (verbs/verbs_wire.h), with no device: what the send path
// encodes decodes to the same header and payload, and every message the receive path cannot
// act on safely is refused with a ProtocolError that names the rank and the fault.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rdmacoll/error.h"
#include "verbs/verbs_wire.h"

namespace rdmacoll::transport::verbs_wire {
namespace {

using Bytes = std::vector<uint8_t>;
constexpr size_t kLimit = 1024;
constexpr int kFrom = 3;

Header eager(uint64_t tag, uint64_t length) { return Header{kEager, 0, 0, 0, tag, length, 0, 0}; }
Header rts(uint64_t length) { return Header{kRts, 0, 0, 0x1234, 7, length, 0x7f0000001000, 42}; }
Header fin(uint8_t status) { return Header{kFin, status, 0, 0, 0, 0, 0, 42}; }

// The ProtocolError's text, or a note that there was none.
std::string rejection(const Bytes& message, size_t eager_limit = kLimit) {
  try {
    decode(message, eager_limit, kFrom);
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "(accepted)";
}

void expect_round_trip(const Header& h, const Bytes& payload) {
  const Bytes message = encode(h, payload);
  ASSERT_EQ(message.size(), sizeof(Header) + payload.size());
  const Message m = decode(message, kLimit, kFrom);
  EXPECT_EQ(m.header, h);
  EXPECT_EQ(Bytes(m.payload.begin(), m.payload.end()), payload);
}

TEST(VerbsWire, EagerRoundTrips) {
  expect_round_trip(eager(5, 3), {1, 2, 3});
  expect_round_trip(eager(~uint64_t{0}, 0), {});
  expect_round_trip(eager(9, kLimit), Bytes(kLimit, 0xab));  // exactly at the limit
}

TEST(VerbsWire, RtsRoundTrips) { expect_round_trip(rts(uint64_t{1} << 40), {}); }

TEST(VerbsWire, FinRoundTrips) {
  expect_round_trip(fin(kFinOk), {});
  expect_round_trip(fin(kFinTruncated), {});
}

TEST(VerbsWire, EncodeIntoASlotWritesHeaderThenPayload) {
  Bytes slot(sizeof(Header) + 8, 0xee);
  const Bytes payload{4, 5};
  EXPECT_EQ(encode(eager(1, 2), payload, slot), sizeof(Header) + 2);
  EXPECT_EQ(slot[sizeof(Header)], 4);
  EXPECT_EQ(slot[sizeof(Header) + 1], 5);
  EXPECT_EQ(slot[sizeof(Header) + 2], 0xee);  // the rest of the slot is untouched
  EXPECT_THROW(encode(eager(1, 9), Bytes(9), slot), std::length_error);
}

TEST(VerbsWire, RejectsAMessageShorterThanTheHeader) {
  EXPECT_EQ(rejection({}), "malformed message from rank 3: 0 bytes, shorter than the 40-byte header");
  Bytes m = encode(fin(kFinOk));
  m.pop_back();
  EXPECT_EQ(rejection(m), "malformed message from rank 3: 39 bytes, shorter than the 40-byte header");
}

TEST(VerbsWire, RejectsAnUnknownType) {
  Header h = eager(1, 0);
  h.type = 7;
  EXPECT_EQ(rejection(encode(h)), "malformed message from rank 3: type 7 is not eager, RTS or FIN");
  h.type = 0;
  EXPECT_EQ(rejection(encode(h)), "malformed message from rank 3: type 0 is not eager, RTS or FIN");
}

// The bug the decoder was written for: a header of unknown type carrying more payload than its
// length said used to pass the check, and the receive path then copied the whole payload into a
// user buffer sized by the header's length (a heap overflow driven by the peer).
TEST(VerbsWire, RejectsAnUnknownTypeWhosePayloadExceedsItsLength) {
  Header h = eager(1, 4);
  h.type = 9;
  EXPECT_EQ(rejection(encode(h, Bytes(512, 0x41))), "malformed message from rank 3: type 9 is not eager, RTS or FIN");
}

TEST(VerbsWire, RejectsAPayloadOnRtsOrFin) {
  EXPECT_EQ(rejection(encode(rts(1 << 20), Bytes(16))),
            "malformed message from rank 3: RTS carries 16 payload bytes (it carries none)");
  EXPECT_EQ(rejection(encode(fin(kFinOk), Bytes(1))),
            "malformed message from rank 3: FIN carries 1 payload bytes (it carries none)");
}

TEST(VerbsWire, RejectsAnEagerLengthThatDiffersFromThePayload) {
  EXPECT_EQ(rejection(encode(eager(1, 10), Bytes(9))),
            "malformed message from rank 3: eager header says 10 bytes, the payload has 9");
  EXPECT_EQ(rejection(encode(eager(1, 0), Bytes(1))),
            "malformed message from rank 3: eager header says 0 bytes, the payload has 1");
}

TEST(VerbsWire, RejectsAnEagerMessageOverTheLimit) {
  EXPECT_EQ(rejection(encode(eager(1, kLimit + 1), Bytes(kLimit + 1))),
            "malformed message from rank 3: eager length 1025 is over the eager limit 1024");
  EXPECT_EQ(rejection(encode(eager(1, ~uint64_t{0}))),
            "malformed message from rank 3: eager length 18446744073709551615 is over the eager limit 1024");
}

TEST(VerbsWire, RejectsAFinStatusOtherThanOkOrTruncated) {
  EXPECT_EQ(rejection(encode(fin(2))),
            "malformed message from rank 3: FIN status 2 is not 0 (ok) or 1 (receive buffer too short)");
}

TEST(VerbsWire, RejectsAStatusOnEagerOrRts) {
  Header h = eager(1, 0);
  h.status = 1;
  EXPECT_EQ(rejection(encode(h)), "malformed message from rank 3: eager status 1 is not 0");
  h = rts(100);
  h.status = 255;
  EXPECT_EQ(rejection(encode(h)), "malformed message from rank 3: RTS status 255 is not 0");
}

TEST(VerbsWire, RejectsNonzeroReservedBits) {
  Header h = fin(kFinOk);
  h.reserved = 0x100;
  EXPECT_EQ(rejection(encode(h)), "malformed message from rank 3: reserved field is 256, not 0");
}

TEST(VerbsWire, RejectsAnRtsForZeroBytes) {
  EXPECT_EQ(rejection(encode(rts(0))),
            "malformed message from rank 3: RTS for 0 bytes (a rendezvous is for large messages)");
}

}  // namespace
}  // namespace rdmacoll::transport::verbs_wire
