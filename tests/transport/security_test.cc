// The bootstrap's authentication and its parsers, as pure functions (no sockets): tags, the
// store's handshake and requests, and the connection data. The socket-level behaviour (a
// rogue client is refused while the job goes on) is in store_test.cc.
#include <gtest/gtest.h>

#include "bootstrap/auth.h"
#include "bootstrap/store_proto.h"
#include "conn_data.h"
#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"
#include "wire.h"

namespace rdmacoll {
namespace {

namespace auth = bootstrap::auth;
namespace proto = bootstrap::proto;
using Bytes = std::vector<uint8_t>;

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "(no ProtocolError)";
}

auth::Context some_context() {
  auth::Context c;
  for (size_t i = 0; i < auth::kNonceBytes; ++i) c.server_nonce[i] = static_cast<uint8_t>(i), c.client_nonce[i] = static_cast<uint8_t>(100 + i);
  return c;
}

TEST(Auth, TagIsHmacSha256OfTheContextAndMessage) {
  // Every input is bound: the key, the direction, the sequence number, both nonces, the message.
  const auth::Key key = auth::key_of("token");
  const Bytes msg = {1, 2, 3};
  const auth::Context ctx = some_context();
  const auth::Tag t = auth::tag(key, auth::Direction::ClientToServer, ctx, 7, msg);
  EXPECT_EQ(t, auth::tag(key, auth::Direction::ClientToServer, ctx, 7, msg));
  EXPECT_NE(t, auth::tag(auth::key_of("other"), auth::Direction::ClientToServer, ctx, 7, msg));
  EXPECT_NE(t, auth::tag(key, auth::Direction::ServerToClient, ctx, 7, msg));
  EXPECT_NE(t, auth::tag(key, auth::Direction::ClientToServer, ctx, 8, msg));
  auth::Context other = ctx;
  other.client_nonce[0] ^= 1;
  EXPECT_NE(t, auth::tag(key, auth::Direction::ClientToServer, other, 7, msg));
  EXPECT_NE(t, auth::tag(key, auth::Direction::ClientToServer, ctx, 7, Bytes{1, 2, 4}));
}

TEST(Auth, OpenAcceptsTheSealedMessageAndNothingElse) {
  const auth::Key key = auth::key_of("token");
  const auth::Context ctx = some_context();
  Bytes msg = {9, 8, 7, 6};
  Bytes sealed = msg;
  auth::seal(sealed, key, auth::Direction::ClientToServer, ctx, 3);
  ASSERT_EQ(sealed.size(), msg.size() + auth::kTagBytes);
  auto opened = auth::open(sealed, key, auth::Direction::ClientToServer, ctx, 3, "m");
  EXPECT_EQ(Bytes(opened.begin(), opened.end()), msg);
  // Wrong token, no token, replayed at another position, altered, truncated.
  EXPECT_NE(error_of([&] { auth::open(sealed, auth::key_of("wrong"), auth::Direction::ClientToServer, ctx, 3, "m"); })
                .find("m: authentication failed"),
            std::string::npos);
  EXPECT_THROW(auth::open(sealed, auth::key_of(""), auth::Direction::ClientToServer, ctx, 3, "m"), ProtocolError);
  EXPECT_THROW(auth::open(sealed, key, auth::Direction::ClientToServer, ctx, 4, "m"), ProtocolError);
  Bytes altered = sealed;
  altered[0] ^= 0x80;
  EXPECT_THROW(auth::open(altered, key, auth::Direction::ClientToServer, ctx, 3, "m"), ProtocolError);
  EXPECT_NE(error_of([&] { auth::open(Bytes(10), key, auth::Direction::ClientToServer, ctx, 3, "m"); }).find("too short"),
            std::string::npos);
}

TEST(Auth, NoTokenMeansAPublicKeyThatATokenHolderRefuses) {
  EXPECT_FALSE(auth::key_of("").from_token);
  EXPECT_TRUE(auth::key_of("x").from_token);
  EXPECT_NE(auth::key_of("").secret, auth::key_of("x").secret);
  EXPECT_EQ(auth::random_token().size(), 64u);
  EXPECT_NE(auth::random_token(), auth::random_token());
  EXPECT_NE(auth::random_nonce(), auth::random_nonce());
}

TEST(StoreProto, HandshakeRoundTripsAndBindsBothNonces) {
  const auth::Key key = auth::key_of("token");
  const auth::Nonce sn = auth::random_nonce(), cn = auth::random_nonce();
  EXPECT_EQ(proto::parse_server_hello(proto::server_hello(sn), "s"), sn);
  Bytes hello = proto::client_hello(key, sn, cn);
  auth::Context ctx = proto::accept_client_hello(hello, key, sn, "c");
  EXPECT_EQ(ctx.server_nonce, sn);
  EXPECT_EQ(ctx.client_nonce, cn);
  // Replayed on another connection (another server nonce), or with the wrong token: refused.
  EXPECT_NE(error_of([&] { proto::accept_client_hello(hello, key, auth::random_nonce(), "c"); }).find("authentication failed"),
            std::string::npos);
  EXPECT_THROW(proto::accept_client_hello(proto::client_hello(auth::key_of("bad"), sn, cn), key, sn, "c"), ProtocolError);
  // Without a tag, truncated, or a request instead of a hello.
  Bytes no_tag(hello.begin(), hello.end() - auth::kTagBytes);
  EXPECT_NE(error_of([&] { proto::accept_client_hello(no_tag, key, sn, "c"); }).find("no authentication tag"),
            std::string::npos);
  EXPECT_NE(error_of([&] { proto::accept_client_hello(Bytes(hello.begin(), hello.begin() + 12), key, sn, "c"); })
                .find("truncated"),
            std::string::npos);
  wire::Writer get;
  get.header(proto::kGet).str("k").u64(0);
  EXPECT_NE(error_of([&] { proto::accept_client_hello(get.data(), key, sn, "c"); }).find("expected a hello"),
            std::string::npos);
}

TEST(StoreProto, WrongVersionIsRefusedNamingBoth) {
  wire::Writer w;
  w.u32(wire::kMagic).u16(wire::kVersion + 1).u16(proto::kClientHello);
  w.raw(Bytes(auth::kNonceBytes + auth::kTagBytes).data(), auth::kNonceBytes + auth::kTagBytes);
  std::string e = error_of([&] { proto::accept_client_hello(w.data(), auth::key_of("t"), {}, "peer 1.2.3.4:5"); });
  EXPECT_NE(e.find("peer 1.2.3.4:5: protocol version " + std::to_string(wire::kVersion + 1)), std::string::npos) << e;
}

TEST(StoreProto, RefusalCarriesItsReasonToTheClient) {
  Bytes r = proto::refusal("authentication failed");
  std::string e = error_of([&] { proto::parse_server_hello(r, "rendezvous store 127.0.0.1:1"); });
  EXPECT_NE(e.find("rendezvous store 127.0.0.1:1 refused this process: authentication failed"), std::string::npos) << e;
  EXPECT_NO_THROW(proto::throw_if_refused(proto::server_hello({}), "x"));
}

TEST(StoreProto, FramesAreBoundedBeforeTheirPayloadArrives) {
  EXPECT_EQ(proto::complete_frame(Bytes{3, 0, 0}, 100, "f"), std::nullopt);
  EXPECT_EQ(proto::complete_frame(Bytes{3, 0, 0, 0, 1, 2}, 100, "f"), std::nullopt);
  EXPECT_EQ(proto::complete_frame(Bytes{3, 0, 0, 0, 1, 2, 3}, 100, "f"), 3u);
  std::string e = error_of([] { proto::complete_frame(Bytes{0x01, 0x01, 0, 0}, proto::kMaxHandshakeFrame, "from X"); });
  EXPECT_NE(e.find("from X: frame of 257 bytes exceeds the limit of 256 bytes"), std::string::npos) << e;
  EXPECT_THROW(proto::complete_frame(Bytes{0xff, 0xff, 0xff, 0xff}, bootstrap::net::kMaxFrame, "f"), ProtocolError);
}

TEST(StoreProto, RequestsParseAndBadOnesAreRefused) {
  wire::Writer set;
  set.header(proto::kSet).str("key").bytes(Bytes{1, 2});
  proto::Request q = proto::parse_request(set.data(), "r");
  EXPECT_EQ(q.op, proto::kSet);
  EXPECT_EQ(q.keys, std::vector<std::string>{"key"});
  EXPECT_EQ(q.value, (Bytes{1, 2}));

  wire::Writer wait;
  wait.header(proto::kWait).u64(2).str("a").str("b").u64(1ull << 62);
  q = proto::parse_request(wait.data(), "r");
  EXPECT_EQ(q.keys.size(), 2u);
  EXPECT_EQ(q.timeout_ms, proto::kMaxWaitMs);  // cut to a day

  wire::Writer many;
  many.header(proto::kWait).u64(1ull << 40);
  EXPECT_NE(error_of([&] { proto::parse_request(many.data(), "r"); }).find("exceed the limit"), std::string::npos);
  wire::Writer lies;  // a count the message cannot hold
  lies.header(proto::kWait).u64(1000).str("a");
  EXPECT_NE(error_of([&] { proto::parse_request(lies.data(), "r"); }).find("truncated"), std::string::npos);
  wire::Writer huge_key;
  huge_key.header(proto::kSet).u64(proto::kMaxKey + 1);
  EXPECT_NE(error_of([&] { proto::parse_request(huge_key.data(), "r"); }).find("exceeds the limit"), std::string::npos);
  wire::Writer unknown;
  unknown.header(77);
  EXPECT_NE(error_of([&] { proto::parse_request(unknown.data(), "r"); }).find("unknown operation 77"), std::string::npos);
  wire::Writer trailing;
  trailing.header(proto::kAdd).str("k").i64(1).u8(0);
  EXPECT_THROW(proto::parse_request(trailing.data(), "r"), ProtocolError);
  Bytes cut = set.data();
  cut.pop_back();
  EXPECT_NE(error_of([&] { proto::parse_request(cut, "r"); }).find("truncated"), std::string::npos);
}

TEST(StoreProto, RepliesParse) {
  wire::Writer t;
  t.header(proto::kTimedOut).u64(2).str("x").str("y");
  EXPECT_EQ(proto::parse_reply(t.data(), "p").missing, (std::vector<std::string>{"x", "y"}));
  wire::Writer i;
  i.header(proto::kInt).i64(-4);
  EXPECT_EQ(proto::parse_reply(i.data(), "p").number, -4);
  wire::Writer bad;
  bad.header(proto::kSet);
  EXPECT_THROW(proto::parse_reply(bad.data(), "p"), ProtocolError);
}

TEST(ConnData, VerbsConnectRoundTripsAndChecksItsPeer) {
  transport::conn::VerbsConnect c;
  c.header_size = 24;
  c.lid = 7;
  c.mtu = 3;
  c.dest_rd_atomic = 16;
  c.gid[15] = 1;
  c.qpn = {0, 11, 12};
  c.psn = {0, 21, 22};
  Bytes b = transport::conn::encode(c);
  auto d = transport::conn::decode_verbs_connect(b, 0, 3, 24);
  EXPECT_EQ(d.qpn, c.qpn);
  EXPECT_EQ(d.psn, c.psn);
  EXPECT_EQ(d.gid, c.gid);
  EXPECT_NE(error_of([&] { transport::conn::decode_verbs_connect(b, 0, 4, 24); }).find("world size 3"), std::string::npos);
  EXPECT_NE(error_of([&] { transport::conn::decode_verbs_connect(b, 0, 3, 32); }).find("incompatible"), std::string::npos);
  Bytes cut(b.begin(), b.end() - 1);
  EXPECT_THROW(transport::conn::decode_verbs_connect(cut, 0, 3, 24), ProtocolError);
  c.dest_rd_atomic = 0;
  EXPECT_THROW(transport::conn::decode_verbs_connect(transport::conn::encode(c), 0, 3, 24), ProtocolError);
}

TEST(ConnData, WindowsCarryOnlyRemoteRightsAndNoWrappingRange) {
  transport::conn::Window w;
  w.addr = 0x1000;
  w.length = 64;
  w.access = transport::kRemoteWrite;
  w.rkey = 5;
  auto d = transport::conn::decode_verbs_window(transport::conn::encode_verbs_window(w), 1);
  EXPECT_EQ(d.rkey, 5u);
  EXPECT_EQ(d.access, unsigned{transport::kRemoteWrite});
  w.packed_rkey = {1, 2, 3};
  EXPECT_EQ(transport::conn::decode_ucx_window(transport::conn::encode_ucx_window(w), 1).packed_rkey, w.packed_rkey);
  // A verbs description is not a UCX one.
  EXPECT_NE(error_of([&] { transport::conn::decode_ucx_window(transport::conn::encode_verbs_window(w), 1); })
                .find("same RDMACOLL_TRANSPORT"),
            std::string::npos);
  auto bad = w;
  bad.access = 0x80;
  EXPECT_THROW(transport::conn::decode_verbs_window(transport::conn::encode_verbs_window(bad), 1), ProtocolError);
  bad = w;
  bad.access = 0;
  EXPECT_THROW(transport::conn::decode_verbs_window(transport::conn::encode_verbs_window(bad), 1), ProtocolError);
  bad = w;
  bad.addr = ~uint64_t{0} - 10;
  EXPECT_NE(error_of([&] { transport::conn::decode_verbs_window(transport::conn::encode_verbs_window(bad), 1); })
                .find("wraps around"),
            std::string::npos);
}

TEST(ConnData, UcxWireupMessagesCheckWhoTheyClaimToBe) {
  transport::conn::UcxListen l{2, 4, auth::random_nonce(), "10.0.0.3", 4242};
  Bytes b = transport::conn::encode(l);
  EXPECT_EQ(transport::conn::decode_ucx_listen(b, 2, 4).ip, "10.0.0.3");
  EXPECT_EQ(transport::conn::peek_type(b, "x"), transport::conn::kUcxListen);
  EXPECT_NE(error_of([&] { transport::conn::decode_ucx_listen(b, 1, 4); }).find("claims rank 2 of 4, expected 1 of 4"),
            std::string::npos);
  EXPECT_EQ(transport::conn::decode_ucx_listen(b, 2, 4).nonce, l.nonce);
  transport::conn::UcxAddress a{0, 2, auth::random_nonce(), {}};
  EXPECT_THROW(transport::conn::decode_ucx_address(transport::conn::encode(a), 0, 2), ProtocolError);  // empty
  a.address = {1, 2, 3};
  EXPECT_EQ(transport::conn::decode_ucx_address(transport::conn::encode(a), 0, 2).address, a.address);
  EXPECT_EQ(transport::conn::decode_ucx_address(transport::conn::encode(a), 0, 2).nonce, a.nonce);
}

TEST(ConnData, UcxHelloIsSignedForItsPairOfRanksAndTheirNonces) {
  const auth::Key key = auth::key_of("token");
  const transport::conn::UcxHello h{1, 2, 3, auth::random_nonce(), auth::random_nonce()};
  Bytes b = transport::conn::encode_ucx_hello(key, h);
  EXPECT_EQ(b.size(), transport::conn::kUcxHelloBytes);
  EXPECT_NO_THROW(transport::conn::decode_ucx_hello(b, key, h));
  // Without the token; from another rank; to another rank; from another transport or job
  // (other nonces); truncated.
  EXPECT_NE(error_of([&] { transport::conn::decode_ucx_hello(b, auth::key_of(""), h); }).find("authentication failed"),
            std::string::npos);
  auto other = h;
  other.from = 0;
  EXPECT_THROW(transport::conn::decode_ucx_hello(b, key, other), ProtocolError);
  other = h;
  other.to = 0;
  EXPECT_THROW(transport::conn::decode_ucx_hello(b, key, other), ProtocolError);
  other = h;
  other.to_nonce = auth::random_nonce();
  EXPECT_THROW(transport::conn::decode_ucx_hello(b, key, other), ProtocolError);
  EXPECT_THROW(transport::conn::decode_ucx_hello(Bytes(b.begin(), b.begin() + 20), key, h), ProtocolError);
  // A hello that claims another rank, signed with the token, still fails on the claim.
  auto liar = h;
  liar.from = 2;
  EXPECT_NE(error_of([&] { transport::conn::decode_ucx_hello(transport::conn::encode_ucx_hello(key, liar), key, h); })
                .find("claims rank 2 of 3, expected 1 of 3"),
            std::string::npos);
}

}  // namespace
}  // namespace rdmacoll
