#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <thread>

#include "bootstrap/auth.h"
#include "bootstrap/socket.h"
#include "bootstrap/store_proto.h"
#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"
#include "support/env.h"
#include "support/multiproc.h"
#include "wire.h"

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

// ---- a rogue process against an authenticated store (issue 8) ------------------------------

constexpr const char* kToken = "0123456789abcdef-the-job-token";

// Sends `frames` (each gets its u32 length; `raw` bytes go as they are) on a fresh connection
// after reading the server's hello, and returns what the server answers before it closes:
// the refusal's text, or "" when it answered nothing.
std::string rogue(uint16_t port, const std::vector<Bytes>& frames, bool raw = false,
                  std::function<Bytes(const auth::Nonce&)> make = nullptr) {
  auto fd = net::connect_tcp("127.0.0.1", port, deadline_in(2));
  Bytes hello = net::recv_frame(fd.get(), deadline_in(2), "server");
  auth::Nonce sn = proto::parse_server_hello(hello, "server");
  std::vector<Bytes> out = frames;
  if (make) out.push_back(make(sn));
  try {
    for (const Bytes& f : out) {
      if (raw) {
        if (::send(fd.get(), f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size())) return "send failed";
      } else {
        net::send_frame(fd.get(), f, deadline_in(2), "server");
      }
    }
    Bytes reply = net::recv_frame(fd.get(), deadline_in(12), "server");
    proto::throw_if_refused(reply, "store");
    return "not refused";
  } catch (const ProtocolError& e) {
    return e.what();
  } catch (const Error& e) {
    return std::string("closed: ") + e.what();
  }
}

