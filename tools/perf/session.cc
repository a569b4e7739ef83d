#include "session.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <sstream>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::perf {

namespace bs = rdmacoll::bootstrap;

Buffer::Buffer(size_t bytes) : n_(bytes) {
  size_t len = std::max<size_t>(bytes, 1);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error("cannot allocate a buffer of " + std::to_string(bytes) + " bytes: " + std::strerror(errno));
  p_ = static_cast<uint8_t*>(p);
}

Buffer::~Buffer() { munmap(p_, std::max<size_t>(n_, 1)); }

void fill(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    if ((i & 7) == 0) x = x * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = static_cast<uint8_t>(x >> (8 * (i & 7)));
  }
}

uint64_t count_wrong(const uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1, wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    if ((i & 7) == 0) x = x * 6364136223846793005ull + 1442695040888963407ull;
    wrong += p[i] != static_cast<uint8_t>(x >> (8 * (i & 7)));
  }
  return wrong;
}

void throw_spin_timeout(const transport::Transport& t, const char* what, int peer) {
  throw TimeoutError("rank " + std::to_string(t.rank()) + ": " + what + " did not finish before the deadline; rank " +
                     std::to_string(peer) + " did not answer (is it alive? --timeout / RDMACOLL_TIMEOUT sets the wait)");
}

namespace {

std::map<std::string, std::string> items(const std::string& key) {
  std::map<std::string, std::string> m;
  std::istringstream in(key);
  std::string item;
  while (in >> item) {
    auto eq = item.find('=');
    m[item.substr(0, eq)] = eq == std::string::npos ? "" : item.substr(eq + 1);
  }
  return m;
}

bs::Bytes to_bytes(const std::string& s) { return bs::Bytes(s.begin(), s.end()); }
std::string to_string(const bs::Bytes& b) { return std::string(b.begin(), b.end()); }

// Device flags become the settings the backends read.
void apply_device_flags(const Options& o) {
  if (o.backend == transport::Backend::Verbs) {
    if (!o.device.empty())
      setenv("RDMACOLL_IB_DEVICE", (o.device + (o.ib_port ? ":" + std::to_string(o.ib_port) : "")).c_str(), 1);
    if (o.gid_index) setenv("RDMACOLL_IB_GID_INDEX", std::to_string(*o.gid_index).c_str(), 1);
  } else {
    if (!o.device.empty())
      setenv("UCX_NET_DEVICES", (o.device + ":" + std::to_string(o.ib_port ? o.ib_port : 1)).c_str(), 1);
    if (o.gid_index) setenv("UCX_IB_GID_INDEX", std::to_string(*o.gid_index).c_str(), 1);
  }
}

}  // namespace

