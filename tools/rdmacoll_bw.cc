// rdmacoll-bw: one-way bandwidth and message rate over the transport, perftest style.
//   server$ rdmacoll-bw --transport verbs
//   client$ rdmacoll-bw --transport verbs -s 1M server-host
//   rdmacoll-run -n 2 rdmacoll-bw -a --check          (pairs ranks r and r+N/2)
// The active side keeps --tx-depth operations in flight and stamps each one when posted and when
// seen complete; BW average is bytes x iterations over first post to last completion, BW peak
// the best rate over any tx-depth consecutive operations. The measured operations start once the
// warm-up ones have all completed (windowed_loop).
#include <algorithm>
#include <cstring>
#include <vector>

#include "perf/runner.h"
#include "perf/report.h"

namespace {

using namespace rdmacoll::perf;
using rdmacoll::transport::Request;

constexpr uint32_t kLastImm = 0xFFFFFFFF;  // the fence after a size's writes

Request post(Session& s, size_t bytes, size_t i) {
  auto& t = s.transport();
  switch (s.options().op) {
    case Op::Write: return t.write(s.partner(), s.local(), bytes, s.partner_window(), 0);
    case Op::WriteImm: return t.write(s.partner(), s.local(), bytes, s.partner_window(), 0, static_cast<uint32_t>(i));
    case Op::Send: return t.send(s.partner(), kTagData, s.local(), bytes);
    case Op::Read: return t.read(s.partner(), s.local(), bytes, s.partner_window(), 0);
  }
  return {};
}

std::vector<double> active(Session& s, size_t bytes) {
  const Options& o = s.options();
  auto& t = s.transport();
  if (o.op == Op::Read) std::memset(s.local(), 0, bytes);
  else fill(s.local(), bytes, seed_forward(bytes));
  s.ready();

  const size_t depth = std::max<size_t>(o.tx_depth, 1);
  const Timer& tm = s.timer();
  std::vector<uint64_t> posted(o.iters), completed(o.iters);
  std::vector<Request> ring(depth);
  LoopDeadline dl(s);
  windowed_loop(
      o.warmup, o.iters, depth,
      [&](size_t i) {
        if (i >= o.warmup) posted[i - o.warmup] = tm.now();
        ring[i % depth] = post(s, bytes, i);
      },
      [&](size_t i) {
        complete(s, ring[i % depth], dl.get(), "the bandwidth loop");
        uint64_t now = tm.now();
        if (i >= o.warmup) completed[i - o.warmup] = now;
        dl.tick(now);
      });
  // Writes complete locally before they are visible remotely on some transports (UCX puts); a
  // zero-length write with an immediate is ordered after them and tells the partner they landed.
  if (o.op == Op::Write) {
    Request fence = t.write(s.partner(), nullptr, 0, s.partner_window(), 0, kLastImm);
    complete(s, fence, s.deadline(), "the closing write");
  }
  s.done();
  uint64_t wrong = o.check && o.op == Op::Read ? count_wrong(s.local(), bytes, seed_forward(bytes)) : 0;
  std::vector<double> posted_s(o.iters), completed_s(o.iters);
  for (size_t i = 0; i < o.iters; ++i) {
    posted_s[i] = tm.seconds(posted[i] - posted[0]);
    completed_s[i] = tm.seconds(completed[i] - posted[0]);
  }
  BwResult r = bw_result(bytes, posted_s, completed_s, depth);
  return {static_cast<double>(wrong), static_cast<double>(bytes), static_cast<double>(r.iters), r.peak_Bps,
          r.avg_Bps, r.msg_rate};
}

std::vector<double> passive(Session& s, size_t bytes) {
  const Options& o = s.options();
  auto& t = s.transport();
  const size_t total = o.warmup + o.iters;
  if (o.op == Op::Read) fill(s.window(), bytes, seed_forward(bytes));
  else std::memset(s.window(), 0, bytes);
  std::vector<Request> recvs;
  size_t posted = 0;
  if (o.op == Op::Send)
    for (; posted < std::min(total, o.tx_depth); ++posted) recvs.push_back(t.recv(s.partner(), kTagData, s.window(), bytes));
  s.ready();

  LoopDeadline dl(s);
  if (o.op == Op::Send) {
    for (size_t i = 0; i < total; ++i) {
      Request& r = recvs[i % recvs.size()];
      complete(s, r, dl.get(), "receiving the partner's messages");
      dl.tick(s.timer().now());
      if (posted < total) {
        r = t.recv(s.partner(), kTagData, s.window(), bytes);
        ++posted;
      }
    }
  } else if (o.op == Op::WriteImm) {
    for (size_t i = 0; i < total; ++i) {
      Request n = t.notification(s.partner());
      complete(s, n, dl.get(), "waiting for the partner's writes");
      dl.tick(s.timer().now());
    }
  }
  s.done();  // keeps waiting while the partner says it is alive
  if (o.op == Op::Write) {
    Request n = t.notification(s.partner());  // the closing write: everything before it has landed
    complete(s, n, s.deadline(), "waiting for the partner's closing write");
  }
  uint64_t wrong = o.check && o.op != Op::Read ? count_wrong(s.window(), bytes, seed_forward(bytes)) : 0;
  return {static_cast<double>(wrong)};
}

}  // namespace

int main(int argc, char** argv) {
  return run(Tool::Bw, argc, argv, [](Session& s, size_t bytes) { return s.active() ? active(s, bytes) : passive(s, bytes); });
}
