#include <gtest/gtest.h>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"
#include "support/env.h"

namespace rdmacoll::bootstrap {
namespace {
using testing::ScopedEnv;

// Clears every variable detect_launch() reads, so tests see only what they set.
struct CleanLaunchEnv {
  ScopedEnv a{"RDMACOLL_RANK", nullptr}, b{"RDMACOLL_WORLD_SIZE", nullptr}, c{"RDMACOLL_ADDR", nullptr},
      d{"OMPI_COMM_WORLD_RANK", nullptr}, e{"OMPI_COMM_WORLD_SIZE", nullptr}, f{"SLURM_PROCID", nullptr},
      g{"SLURM_NTASKS", nullptr}, h{"SLURM_JOB_NODELIST", nullptr}, i{"RANK", nullptr}, j{"WORLD_SIZE", nullptr},
      k{"MASTER_ADDR", nullptr}, l{"MASTER_PORT", nullptr}, m{"OMPI_MCA_ess_base_jobid", nullptr},
      n{"OMPI_COMM_WORLD_LOCAL_SIZE", nullptr};
};

TEST(Launch, NothingSetMeansNotLaunched) {
  CleanLaunchEnv clean;
  EXPECT_FALSE(detect_launch().has_value());
}

TEST(Launch, RdmacollVariables) {
  CleanLaunchEnv clean;
  ScopedEnv r("RDMACOLL_RANK", "2"), w("RDMACOLL_WORLD_SIZE", "4"), a("RDMACOLL_ADDR", "10.1.2.3:1234");
  auto info = detect_launch();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->rank, 2);
  EXPECT_EQ(info->world_size, 4);
  EXPECT_EQ(info->host, "10.1.2.3");
  EXPECT_EQ(info->port, 1234);
}

TEST(Launch, TorchrunVariables) {
  CleanLaunchEnv clean;
  ScopedEnv r("RANK", "1"), w("WORLD_SIZE", "2"), a("MASTER_ADDR", "head"), p("MASTER_PORT", "29999");
  auto info = detect_launch();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->host, "head");
  EXPECT_EQ(info->port, 29999);
}

TEST(Launch, SlurmUsesFirstNodeOfTheJob) {
  CleanLaunchEnv clean;
  ScopedEnv r("SLURM_PROCID", "3"), n("SLURM_NTASKS", "8"), l("SLURM_JOB_NODELIST", "gpu[07-09,12],login1");
  auto info = detect_launch();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->host, "gpu07");
  EXPECT_EQ(info->port, kDefaultPort);
  EXPECT_EQ(info->rank, 3);
}

TEST(Launch, OpenMpiNeedsAnAddress) {
  CleanLaunchEnv clean;
  ScopedEnv r("OMPI_COMM_WORLD_RANK", "0"), s("OMPI_COMM_WORLD_SIZE", "2");
  try {
    detect_launch();
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("RDMACOLL_ADDR"), std::string::npos) << e.what();
  }
  {
    ScopedEnv a("RDMACOLL_ADDR", "127.0.0.1:5000");
    EXPECT_EQ(detect_launch()->port, 5000);
  }
  // Under mpirun (a job id is set), rank 0 publishes the address in a file named after the job.
  ScopedEnv j("OMPI_MCA_ess_base_jobid", "4242"), l("OMPI_COMM_WORLD_LOCAL_SIZE", "2"), d("RDMACOLL_STORE_DIR", "/x");
  auto info = detect_launch();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->addr_file, "/x/rdmacoll-ompi-4242.addr");
  EXPECT_EQ(info->host, "127.0.0.1");  // every rank is on this node
}

TEST(Launch, InconsistentValuesAreErrors) {
  CleanLaunchEnv clean;
  ScopedEnv r("RDMACOLL_RANK", "4"), w("RDMACOLL_WORLD_SIZE", "4"), a("RDMACOLL_ADDR", "127.0.0.1");
  EXPECT_THROW(detect_launch(), ConfigError);
  ScopedEnv w2("RDMACOLL_WORLD_SIZE", nullptr);
  EXPECT_THROW(detect_launch(), ConfigError);
}

TEST(Launch, HostPortParsing) {
  EXPECT_EQ(parse_host_port("h:1", "X"), (std::pair<std::string, uint16_t>{"h", 1}));
  EXPECT_EQ(parse_host_port("h", "X").second, kDefaultPort);
  EXPECT_EQ(parse_host_port("[::1]:80", "X"), (std::pair<std::string, uint16_t>{"::1", 80}));
  EXPECT_THROW(parse_host_port(":80", "X"), ConfigError);
  EXPECT_THROW(parse_host_port("h:99999", "X"), ConfigError);
  EXPECT_THROW(parse_host_port("h:abc", "X"), ConfigError);
}

TEST(Launch, SlurmNodelists) {
  EXPECT_EQ(first_host_in_nodelist("node1"), "node1");
  EXPECT_EQ(first_host_in_nodelist("node1,node2"), "node1");
  EXPECT_EQ(first_host_in_nodelist("n[3-5]"), "n3");
  EXPECT_EQ(first_host_in_nodelist("rack[2,4]-n[01-03]"), "rack2-n01");
  EXPECT_EQ(first_host_in_nodelist("a[10,12-14]b,c"), "a10b");
}

}  // namespace
}  // namespace rdmacoll::bootstrap

namespace rdmacoll::transport {
namespace {
using testing::ScopedEnv;

// Waits yield the core only where this node's ranks outnumber its usable cores, as the launcher
// tells them; where no launcher says, they yield as before.
TEST(CoresOversubscribed, FromTheLaunchersRanksPerNode) {
  ScopedEnv a{"LOCAL_WORLD_SIZE", nullptr}, b{"OMPI_COMM_WORLD_LOCAL_SIZE", nullptr}, c{"MPI_LOCALNRANKS", nullptr},
      d{"SLURM_NTASKS_PER_NODE", nullptr};
  EXPECT_TRUE(cores_oversubscribed()) << "no launcher variable: assume ranks share cores";
  {
    ScopedEnv one{"LOCAL_WORLD_SIZE", "1"};
    EXPECT_FALSE(cores_oversubscribed());
    EXPECT_FALSE(Options::from_settings().yield_when_idle);
  }
  {
    ScopedEnv many{"OMPI_COMM_WORLD_LOCAL_SIZE", "100000"};
    EXPECT_TRUE(cores_oversubscribed());
    EXPECT_TRUE(Options::from_settings().yield_when_idle);
  }
  {
    ScopedEnv slurm{"SLURM_NTASKS_PER_NODE", "1(x3)"};  // Slurm's form where nodes run the same count
    EXPECT_FALSE(cores_oversubscribed());
  }
  {
    ScopedEnv junk{"MPI_LOCALNRANKS", "two"};
    EXPECT_TRUE(cores_oversubscribed()) << "an unreadable count says nothing";
  }
}

}  // namespace
}  // namespace rdmacoll::transport