Session::Session(Options options) : o_(std::move(options)) {
  timeout_ = o_.timeout > 0 ? o_.timeout : settings::get_seconds("RDMACOLL_TIMEOUT");
  bs::LaunchInfo info;
  std::optional<bs::LaunchInfo> launched;
  if (o_.server.empty()) launched = bs::detect_launch();
  if (!o_.server.empty()) {
    mode_ = "client";
    info.rank = 1;
    info.world_size = 2;
    // HOST uses --port; HOST:PORT and [V6ADDR]:PORT carry their own.
    if (o_.server.find(':') == std::string::npos) {
      info.host = o_.server;
      info.port = o_.port;
    } else {
      std::tie(info.host, info.port) = bs::parse_host_port(o_.server, "the server address");
    }
    info.source = "client of " + o_.server;
  } else if (launched) {
    mode_ = "launched";
    info = *launched;
    if (info.world_size < 2 || info.world_size % 2 != 0)
      throw ConfigError("launched with " + std::to_string(info.world_size) + " rank(s) (from " + info.source +
                        "): the ranks are measured in pairs, so the world size must be even and at least 2");
  } else {
    mode_ = "server";
    info.rank = 0;
    info.world_size = 2;
    info.host = o_.bind;
    info.port = o_.port;
    info.source = "server mode";
  }
  rank_ = info.rank;
  const int n = info.world_size;
  pairs_ = n / 2;
  if (mode_ == "launched") {
    active_ = rank_ < n / 2;
    partner_ = active_ ? rank_ + n / 2 : rank_ - n / 2;
    printer_ = rank_ == 0;
  } else {
    active_ = rank_ == 1;  // the client measures, as in perftest
    partner_ = 1 - rank_;
    printer_ = true;
  }

  if (mode_ == "server" && !o_.json)
    std::cout << "************************************\n* Waiting for client to connect... *\n"
                 "************************************\n"
              << "(" << tool_name(o_.tool) << " listening on " << o_.bind << ":" << o_.port << ", for "
              << timeout_ << " s)\n"
              << std::flush;

  world_ = bs::connect_world(info, bs::deadline_in(timeout_));

  // Agree on the measurement before the transport starts: every rank publishes what it was told.
  std::string mine = measurement_key(o_) + "\n";
  for (const std::string& f : o_.explicit_flags) mine += f + " ";
  std::vector<bs::Bytes> all;
  try {
    all = bs::all_gather(*world_.store, "perf/options", rank_, n, to_bytes(mine), bs::deadline_in(timeout_));
  } catch (const TimeoutError& e) {
    if (mode_ == "server")
      throw TimeoutError("no client connected to " + o_.bind + ":" + std::to_string(o_.port) + " within " +
                         std::to_string(static_cast<int>(timeout_)) + " s (--timeout); start `" +
                         std::string(tool_name(o_.tool)) + " THIS_HOST` on the client");
    throw;
  }
  // Both sides judge the flags and may both stop; the server, which serves the store, must not
  // take it away while the client still reads the options (the client would see "connection
  // closed" instead of the mismatch).
  bs::barrier_rank0_last(*world_.store, "perf/options-read", rank_, n, bs::deadline_in(timeout_));
  std::vector<std::string> keys, flags;
  for (const bs::Bytes& b : all) {
    std::string s = to_string(b);
    auto nl = s.find('\n');
    keys.push_back(s.substr(0, nl));
    flags.push_back(nl == std::string::npos ? "" : s.substr(nl + 1));
  }
  if (mode_ == "launched") {
    auto ref = items(keys[0]);
    for (int r = 1; r < n; ++r) {
      if (keys[static_cast<size_t>(r)] == keys[0]) continue;
      auto other = items(keys[static_cast<size_t>(r)]);
      std::string diff;
      for (auto& [k, v] : ref)
        if (other[k] != v) diff += (diff.empty() ? "" : "; ") + k + "=" + v + " on rank 0 but " + k + "=" + other[k] +
                                   " on rank " + std::to_string(r);
      throw ConfigError("the ranks were started with different measurement flags: " + diff +
                        "; start every rank with the same flags");
    }
  } else {
    // The client's measurement flags rule; the server's explicit ones must match them.
    auto server = items(keys[0]), client = items(keys[1]);
    std::istringstream given(flags[0]);
    std::string k;  // explicit flags are named as the key's items are
    while (given >> k) {
      if (server[k] != client[k])
        throw ConfigError("the server was started with " + k + "=" + server[k] + " but the client asked for " + k +
                          "=" + client[k] + "; give the server the same flags, or none");
    }
    apply_measurement_key(o_, keys[1]);
  }

  apply_device_flags(o_);
  transport::Options topt = transport::Options::from_settings();
  topt.backend = o_.backend;
  // The passive side of a one-sided bandwidth test has nothing to do until the end: it sleeps
  // (as perftest's does) rather than spin on a core the measurement needs.
  if (!o_.progress_given && !active_ && o_.tool == Tool::Bw && (o_.op == Op::Write || o_.op == Op::Read))
    o_.progress = transport::ProgressMode::Block;
  topt.progress = o_.progress;
  t_ = transport::Transport::create(world_, topt);

  const size_t max_size = o_.sizes.back();
  local_ = std::make_unique<Buffer>(max_size);
  local_mem_ = t_->register_memory(local_->data(), max_size, transport::kLocalOnly);
  // The window comes from the transport, as the transport asks of memory peers write into (and
  // as ucx_perftest's comes from UCX): on UCX shared memory that is a segment the partner maps,
  // so its writes are stores rather than messages this side's worker copies in.
  window_mem_ = t_->allocate_memory(std::max<size_t>(max_size, 1), transport::kRemoteWrite | transport::kRemoteRead);
  std::vector<uint8_t> packed = t_->pack_window(window_mem_);
  auto windows = bs::all_gather(*world_.store, "perf/window", rank_, n, packed, bs::deadline_in(timeout_));
  partner_window_ = t_->unpack_window(partner_, windows[static_cast<size_t>(partner_)]);
}

