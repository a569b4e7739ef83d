// Fuzzes the collectives' control messages (collectives/src/exec/control.h): the argument check
// every run sends its peers, the abort/argument/timeout messages, the rank lists inside a
// timeout report, and the disagreement text built from peers' argument lines. The first byte
// picks the parser; the rest is the message. The parsers reject bad bytes by returning nullopt:
// any exception, crash, trap (an invariant below) or sanitizer report is a finding.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>

#include "exec/control.h"

namespace exec = rdmacoll::collectives::exec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::span<const uint8_t> msg(data + 1, size - 1);
  const std::string_view text(reinterpret_cast<const char*>(msg.data()), msg.size());
  std::string why;
  switch (data[0] % 4) {
    case 0:
      if (auto m = exec::parse_check(msg, &why)) {
        const auto again = exec::encode_check(*m);  // what parses re-encodes to the same bytes
        if (again.size() != msg.size()) __builtin_trap();
      }
      break;
    case 1:
      if (auto m = exec::parse_control(msg, &why)) {
        if (m->text.size() > exec::kMaxControlText) __builtin_trap();
        (void)exec::encode_control(*m);
      }
      break;
    case 2:
      for (int r : exec::parse_ranks(text, 64))
        if (r < 0 || r >= 64) __builtin_trap();
      break;
    default: {
      // Up to four ranks' argument lines, separated by newlines.
      std::map<int, std::string> lines;
      int rank = 0;
      std::size_t at = 0;
      while (at <= text.size() && rank < 4) {
        std::size_t nl = text.find('\n', at);
        if (nl == std::string_view::npos) nl = text.size();
        lines[rank++] = std::string(text.substr(at, nl - at));
        at = nl + 1;
      }
      (void)exec::describe_disagreement(lines, 5);
      break;
    }
  }
  return 0;
}
