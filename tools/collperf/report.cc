#include "collperf/report.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <numeric>
#include <ostream>
#include <sstream>

#include "perf/report.h"

namespace rdmacoll::collperf {

using perf::json_quote;

double busbw_factor(Collective c, int nranks) {
  const double n = nranks;
  switch (c) {
    case Collective::allreduce: return 2 * (n - 1) / n;
    case Collective::reduce_scatter:
    case Collective::allgather: return (n - 1) / n;
    case Collective::broadcast:
    case Collective::reduce: return 1;
  }
  return 1;
}

double combine(Average a, const std::vector<double>& t) {
  if (t.empty()) return 0;
  switch (a) {
    case Average::rank0: return t[0];
    case Average::mean: return std::accumulate(t.begin(), t.end(), 0.0) / static_cast<double>(t.size());
    case Average::min: return *std::min_element(t.begin(), t.end());
    case Average::max: return *std::max_element(t.begin(), t.end());
  }
  return t[0];
}

Placement placement(Collective c, int nranks, size_t bytes, double time_us, int64_t wrong) {
  Placement p;
  p.time_us = time_us;
  p.wrong = wrong;
  if (time_us > 0) {
    p.algbw_gbs = static_cast<double>(bytes) / (time_us * 1e-6) / 1e9;
    p.busbw_gbs = p.algbw_gbs * busbw_factor(c, nranks);
  }
  return p;
}

double ring_bytes_per_rank(int nranks, size_t bytes) {
  return busbw_factor(Collective::allreduce, nranks) * static_cast<double>(bytes);
}

Wire wire_columns(int nranks, size_t bytes, double time_us, double wire_bytes) {
  Wire w;
  w.bytes = wire_bytes;
  const double factor = busbw_factor(Collective::allreduce, nranks);
  if (time_us > 0) {
    w.busbw_gbs = wire_bytes / (time_us * 1e-6) / 1e9;
    if (factor > 0) w.algbw_gbs = w.busbw_gbs / factor;
  }
  if (wire_bytes > 0) w.ratio = ring_bytes_per_rank(nranks, bytes) / wire_bytes;
  return w;
}

double avg_busbw(const std::vector<Row>& rows) {
  if (rows.empty()) return 0;
  double s = 0;
  for (const Row& r : rows) s += r.out_of_place.busbw_gbs + r.in_place.busbw_gbs;
  return s / static_cast<double>(2 * rows.size());
}

int64_t total_wrong(const std::vector<Row>& rows) {
  int64_t w = 0;
  for (const Row& r : rows) w += std::max<int64_t>(r.out_of_place.wrong, 0) + std::max<int64_t>(r.in_place.wrong, 0);
  return w;
}

namespace {

__attribute__((format(printf, 1, 2))) std::string printf_string(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

// nccl-tests' time column: fewer decimals as the time grows, always 7 wide.
std::string time_text(double us) {
  if (us >= 10000.0) return printf_string("%7.0f", us);
  if (us >= 100.0) return printf_string("%7.1f", us);
  return printf_string("%7.2f", us);
}

std::string placement_text(const Placement& p) {
  std::string wrong = p.wrong < 0 ? "N/A" : std::to_string(p.wrong);
  std::string s = printf_string("  %7s  %6.2f  %6.2f", time_text(p.time_us).c_str(), p.algbw_gbs, p.busbw_gbs);
  if (const std::optional<Wire>& w = p.wire) {
    s += printf_string("  %10.0f  %6.2f  %6.2f  %6.2f  %8.2e", w->bytes, w->algbw_gbs, w->busbw_gbs, w->ratio,
                       w->relerr);
    s += printf_string("  %5s", wrong.c_str());
    if (w->only_if_faster) s += printf_string("  %4s", w->compressed ? "yes" : "no");
    return s;
  }
  return s + printf_string("  %5s", wrong.c_str());
}

// The column heads of a --compress table: per placement the plain three, then the wire's.
std::string compressed_heads(bool with_compressed) {
  auto line = [&](const char* lead, const char* const* f, const char* last) {
    std::string s = printf_string("%s  %12s  %8s  %6s  %6s", lead, f[0], f[1], f[2], f[3]);
    for (int p = 0; p < 2; ++p) {
      s += printf_string("  %7s  %6s  %6s  %10s  %6s  %6s  %6s  %8s %6s", f[4], f[5], f[6], f[7], f[8], f[9], f[10],
                         f[11], f[12]);
      if (with_compressed) s += printf_string("  %4s", last);
    }
    while (s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  const char* names[] = {"count", "type", "redop", "root", "time", "algbw", "busbw", "wire", "walgbw", "wbusbw",
                         "ratio", "relerr", "#wrong"};
  const char* units[] = {"(elements)", "", "", "", "(us)", "(GB/s)", "(GB/s)", "(B)", "(GB/s)", "(GB/s)", "", "", ""};
  const std::string heads = line("#       size", names, "comp");
  const size_t width = (heads.size() - 1 - 52) / 2;  // one placement's columns
  auto centered = [&](const std::string& t) {
    const size_t left = (width - t.size()) / 2;
    return std::string(left, ' ') + t + std::string(width - t.size() - left, ' ');
  };
  std::string top = "#" + std::string(51, ' ') + centered("out-of-place (algbw, busbw: uncompressed fp32 bytes)") +
                    centered("in-place");
  while (!top.empty() && top.back() == ' ') top.pop_back();
  return top + "\n" + heads + line("#        (B)", units, "");
}

// JSON has no inf or nan.
std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  return printf_string("%.6g", v);
}

std::string mib(int64_t bytes) { return printf_string("%.1f", static_cast<double>(bytes) / (1 << 20)); }

std::string sweep_text(const Options& o) {
  return o.stepbytes ? std::to_string(o.stepbytes) + "(bytes)" : std::to_string(o.stepfactor) + "(factor)";
}

}  // namespace

void print_header(std::ostream& out, const RunInfo& info) {
  const Options& o = info.options;
  const transport::TransportInfo& t = info.transport;
  out << "# " << tool_name(o.collective) << ": nRanks " << info.ranks << " minBytes " << o.minbytes << " maxBytes "
      << o.maxbytes << " step: " << sweep_text(o) << " warmup iters: " << o.warmup << " iters: " << o.iters
      << " validation: " << (o.check ? 1 : 0) << " blocking: " << (o.blocking ? 1 : 0)
      << " average: " << static_cast<int>(o.average) << "\n";
  out << "# Transport: " << info.transport_line << "\n";
  if (o.collective == Collective::allreduce || o.deterministic)
    out << "# Algorithm: " << info.algorithm << (o.deterministic ? ", deterministic" : "") << "\n";
  if (!info.link.empty()) out << "# Link: " << info.link << " per rank and direction (rdmacoll-run --link)\n";
  out << "# Clock: " << info.clock << "\n#\n# Using ranks\n";
  for (const RankLine& r : info.rank_lines)
    out << printf_string("#  Rank %2d Pid %6ld on %10s", r.rank, r.pid, r.host.c_str()) << " transport "
        << transport::to_string(t.backend) << " device " << (r.device.empty() ? "-" : r.device) << " ("
        << (r.qp_type.empty() ? "-" : r.qp_type) << ")\n";
  if (!o.compress.empty()) {
    out << "# Compression: " << o.compress << (o.compress_auto ? " only where it is faster (auto)" : "")
        << ", scheme " << scheme_name(o.scheme) << ", error feedback " << (o.feedback ? "on" : "off") << ", seed "
        << o.seed << "; gradient-like float inputs\n"
        << "# wire: bytes sent per rank per call (the transport's counters, mean over the timed calls and ranks);\n"
        << "# wbusbw = wire / time, walgbw = wbusbw / 2(n-1)/n; ratio = 2(n-1)/n size / wire; relerr = ||out -\n"
        << "# exact|| / ||exact|| of one call against a plain allreduce, max over ranks\n#\n"
        << compressed_heads(o.compress_auto) << std::flush;
    return;
  }
  out << "#\n"
         "#                                                              out-of-place                       in-place\n"
         "#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong\n"
         "#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)\n"
      << std::flush;
}

void print_row(std::ostream& out, const Row& r) {
  out << printf_string("%12zu  %12zu  %8s  %6s  %6d", r.bytes, r.count, std::string(nccl_name(r.type)).c_str(),
                       r.redop.c_str(), r.root)
      << placement_text(r.out_of_place) << placement_text(r.in_place) << "\n"
      << std::flush;
}

void print_footer(std::ostream& out, const RunInfo& info, const std::vector<Row>& rows) {
  const int64_t wrong = total_wrong(rows);
  out << "# Out of bounds values : " << wrong << (wrong == 0 ? " OK" : " FAILED") << "\n"
      << "# Avg bus bandwidth    : " << printf_string("%g", avg_busbw(rows)) << "\n"
      << "# Peak RSS (MiB)       :";
  for (size_t r = 0; r < info.peak_rss_bytes.size(); ++r) out << " rank " << r << " " << mib(info.peak_rss_bytes[r]) << (r + 1 < info.peak_rss_bytes.size() ? "," : "");
  out << "\n# Scratch pool (MiB)   : " << mib(info.scratch_bytes) << " per rank; peak used";
  for (size_t r = 0; r < info.peak_scratch_bytes.size(); ++r) out << " rank " << r << " " << mib(info.peak_scratch_bytes[r]) << (r + 1 < info.peak_scratch_bytes.size() ? "," : "");
  out << "\n#\n" << std::flush;
}

std::string to_json(const RunInfo& info, const std::vector<Row>& rows) {
  const Options& o = info.options;
  const transport::TransportInfo& t = info.transport;
  std::ostringstream j;
  auto ints = [&](const std::vector<int64_t>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
    return s + "]";
  };
  auto place = [&](const Placement& p) {
    std::string s = "{\"time_us\": " + num(p.time_us) + ", \"algbw_gbs\": " + num(p.algbw_gbs) +
                    ", \"busbw_gbs\": " + num(p.busbw_gbs) +
                    ", \"wrong\": " + (p.wrong < 0 ? std::string("null") : std::to_string(p.wrong));
    if (const std::optional<Wire>& w = p.wire)
      s += ", \"wire_bytes\": " + num(w->bytes) + ", \"wire_algbw_gbs\": " + num(w->algbw_gbs) +
           ", \"wire_busbw_gbs\": " + num(w->busbw_gbs) + ", \"compression_ratio\": " + num(w->ratio) +
           ", \"relerr\": " + num(w->relerr) +
           ", \"relerr_limit\": " + (w->relerr_limit < 0 ? std::string("null") : num(w->relerr_limit)) +
           ", \"compressed\": " + (w->compressed ? "true" : "false");
    if (!p.algorithm.empty()) s += ", \"algorithm\": " + json_quote(p.algorithm);
    return s + "}";
  };
  j << "{\n"
    << "  \"tool\": " << json_quote(tool_name(o.collective)) << ",\n"
    << "  \"collective\": " << json_quote(collective_name(o.collective)) << ",\n"
    << "  \"ranks\": " << info.ranks << ",\n"
    << "  \"transport\": {\"backend\": " << json_quote(transport::to_string(t.backend))
    << ", \"device\": " << json_quote(t.device) << ", \"port\": " << t.port << ", \"gid_index\": " << t.gid_index
    << ", \"gid\": " << json_quote(t.gid) << ", \"mtu\": " << t.mtu << ", \"qp_type\": " << json_quote(t.qp_type)
    << ", \"link_layer\": " << json_quote(t.link_layer) << ", \"description\": " << json_quote(info.transport_line)
    << "},\n"
    << "  \"settings\": {\"minbytes\": " << o.minbytes << ", \"maxbytes\": " << o.maxbytes
    << ", \"stepfactor\": " << (o.stepbytes ? 0 : o.stepfactor) << ", \"stepbytes\": " << o.stepbytes
    << ", \"iters\": " << o.iters << ", \"warmup_iters\": " << o.warmup
    << ", \"check\": " << (o.check ? "true" : "false") << ", \"blocking\": " << (o.blocking ? "true" : "false")
    << ", \"average\": " << static_cast<int>(o.average) << ", \"algorithm\": " << json_quote(info.algorithm)
    << ", \"deterministic\": " << (o.deterministic ? "true" : "false") << ", \"clock\": " << json_quote(info.clock)
    << "},\n";
  if (!o.compress.empty())
    j << "  \"compression\": {\"codec\": " << json_quote(o.compress) << ", \"auto\": " << (o.compress_auto ? "true" : "false")
      << ", \"scheme\": " << json_quote(scheme_name(o.scheme)) << ", \"feedback\": " << (o.feedback ? "true" : "false")
      << ", \"seed\": " << o.seed << ", \"wire_bytes\": \"per rank per call, mean over the timed calls and ranks\"},\n";
  j << "  \"hosts\": [";
  for (size_t i = 0; i < info.rank_lines.size(); ++i)
    j << (i ? ", " : "") << "{\"rank\": " << info.rank_lines[i].rank << ", \"pid\": " << info.rank_lines[i].pid
      << ", \"host\": " << json_quote(info.rank_lines[i].host) << ", \"device\": " << json_quote(info.rank_lines[i].device)
      << ", \"qp_type\": " << json_quote(info.rank_lines[i].qp_type) << "}";
  j << "],\n  \"rows\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    j << (i ? ",\n" : "\n") << "    {\"size\": " << r.bytes << ", \"count\": " << r.count
      << ", \"type\": " << json_quote(nccl_name(r.type)) << ", \"redop\": " << json_quote(r.redop)
      << ", \"root\": " << r.root << ", \"out_of_place\": " << place(r.out_of_place)
      << ", \"in_place\": " << place(r.in_place) << "}";
  }
  j << (rows.empty() ? "],\n" : "\n  ],\n")
    << "  \"wrong\": " << total_wrong(rows) << ",\n"
    << "  \"avg_busbw_gbs\": " << num(avg_busbw(rows)) << ",\n"
    << "  \"peak_rss_bytes\": " << ints(info.peak_rss_bytes) << ",\n"
    << "  \"scratch_bytes\": " << info.scratch_bytes << ",\n"
    << "  \"peak_scratch_bytes\": " << ints(info.peak_scratch_bytes) << "\n"
    << "}\n";
  return j.str();
}

}  // namespace rdmacoll::collperf
