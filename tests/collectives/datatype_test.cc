#include "rdmacoll/collectives/datatype.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace rdmacoll::collectives {
namespace {

TEST(DataType, SizesMatchTheStorageTypes) {
  EXPECT_EQ(dtype_size(DataType::f32), 4u);
  EXPECT_EQ(dtype_size(DataType::f64), 8u);
  EXPECT_EQ(dtype_size(DataType::f16), 2u);
  EXPECT_EQ(dtype_size(DataType::bf16), 2u);
  EXPECT_EQ(dtype_size(DataType::i8), 1u);
  EXPECT_EQ(dtype_size(DataType::u8), 1u);
  EXPECT_EQ(dtype_size(DataType::i32), 4u);
  EXPECT_EQ(dtype_size(DataType::i64), 8u);
  EXPECT_THROW(dtype_size(static_cast<DataType>(99)), std::invalid_argument);
}

TEST(DataType, ToStringRoundTripsThroughParse) {
  for (DataType t : kAllDataTypes) EXPECT_EQ(parse_datatype(to_string(t)), t) << to_string(t);
  for (ReduceOp op : kAllReduceOps) EXPECT_EQ(parse_reduce_op(to_string(op)), op);
  EXPECT_EQ(to_string(static_cast<DataType>(99)), "unknown");
  EXPECT_EQ(to_string(static_cast<ReduceOp>(99)), "unknown");
}

TEST(DataType, AcceptsNcclTestsNamesAndAliases) {
  EXPECT_EQ(parse_datatype("float"), DataType::f32);
  EXPECT_EQ(parse_datatype("fp32"), DataType::f32);
  EXPECT_EQ(parse_datatype("float32"), DataType::f32);
  EXPECT_EQ(parse_datatype("double"), DataType::f64);
  EXPECT_EQ(parse_datatype("fp64"), DataType::f64);
  EXPECT_EQ(parse_datatype("half"), DataType::f16);
  EXPECT_EQ(parse_datatype("fp16"), DataType::f16);
  EXPECT_EQ(parse_datatype("float16"), DataType::f16);
  EXPECT_EQ(parse_datatype("bfloat16"), DataType::bf16);
  EXPECT_EQ(parse_datatype("bf16"), DataType::bf16);
  EXPECT_EQ(parse_datatype("int8"), DataType::i8);
  EXPECT_EQ(parse_datatype("uint8"), DataType::u8);
  EXPECT_EQ(parse_datatype("int32"), DataType::i32);
  EXPECT_EQ(parse_datatype("int64"), DataType::i64);
  EXPECT_EQ(parse_datatype("FLOAT"), DataType::f32);  // case-insensitive
  EXPECT_EQ(parse_datatype("BFloat16"), DataType::bf16);
  EXPECT_EQ(parse_reduce_op("SUM"), ReduceOp::sum);
  EXPECT_EQ(parse_reduce_op("mean"), ReduceOp::avg);
}

// The message must name the rejected value and list what would have worked.
TEST(DataType, ParseErrorsNameTheValueAndListTheAcceptedOnes) {
  for (const char* bad : {"uint32", "", "f32 ", "flot", "int16"}) {
    try {
      parse_datatype(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("unknown data type '" + std::string(bad) + "'"), std::string::npos) << msg;
      for (const char* name :
           {"f32", "float", "double", "half", "bfloat16", "int8", "uint8", "int32", "int64"})
        EXPECT_NE(msg.find(name), std::string::npos) << name << " missing from: " << msg;
    }
  }
  try {
    parse_reduce_op("mul");
    ADD_FAILURE() << "accepted 'mul'";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "unknown reduction op 'mul'; accepted: sum, prod, min, max, avg (mean)");
  }
}

TEST(DataType, ParseErrorGroupsAliases) {
  try {
    parse_datatype("x");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("f32 (float, fp32, float32), f64 (double"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace rdmacoll::collectives