TEST(TcpStoreAuth, ClientsWithoutTheTokenOrWithAnotherAreRefusedAndTold) {
  TcpStoreServer server("127.0.0.1", 0, kToken);
  for (std::string token : {"", "wrong-token"}) {
    try {
      TcpStore s("127.0.0.1", server.port(), deadline_in(2), token);
      FAIL() << "a client with token '" << token << "' was let in";
    } catch (const ProtocolError& e) {
      EXPECT_NE(std::string(e.what()).find("refused this process: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("authentication failed"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("RDMACOLL_JOB_TOKEN"), std::string::npos) << e.what();
    }
  }
  TcpStore good("127.0.0.1", server.port(), deadline_in(2), kToken);
  good.set("k", std::string("v"));
  EXPECT_EQ(str(good.get("k", deadline_in(2))), "v");
}

TEST(TcpStoreAuth, AClientWithATokenRefusesAServerWithout) {
  TcpStoreServer server("127.0.0.1", 0, "");
  EXPECT_THROW(TcpStore("127.0.0.1", server.port(), deadline_in(2), kToken), ProtocolError);
  TcpStore plain("127.0.0.1", server.port(), deadline_in(2), "");  // unauthenticated both ends: works
  EXPECT_EQ(plain.add("n", 2), 2);
}

TEST(TcpStoreAuth, RefusalIsLoggedWithThePeerAddress) {
  TcpStoreServer server("127.0.0.1", 0, kToken);
  ::testing::internal::CaptureStderr();
  EXPECT_THROW(TcpStore("127.0.0.1", server.port(), deadline_in(2), "nope"), ProtocolError);
  std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("TCP store: refusing 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("authentication failed"), std::string::npos) << log;
}

TEST(TcpStoreAuth, BadHandshakesAreRefusedAndTheServerServesOthers) {
  TcpStoreServer server("127.0.0.1", 0, kToken);
  const uint16_t port = server.port();
  const auth::Key key = auth::key_of(kToken), wrong = auth::key_of("wrong");
  wire::Writer get;
  get.header(proto::kGet).str("k").u64(0);
  // A request before any hello; a truncated hello; an unsigned one; a wrong version.
  EXPECT_NE(rogue(port, {get.data()}).find("expected a hello"), std::string::npos);
  EXPECT_NE(rogue(port, {}, false, [&](const auth::Nonce& sn) {
              Bytes h = proto::client_hello(key, sn, auth::random_nonce());
              return Bytes(h.begin(), h.begin() + 20);
            }).find("truncated"),
            std::string::npos);
  EXPECT_NE(rogue(port, {}, false, [&](const auth::Nonce& sn) {
              Bytes h = proto::client_hello(key, sn, auth::random_nonce());
              return Bytes(h.begin(), h.end() - auth::kTagBytes);
            }).find("no authentication tag"),
            std::string::npos);
  EXPECT_NE(rogue(port, {}, false, [&](const auth::Nonce& sn) {
              Bytes h = proto::client_hello(key, sn, auth::random_nonce());
              h[4] = static_cast<uint8_t>(wire::kVersion + 1);  // the version's low byte
              return h;
            }).find("protocol version"),
            std::string::npos);
  // Signed with another token; a valid hello replayed from another connection.
  EXPECT_NE(rogue(port, {}, false, [&](const auth::Nonce& sn) {
              return proto::client_hello(wrong, sn, auth::random_nonce());
            }).find("authentication failed"),
            std::string::npos);
  Bytes replayed = proto::client_hello(key, auth::random_nonce(), auth::random_nonce());
  EXPECT_NE(rogue(port, {replayed}).find("authentication failed"), std::string::npos);
  // An oversized length before authenticating: refused before the payload is read.
  EXPECT_NE(rogue(port, {Bytes{0x00, 0x00, 0x00, 0x10, 1, 2, 3}}, true).find("exceeds the limit of 256 bytes"),
            std::string::npos);
  EXPECT_NE(rogue(port, {Bytes{0xff, 0xff, 0xff, 0xff}}, true).find("exceeds the limit"), std::string::npos);
  TcpStore good("127.0.0.1", port, deadline_in(2), kToken);
  good.set("still", std::string("serving"));
  EXPECT_EQ(str(good.get("still", deadline_in(2))), "serving");
}

// A connection that never sends its hello is closed after the job's timeout (RDMACOLL_TIMEOUT,
// read when the server starts), told why, and the server goes on serving; one that is slow but
// within that time is served.
TEST(TcpStoreAuth, AConnectionSilentPastTheTimeoutIsRefusedNamingIt) {
  rdmacoll::testing::ScopedEnv timeout("RDMACOLL_TIMEOUT", "1.5");
  TcpStoreServer server("127.0.0.1", 0, kToken);
  const auth::Key key = auth::key_of(kToken);
  auto silent = net::connect_tcp("127.0.0.1", server.port(), deadline_in(2));
  auto slow = net::connect_tcp("127.0.0.1", server.port(), deadline_in(2));
  auth::Nonce sn = proto::parse_server_hello(net::recv_frame(slow.get(), deadline_in(2), "server"), "server");
  (void)net::recv_frame(silent.get(), deadline_in(2), "server");
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  net::send_frame(slow.get(), proto::client_hello(key, sn, auth::random_nonce()), deadline_in(2), "server");
  Bytes ok = net::recv_frame(slow.get(), deadline_in(2), "server");
  EXPECT_NO_THROW(proto::throw_if_refused(ok, "store"));
  try {
    Bytes reply = net::recv_frame(silent.get(), deadline_in(5), "server");
    proto::throw_if_refused(reply, "store");
    FAIL() << "the silent connection was not refused";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("no authenticated hello within 1.5 s (RDMACOLL_TIMEOUT)"), std::string::npos)
        << e.what();
  }
  TcpStore good("127.0.0.1", server.port(), deadline_in(2), kToken);
  EXPECT_EQ(good.add("n", 1), 1);
}

TEST(TcpStoreAuth, AnAuthenticatedConnectionRefusesAReplayedOrForgedRequest) {
  TcpStoreServer server("127.0.0.1", 0, kToken);
  const auth::Key key = auth::key_of(kToken);
  auto fd = net::connect_tcp("127.0.0.1", server.port(), deadline_in(2));
  auth::Context ctx;
  ctx.server_nonce = proto::parse_server_hello(net::recv_frame(fd.get(), deadline_in(2), "s"), "s");
  ctx.client_nonce = auth::random_nonce();
  net::send_frame(fd.get(), proto::client_hello(key, ctx.server_nonce, ctx.client_nonce), deadline_in(2), "s");
  Bytes ok = net::recv_frame(fd.get(), deadline_in(2), "s");
  EXPECT_EQ(proto::parse_reply(auth::open(ok, key, auth::Direction::ServerToClient, ctx, 0, "s"), "s").type, proto::kOk);
  wire::Writer set;
  set.header(proto::kSet).str("a").bytes(Bytes{1});
  Bytes first = set.data();
  auth::seal(first, key, auth::Direction::ClientToServer, ctx, 1);
  net::send_frame(fd.get(), first, deadline_in(2), "s");
  (void)net::recv_frame(fd.get(), deadline_in(2), "s");
  net::send_frame(fd.get(), first, deadline_in(2), "s");  // the same request again: sequence 1 is spent
  Bytes refused = net::recv_frame(fd.get(), deadline_in(2), "s");
  try {
    proto::throw_if_refused(refused, "store");
    FAIL() << "a replayed request was answered";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("authentication failed"), std::string::npos) << e.what();
  }
}

// The test: rogue clients with no token, a wrong token, truncated messages and
// oversized lengths keep coming while the job's ranks meet; the ranks are not disturbed.
TEST(TcpStoreAuth, RogueClientsAreRefusedWhileTheJobsRanksMeet) {
  TcpStoreServer server("127.0.0.1", 0, kToken);
  const uint16_t port = server.port();
  std::atomic<bool> done{false};
  std::atomic<int> refused{0};
  std::thread attacker([&] {
    for (int i = 0; !done; ++i) {
      std::string r;
      switch (i % 4) {
        case 0:
          try {
            TcpStore("127.0.0.1", port, deadline_in(2), "");
          } catch (const ProtocolError&) {
            ++refused;
          }
          continue;
        case 1:
          r = rogue(port, {}, false, [](const auth::Nonce& sn) {
            return proto::client_hello(auth::key_of("wrong"), sn, auth::random_nonce());
          });
          break;
        case 2:
          r = rogue(port, {Bytes{1, 2, 3}});
          break;
        default:
          r = rogue(port, {Bytes{0xff, 0xff, 0xff, 0x7f, 0}}, true);
      }
      if (r.find("refused this process") != std::string::npos) ++refused;
    }
  });
  const int n = 5;
  std::vector<std::vector<Bytes>> results(n);
  std::vector<std::thread> ranks;
  ::testing::internal::CaptureStderr();  // the refusals' warnings
  for (int r = 0; r < n; ++r)
    ranks.emplace_back([&, r] {
      TcpStore c("127.0.0.1", port, deadline_in(5), kToken);
      for (int round = 0; round < 20; ++round) {
        std::string mine = "rank" + std::to_string(r) + "/" + std::to_string(round);
        results[static_cast<size_t>(r)] = all_gather(c, "ag" + std::to_string(round), r, n,
                                                     {reinterpret_cast<const uint8_t*>(mine.data()), mine.size()},
                                                     deadline_in(10));
        barrier(c, "b" + std::to_string(round), r, n, deadline_in(10));
      }
    });
  for (auto& t : ranks) t.join();
  while (refused < 8) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  done = true;
  attacker.join();
  ::testing::internal::GetCapturedStderr();
  for (int r = 0; r < n; ++r)
    for (int j = 0; j < n; ++j) EXPECT_EQ(str(results[static_cast<size_t>(r)][static_cast<size_t>(j)]), "rank" + std::to_string(j) + "/19");
  EXPECT_GE(refused.load(), 8);
}

TEST(TcpStoreAuth, ConnectWorldServesOnTheAddressItIsGivenOnly) {
  LaunchInfo info;
  info.rank = 0;
  info.world_size = 1;
  info.host = "127.0.0.3";
  info.port = 0;
  info.source = "test";
  World w = connect_world(info, deadline_in(5));
  ASSERT_TRUE(w.server);
  EXPECT_EQ(w.server->host(), "127.0.0.3");
  w.store->set("x", std::string("y"));
  EXPECT_THROW(TcpStore("127.0.0.1", w.server->port(), deadline_in(0.2)), TimeoutError);
  EXPECT_THROW(TcpStore("127.0.0.2", w.server->port(), deadline_in(0.2)), TimeoutError);
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

// A rank that fails reports its messages to rank 0's result, not only to the console: a result
// file (and CI's summary of it) then says what failed there. Rank 2 fails on purpose with a
// message that needs XML escaping; rank 0 expects exactly that failure from join().
TEST(StoreMultiRank, AFailedRanksMessagesReachRankZerosReport) {
  rdmacoll::testing::RankGroup group(3);
  if (group.launched_externally() && !group.spawned_by_rank0()) {  // every rank is its own process with its own result
    group.join();
    GTEST_SKIP() << "ranks launched externally report for themselves";
  }
  if (group.rank() == 2) ADD_FAILURE() << "deliberate failure on rank 2: <a & \"b\">\nsecond line";
  if (group.rank() == 0) {
    EXPECT_NONFATAL_FAILURE(group.join(), "rank 2 failed: exit status 1; its failures:");
  } else {
    group.join();
  }
}

TEST(StoreMultiRank, AFailedRanksReportIsUnescaped) {
  rdmacoll::testing::RankGroup group(2);
  if (group.launched_externally() && !group.spawned_by_rank0()) {
    group.join();
    GTEST_SKIP() << "ranks launched externally report for themselves";
  }
  if (group.rank() == 1) ADD_FAILURE() << "deliberate failure on rank 1: <a & \"b\">\nsecond line";
  if (group.rank() == 0) {
    EXPECT_NONFATAL_FAILURE(group.join(), "deliberate failure on rank 1: <a & \"b\">\nsecond line");
  } else {
    group.join();
  }
}

}  // namespace
}  // namespace rdmacoll::bootstrap
