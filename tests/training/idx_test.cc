// read_idx on small files written by the test: plain and gzip'd, well-formed and broken.
#include "rdmacoll/training/idx.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "idx_test_util.h"

namespace rdmacoll::training {
namespace {

using test::expect_data_error;
using test::idx_bytes;
using test::TempDir;
using test::write_gzip;
using test::write_plain;

std::vector<std::uint8_t> iota_bytes(std::size_t n) {
  std::vector<std::uint8_t> v(n);
  std::iota(v.begin(), v.end(), std::uint8_t{3});
  return v;
}

TEST(ReadIdx, PlainAndGzipReadBack) {
  TempDir dir;
  const std::vector<std::uint8_t> data = iota_bytes(4 * 3 * 2);
  write_plain(dir / "a.idx", idx_bytes({4, 3, 2}, data));
  write_gzip(dir / "a.idx.gz", idx_bytes({4, 3, 2}, data));
  for (const char* name : {"a.idx", "a.idx.gz"}) {
    const IdxArray a = read_idx(dir / name);
    EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{4, 3, 2})) << name;
    EXPECT_EQ(a.data, data) << name;
  }
}

TEST(ReadIdx, OneDimensionalAndLargerThanOneChunk) {
  TempDir dir;
  // 3 MiB + 5 crosses the reader's 1 MiB chunks, with a partial last one.
  const std::size_t n = (std::size_t{3} << 20) + 5;
  std::vector<std::uint8_t> data(n);
  for (std::size_t i = 0; i < n; ++i) data[i] = static_cast<std::uint8_t>(i * 7 + i / 251);
  write_gzip(dir / "big.gz", idx_bytes({static_cast<std::uint32_t>(n)}, data));
  const IdxArray a = read_idx(dir / "big.gz");
  ASSERT_EQ(a.dims.size(), 1u);
  EXPECT_EQ(a.dims[0], n);
  EXPECT_EQ(a.data, data);
}

TEST(ReadIdx, ZeroSizedDimensionIsAnEmptyArray) {
  TempDir dir;
  write_plain(dir / "empty.idx", idx_bytes({0, 28, 28}, {}));
  const IdxArray a = read_idx(dir / "empty.idx");
  EXPECT_EQ(a.dims, (std::vector<std::uint32_t>{0, 28, 28}));
  EXPECT_TRUE(a.data.empty());
}

TEST(ReadIdx, MissingFileNamesIt) {
  TempDir dir;
  const auto file = dir / "nope.idx.gz";
  expect_data_error([&] { read_idx(file); },
                    {file.string(), "cannot open", "No such file or directory"});
}

TEST(ReadIdx, BadMagic) {
  TempDir dir;
  std::vector<std::uint8_t> bytes = idx_bytes({2}, {1, 2});
  bytes[0] = 0x12;
  bytes[1] = 0x34;
  write_plain(dir / "bad", bytes);
  expect_data_error([&] { read_idx(dir / "bad"); },
                    {(dir / "bad").string(), "not an IDX file", "magic number 0x12340801"});
}

TEST(ReadIdx, WrongElementType) {
  TempDir dir;
  write_gzip(dir / "f.gz", idx_bytes({1}, {0, 0, 0, 0}, 0x0D));
  expect_data_error([&] { read_idx(dir / "f.gz"); },
                    {(dir / "f.gz").string(), "element type 0x0D (float32) is not supported",
                     "expected 0x08 (unsigned byte)"});
}

TEST(ReadIdx, NoOrTooManyDimensions) {
  TempDir dir;
  write_plain(dir / "zero", idx_bytes({}, {}));
  expect_data_error([&] { read_idx(dir / "zero"); }, {"declares 0 dimensions, expected 1 to 16"});
  write_plain(dir / "many", {0, 0, 8, 200});
  expect_data_error([&] { read_idx(dir / "many"); }, {"declares 200 dimensions"});
}

