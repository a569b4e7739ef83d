// The words a timeout or error uses for an operation, made from its fields only when needed:
// they must read exactly as they did when every operation formatted them at post time.
#include <gtest/gtest.h>

#include "transport_impl.h"

namespace rdmacoll::transport {
namespace {

TEST(OpDesc, ReadsAsBefore) {
  EXPECT_EQ(describe_op(OpDesc::send(1048579, 7), 1), "send of 1048579 bytes to rank 1 (tag 7)");
  EXPECT_EQ(describe_op(OpDesc::recv(8, 549755813887ULL), 12), "receive of up to 8 bytes from rank 12 (tag 549755813887)");
  EXPECT_EQ(describe_op(OpDesc::write(0, std::nullopt), 3), "write of 0 bytes to rank 3");
  EXPECT_EQ(describe_op(OpDesc::write(4096, 4294967295u), 3), "write of 4096 bytes to rank 3 with immediate 4294967295");
  EXPECT_EQ(describe_op(OpDesc::read(65536), 2), "read of 65536 bytes from rank 2");
  EXPECT_EQ(describe_op(OpDesc::of(OpDesc::Kind::Notification), 5), "notification from rank 5");
  EXPECT_EQ(describe_op(OpDesc::of(OpDesc::Kind::HelloSend), 0), "wire-up hello to rank 0");
  EXPECT_EQ(describe_op(OpDesc::of(OpDesc::Kind::HelloRecv), 0), "wire-up hello from rank 0");
}

TEST(OpDesc, StateFormatsOnDemand) {
  Request::State s(nullptr, 4, OpDesc::send(8, 1));
  EXPECT_EQ(s.what(), "send of 8 bytes to rank 4 (tag 1)");
}

}  // namespace
}  // namespace rdmacoll::transport
