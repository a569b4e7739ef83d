// Fuzzes what the TCP store reads from a socket, before and after authentication: the byte
// stream split into frames (bounded lengths), the client's hello (checked against a fixed
// token), requests, replies, the server's hello and refusals. Any exception other than
// ProtocolError, any crash or sanitizer report, is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "bootstrap/auth.h"
#include "bootstrap/store_proto.h"
#include "rdmacoll/error.h"

namespace proto = rdmacoll::bootstrap::proto;
namespace auth = rdmacoll::bootstrap::auth;

namespace {

void each_parser(std::span<const uint8_t> frame) {
  static const auth::Key key = auth::key_of("fuzz-token");
  static const auth::Nonce server_nonce{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  auto attempt = [](auto&& f) {
    try {
      f();
    } catch (const rdmacoll::ProtocolError&) {
    }
  };
  attempt([&] { (void)proto::accept_client_hello(frame, key, server_nonce, "fuzz"); });
  attempt([&] { (void)proto::parse_request(frame, "fuzz"); });
  attempt([&] { (void)proto::parse_reply(frame, "fuzz"); });
  attempt([&] { (void)proto::parse_server_hello(frame, "fuzz"); });
  attempt([&] { proto::throw_if_refused(frame, "fuzz"); });
  attempt([&] {
    auto opened = auth::open(frame, key, auth::Direction::ClientToServer, {server_nonce, server_nonce}, 1, "fuzz");
    (void)proto::parse_request(opened, "fuzz");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  // The input is a stream, as the server's read loop sees it; a small limit for the first
  // frame (the handshake's) and the full one after, as on a real connection.
  size_t max = proto::kMaxHandshakeFrame;
  try {
    while (auto len = proto::complete_frame(in, max, "fuzz")) {
      each_parser(in.subspan(4, *len));
      in = in.subspan(4 + *len);
      max = rdmacoll::bootstrap::net::kMaxFrame;
    }
  } catch (const rdmacoll::ProtocolError&) {
  }
  // And the whole input as one message, so that the fuzzer reaches the parsers without having
  // to learn the framing first.
  each_parser({data, size});
  return 0;
}