TEST(ReadIdx, TruncatedHeader) {
  TempDir dir;
  write_plain(dir / "two", {0, 0});
  expect_data_error([&] { read_idx(dir / "two"); },
                    {(dir / "two").string(), "truncated header: file ends after 2 bytes"});
  write_plain(dir / "empty", {});
  expect_data_error([&] { read_idx(dir / "empty"); }, {"file ends after 0 bytes"});
  // A 3-D header needs 16 bytes; give it the magic and one dimension and a half.
  std::vector<std::uint8_t> bytes = idx_bytes({60000, 28, 28}, {});
  bytes.resize(10);
  write_gzip(dir / "dims.gz", bytes);
  expect_data_error([&] { read_idx(dir / "dims.gz"); },
                    {"truncated header: file ends after 10 bytes",
                     "header of a 3-dimensional IDX file is 16 bytes"});
}

TEST(ReadIdx, TruncatedData) {
  TempDir dir;
  std::vector<std::uint8_t> bytes = idx_bytes({4, 3, 2}, iota_bytes(24));
  bytes.resize(bytes.size() - 14);
  write_plain(dir / "short", bytes);
  write_gzip(dir / "short.gz", bytes);
  for (const char* name : {"short", "short.gz"})
    expect_data_error([&] { read_idx(dir / name); },
                      {(dir / name).string(), "truncated data",
                       "4x3x2 = 24 bytes of data, but the file ends after 10 of them"});
}

TEST(ReadIdx, TrailingBytesAreASizeMismatch) {
  TempDir dir;
  std::vector<std::uint8_t> bytes = idx_bytes({3}, {1, 2, 3});
  bytes.push_back(4);
  write_gzip(dir / "long.gz", bytes);
  expect_data_error([&] { read_idx(dir / "long.gz"); },
                    {"size mismatch", "more bytes follow the 3 bytes of data"});
}

TEST(ReadIdx, AbsurdDimensionsAreRefusedBeforeAllocating) {
  TempDir dir;
  // 2^96 elements: the product would overflow size_t.
  write_plain(dir / "huge", idx_bytes({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {}));
  expect_data_error([&] { read_idx(dir / "huge"); },
                    {"4294967295x4294967295x4294967295", "more than the 1073741824-byte limit"});
  write_plain(dir / "limit", idx_bytes({10, 10}, iota_bytes(100)));
  expect_data_error([&] { read_idx(dir / "limit", 99); }, {"more than the 99-byte limit"});
  EXPECT_EQ(read_idx(dir / "limit", 100).data.size(), 100u);
}

TEST(ReadIdx, GzipGarbage) {
  TempDir dir;
  // A valid gzip member header followed by bytes that are not a deflate stream.
  std::vector<std::uint8_t> bytes = {0x1F, 0x8B, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0x03};
  for (int i = 0; i < 64; ++i) bytes.push_back(static_cast<std::uint8_t>(0xFF - i * 3));
  write_plain(dir / "garbage.gz", bytes);
  expect_data_error([&] { read_idx(dir / "garbage.gz"); },
                    {(dir / "garbage.gz").string(), "corrupt or truncated gzip data"});
}

TEST(ReadIdx, GzipCutShort) {
  TempDir dir;
  write_gzip(dir / "whole.gz", idx_bytes({1000}, iota_bytes(1000)));
  std::vector<std::uint8_t> gz = test::read_bytes(dir / "whole.gz");
  gz.resize(gz.size() / 2);
  write_plain(dir / "cut.gz", gz);
  expect_data_error([&] { read_idx(dir / "cut.gz"); },
                    {(dir / "cut.gz").string(), "corrupt or truncated gzip data"});
}

// The gzip trailer's CRC is only checked at the end of the stream; the reader must get there.
TEST(ReadIdx, GzipChecksumMismatch) {
  TempDir dir;
  write_gzip(dir / "whole.gz", idx_bytes({100}, iota_bytes(100)));
  std::vector<std::uint8_t> gz = test::read_bytes(dir / "whole.gz");
  gz[gz.size() - 8] ^= 0x01;  // first byte of the CRC-32
  write_plain(dir / "crc.gz", gz);
  expect_data_error([&] { read_idx(dir / "crc.gz"); },
                    {(dir / "crc.gz").string(), "incorrect data check"});
}

}  // namespace
}  // namespace rdmacoll::training
