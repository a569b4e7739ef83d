// The control channel's wire formats and texts (control.h): pure functions, fuzzed.
#include "exec/control.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <set>

#include "rdmacoll/error.h"

namespace rdmacoll::collectives::exec {
namespace {

constexpr uint8_t kCheckMagic[4] = {'R', 'C', 'C', 'K'};
constexpr uint8_t kControlMagic[4] = {'R', 'C', 'A', 'B'};

void put16(std::vector<uint8_t>& b, uint16_t v) {
  for (int i = 0; i < 2; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void put64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t get(std::span<const uint8_t> b, std::size_t at, int bytes) {
  uint64_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, b.data() + at, static_cast<std::size_t>(bytes));  // every call checks: one load, not a loop
    return v;
  }
  for (int i = 0; i < bytes; ++i) v |= uint64_t{b[at + static_cast<std::size_t>(i)]} << (8 * i);
  return v;
}

std::optional<CheckMessage> fail_check(std::string* why, std::string text) {
  if (why) *why = std::move(text);
  return std::nullopt;
}
std::optional<ControlMessage> fail_control(std::string* why, std::string text) {
  if (why) *why = std::move(text);
  return std::nullopt;
}


// "k=v k=v" -> ordered (k, v) pairs.
std::vector<std::pair<std::string, std::string>> fields(std::string_view line) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    std::size_t j = line.find(' ', i);
    if (j == std::string_view::npos) j = line.size();
    const std::string_view f = line.substr(i, j - i);
    if (!f.empty()) {
      const std::size_t eq = f.find('=');
      if (eq == std::string_view::npos) out.emplace_back(std::string(f), "");
      else out.emplace_back(std::string(f.substr(0, eq)), std::string(f.substr(eq + 1)));
    }
    i = j;
  }
  return out;
}

}  // namespace

std::vector<uint8_t> encode_check(const CheckMessage& m) {
  std::vector<uint8_t> b(std::begin(kCheckMagic), std::end(kCheckMagic));
  b.reserve(kCheckBytes);
  put16(b, kControlVersion);
  put16(b, 0);
  put64(b, m.seq);
  put64(b, m.digest);
  return b;
}

void encode_check(const CheckMessage& m, uint8_t* out) {
  std::memcpy(out, kCheckMagic, 4);
  if constexpr (std::endian::native == std::endian::little) {
    const uint16_t head[2] = {kControlVersion, 0};
    const uint64_t body[2] = {m.seq, m.digest};
    std::memcpy(out + 4, head, 4);
    std::memcpy(out + 8, body, 16);
    return;
  }
  const uint64_t fields[] = {kControlVersion, 0, m.seq, m.digest};
  const int widths[] = {2, 2, 8, 8};
  std::size_t at = 4;
  for (int f = 0; f < 4; ++f)
    for (int i = 0; i < widths[f]; ++i) out[at++] = static_cast<uint8_t>(fields[f] >> (8 * i));
}

std::optional<CheckMessage> parse_check(std::span<const uint8_t> b, std::string* why) {
  if (b.size() != kCheckBytes)
    return fail_check(why, "argument check of " + std::to_string(b.size()) + " bytes (expected " +
                               std::to_string(kCheckBytes) + ")");
  if (std::memcmp(b.data(), kCheckMagic, 4) != 0) return fail_check(why, "argument check with a wrong magic");
  if (const uint64_t v = get(b, 4, 2); v != kControlVersion)
    return fail_check(why, "argument check of version " + std::to_string(v) + " (this rank speaks " +
                               std::to_string(kControlVersion) + ": all ranks must run the same rdmacoll)");
  return CheckMessage{get(b, 8, 8), get(b, 16, 8)};
}

