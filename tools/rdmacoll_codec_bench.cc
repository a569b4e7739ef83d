// rdmacoll-codec-bench: encode + decode throughput of the compression codecs (codec.h), in GB/s
// (10^9 bytes/s) of fp32 input, next to memcpy of the same buffer in the same run.
//
// Each iteration times one encode and one decode of the whole buffer; memcpy is timed between
// the codecs' iterations, so load from other jobs hits both. Figures are medians over the
// iterations (best in brackets in the JSON).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace {

using rdmacoll::collectives::Codec;
using rdmacoll::collectives::SimdPath;

constexpr const char* kDefaultCodecs = "fp16,bf16,int8,sign,qsgd:4,terngrad,topk:0.01,randk:0.01";

int usage(std::ostream& out, int code) {
  out << "usage: rdmacoll-codec-bench [--size BYTES] [--iters N] [--warmup N] [--codecs LIST]\n"
         "                            [--simd auto|avx2|portable] [--json]\n"
         "  --size BYTES    fp32 input per encode (K, M, G suffixes: powers of 2); default 16M\n"
         "  --iters N       timed iterations per codec (median reported); default 20\n"
         "  --warmup N      untimed iterations first; default 2\n"
         "  --codecs LIST   comma-separated codec names (see README); default\n"
         "                  " << kDefaultCodecs << "\n"
         "  --simd PATH     kernels to run: auto (RDMACOLL_SIMD), avx2 or portable; default auto\n"
         "  --json          print one JSON object instead of the table\n";
  return code;
}

// A whole number, at most 10^12 (--iters, --warmup).
bool parse_count(std::string_view s, std::size_t& out) {
  if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string_view::npos) return false;
  out = std::stoull(std::string(s));
  return true;
}

// A byte count as every other tool and setting reads it (settings::parse_bytes: 16M, 4KiB, ...).
bool parse_bytes(std::string_view s, std::size_t& out) {
  try {
    out = static_cast<std::size_t>(rdmacoll::settings::parse_bytes("--size", s));
  } catch (const rdmacoll::ConfigError&) {
    return false;
  }
  return true;
}

