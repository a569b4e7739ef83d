// Codec names: parse_codec() and CodecSpec::name().
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "rdmacoll/collectives/codec.h"

namespace rdmacoll::collectives {
namespace {

constexpr std::string_view kValidForms =
    "none, fp16, bf16, int8[:BLOCK], sign[:BLOCK], qsgd:S[:BUCKET], terngrad[:BUCKET], topk:F, "
    "randk:F, powersgd:R (BLOCK, BUCKET: multiples of 8 in [8, 16777216], defaults 256 for "
    "int8/sign, 64 for qsgd and 512 for terngrad; S in [1, 32767]; F in (0, 1]; R >= 1)";

[[noreturn]] void bad(std::string_view name, std::string_view why) {
  throw std::invalid_argument("codec '" + std::string(name) + "': " + std::string(why) +
                              "; valid forms: " + std::string(kValidForms));
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  for (std::size_t pos = 0;;) {
    const std::size_t colon = s.find(':', pos);
    parts.push_back(s.substr(pos, colon == std::string_view::npos ? colon : colon - pos));
    if (colon == std::string_view::npos) return parts;
    pos = colon + 1;
  }
}

std::uint64_t parse_uint(std::string_view name, std::string_view text, std::string_view what) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    bad(name, std::string(what) + " '" + std::string(text) + "' is not a whole number");
  return v;
}

std::size_t parse_block(std::string_view name, std::string_view text) {
  const std::uint64_t b = parse_uint(name, text, "block size");
  if (b < 8 || b > (1u << 24) || b % 8 != 0)
    bad(name, "block size " + std::string(text) + " is not a multiple of 8 in [8, 16777216]");
  return static_cast<std::size_t>(b);
}

double parse_fraction(std::string_view name, std::string_view text) {
  const std::string s(text);
  char* end = nullptr;
  const double f = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(f > 0.0 && f <= 1.0))
    bad(name, "fraction '" + s + "' is not a number in (0, 1]");
  return f;
}

}  // namespace

CodecSpec parse_codec(std::string_view name) {
  const std::vector<std::string_view> p = split(name);
  const std::string_view kind = p[0];
  const std::size_t args = p.size() - 1;
  const auto arity = [&](std::size_t lo, std::size_t hi) {
    if (args < lo || args > hi)
      bad(name, std::string(kind) + " takes " +
                    (lo == hi ? std::to_string(lo) : std::to_string(lo) + " or " + std::to_string(hi)) +
                    " parameter(s), got " + std::to_string(args));
  };
  CodecSpec s;
  if (kind == "none" || kind == "fp16" || kind == "bf16") {
    arity(0, 0);
    s.kind = kind == "none" ? CodecKind::none : kind == "fp16" ? CodecKind::fp16 : CodecKind::bf16;
  } else if (kind == "int8" || kind == "sign") {
    arity(0, 1);
    s.kind = kind == "int8" ? CodecKind::int8 : CodecKind::sign;
    s.block = args ? parse_block(name, p[1]) : kDefaultCodecBlock;
  } else if (kind == "qsgd") {
    arity(1, 2);
    s.kind = CodecKind::qsgd;
    const std::uint64_t levels = parse_uint(name, p[1], "level count S");
    if (levels < 1 || levels > 32767) bad(name, "level count S=" + std::string(p[1]) + " is not in [1, 32767]");
    s.levels = static_cast<unsigned>(levels);
    s.block = args == 2 ? parse_block(name, p[2]) : kDefaultQsgdBucket;
  } else if (kind == "terngrad") {
    arity(0, 1);
    s.kind = CodecKind::terngrad;
    s.levels = 1;
    s.block = args ? parse_block(name, p[1]) : kDefaultCodecBucket;
  } else if (kind == "topk" || kind == "randk") {
    arity(1, 1);
    s.kind = kind == "topk" ? CodecKind::topk : CodecKind::randk;
    s.fraction = parse_fraction(name, p[1]);
  } else if (kind == "powersgd") {
    arity(1, 1);
    s.kind = CodecKind::powersgd;
    const std::uint64_t rank = parse_uint(name, p[1], "rank R");
    if (rank < 1 || rank > 65536) bad(name, "rank R=" + std::string(p[1]) + " is not in [1, 65536]");
    s.rank = static_cast<unsigned>(rank);
  } else {
    bad(name, "unknown codec '" + std::string(kind) + "'");
  }
  return s;
}

std::string CodecSpec::name() const {
  const auto num = [](double f) {  // shortest text that parses back to f
    char buf[32];
    const auto res = std::to_chars(buf, buf + sizeof buf, f);
    return std::string(buf, res.ptr);
  };
  switch (kind) {
    case CodecKind::none: return "none";
    case CodecKind::fp16: return "fp16";
    case CodecKind::bf16: return "bf16";
    case CodecKind::int8: return "int8:" + std::to_string(block);
    case CodecKind::sign: return "sign:" + std::to_string(block);
    case CodecKind::qsgd: return "qsgd:" + std::to_string(levels) + ":" + std::to_string(block);
    case CodecKind::terngrad: return "terngrad:" + std::to_string(block);
    case CodecKind::topk: return "topk:" + num(fraction);
    case CodecKind::randk: return "randk:" + num(fraction);
    case CodecKind::powersgd: return "powersgd:" + std::to_string(rank);
  }
  return "unknown";
}

}  // namespace rdmacoll::collectives
