// Fuzzes the decoders of the connection data ranks exchange (verbs QPs and windows, UCX worker
// and listener addresses, windows, the wire-up hello). The first byte picks the decoder, the
// next two the receiving rank's world size and the sender's rank; the rest is the message.
// Any exception other than ProtocolError, any crash or sanitizer report, is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "conn_data.h"
#include "rdmacoll/error.h"

namespace conn = rdmacoll::transport::conn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const int which = data[0] % 7;
  const int world = data[1] % 64 + 1;
  const int from = data[2] % world;
  std::span<const uint8_t> msg(data + 3, size - 3);
  try {
    switch (which) {
      case 0: (void)conn::decode_verbs_connect(msg, from, world, 24); break;
      case 1: (void)conn::decode_verbs_window(msg, from); break;
      case 2: (void)conn::decode_ucx_window(msg, from); break;
      case 3: (void)conn::decode_ucx_address(msg, from, world); break;
      case 4: (void)conn::decode_ucx_listen(msg, from, world); break;
      case 5: {
        // The fuzzer does not know the token, so it mostly tests the tag check; the seed
        // (a valid hello) lets mutations of the length and of the tag itself get through.
        static const auto key = rdmacoll::bootstrap::auth::key_of("fuzz-token");
        conn::decode_ucx_hello(msg, key, {static_cast<uint32_t>(from), 0, static_cast<uint32_t>(world), {}, {}});
        break;
      }
      default: (void)conn::peek_type(msg, "fuzz"); break;
    }
  } catch (const rdmacoll::ProtocolError&) {
  }
  return 0;
}