std::vector<std::string> split_commas(std::string_view s) {
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos <= s.size();) {
    const std::size_t comma = std::min(s.find(',', pos), s.size());
    out.emplace_back(s.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// The goals (figures to report, not assertions): fraction of memcpy's throughput.
double goal_of(const Codec& c) {
  using rdmacoll::collectives::CodecKind;
  switch (c.spec().kind) {
    case CodecKind::fp16:
    case CodecKind::bf16:
    case CodecKind::int8:
    case CodecKind::sign: return 0.5;
    case CodecKind::qsgd:
    case CodecKind::topk: return 0.25;
    default: return 0;
  }
}

struct Row {
  std::string name;
  std::size_t wire = 0, nonfinite = 0;
  double enc = 0, dec = 0, both = 0, best = 0;  // seconds (median; best of encode+decode)
  double goal = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::size_t bytes = std::size_t{16} << 20, iters = 20, warmup = 2;
  std::string codecs = kDefaultCodecs;
  SimdPath simd = SimdPath::automatic;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    const auto bad = [&](std::string_view why) {
      std::cerr << "rdmacoll-codec-bench: " << why << "\n";
      return usage(std::cerr, 2);
    };
    if (a == "-h" || a == "--help") return usage(std::cout, 0);
    if (a == "--json") {
      json = true;
    } else if (a == "--size" || a == "--iters" || a == "--warmup" || a == "--codecs" || a == "--simd") {
      if (!has_value) return bad(std::string(a) + " needs a value");
      const std::string_view v = argv[++i];
      if (a == "--size" && (!parse_bytes(v, bytes) || bytes < 4 || bytes % 4 != 0))
        return bad("--size '" + std::string(v) + "' is not a byte count that is a positive multiple of 4");
      if (a == "--iters" && (!parse_count(v, iters) || iters == 0))
        return bad("--iters '" + std::string(v) + "' is not a positive whole number");
      if (a == "--warmup" && !parse_count(v, warmup))
        return bad("--warmup '" + std::string(v) + "' is not a whole number");
      if (a == "--codecs") codecs = v;
      if (a == "--simd") {
        if (v == "auto") simd = SimdPath::automatic;
        else if (v == "avx2") simd = SimdPath::avx2;
        else if (v == "portable") simd = SimdPath::portable;
        else return bad("--simd '" + std::string(v) + "' is not auto, avx2 or portable");
      }
    } else {
      return bad("unknown argument '" + std::string(a) + "'");
    }
  }

  std::vector<std::unique_ptr<Codec>> list;
  try {
    for (const std::string& name : split_commas(codecs)) list.push_back(rdmacoll::collectives::make_codec(name, simd));
  } catch (const std::invalid_argument& e) {
    std::cerr << "rdmacoll-codec-bench: " << e.what() << "\n";
    return 2;
  } catch (const rdmacoll::Error& e) {
    std::cerr << "rdmacoll-codec-bench: " << e.what() << "\n";
    return 1;
  }

  const std::size_t n = bytes / 4;
  std::vector<float> in(n), out(n), copy(n);
  std::mt19937 gen(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& x : in) x = normal(gen);
  std::size_t max_wire = 0;
  for (const auto& c : list) max_wire = std::max(max_wire, c->wire_bytes(n));
  std::vector<std::byte> wire(max_wire);

  std::vector<double> memcpy_times;
  std::vector<Row> rows;
  for (const auto& c : list) {
    Row r;
    r.name = c->name();
    r.wire = c->wire_bytes(n);
    r.goal = goal_of(*c);
    std::vector<double> enc, dec, both;
    for (std::size_t it = 0; it < warmup + iters; ++it) {
      auto t0 = std::chrono::steady_clock::now();
      std::memcpy(copy.data(), in.data(), bytes);
      const double tm = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      r.nonfinite = c->encode(in.data(), n, wire.data(), it).nonfinite;
      const double te = seconds_since(t0);
      t0 = std::chrono::steady_clock::now();
      c->decode(wire.data(), n, out.data());
      const double td = seconds_since(t0);
      if (it < warmup) continue;
      memcpy_times.push_back(tm);
      enc.push_back(te);
      dec.push_back(td);
      both.push_back(te + td);
    }
    r.enc = median(enc);
    r.dec = median(dec);
    r.both = median(both);
    r.best = *std::min_element(both.begin(), both.end());
    rows.push_back(r);
  }
  const double gb = static_cast<double>(bytes) / 1e9;
  const double mem = memcpy_times.empty() ? 0 : gb / median(memcpy_times);
  const std::string_view path = list.empty() ? "none" : rdmacoll::collectives::to_string(list.front()->simd());

  if (json) {
    // Measured figures with six significant digits, not fixed decimals: a small run on a loaded
    // machine put top-k at 0.00002x memcpy, which four decimals printed as 0.
    std::printf("{\"tool\": \"rdmacoll-codec-bench\", \"size_bytes\": %zu, \"elements\": %zu, \"iters\": %zu, "
                "\"simd\": \"%.*s\", \"memcpy_gbps\": %.6g, \"codecs\": [",
                bytes, n, iters, static_cast<int>(path.size()), path.data(), mem);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("%s{\"name\": \"%s\", \"wire_bytes\": %zu, \"compression\": %.4f, \"encode_gbps\": %.6g, "
                  "\"decode_gbps\": %.6g, \"gbps\": %.6g, \"best_gbps\": %.6g, \"vs_memcpy\": %.6g, "
                  "\"goal_vs_memcpy\": %.2f, \"nonfinite\": %zu}",
                  i ? ", " : "", r.name.c_str(), r.wire, static_cast<double>(bytes) / static_cast<double>(r.wire),
                  gb / r.enc, gb / r.dec, gb / r.both, gb / r.best, gb / r.both / mem, r.goal, r.nonfinite);
    }
    std::printf("]}\n");
    return 0;
  }
  std::printf("# rdmacoll-codec-bench: %zu bytes of fp32 (%zu elements), %zu iterations (median), kernels %.*s\n",
              bytes, n, iters, static_cast<int>(path.size()), path.data());
  std::printf("# GB/s = 10^9 bytes of fp32 input per second; encode+decode = one encode and one decode\n");
  std::printf("%-16s %12s %7s %10s %10s %14s %9s %6s %s\n", "codec", "wire bytes", "ratio", "enc GB/s", "dec GB/s",
              "enc+dec GB/s", "x memcpy", "goal", "");
  std::printf("%-16s %12zu %7.2f %10s %10s %14.2f %9.2f %6s\n", "memcpy", bytes, 1.0, "-", "-", mem, 1.0, "-");
  for (const Row& r : rows) {
    const double ratio = gb / r.both / mem;
    char goal[16] = "-";
    if (r.goal > 0) std::snprintf(goal, sizeof goal, "%.2f", r.goal);
    std::printf("%-16s %12zu %7.2f %10.2f %10.2f %14.2f %9.2f %6s %s\n", r.name.c_str(), r.wire,
                static_cast<double>(bytes) / static_cast<double>(r.wire), gb / r.enc, gb / r.dec, gb / r.both, ratio,
                goal, r.goal == 0 ? "" : ratio >= r.goal ? "met" : "not met");
  }
  return 0;
}
