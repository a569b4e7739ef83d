// Writes the fuzz targets' seed corpus: one valid message of every kind (and a few streams),
// so that the fuzzers start from inputs that get past the framing and the header.
//   fuzz_seeds DIR   -> DIR/fuzz_store_message/*, DIR/fuzz_conn_data/*, DIR/fuzz_verbs_header/*
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "bootstrap/auth.h"
#include "bootstrap/store_proto.h"
#include "conn_data.h"
#include "rdmacoll/transport/transport.h"
#include "verbs/verbs_wire.h"
#include "wire.h"

namespace fs = std::filesystem;
namespace proto = rdmacoll::bootstrap::proto;
namespace auth = rdmacoll::bootstrap::auth;
namespace conn = rdmacoll::transport::conn;
namespace vw = rdmacoll::transport::verbs_wire;
using Bytes = std::vector<uint8_t>;

namespace {

void write(const fs::path& dir, const std::string& name, const Bytes& b) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes framed(std::initializer_list<Bytes> msgs) {
  Bytes out;
  for (const Bytes& m : msgs) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(m.size() >> (8 * i)));
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

// Connection data seeds carry the fuzzer's selector, world size and rank bytes first.
Bytes with_selector(uint8_t which, uint8_t world_minus_1, uint8_t from, const Bytes& msg) {
  Bytes out{which, world_minus_1, from};
  out.insert(out.end(), msg.begin(), msg.end());
  return out;
}

// Verbs message seeds carry the fuzzer's eager-limit bytes (64 + 960 = 1024) and rank byte first.
Bytes verbs_message(const vw::Header& h, const Bytes& payload = {}) {
  return with_selector(0xc0, 0x03, 1, vw::encode(h, payload));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds DIR\n";
    return 2;
  }
  const fs::path store = fs::path(argv[1]) / "fuzz_store_message", cd = fs::path(argv[1]) / "fuzz_conn_data";
  // The fuzz target's fixed token and server nonce, so a seed hello is one that checks out.
  const auth::Key key = auth::key_of("fuzz-token");
  const auth::Nonce sn{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  rdmacoll::wire::Writer set, get, wait, add, ok, value, timed_out, integer;
  set.header(proto::kSet).str("verbs/connect/0").bytes(Bytes{1, 2, 3, 4});
  get.header(proto::kGet).str("ucx/1/0").u64(60000);
  wait.header(proto::kWait).u64(3).str("barrier/b/0").str("barrier/b/1").str("barrier/b/2").u64(1000);
  add.header(proto::kAdd).str("ucx/transports/0").i64(1);
  ok.header(proto::kOk);
  value.header(proto::kValue).bytes(Bytes{9, 9});
  timed_out.header(proto::kTimedOut).u64(1).str("k/1");
  integer.header(proto::kInt).i64(3);
  const Bytes hello = proto::client_hello(key, sn, sn);
  write(store, "client_hello", hello);
  write(store, "server_hello", proto::server_hello(sn));
  write(store, "refused", proto::refusal("authentication failed"));
  write(store, "set", set.data());
  write(store, "get", get.data());
  write(store, "wait", wait.data());
  write(store, "add", add.data());
  write(store, "reply_ok", ok.data());
  write(store, "reply_value", value.data());
  write(store, "reply_timed_out", timed_out.data());
  write(store, "reply_int", integer.data());
  Bytes sealed = set.data();
  auth::seal(sealed, key, auth::Direction::ClientToServer, {sn, sn}, 1);
  write(store, "sealed_set", sealed);
  write(store, "stream_hello_set", framed({hello, sealed}));

  conn::VerbsConnect vc;
  vc.header_size = 24;
  vc.lid = 1;
  vc.mtu = 3;
  vc.dest_rd_atomic = 16;
  vc.qpn = {0, 17};
  vc.psn = {0, 99};
  write(cd, "verbs_connect", with_selector(0, 1, 0, conn::encode(vc)));
  conn::Window w;
  w.addr = 0x7f0000001000;
  w.length = 1 << 20;
  w.access = rdmacoll::transport::kRemoteWrite;
  w.rkey = 0x1234;
  write(cd, "verbs_window", with_selector(1, 1, 1, conn::encode_verbs_window(w)));
  w.packed_rkey = Bytes(40, 0xab);
  write(cd, "ucx_window", with_selector(2, 1, 1, conn::encode_ucx_window(w)));
  write(cd, "ucx_address", with_selector(3, 1, 1, conn::encode(conn::UcxAddress{1, 2, sn, Bytes(64, 7)})));
  write(cd, "ucx_listen", with_selector(4, 1, 1, conn::encode(conn::UcxListen{1, 2, sn, "10.0.0.2", 4242})));
  write(cd, "ucx_hello", with_selector(5, 1, 1, conn::encode_ucx_hello(key, {1, 0, 2, {}, {}})));

  const fs::path vh = fs::path(argv[1]) / "fuzz_verbs_header";
  write(vh, "eager", verbs_message({vw::kEager, 0, 0, 0, 5, 16, 0, 0}, Bytes(16, 0x5a)));
  write(vh, "eager_empty", verbs_message({vw::kEager, 0, 0, 0, 6, 0, 0, 0}));
  write(vh, "rts", verbs_message({vw::kRts, 0, 0, 0x1234, 7, 1 << 20, 0x7f0000001000, 42}));
  write(vh, "fin", verbs_message({vw::kFin, vw::kFinOk, 0, 0, 0, 0, 0, 42}));
  write(vh, "fin_truncated", verbs_message({vw::kFin, vw::kFinTruncated, 0, 0, 0, 0, 0, 43}));
  std::cout << "seeds written to " << argv[1] << "\n";
  return 0;
}