std::vector<uint8_t> encode_control(const ControlMessage& m) {
  const std::size_t len = std::min(m.text.size(), kMaxControlText);
  std::vector<uint8_t> b(std::begin(kControlMagic), std::end(kControlMagic));
  b.reserve(20 + len);
  put16(b, kControlVersion);
  put16(b, static_cast<uint16_t>(m.kind));
  put64(b, m.seq);
  put32(b, static_cast<uint32_t>(len));
  b.insert(b.end(), m.text.begin(), m.text.begin() + static_cast<std::ptrdiff_t>(len));
  return b;
}

std::optional<ControlMessage> parse_control(std::span<const uint8_t> b, std::string* why) {
  if (b.size() < 20) return fail_control(why, "control message of " + std::to_string(b.size()) + " bytes (at least 20)");
  if (std::memcmp(b.data(), kControlMagic, 4) != 0) return fail_control(why, "control message with a wrong magic");
  if (const uint64_t v = get(b, 4, 2); v != kControlVersion)
    return fail_control(why, "control message of version " + std::to_string(v) + " (this rank speaks " +
                                 std::to_string(kControlVersion) + ")");
  const uint64_t kind = get(b, 6, 2);
  if (kind < static_cast<uint16_t>(ControlMessage::Kind::failed) || kind > static_cast<uint16_t>(ControlMessage::Kind::timeout))
    return fail_control(why, "control message of unknown kind " + std::to_string(kind));
  const uint64_t len = get(b, 16, 4);
  if (len > kMaxControlText || len != b.size() - 20)
    return fail_control(why, "control message text of " + std::to_string(len) + " bytes in a message of " +
                                 std::to_string(b.size()) + " (at most " + std::to_string(kMaxControlText) + ")");
  ControlMessage m;
  m.kind = static_cast<ControlMessage::Kind>(kind);
  m.seq = get(b, 8, 8);
  m.text.assign(reinterpret_cast<const char*>(b.data()) + 20, len);
  return m;
}

std::string format_ranks(const std::vector<int>& ranks, const char* sep) {
  std::string out;
  for (const int r : ranks) out += (out.empty() ? "" : sep) + std::to_string(r);
  return out;
}

std::vector<int> parse_ranks(std::string_view text, int size) {
  std::vector<int> out;
  long v = -1;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ',';
    if (c >= '0' && c <= '9') {
      v = (v < 0 ? 0 : v) * 10 + (c - '0');
      if (v > size) v = size;  // out of range whatever follows
    } else {
      if (v >= 0 && v < size) out.push_back(static_cast<int>(v));
      v = -1;
    }
  }
  return out;
}

uint64_t digest_of(std::string_view args) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : args) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ull;
  return h;
}

std::string describe_disagreement(const std::map<int, std::string>& lines, int size) {
  // Keys in first-seen order; a rank without a line "did not answer".
  std::vector<std::string> keys;
  std::map<int, std::map<std::string, std::string>> by_rank;
  for (const auto& [rank, line] : lines) {
    auto& m = by_rank[rank];
    for (auto& [k, v] : fields(line)) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
      m[k] = v;
    }
  }
  std::string out;
  for (const std::string& k : keys) {
    std::set<std::string> values;
    for (const auto& [rank, line] : lines)
      if (!line.empty()) values.insert(by_rank[rank].count(k) ? by_rank[rank][k] : "(none)");
    if (values.size() < 2) continue;
    out += (out.empty() ? "" : "; ") + k + ":";
    for (const auto& [rank, line] : lines)
      if (!line.empty()) out += " rank " + std::to_string(rank) + " = " + (by_rank[rank].count(k) ? by_rank[rank][k] : "(none)") + ",";
    out.pop_back();
  }
  std::string others;
  for (int r = 0; r < size; ++r) {
    const auto it = lines.find(r);
    if (it == lines.end()) others += " rank " + std::to_string(r) + " did not answer;";
    else if (it->second.empty()) others += " rank " + std::to_string(r) + " had not reached the call;";
  }
  if (out.empty()) out = "the ranks' argument lines differ but no field does (different rdmacoll versions?)";
  if (!others.empty()) out += ";" + others.substr(0, others.size() - 1);
  return out;
}

}  // namespace rdmacoll::collectives::exec
