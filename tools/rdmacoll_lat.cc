// rdmacoll-lat: latency over the transport, perftest style.
//   server$ rdmacoll-lat --transport verbs
//   client$ rdmacoll-lat --transport verbs -s 8 server-host
//   rdmacoll-run -n 2 rdmacoll-lat -a
// write:     ping-pong; each side writes into the other's window and polls the last byte of its
//            own (as ib_write_lat). Reported: half the round trip.
// write_imm: ping-pong on write-with-immediate notifications. Half the round trip.
// send:      ping-pong on tagged send/recv (as ib_send_lat). Half the round trip.
// read:      one read of the partner's window at a time (as ib_read_lat). The whole operation.
#include <cstring>
#include <vector>

#include "perf/runner.h"

namespace {

using namespace rdmacoll::perf;
using rdmacoll::transport::Request;

// The value the last byte carries in iteration i: never 0 (the reset value), and never the
// value of the iteration before.
inline uint8_t marker(size_t i) { return static_cast<uint8_t>(i % 255 + 1); }

// Spins until the last byte of this rank's window shows iteration i's marker.
void await_marker(Session& s, size_t bytes, size_t i, Deadline deadline) {
  volatile const uint8_t* last = s.window() + bytes - 1;
  const uint8_t want = marker(i);
  spin(s.transport(), [&] { return *last == want; }, deadline, "the latency ping-pong", s.partner());
}

std::vector<double> measure(Session& s, size_t bytes) {
  const Options& o = s.options();
  auto& t = s.transport();
  const bool act = s.active();
  const int peer = s.partner();
  const size_t total = o.warmup + o.iters;
  // Each side sends its own pattern; the last byte is overwritten with the marker.
  fill(s.local(), bytes, act ? seed_forward(bytes) : seed_backward(bytes));
  if (o.op == Op::Read && !act) fill(s.window(), bytes, seed_forward(bytes));
  else std::memset(s.window(), 0, bytes);

  const Timer& tm = s.timer();
  LoopDeadline dl(s);
  std::vector<double> record{0};
  record.reserve(o.iters + 1);
  Request rr;
  if (o.op == Op::Send) rr = t.recv(peer, kTagData, s.window(), bytes);
  s.ready();

  if (o.op == Op::Read) {
    if (act) {
      for (size_t i = 0; i < total; ++i) {
        uint64_t t0 = tm.now();
        Request r = t.read(peer, s.local(), bytes, s.partner_window(), 0);
        complete(s, r, dl.get(), "a read");
        uint64_t t1 = tm.now();
        if (i >= o.warmup) record.push_back(tm.micros(t1 - t0));
        dl.tick(t1);
      }
    }
    s.done();
    if (o.check && act) record[0] = static_cast<double>(count_wrong(s.local(), bytes, seed_forward(bytes)));
    return record;
  }

  for (size_t i = 0; i < total; ++i) {
    uint64_t t0 = tm.now();
    dl.tick(t0);
    if (act) {
      // ping, then wait for the pong
      Request w;
      if (o.op == Op::Write) {
        s.local()[bytes - 1] = marker(i);
        w = t.write(peer, s.local(), bytes, s.partner_window(), 0);
        await_marker(s, bytes, i, dl.get());
      } else if (o.op == Op::WriteImm) {
        w = t.write(peer, s.local(), bytes, s.partner_window(), 0, static_cast<uint32_t>(i));
        Request n = t.notification(peer);
        complete(s, n, dl.get(), "the latency ping-pong");
      } else {
        w = t.send(peer, kTagData, s.local(), bytes);
        complete(s, rr, dl.get(), "the latency ping-pong");
      }
      complete(s, w, dl.get(), "the latency ping-pong");
      uint64_t t1 = tm.now();
      if (o.op == Op::Send && i + 1 < total) rr = t.recv(peer, kTagData, s.window(), bytes);
      if (i >= o.warmup) record.push_back(tm.micros(t1 - t0) / 2);
    } else {
      // wait for the ping, then pong
      Request w;
      if (o.op == Op::Write) {
        await_marker(s, bytes, i, dl.get());
        s.local()[bytes - 1] = marker(i);
        w = t.write(peer, s.local(), bytes, s.partner_window(), 0);
      } else if (o.op == Op::WriteImm) {
        Request n = t.notification(peer);
        complete(s, n, dl.get(), "the latency ping-pong");
        w = t.write(peer, s.local(), bytes, s.partner_window(), 0, static_cast<uint32_t>(i));
      } else {
        complete(s, rr, dl.get(), "the latency ping-pong");
        w = t.send(peer, kTagData, s.local(), bytes);
        // The next receive is posted after the pong is on its way, off the round trip's
        // path (the ping it waits for cannot come before the pong has arrived).
        if (i + 1 < total) rr = t.recv(peer, kTagData, s.window(), bytes);
      }
      complete(s, w, dl.get(), "the latency ping-pong");
    }
  }
  s.done();
  if (o.check) {
    // Everything but the marker byte holds the other side's pattern.
    uint64_t seed = act ? seed_backward(bytes) : seed_forward(bytes);
    record[0] = static_cast<double>(count_wrong(s.window(), bytes - 1, seed));
  }
  if (!act) record.resize(1);
  return record;
}

}  // namespace

int main(int argc, char** argv) { return run(Tool::Lat, argc, argv, measure); }
