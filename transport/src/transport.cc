#include <sched.h>

#include <cstdlib>
#include <stdexcept>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "transport_impl.h"

namespace rdmacoll::transport {

std::string_view to_string(Backend b) { return b == Backend::Verbs ? "verbs" : "ucx"; }

Backend parse_backend(std::string_view s) {
  if (s == "verbs") return Backend::Verbs;
  if (s == "ucx") return Backend::Ucx;
  throw ConfigError("unknown transport '" + std::string(s) + "'; expected verbs or ucx");
}

std::string_view to_string(ProgressMode m) {
  switch (m) {
    case ProgressMode::Poll: return "poll";
    case ProgressMode::Block: return "block";
    case ProgressMode::Adaptive: return "adaptive";
  }
  return "?";
}

ProgressMode parse_progress_mode(std::string_view s) {
  if (s == "poll") return ProgressMode::Poll;
  if (s == "block") return ProgressMode::Block;
  if (s == "adaptive") return ProgressMode::Adaptive;
  throw ConfigError("unknown progress mode '" + std::string(s) + "'; expected poll, block or adaptive");
}

bool cores_oversubscribed() {
  long local = 0;
  for (const char* name : {"LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') continue;
    char* end = nullptr;
    local = std::strtol(v, &end, 10);
    if (end == v || (*end != '\0' && *end != '(') || local < 1) local = 0;  // Slurm may write "2(x3)"
    if (local > 0) break;
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (local == 0 || sched_getaffinity(0, sizeof set, &set) != 0) return true;
  return local > CPU_COUNT(&set);
}

Options Options::from_settings() {
  Options o;
  o.backend = parse_backend(settings::get_string("RDMACOLL_TRANSPORT"));
  o.progress = parse_progress_mode(settings::get_string("RDMACOLL_PROGRESS"));
  o.adaptive_spin_us = static_cast<double>(*settings::get_int("RDMACOLL_SPIN_US"));
  o.yield_when_idle = cores_oversubscribed();
  return o;
}

std::unique_ptr<Transport> Transport::create(bootstrap::World& world, const Options& options) {
  if (!world.store) throw ConfigError("Transport::create needs a connected world (bootstrap::connect_world)");
  return options.backend == Backend::Verbs ? make_verbs_transport(world, options) : make_ucx_transport(world, options);
}

Memory::Memory(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {
  if (impl_) addr_ = impl_->addr, length_ = impl_->length;
}

Memory::Memory(std::shared_ptr<Impl> impl, void* addr, size_t length)
    : impl_(std::move(impl)), addr_(addr), length_(length) {}

unsigned Memory::access() const { return impl_ ? impl_->access : 0; }
int RemoteWindow::rank() const { return impl_ ? impl_->rank : -1; }
uint64_t RemoteWindow::addr() const { return impl_ ? impl_->addr : 0; }
size_t RemoteWindow::length() const { return impl_ ? impl_->length : 0; }
unsigned RemoteWindow::access() const { return impl_ ? impl_->access : 0; }

// check_one_sided found something wrong: say what (the checks in its order).
void fail_one_sided(const Transport& t, bool is_read, int peer, const void* local, size_t length,
                    const RemoteWindow& w, size_t offset) {
  const char* op = is_read ? "read" : "write";
  const char* dir = is_read ? "from" : "to";
  check_peer(t, peer, op);
  if (!w.impl()) throw std::invalid_argument(std::string(op) + " " + dir + " an empty RemoteWindow (use unpack_window)");
  if (w.rank() != peer)
    throw std::invalid_argument(std::string(op) + " " + dir + " rank " + std::to_string(peer) + " with rank " +
                                std::to_string(w.rank()) + "'s window");
  const unsigned need = is_read ? kRemoteRead : kRemoteWrite;
  if (!(w.access() & need)) {
    const char* flag = is_read ? "kRemoteRead" : "kRemoteWrite";
    throw std::invalid_argument(std::string(op) + " " + dir + " rank " + std::to_string(peer) +
                                "'s window, which rank " + std::to_string(peer) + " registered without " + flag +
                                " (register it with " + flag + " to allow this)");
  }
  if (offset > w.length() || length > w.length() - offset)
    throw std::out_of_range(std::string(op) + " of " + std::to_string(length) + " bytes at offset " +
                            std::to_string(offset) + " overruns rank " + std::to_string(w.rank()) + "'s window of " +
                            std::to_string(w.length()) + " bytes");
  if (local == nullptr && length > 0)
    throw std::invalid_argument(std::string(op) + (is_read ? ": null destination" : ": null source") +
                                " with length " + std::to_string(length));
  throw std::logic_error(std::string(op) + ": the argument check failed on nothing it names");
}

void check_window(const Memory& window) {
  if (!window || !(window.access() & (kRemoteWrite | kRemoteRead)))
    throw std::invalid_argument("pack_window: the memory must be registered with kRemoteWrite and/or kRemoteRead");
}

std::string describe_op(const OpDesc& d, int peer) {
  const std::string n = std::to_string(d.length), r = std::to_string(peer);
  switch (d.kind) {
    case OpDesc::Kind::Send: return "send of " + n + " bytes to rank " + r + " (tag " + std::to_string(d.tag) + ")";
    case OpDesc::Kind::Recv:
      return "receive of up to " + n + " bytes from rank " + r + " (tag " + std::to_string(d.tag) + ")";
    case OpDesc::Kind::Write:
      return "write of " + n + " bytes to rank " + r + (d.imm ? " with immediate " + std::to_string(*d.imm) : "");
    case OpDesc::Kind::Read: return "read of " + n + " bytes from rank " + r;
    case OpDesc::Kind::Notification: return "notification from rank " + r;
    case OpDesc::Kind::HelloSend: return "wire-up hello to rank " + r;
    case OpDesc::Kind::HelloRecv: return "wire-up hello from rank " + r;
  }
  return "operation with rank " + r;
}

void check_peer(const Transport& t, int peer, const char* op) {
  if (peer < 0 || peer >= t.size())
    throw std::invalid_argument(std::string(op) + ": peer rank " + std::to_string(peer) + " is not in [0, " +
                                std::to_string(t.size()) + ")");
}

// ---- Request -------------------------------------------------------------------------------

namespace {
void finish(const std::shared_ptr<Request::State>& s) {
  if (s->status == Request::State::Status::Failed) std::rethrow_exception(s->error);
}
}  // namespace

bool Request::test() {
  if (!s_) throw std::logic_error("test() on an empty Request");
  if (s_->pending()) s_->transport->progress();
  finish(s_);
  return !s_->pending();
}

void Request::wait(Deadline deadline) {
  if (!s_) throw std::logic_error("wait() on an empty Request");
  Transport& t = *s_->transport;
  const Options& o = t.options();
  const auto spin = std::chrono::duration_cast<bootstrap::Clock::duration>(
      std::chrono::duration<double, std::micro>(o.adaptive_spin_us));
  // The clock is read once every kClockEvery idle turns, not every turn: clock_gettime can be
  // a system call of microseconds (an emulated HPET in a TCG guest), which a polling wait
  // would otherwise pay on every turn.
  constexpr unsigned kClockEvery = 16;
  auto spin_until = bootstrap::Clock::now() + spin;
  bool restart_spin = false;
  unsigned idle = 0;
  while (s_->pending()) {
    bool active = t.progress();
    if (!s_->pending()) break;
    if (active) restart_spin = true;
    if (o.progress != ProgressMode::Block && ++idle % kClockEvery != 0) {
      if (o.progress == ProgressMode::Adaptive && !active && o.yield_when_idle)
        sched_yield();  // while spinning, let a rank sharing this core run (ranks may outnumber cores)
      continue;
    }
    auto now = bootstrap::Clock::now();
    if (now >= deadline) {
      const std::string links = s_->peer >= 0 ? t.connection_report({s_->peer}) : std::string();
      throw TimeoutError("rank " + std::to_string(t.rank()) + ": " + s_->what() +
                         " did not complete before the deadline; peer rank " + std::to_string(s_->peer) +
                         " did not answer (is it alive? RDMACOLL_TIMEOUT sets the wait)" +
                         (links.empty() ? "" : "; connection: " + links));
    }
    if (restart_spin) {
      spin_until = now + spin;
      restart_spin = false;
    }
    if (o.progress == ProgressMode::Block || (o.progress == ProgressMode::Adaptive && now >= spin_until && !active))
      t.wait_for_event(std::min(deadline, now + std::chrono::milliseconds(100)));
  }
  finish(s_);
}

void Request::wait() { wait(bootstrap::default_deadline()); }

uint32_t Request::wait_value(Deadline deadline) {
  wait(deadline);
  return s_->imm;
}

uint32_t Request::wait_value() { return wait_value(bootstrap::default_deadline()); }

size_t Request::bytes() const { return s_ ? s_->bytes : 0; }

}  // namespace rdmacoll::transport
