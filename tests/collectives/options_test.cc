// The communicator's settings as text: RDMACOLL_ALGO and RDMACOLL_COST_MODEL.
#include <gtest/gtest.h>

#include "rdmacoll/collectives/communicator.h"
#include "rdmacoll/error.h"

namespace rdmacoll::collectives {
namespace {

TEST(Options, AllreduceAlgorithmNames) {
  EXPECT_EQ(parse_allreduce_algorithm("auto"), AllreduceAlgorithm::automatic);
  EXPECT_EQ(parse_allreduce_algorithm(""), AllreduceAlgorithm::automatic);
  EXPECT_EQ(parse_allreduce_algorithm("ring"), AllreduceAlgorithm::ring);
  EXPECT_EQ(parse_allreduce_algorithm("tree"), AllreduceAlgorithm::double_binary_tree);
  EXPECT_EQ(parse_allreduce_algorithm("rabenseifner"), AllreduceAlgorithm::halving_doubling);
  EXPECT_THROW(parse_allreduce_algorithm("butterfly"), ConfigError);
}

TEST(Options, CostModelMeasureByDefault) {
  EXPECT_FALSE(parse_cost_model("").has_value());
  EXPECT_FALSE(parse_cost_model("measure").has_value());
}

TEST(Options, CostModelFromText) {
  const auto m = parse_cost_model("5,12.5,8");
  ASSERT_TRUE(m.has_value());
  EXPECT_DOUBLE_EQ(m->alpha_s, 5e-6);
  EXPECT_DOUBLE_EQ(m->beta_s_per_byte, 1 / 12.5e9);
  EXPECT_DOUBLE_EQ(m->gamma_s_per_byte, 1 / 8e9);
  EXPECT_STREQ(m->source, "RDMACOLL_COST_MODEL");
  EXPECT_DOUBLE_EQ(parse_cost_model("0,1,1")->alpha_s, 0);  // no latency is a valid model
}

TEST(Options, CostModelRejectsBadText) {
  for (const char* bad : {"5,12.5", "5", "a,b,c", "5,0,8", "5,12.5,-1", "-1,2,3", "5,12.5,8,9", "5,,8", "5x,1,1",
                          "inf,1,1", "measured"}) {
    try {
      parse_cost_model(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("RDMACOLL_COST_MODEL"), std::string::npos) << msg;
      EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace rdmacoll::collectives
