#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "bootstrap/socket.h"
#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "support/multiproc.h"

namespace rdmacoll::bootstrap {
namespace {

std::string str(const Bytes& b) { return {b.begin(), b.end()}; }

// The same behaviour is expected of every store.
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "tcp") {
      server_ = std::make_unique<TcpStoreServer>("127.0.0.1", 0);
    } else {
      dir_ = std::filesystem::temp_directory_path() /
             ("rdmacoll-filestore-" + std::to_string(getpid()) + "-" +
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
      std::filesystem::remove_all(dir_);
    }
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<Store> client() {
    if (server_) return std::make_unique<TcpStore>("127.0.0.1", server_->port(), deadline_in(5));
    return std::make_unique<FileStore>(dir_);
  }
  std::unique_ptr<TcpStoreServer> server_;
  std::filesystem::path dir_;
};

TEST_P(StoreTest, SetThenGet) {
  auto s = client();
  s->set("a", std::string("hello"));
  EXPECT_EQ(str(s->get("a", deadline_in(1))), "hello");
  s->set("a", std::string(""));  // overwrite with an empty value
  EXPECT_EQ(str(s->get("a", deadline_in(1))), "");
}

TEST_P(StoreTest, GetWaitsForALaterSetFromAnotherClient) {
  auto reader = client();
  std::thread writer([&] {
    auto w = client();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    w->set("late/key", std::string("value"));
  });
  EXPECT_EQ(str(reader->get("late/key", deadline_in(5))), "value");
  writer.join();
}

TEST_P(StoreTest, TimeoutNamesTheMissingKeys) {
  auto s = client();
  s->set("k/0", std::string("x"));
  auto start = Clock::now();
  try {
    s->wait({"k/0", "k/1", "k/2"}, deadline_in(0.2));
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find("k/0"), std::string::npos) << m;
    EXPECT_NE(m.find("k/1"), std::string::npos) << m;
    EXPECT_NE(m.find("k/2"), std::string::npos) << m;
  }
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));  // bounded, not a performance check
  EXPECT_EQ(s->missing({"k/0", "k/1"}), std::vector<std::string>{"k/1"});
}

TEST_P(StoreTest, AddIsAtomicAcrossClients) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      auto c = client();
      for (int i = 0; i < 50; ++i) c->add("counter", 1);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(client()->add("counter", 0), 200);
}

TEST_P(StoreTest, AllGatherAndBarrierAcrossThreads) {
  const int n = 5;
  std::vector<std::vector<Bytes>> results(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      auto c = client();
      std::string mine = "rank" + std::to_string(r);
      results[static_cast<size_t>(r)] =
          all_gather(*c, "ag", r, n, {reinterpret_cast<const uint8_t*>(mine.data()), mine.size()}, deadline_in(5));
      barrier(*c, "b", r, n, deadline_in(5));
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < n; ++j) EXPECT_EQ(str(results[static_cast<size_t>(r)][static_cast<size_t>(j)]), "rank" + std::to_string(j));
}

TEST_P(StoreTest, BarrierTimeoutNamesTheRanksThatNeverCame) {
  auto c = client();
  bool other_timed_out = false;
  std::thread t([&] {
    try {
      barrier(*client(), "b", 1, 4, deadline_in(0.3));
    } catch (const TimeoutError&) {
      other_timed_out = true;
    }
  });
  try {
    barrier(*c, "b", 0, 4, deadline_in(0.3));
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("rank(s) 2, 3 of 4"), std::string::npos) << m;
  }
  t.join();
  EXPECT_TRUE(other_timed_out);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("tcp", "file"));

TEST(TcpStore, ConnectTimeoutNamesTheAddress) {
  // Port 1 on loopback: nothing listens there.
  try {
    TcpStore s("127.0.0.1", 1, deadline_in(0.3));
    FAIL() << "expected TimeoutError";
  } catch (const TimeoutError& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
  }
}

TEST(TcpStore, ServerSurvivesGarbageAndOversizedFrames) {
  TcpStoreServer server("127.0.0.1", 0);
  for (std::vector<uint8_t> junk : {std::vector<uint8_t>{'G', 'E', 'T', ' ', '/', '\r', '\n', '\r', '\n'},
                                    std::vector<uint8_t>{0xff, 0xff, 0xff, 0xff, 1, 2, 3},
                                    std::vector<uint8_t>{8, 0, 0, 0, 1, 2}}) {
    auto fd = net::connect_tcp("127.0.0.1", server.port(), deadline_in(2));
    ASSERT_EQ(::send(fd.get(), junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  }
  TcpStore good("127.0.0.1", server.port(), deadline_in(2));
  good.set("still", std::string("works"));
  EXPECT_EQ(str(good.get("still", deadline_in(2))), "works");
}

TEST(TcpStore, BindsOnlyTheAddressItIsGiven) {
  TcpStoreServer server("127.0.0.1", 0);
  // The same port on another loopback address is not served.
  EXPECT_THROW(TcpStore("127.0.0.2", server.port(), deadline_in(0.2)), TimeoutError);
}

// Ranks as separate processes: the same path the RDMA tests use.
TEST(StoreMultiRank, ThreeProcessesExchangeTheirRanks) {
  rdmacoll::testing::RankGroup group(3);
  std::string mine = std::to_string(group.rank() * 11);
  auto all = all_gather(group.store(), "mp", group.rank(), 3,
                        {reinterpret_cast<const uint8_t*>(mine.data()), mine.size()}, group.deadline());
  EXPECT_EQ(str(all[0]), "0");
  EXPECT_EQ(str(all[1]), "11");
  EXPECT_EQ(str(all[2]), "22");
  group.join();
}

}  // namespace
}  // namespace rdmacoll::bootstrap
