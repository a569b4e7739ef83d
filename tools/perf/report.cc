#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <ostream>

namespace rdmacoll::perf {

BwResult bw_result(size_t bytes, const std::vector<double>& posted, const std::vector<double>& completed,
                   size_t window) {
  BwResult r;
  r.bytes = bytes;
  r.iters = completed.size();
  if (completed.empty()) return r;
  const size_t n = completed.size();
  double total = completed.back() - posted.front();
  if (total > 0) {
    r.avg_Bps = static_cast<double>(bytes) * static_cast<double>(n) / total;
    r.msg_rate = static_cast<double>(n) / total;
  }
  // perftest's peak is the best rate over any run of operations; runs of one tx-depth are the
  // ones that can overlap fully, so those are the ones compared here.
  const size_t w = std::clamp<size_t>(window, 1, n);
  for (size_t i = 0; i + w <= n; ++i) {
    double t = completed[i + w - 1] - posted[i];
    if (t > 0) r.peak_Bps = std::max(r.peak_Bps, static_cast<double>(bytes) * static_cast<double>(w) / t);
  }
  r.peak_Bps = std::max(r.peak_Bps, r.avg_Bps);
  return r;
}

BwResult sum(const std::vector<BwResult>& pairs) {
  BwResult s;
  for (const BwResult& p : pairs) {
    s.bytes = p.bytes;
    s.iters = p.iters;
    s.peak_Bps += p.peak_Bps;
    s.avg_Bps += p.avg_Bps;
    s.msg_rate += p.msg_rate;
    s.wrong += p.wrong;
  }
  return s;
}

LatStats lat_stats(size_t bytes, std::vector<double> v) {
  LatStats s;
  s.bytes = bytes;
  s.iters = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  auto rank = [&](double p) {  // nearest rank: the smallest value with at least p of the samples at or below it
    size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
    return v[std::clamp<size_t>(k, 1, n) - 1];
  };
  s.min = v.front();
  s.max = v.back();
  s.typical = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  s.avg = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(n);
  double sq = 0;
  for (double x : v) sq += (x - s.avg) * (x - s.avg);
  s.stdev = std::sqrt(sq / static_cast<double>(n));
  s.p99 = rank(0.99);
  s.p999 = rank(0.999);
  return s;
}

std::string json_quote(std::string_view s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

namespace {

// JSON has no NaN or Inf; a number that is not finite becomes null.
std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

std::string_view op_title(Op op) {
  switch (op) {
    case Op::Write: return "RDMA write";
    case Op::WriteImm: return "RDMA write with immediate";
    case Op::Send: return "send/recv";
    case Op::Read: return "RDMA read";
  }
  return "?";
}

constexpr const char* kRule =
    "---------------------------------------------------------------------------------------------------------";

}  // namespace

Report::Report(std::ostream& out, RunInfo info) : out_(out), info_(std::move(info)) {}

void Report::begin() {
  if (info_.options.json) return;
  const Options& o = info_.options;
  const transport::TransportInfo& t = info_.transport;
  const bool bw = o.tool == Tool::Bw;
  char line[256];
  out_ << kRule << "\n";
  std::snprintf(line, sizeof line, "                    %s: %s %s test\n", std::string(tool_name(o.tool)).c_str(),
                std::string(op_title(o.op)).c_str(), bw ? "bandwidth" : "latency");
  out_ << line;
  auto field = [&](const char* name, const std::string& value) {
    std::snprintf(line, sizeof line, " %-16s: %-24s", name, value.c_str());
    out_ << line;
  };
  auto or_na = [](const std::string& s) { return s.empty() ? std::string("n/a") : s; };
  field("Transport", std::string(transport::to_string(t.backend)));
  field("Device", or_na(t.device));
  out_ << "\n";
  field("Port", t.port > 0 ? std::to_string(t.port) : "n/a");
  field("Link layer", or_na(t.link_layer));
  out_ << "\n";
  field("GID index", t.gid_index >= 0 ? std::to_string(t.gid_index) : "n/a");
  field("GID", or_na(t.gid));
  out_ << "\n";
  field("MTU", t.mtu > 0 ? std::to_string(t.mtu) + " B" : "n/a");
  field("QP type", or_na(t.qp_type));
  out_ << "\n";
  field("Max inline", t.max_inline > 0 || t.backend == transport::Backend::Verbs ? std::to_string(t.max_inline) + " B" : "n/a");
  field("Progress", std::string(transport::to_string(o.progress)));
  out_ << "\n";
  field("Mode", info_.mode + (info_.mode == "launched" ? " (" + std::to_string(info_.world_size) + " ranks)" : ""));
  field("Pairs", std::to_string(info_.pairs));
  out_ << "\n";
  if (bw) field("TX depth", std::to_string(o.tx_depth));
  field("Warm-up iters", std::to_string(o.warmup));
  if (!bw) field("Data check", o.check ? "on" : "off");
  out_ << "\n";
  if (bw) field("Data check", o.check ? "on" : "off");
  field("Clock", or_na(info_.clock));
  out_ << "\n";
  out_ << kRule << "\n";
  if (bw) {
    const char* u = o.gbits ? "Gb/sec" : "MiB/sec";
    std::snprintf(line, sizeof line, " %-10s %-14s BW peak[%s]    BW average[%s]   MsgRate[Mpps]\n", "#bytes",
                  "#iterations", u, u);
  } else {
    std::snprintf(line, sizeof line,
                  " %-8s %-12s %-14s %-14s %-16s %-14s %-15s %-22s %s\n", "#bytes", "#iterations", "t_min[usec]",
                  "t_max[usec]", "t_typical[usec]", "t_avg[usec]", "t_stdev[usec]", "99% percentile[usec]",
                  "99.9% percentile[usec]");
  }
  out_ << line << std::flush;
}

void Report::row(const BwResult& r) {
  const Options& o = info_.options;
  const double scale = o.gbits ? 8.0 / 1e9 : 1.0 / (1 << 20);
  if (o.json) {
    json_rows_.push_back("{\"bytes\": " + std::to_string(r.bytes) + ", \"iterations\": " + std::to_string(r.iters) +
                         ", \"bw_peak\": " + num(r.peak_Bps * scale) + ", \"bw_average\": " + num(r.avg_Bps * scale) +
                         ", \"msg_rate_mpps\": " + num(r.msg_rate / 1e6) +
                         (o.check ? ", \"wrong_bytes\": " + std::to_string(r.wrong) : std::string()) + "}");
    return;
  }
  char line[256];
  std::snprintf(line, sizeof line, " %-10zu %-14zu %-18.2f %-22.2f %.6f%s\n", r.bytes, r.iters, r.peak_Bps * scale,
                r.avg_Bps * scale, r.msg_rate / 1e6,
                o.check ? (r.wrong ? ("   WRONG: " + std::to_string(r.wrong) + " bytes").c_str() : "   data ok") : "");
  out_ << line << std::flush;
}

void Report::row(const LatStats& r) {
  const Options& o = info_.options;
  if (o.json) {
    json_rows_.push_back("{\"bytes\": " + std::to_string(r.bytes) + ", \"iterations\": " + std::to_string(r.iters) +
                         ", \"t_min\": " + num(r.min) + ", \"t_max\": " + num(r.max) + ", \"t_typical\": " +
                         num(r.typical) + ", \"t_avg\": " + num(r.avg) + ", \"t_stdev\": " + num(r.stdev) +
                         ", \"p99\": " + num(r.p99) + ", \"p99_9\": " + num(r.p999) +
                         (o.check ? ", \"wrong_bytes\": " + std::to_string(r.wrong) : std::string()) + "}");
    return;
  }
  char line[320];
  std::snprintf(line, sizeof line, " %-8zu %-12zu %-14.2f %-14.2f %-16.2f %-14.2f %-15.2f %-22.2f %.2f%s\n", r.bytes,
                r.iters, r.min, r.max, r.typical, r.avg, r.stdev, r.p99, r.p999,
                o.check ? (r.wrong ? ("   WRONG: " + std::to_string(r.wrong) + " bytes").c_str() : "   data ok") : "");
  out_ << line << std::flush;
}

void Report::end() {
  const Options& o = info_.options;
  if (!o.json) {
    out_ << kRule << "\n" << std::flush;
    return;
  }
  const transport::TransportInfo& t = info_.transport;
  const bool bw = o.tool == Tool::Bw;
  out_ << "{\n"
       << "  \"tool\": " << json_quote(tool_name(o.tool)) << ",\n"
       << "  \"test\": " << json_quote(bw ? "bandwidth" : "latency") << ",\n"
       << "  \"op\": " << json_quote(to_string(o.op)) << ",\n"
       << "  \"mode\": " << json_quote(info_.mode) << ",\n"
       << "  \"world_size\": " << info_.world_size << ",\n"
       << "  \"pairs\": " << info_.pairs << ",\n"
       << "  \"transport\": {\"backend\": " << json_quote(transport::to_string(t.backend))
       << ", \"device\": " << json_quote(t.device) << ", \"port\": " << t.port << ", \"gid_index\": " << t.gid_index
       << ", \"gid\": " << json_quote(t.gid) << ", \"link_layer\": " << json_quote(t.link_layer)
       << ", \"mtu\": " << t.mtu << ", \"qp_type\": " << json_quote(t.qp_type) << ", \"max_inline\": " << t.max_inline
       << ", \"progress\": " << json_quote(transport::to_string(o.progress)) << "},\n"
       << "  \"clock\": " << json_quote(info_.clock) << ",\n"
       << "  \"iterations\": " << o.iters << ",\n"
       << "  \"warmup\": " << o.warmup << ",\n";
  if (bw) out_ << "  \"tx_depth\": " << o.tx_depth << ",\n";
  out_ << "  \"check\": " << (o.check ? "true" : "false") << ",\n";
  if (bw)
    out_ << "  \"units\": {\"bw_peak\": " << json_quote(o.gbits ? "Gb/s" : "MiB/s")
         << ", \"bw_average\": " << json_quote(o.gbits ? "Gb/s" : "MiB/s") << ", \"msg_rate_mpps\": \"Mpps\"},\n";
  else
    out_ << "  \"units\": {\"latency\": \"usec\"},\n";
  out_ << "  \"results\": [";
  for (size_t i = 0; i < json_rows_.size(); ++i) out_ << (i ? ",\n    " : "\n    ") << json_rows_[i];
  out_ << (json_rows_.empty() ? "]\n" : "\n  ]\n") << "}\n" << std::flush;
}

}  // namespace rdmacoll::perf