Session::~Session() = default;

int Session::world_size() const { return world_.info.world_size; }

Deadline Session::deadline() const { return bs::deadline_in(timeout_); }

LoopDeadline::LoopDeadline(Session& s) : s_(s), period_(s.timer().ticks(0.1)) { reset(s.timer().now()); }

void LoopDeadline::reset(uint64_t now_ticks) {
  last_ = now_ticks;
  auto now = Clock::now();
  dl_ = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s_.timeout_seconds()));
  if (s_.active()) s_.keepalive(now);
}

void Session::ready() {
  uint8_t b = 1;
  if (active_) t_->recv(partner_, kTagReady, &b, 1).wait(deadline());
  else t_->send(partner_, kTagReady, &b, 1).wait(deadline());
}

void Session::keepalive(Clock::time_point now) {
  if (now - last_alive_ < std::chrono::duration<double>(timeout_ / 4)) return;
  last_alive_ = now;
  static const uint8_t kAlive = 0;
  alive_.push_back(t_->send(partner_, kTagDone, &kAlive, 1));
}

void Session::done() {
  if (active_) {
    static const uint8_t kDone = 1;
    alive_.push_back(t_->send(partner_, kTagDone, &kDone, 1));
    for (transport::Request& r : alive_) r.wait(deadline());
    alive_.clear();
    return;
  }
  // The active side sends "alive" every quarter of the timeout while it measures; each one
  // restarts this wait, so a long measurement does not time out but a dead partner does.
  // It sleeps meanwhile where the backend can (verbs: on the completion channel): a passive
  // rank spinning would take a core from the measurement, as perftest's passive side does not.
  for (;;) {
    uint8_t b = 0;
    transport::Request r = t_->recv(partner_, kTagDone, &b, 1);
    Deadline dl = deadline();
    while (!r.test()) {
      auto now = Clock::now();
      if (now >= dl) r.wait(dl);  // throws the transport's timeout, naming the partner
      t_->wait_for_event(std::min(dl, now + std::chrono::milliseconds(100)));
    }
    if (b == 1) return;
  }
}

std::vector<std::vector<double>> Session::exchange(size_t i, const std::vector<double>& mine) {
  const std::string prefix = "perf/result/" + std::to_string(i) + "/";
  bs::Bytes b(mine.size() * sizeof(double));
  if (!b.empty()) std::memcpy(b.data(), mine.data(), b.size());
  world_.store->set(prefix + std::to_string(rank_), b);
  std::vector<std::vector<double>> out;
  if (!printer_) return out;
  for (int r = 0; r < world_.info.world_size; ++r) {
    bs::Bytes v = world_.store->get(prefix + std::to_string(r), deadline());
    std::vector<double> d(v.size() / sizeof(double));
    if (!d.empty()) std::memcpy(d.data(), v.data(), d.size() * sizeof(double));
    out.push_back(std::move(d));
  }
  return out;
}

void Session::finish() {
  for (transport::Request& r : alive_) r.wait(deadline());
  alive_.clear();
  bs::finalize(world_, deadline());
}

}  // namespace rdmacoll::perf
