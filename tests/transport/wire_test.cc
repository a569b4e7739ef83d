#include <gtest/gtest.h>

#include "wire.h"

namespace rdmacoll {
namespace {

TEST(Wire, RoundTripsEveryFieldType) {
  wire::Writer w;
  w.header(7).u8(0xab).u16(0xbeef).u32(0xdeadbeef).u64(0x0123456789abcdefULL).i64(-5).str("hello");
  wire::Reader r(w.data(), "test");
  EXPECT_EQ(r.header(), 7);
  EXPECT_EQ(r.u8(), 0xab);
  EXPECT_EQ(r.u16(), 0xbeef);
  EXPECT_EQ(r.u32(), 0xdeadbeefu);
  EXPECT_EQ(r.u64(), 0x0123456789abcdefULL);
  EXPECT_EQ(r.i64(), -5);
  EXPECT_EQ(r.str(100), "hello");
  EXPECT_NO_THROW(r.expect_end());
}

TEST(Wire, EncodingIsLittleEndianRegardlessOfHost) {
  wire::Writer w;
  w.u32(0x01020304);
  EXPECT_EQ(w.data(), (std::vector<uint8_t>{4, 3, 2, 1}));
}

TEST(Wire, TruncationIsAProtocolErrorWithOffsets) {
  wire::Writer w;
  w.header(1).u32(5);
  auto bytes = w.data();
  bytes.pop_back();
  wire::Reader r(bytes, "peer X");
  r.header();
  try {
    r.u32();
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("peer X: truncated"), std::string::npos) << e.what();
  }
}

TEST(Wire, RejectsBadMagicVersionOversizeAndTrailingBytes) {
  std::vector<uint8_t> junk = {'G', 'E', 'T', ' ', '/', ' ', 'H', 'T'};
  wire::Reader bad_magic(junk, "m");
  EXPECT_THROW(bad_magic.header(), ProtocolError);

  wire::Writer v2;
  v2.u32(wire::kMagic).u16(wire::kVersion + 1).u16(0);
  wire::Reader bad_version(v2.data(), "v");
  try {
    bad_version.header();
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("same rdmacoll version"), std::string::npos);
  }

  wire::Writer big;
  big.u64(1ull << 40);
  wire::Reader oversize(big.data(), "o");
  EXPECT_THROW(oversize.bytes(1024), ProtocolError);

  wire::Writer extra;
  extra.u8(1).u8(2);
  wire::Reader trailing(extra.data(), "t");
  trailing.u8();
  EXPECT_THROW(trailing.expect_end(), ProtocolError);
}

}  // namespace
}  // namespace rdmacoll
