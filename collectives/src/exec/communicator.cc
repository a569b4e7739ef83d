// Communicator creation, the operation queue and Work. The calls themselves: collectives.cc.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <span>
#include <stdexcept>
#include <thread>
#include <utility>

#include "exec/comm_impl.h"
#include "exec/prefix_store.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"

namespace rdmacoll::collectives {

AllreduceAlgorithm parse_allreduce_algorithm(std::string_view name) {
  if (name == "auto" || name.empty()) return AllreduceAlgorithm::automatic;
  if (name == "ring") return AllreduceAlgorithm::ring;
  if (name == "tree" || name == "double_binary_tree") return AllreduceAlgorithm::double_binary_tree;
  if (name == "halving_doubling" || name == "hd" || name == "rabenseifner") return AllreduceAlgorithm::halving_doubling;
  if (name == "recursive_doubling" || name == "rd") return AllreduceAlgorithm::recursive_doubling;
  throw ConfigError("RDMACOLL_ALGO: unknown allreduce algorithm '" + std::string(name) +
                    "' (accepted: auto, ring, tree, halving_doubling, recursive_doubling)");
}

DataPath parse_data_path(std::string_view name) {
  if (name == "auto" || name.empty()) return DataPath::automatic;
  if (name == "write") return DataPath::write;
  if (name == "send") return DataPath::send;
  throw ConfigError("RDMACOLL_DATA_PATH: unknown data path '" + std::string(name) + "' (accepted: auto, write, send)");
}

std::string_view to_string(DataPath p) noexcept {
  switch (p) {
    case DataPath::automatic: return "auto";
    case DataPath::write: return "write";
    case DataPath::send: return "send";
  }
  return "unknown";
}

std::string_view to_string(AllreduceAlgorithm a) noexcept {
  switch (a) {
    case AllreduceAlgorithm::automatic: return "auto";
    case AllreduceAlgorithm::ring: return "ring";
    case AllreduceAlgorithm::double_binary_tree: return "tree";
    case AllreduceAlgorithm::halving_doubling: return "halving_doubling";
    case AllreduceAlgorithm::recursive_doubling: return "recursive_doubling";
  }
  return "unknown";
}

Communicator::Options Communicator::Options::from_settings() {
  Options o;
  const int64_t buffsize = settings::get_int("RDMACOLL_BUFFSIZE").value_or(64 << 20);
  if (buffsize < 4096) throw ConfigError("RDMACOLL_BUFFSIZE must be at least 4096 bytes, got " + std::to_string(buffsize));
  o.buffsize = static_cast<size_t>(buffsize);
  o.algorithm = parse_allreduce_algorithm(settings::get_string("RDMACOLL_ALGO"));
  o.deterministic = settings::get_bool("RDMACOLL_DETERMINISTIC");
  o.timeout_s = settings::get_seconds("RDMACOLL_TIMEOUT");
  o.cost_model = parse_cost_model(settings::get_string("RDMACOLL_COST_MODEL"));
  o.data_path = parse_data_path(settings::get_string("RDMACOLL_DATA_PATH"));
  o.check_args = settings::get_bool("RDMACOLL_CHECK_ARGS");
  o.abort_on_error = settings::get_bool("RDMACOLL_ABORT_ON_ERROR");
  return o;
}

void Operation::reset() {
  std::string keep_name = std::move(name), keep_algorithm = std::move(algorithm_storage);
  std::vector<Plan> keep_plans = std::move(plans);
  keep_name.clear(), keep_algorithm.clear(), keep_plans.clear();
  // Made fresh in place: assigning a temporary Operation{} moved every member twice (about 500
  // instructions of an 8-byte allreduce's few thousand).
  std::destroy_at(this);
  std::construct_at(this);
  name = std::move(keep_name), algorithm_storage = std::move(keep_algorithm), plans = std::move(keep_plans);
}

std::string Operation::describe() const {
  std::string s = name + " #" + std::to_string(seq) + " (" + std::string(algorithm);
  if (run) s += ", run " + std::to_string(current + 1) + " of " + std::to_string(plans.size()) + ": " + run->pending();
  else if (direct) s += ": " + direct->pending();
  else if (!started) s += ", not started: queued behind an earlier call";
  return s + ")";
}

std::vector<int> Operation::waiting_for() const {
  return run ? run->waiting_for() : direct ? direct->waiting_for() : std::vector<int>{};
}

Communicator::Communicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Communicator::~Communicator() {
  if (!impl_) return;
  if (!impl_->queue.empty())
    RDMACOLL_WARN(kColl, "communicator destroyed with %zu collective(s) still in flight", impl_->queue.size());
  // Calls that failed or never finished may have transfers queued from buffers the caller has
  // freed by now (unwinding from the error): the transport must drop them, not deliver them.
  if (!impl_->queue.empty() || impl_->failed) impl_->transport->abandon();
}

// The pool descriptions go over the new transport itself, not the store: a transport is this
// communicator's own, so its tags cannot meet another communicator's, while store keys would
// need a name every rank agrees on.
constexpr uint64_t kSetupTag = 0xC011'5E70;
constexpr size_t kMaxWindowDescription = 64 << 10;
constexpr size_t kSmallMessageBytes = 8192;

// Sends `mine` to every peer on `tag` and receives each peer's into theirs[p] (sized to the most
// it may be, then to what came); theirs[me] is left as it is.
static void swap_with_peers(transport::Transport& t, uint64_t tag, std::span<const uint8_t> mine,
                            std::vector<std::vector<uint8_t>>& theirs, Deadline deadline) {
  const int me = t.rank(), n = t.size();
  std::vector<transport::Request> recvs(static_cast<size_t>(n)), sends;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    auto& d = theirs[static_cast<size_t>(p)];
    recvs[static_cast<size_t>(p)] = t.recv(p, tag, d.data(), d.size());
    sends.push_back(t.send(p, tag, mine.data(), mine.size()));
  }
  for (auto& r : sends) r.wait(deadline);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    recvs[static_cast<size_t>(p)].wait(deadline);
    theirs[static_cast<size_t>(p)].resize(recvs[static_cast<size_t>(p)].bytes());
  }
}

// Direct calls (direct.h): mapped where every rank maps every peer's pool, else pushed over
// verbs up to kPushMaxRanks ranks. Each rank tells the others which it can do, so that all
// take the same way or none does.
static void attach_direct(Communicator::Impl& c, Deadline deadline) {
  transport::Transport& t = *c.transport;
  const int me = t.rank(), n = t.size();
  std::vector<char*> boxes(static_cast<size_t>(n));
  uint8_t way = 1;  // 1: mapped, 2: pushed, 0: neither
  for (int p = 0; p < n; ++p) {
    char* base = p == me ? c.pool.base : static_cast<char*>(t.map_window(c.pool.peers[static_cast<size_t>(p)]));
    if (base == nullptr) way = 0;
    else boxes[static_cast<size_t>(p)] = base + c.pool.bytes;
  }
  if (way == 0 && c.options.transport.backend == transport::Backend::Verbs && n <= exec::kPushMaxRanks) way = 2;
  std::vector<std::vector<uint8_t>> theirs(static_cast<size_t>(n), std::vector<uint8_t>(1));
  swap_with_peers(t, kSetupTag + 1, std::span<const uint8_t>(&way, 1), theirs, deadline);
  for (int p = 0; p < n; ++p)
    if (p != me && theirs[static_cast<size_t>(p)] != std::vector<uint8_t>{way}) way = 0;
  if (way == 1) c.direct.attach(me, std::move(boxes));
  else if (way == 2) c.direct.attach_push(t, c.pool.base + c.pool.bytes, &c.pool.peers);
}

std::unique_ptr<Communicator> Communicator::create(bootstrap::World& world, const Options& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->store = world.store.get();
  impl->launch = world.info;
  impl->transport = transport::Transport::create(world, options.transport);
  transport::Transport& t = *impl->transport;
  const size_t bytes = (options.buffsize + 4095) / 4096 * 4096;
  // The transport's own memory: on UCX shared memory, peers then write into it directly. The
  // direct calls' mailbox (direct.h) follows the pool's bytes, in the same window.
  // Readable too: a pushed mailbox's call line is read by its peers.
  impl->pool_registration =
      t.allocate_memory(bytes + exec::mailbox_bytes(t.size()), transport::kRemoteWrite | transport::kRemoteRead);
  impl->pool.base = static_cast<char*>(impl->pool_registration.addr());
  impl->pool.bytes = bytes;
  // The mailbox is zero before its window goes to the peers: from then on they may read its
  // call line or write their inputs into it (a peer that is through creation first).
  std::memset(impl->pool.base + bytes, 0, exec::mailbox_bytes(t.size()));
  const int me = t.rank(), n = t.size();
  const std::vector<uint8_t> mine = t.pack_window(impl->pool_registration);
  std::vector<std::vector<uint8_t>> theirs(static_cast<size_t>(n), std::vector<uint8_t>(kMaxWindowDescription));
  const Deadline deadline = bootstrap::deadline_in(options.timeout_s);
  swap_with_peers(t, kSetupTag, mine, theirs, deadline);
  impl->pool.peers.resize(static_cast<size_t>(n));
  // A small chunk is cheaper as one tagged message than as a write. Over UCX a write is a
  // put, a fence and a notification message (8-byte allreduce on shared memory: about 30% less
  // time). Over verbs a write with immediate is one work request, but the call's argument
  // checks then go as SENDs of their own beside it, while a message up to kFramedMax carries
  // them in front of its data (control.h): one work request per peer instead of two or three
  // (8-byte allreduce, 2 ranks on rxe: ~60-130 us against ~135-230 us).
  if (options.data_path == DataPath::automatic)
    impl->pool.send_up_to = options.transport.backend == transport::Backend::Ucx ? kSmallMessageBytes : exec::kFramedMax;
  impl->pool.send.resize(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p)
    impl->pool.send[static_cast<size_t>(p)] =
        p != me && (options.data_path == DataPath::send || (options.data_path == DataPath::automatic && !t.direct_writes(p)));
  for (int p = 0; p < n; ++p)
    if (p != me) impl->pool.peers[static_cast<size_t>(p)] = t.unpack_window(p, theirs[static_cast<size_t>(p)]);
  if (n > 1 && options.data_path == DataPath::automatic) attach_direct(*impl, deadline);
  if (n > 1) impl->control.start(t);
  std::unique_ptr<Communicator> comm(new Communicator(std::move(impl)));
  Impl& c = *comm->impl_;
  if (options.cost_model) {
    c.cost = *options.cost_model;
  } else if (n > 1) {
    c.cost = Impl::measure_cost_model(*comm);
    // The user's calls are numbered from 0, and the measurement's scratch use is not theirs.
    c.next_seq = 0;
    c.peak_scratch = 0;
    c.last_choice = {};  // choices made before the model was known
  } else {
    c.cost.source = "single rank: nothing to measure";
  }
  return comm;
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  const int n = size(), me = rank();
  // Everyone's (color, key), through this communicator: block r of an allgather is rank r's.
  std::vector<int64_t> all(2 * static_cast<size_t>(n));
  all[2 * static_cast<size_t>(me)] = color;
  all[2 * static_cast<size_t>(me) + 1] = key;
  allgather(all.data(), all.data(), all.size(), DataType::i64);
  // Every rank of this communicator splits it the same number of times, so this count, kept
  // in the store per rank, names the split alike on all of them (as the UCX wire-up does).
  const int64_t generation = impl_->store->add("rdmacoll/splits/" + std::to_string(me), 1);
  if (color < 0) return nullptr;
  std::vector<int> members;
  for (int r = 0; r < n; ++r)
    if (all[2 * static_cast<size_t>(r)] == color) members.push_back(r);
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
    return all[2 * static_cast<size_t>(a) + 1] < all[2 * static_cast<size_t>(b) + 1];
  });
  auto world = std::make_unique<bootstrap::World>();
  world->info = impl_->launch;
  world->info.rank = static_cast<int>(std::find(members.begin(), members.end(), me) - members.begin());
  world->info.world_size = static_cast<int>(members.size());
  world->info.source = "split of " + impl_->launch.source;
  world->store = std::make_unique<exec::PrefixStore>(
      *impl_->store, "rdmacoll/split/" + std::to_string(generation) + "/" + std::to_string(color) + "/");
  std::unique_ptr<Communicator> sub = create(*world, impl_->options);
  sub->impl_->own_world = std::move(world);
  sub->impl_->store = sub->impl_->own_world->store.get();
  return sub;
}

int Communicator::rank() const { return impl_->transport->rank(); }
int Communicator::size() const { return impl_->transport->size(); }
const Communicator::Options& Communicator::options() const { return impl_->options; }
transport::Transport& Communicator::transport() { return *impl_->transport; }
size_t Communicator::scratch_bytes() const { return impl_->pool.bytes; }
size_t Communicator::peak_scratch_bytes() const { return impl_->peak_scratch; }
const CostModel& Communicator::cost_model() const { return impl_->cost; }
uint64_t Communicator::next_sequence() const { return impl_->next_seq; }

Operation::Plan Communicator::Impl::fence() const {
  const int n = transport->size(), me = transport->rank();
  return {[me, n] { return schedules::dissemination_barrier(me, n); }, {}, true, 0, pool.bytes, {}, {}, {}, false, false};
}

// A peer may write run k+1 into this rank's pool as soon as it has finished run k. If every
// rank's part of run k received data every rank sent in it (allreduce; reduce-scatter and
// allgather when no block is empty: each rank's result holds every rank's data), a peer that
// finished it knows that every rank had started it, so had finished run k-1 and everything
// before. Run k+1 is then safe wherever run k is not: runs that fit half the pool alternate
// halves and need no fence after such a run. Anything else (after a broadcast, a reduce, a
// segment with empty blocks, or a run needing more than half the pool) is fenced.
void Communicator::Impl::add_run(Operation& op, bool all_dependent, std::size_t bytes,
                                 std::function<schedules::Schedule()> build, std::vector<exec::UserPiece> user) {
  const std::size_t half = pool.bytes / 2;
  const int region = bytes <= half ? (last_region == 0 ? 1 : 0) : -1;
  const bool safe = !scratch_dirty || (last_all_dependent && region >= 0 && last_region >= 0 && region != last_region);
  if (transport->size() > 1 && !safe) op.plans.push_back(fence());
  if (region >= 0) op.plans.push_back({std::move(build), std::move(user), false, static_cast<std::size_t>(region) * half, half, {}, {}, {}, false, false});
  else op.plans.push_back({std::move(build), std::move(user), false, 0, pool.bytes, {}, {}, {}, false, false});
  scratch_dirty = true;
  last_region = region;
  last_all_dependent = all_dependent;
}

std::shared_ptr<const schedules::Schedule> Communicator::Impl::schedule(const schedules::Spec& spec) {
  const auto key = std::make_tuple(spec.algorithm, spec.rank, spec.nranks, spec.count, spec.root, spec.pieces);
  auto it = schedule_cache.find(key);
  if (it != schedule_cache.end()) return it->second;
  if (schedule_cache.size() >= 256) schedule_cache.clear();  // a bound, for callers whose sizes never repeat
  return schedule_cache.emplace(key, std::make_shared<const schedules::Schedule>(schedules::build(spec))).first->second;
}

Work Communicator::Impl::submit(Communicator* self, std::shared_ptr<Operation> op) {
  if (op->args) {
    if (op->digest == 0) op->digest = exec::digest_of(*op->args);
    if (recent_args.size() == 8) recent_args.pop_front();
    recent_args.emplace_back(op->seq, op->args);
  }
  if (failed) op->error = failed, op->done = true;
  else queue.push_back(op);
  return Work(self, std::move(op));
}

WireStats Communicator::Impl::wire_totals() const {
  WireStats w;
  for (int p = 0; p < transport->size(); ++p) {
    const transport::PeerCounters c = transport->counters(p);
    w.bytes_sent += c.bytes_sent, w.bytes_received += c.bytes_received;
    w.messages_sent += c.messages_sent, w.messages_received += c.messages_received;
  }
  return w;
}

bool Communicator::Impl::advance(Operation& op) {
  if (!op.started) {
    op.started = true;
    op.wire = wire_totals();
    if (direct.usable()) direct.announce(op.seq, op.args ? op.digest : 0);
    // A direct call checks its arguments in the mailboxes (direct.h): no ring check.
    if (op.args && control.started() && !op.direct_call) {
      // The earlier calls' ring checks (usually arrived by now): kept few, and none unseen.
      // Looked at before this call's is posted, which would only make the look progress the
      // transport for a receive that cannot have completed yet.
      if (const auto late = control.late_mismatch()) mismatch(late->seq, {});
      op.ring = control.post_ring(op.seq, op.digest);
      // A first run that checks sends the ring check, with its first chunk to the next rank
      // where it can (Run::take_ring); otherwise it goes now.
      if (op.plans.empty() || op.plans.front().fence) control.send_ring(op.seq, op.digest), op.ring.reset();
    }
    if (op.prologue) op.prologue();
    if (const auto& d = op.direct_call) {
      direct.start(d->in, d->out, d->count, op.type, op.op, op.args ? op.digest : 0);
      op.direct = &direct;
    }
  }
  if (op.direct) {
    const uint64_t before = direct.events();
    bool finished = false;
    try {
      finished = direct.advance();
    } catch (const exec::CheckFailed&) {
      mismatch(op.seq, {});
    }
    op.events += direct.events() - before;
    if (!finished) {
      // A peer on another path for this call (its count too large for a mailbox, another
      // collective) never marks a slot: its call line shows the disagreement.
      if (op.args && direct.idle_turns() % 256 == 255 && direct.disagreeing(op.seq, op.digest) >= 0)
        mismatch(op.seq, {});
      return false;
    }
    op.direct = nullptr;
    ++op.events;
  }
  for (;;) {
    if (!op.run) {
      if (op.late && (op.current >= op.late_by || op.current == op.plans.size())) std::exchange(op.late, nullptr)();
      if (op.current == op.plans.size()) {
        if (op.epilogue) op.epilogue();
        const WireStats end = wire_totals();
        op.wire = {end.bytes_sent - op.wire.bytes_sent, end.bytes_received - op.wire.bytes_received,
                   end.messages_sent - op.wire.messages_sent, end.messages_received - op.wire.messages_received};
        if (op.direct_call) {
          const uint64_t peers = static_cast<uint64_t>(transport->size() - 1);
          const std::size_t input = op.direct_call->count * dtype_size(op.type);
          if (!direct.pushed()) {  // the mapped mailboxes' reads (WireStats): each peer reads the input
            op.wire.bytes_sent += peers * input, op.wire.bytes_received += peers * input;
            op.wire.messages_sent += peers, op.wire.messages_received += peers;
          } else {  // the transport counted the writes sent; the peers' landed here without a completion
            op.wire.bytes_received += peers * exec::pushed_slot_bytes(input);
            op.wire.messages_received += peers;
          }
        }
        return true;
      }
      const Operation::Plan& plan = op.plans[op.current];
      if (plan.before && !std::exchange(op.next_before_ran, false)) plan.before();
      const DataType type = plan.fence ? DataType::u8 : op.type;
      const bool check = !plan.fence && op.args && control.started();
      auto sched = plan.schedule ? plan.schedule : std::make_shared<const schedules::Schedule>(plan.build());
      if (spare_run) {
        spare_run->restart(plan.region, plan.region_bytes, std::move(sched), plan.user, type, op.op, next_run_tag++,
                           check ? &control : nullptr, op.seq, op.digest);
        op.run = std::move(spare_run);
      } else {
        op.run = std::make_unique<exec::Run>(*transport, pool, plan.region, plan.region_bytes, std::move(sched),
                                             plan.user, type, op.op, next_run_tag++, check ? &control : nullptr, op.seq,
                                             op.digest);
      }
      if (op.ring && check) {
        const int n = transport->size(), me = transport->rank();
        op.run->take_ring({exec::ring_next(me, n), exec::ring_prev(me, n), std::move(op.ring)});
      } else if (op.ring) {  // not expected (the first plan was a run that checks): still, it goes
        control.send_ring(op.seq, op.digest);
        op.ring.reset();
      }
      peak_scratch = std::max(peak_scratch, exec::pool_bytes(op.run->schedule(), type));
      ++op.events;
    }
    const uint64_t before = op.run->events();
    bool finished = false;
    try {
      finished = op.run->advance();
    } catch (const exec::CheckFailed&) {
      mismatch(op.seq, {});
    }
    op.events += op.run->events() - before;
    if (!finished) {
      // While the run waits on the wire: codec work that may overlap it (Plan::before_early,
      // after_late), one hook per turn, so the transport is progressed between them.
      if (op.late) {
        std::exchange(op.late, nullptr)();
        ++op.events;
      } else if (op.current + 1 < op.plans.size() && !op.next_before_ran) {
        const Operation::Plan& next = op.plans[op.current + 1];
        if (next.before_early && next.before) next.before(), op.next_before_ran = true, ++op.events;
      }
      return false;
    }
    op.run->drop_requests();
    spare_run = std::move(op.run);
    if (const Operation::Plan& plan = op.plans[op.current]; plan.after && plan.after_late) {
      if (op.late) op.late();
      op.late = plan.after, op.late_by = op.current + 2;
    } else if (plan.after) {
      plan.after();
    }
    ++op.current;
    ++op.events;
  }
}

// A transport's error names the operation and the peer, not the collective: say which call it
// broke, keeping the error's type.
static std::exception_ptr in_context(std::exception_ptr e, const Operation& op, int rank) {
  const auto wrap = [&](const std::exception& x) {
    return "rdmacoll: rank " + std::to_string(rank) + ": " + op.describe() + " failed: " + x.what();
  };
  try {
    std::rethrow_exception(e);
  } catch (const TransportError& x) {
    return std::make_exception_ptr(TransportError(wrap(x)));
  } catch (const ProtocolError& x) {
    return std::make_exception_ptr(ProtocolError(wrap(x)));
  } catch (const TimeoutError& x) {
    return std::make_exception_ptr(TimeoutError(wrap(x)));
  } catch (...) {
    return e;
  }
}

// How long a rank whose call failed on its own listens for a peer's report of the cause.
constexpr double kListenForCause_s = 0.25;

bool Communicator::Impl::progress(const Operation& target) {
  while (!queue.empty() && !target.done) {
    Operation* head = queue.front().get();  // held by the queue until popped below
    try {
      if (!advance(*head)) {
        if (++idle_turns % 16 == 0) check_control();
        return false;
      }
    } catch (const PeerFailedError&) {
      fail(std::current_exception(), false);
      break;
    } catch (const ArgumentMismatchError&) {
      fail(std::current_exception(), false);  // mismatch() told every peer
      break;
    } catch (const TimeoutError&) {
      fail(std::current_exception(), false);  // timed_out() told every peer
      break;
    } catch (...) {
      // An error of this rank's own (a transport failure, a message that does not fit). A peer
      // may have found its cause already (a mismatch makes messages the wrong size): listen a
      // moment for its report, which then stands instead.
      std::exception_ptr error = in_context(std::current_exception(), *head, transport->rank());
      bool own = true;
      if (control.started()) {
        try {
          for (const Deadline until = bootstrap::deadline_in(kListenForCause_s); bootstrap::Clock::now() < until;) {
            check_control();
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
        } catch (...) {
          error = std::current_exception(), own = false;
        }
      }
      fail(error, own);
      break;
    }
    head->done = true;
    head->run.reset();
    queue.pop_front();
  }
  return target.done;
}

void Communicator::Impl::fail(std::exception_ptr error, bool tell_peers) {
  // The ranks are out of step now; fail the queued calls and every later one with the cause.
  failed = error;
  const uint64_t seq = queue.empty() ? next_seq : queue.front()->seq;
  for (auto& op : queue) op->error = failed, op->done = true, op->run.reset();
  queue.clear();
  if (!tell_peers || !options.abort_on_error || !control.started()) return;
  std::string why;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
    why = "unknown error";
  }
  control.broadcast({exec::ControlMessage::Kind::failed, seq, why}, 1.0);
}

std::string Communicator::Impl::args_of(uint64_t seq) const {
  for (const auto& [s, args] : recent_args)
    if (s == seq) return *args;
  return "";
}

void Communicator::Impl::check_control() {
  if (const auto late = control.late_mismatch()) mismatch(late->seq, {});
  auto messages = control.poll();
  if (messages.empty()) return;
  std::map<int, std::string> args;
  std::map<int, std::vector<int>> waits;
  uint64_t args_seq = 0;
  for (auto& [from, m] : messages) {
    switch (m.kind) {
      case exec::ControlMessage::Kind::failed: {
        const std::string at = queue.empty() ? "between calls" : "in " + queue.front()->describe();
        throw PeerFailedError("rdmacoll: rank " + std::to_string(transport->rank()) + ": rank " + std::to_string(from) +
                              " failed call #" + std::to_string(m.seq) + " and aborted the communicator (this rank was " +
                              at + "): " + m.text);
      }
      case exec::ControlMessage::Kind::args:
        if (args.empty() || m.seq == args_seq) args_seq = m.seq, args[from] = m.text;
        break;
      case exec::ControlMessage::Kind::timeout:
        waits[from] = exec::parse_ranks(m.text, transport->size());
        break;
    }
  }
  if (!args.empty()) mismatch(args_seq, std::move(args));
  timed_out(std::move(waits), "");
}

// How long a rank listens for the others' reports once a deadline has passed.
constexpr double kReportGrace_s = 1.0;

void Communicator::Impl::timed_out(std::map<int, std::vector<int>> reports, const std::string& own) {
  const int me = transport->rank(), n = transport->size();
  std::vector<int> first;  // the ranks whose deadline passed before this one heard of it
  for (const auto& [r, on] : reports) first.push_back(r);
  const std::vector<int> mine = queue.empty() ? std::vector<int>{} : queue.front()->waiting_for();
  const std::string here = queue.empty() ? "between calls" : queue.front()->describe();
  // One grace period for both the sends and the answers (see Control::send_all).
  const Deadline deadline = bootstrap::deadline_in(kReportGrace_s);
  auto sends = control.send_all({exec::ControlMessage::Kind::timeout, queue.empty() ? next_seq : queue.front()->seq,
                                 exec::format_ranks(mine)});
  control.listen(
      deadline,
      [&](int from, const exec::ControlMessage& m) {
        if (m.kind != exec::ControlMessage::Kind::timeout) return false;
        reports[from] = exec::parse_ranks(m.text, n);
        return true;
      },
      [&] { return static_cast<int>(reports.size()) >= n - 1; });
  exec::Control::flush(sends, deadline);
  reports[me] = mine;
  std::vector<int> silent;
  for (int r = 0; r < n; ++r)
    if (!reports.count(r)) silent.push_back(r);
  std::string waiting;
  for (const auto& [r, on] : reports)
    if (!on.empty()) waiting += (waiting.empty() ? "" : "; ") + std::to_string(r) + " on " + exec::format_ranks(on, ", ");
  char limit[64];
  std::snprintf(limit, sizeof limit, "%g s (RDMACOLL_TIMEOUT)", options.timeout_s);
  std::string msg = own.empty() ? "rdmacoll: rank " + std::to_string(me) + ": " + here + " failed: the collective deadline (" +
                                      limit + ") passed on rank" + (first.size() > 1 ? "s " : " ") + exec::format_ranks(first, ", ")
                                : own + " after " + limit;
  msg += silent.empty() ? "; every rank answered, so none is missing: they wait for each other (did every rank make "
                          "the same calls in the same order, with the same RDMACOLL_CHECK_ARGS?)"
                        : std::string("; missing: rank") + (silent.size() > 1 ? "s " : " ") + exec::format_ranks(silent, ", ") +
                              " (did not answer)";
  if (!waiting.empty()) msg += "; ranks waiting: " + waiting;
  msg += connections_note(mine);
  throw TimeoutError(msg);
}

std::string Communicator::Impl::connections_note(const std::vector<int>& ranks) const {
  if (ranks.empty()) return "";
  const std::string report = transport->connection_report(ranks);
  if (report.empty()) return "";
  return "; rank " + std::to_string(transport->rank()) + "'s connections: " + report;
}

void Communicator::Impl::mismatch(uint64_t seq, std::map<int, std::string> lines) {
  const int me = transport->rank(), n = transport->size();
  lines[me] = args_of(seq);
  // Everyone who learns of it answers at once; one who is busy elsewhere (or gone) is named as
  // not answering once this short wait is over (the sends' wait included: Control::send_all).
  const Deadline deadline = bootstrap::deadline_in(std::min(options.timeout_s, 5.0));
  auto sends = control.send_all({exec::ControlMessage::Kind::args, seq, lines[me]});
  control.listen(
      deadline,
      [&](int from, const exec::ControlMessage& m) {
        if (m.kind != exec::ControlMessage::Kind::args || m.seq != seq) return false;
        lines[from] = m.text;
        return true;
      },
      [&] { return static_cast<int>(lines.size()) >= n; });
  exec::Control::flush(sends, deadline);
  std::string name = "call";
  for (const auto& [s, args] : recent_args)
    if (s == seq) name = args->substr(5, args->find(' ') - 5);  // "call=NAME ..."
  throw ArgumentMismatchError("rdmacoll: rank " + std::to_string(me) + ": " + name + " #" + std::to_string(seq) +
                              ": the ranks called it with different arguments (found before any data was used): " +
                              exec::describe_disagreement(lines, n));
}

bool Work::test() {
  if (!op_) throw std::logic_error("Work::test on an empty Work");
  const bool done = op_->done || comm_->impl_->progress(*op_);
  if (done && op_->error) std::rethrow_exception(op_->error);
  return done;
}

uint64_t Work::sequence() const { return op_ ? op_->seq : 0; }

WireStats Work::wire() const {
  if (!op_ || !op_->done) throw std::logic_error("Work::wire before the call completed");
  return op_->wire;
}

std::string_view Work::algorithm() const {
  if (!op_) throw std::logic_error("Work::algorithm on an empty Work");
  return op_->algorithm;
}

bool Work::compressed() const {
  if (!op_) throw std::logic_error("Work::compressed on an empty Work");
  return op_->compressed;
}

uint64_t Work::nonfinite() const {
  if (!op_ || !op_->done) throw std::logic_error("Work::nonfinite before the call completed");
  return op_->nonfinite;
}

void Work::wait() { wait_until(std::nullopt, true); }

void Work::wait(Deadline deadline) { wait_until(deadline, false); }

// How long a wait spins on an idle transport before it starts yielding the core.
constexpr auto kSpinBeforeYield = std::chrono::microseconds(4);

// The clock is read once every kClockEvery turns of a wait (a turn that moved something is
// dated at the next reading): clock_gettime is a system call of a microsecond or more where the
// clock source has no vDSO path (the emulated HPET of a TCG guest), where it took a sixth of an
// 8-byte allreduce's time, read on every turn.
constexpr unsigned kClockEvery = 16;

// A direct call's wait (direct.h) naps kNap between looks once nothing has moved for kNapAfter.
constexpr auto kNapAfter = std::chrono::milliseconds(1);
constexpr auto kNap = std::chrono::microseconds(20);

void Work::wait_until(std::optional<Deadline> until, bool fatal) {
  Communicator::Impl& c = *comm_->impl_;
  transport::Transport& t = *c.transport;
  const transport::Options& o = t.options();
  const auto spin = std::chrono::duration<double, std::micro>(o.adaptive_spin_us);
  // The clock is first read at the first kClockEvery-th turn, not at the start: most small
  // calls are done by then and read none (the collective's own deadline then runs from that
  // reading, later by a few turns).
  if (test()) return;
  bootstrap::Clock::time_point last_change{};
  Deadline deadline = until ? *until : Deadline::max();
  uint64_t seen = c.queue.empty() ? 0 : c.queue.front()->events;
  // Where ranks outnumber cores, adaptive progress yields on every turn that moved nothing, as
  // Request::wait does: the peers this rank waits for need its core to run at all. Without it,
  // a wait spun up to kClockEvery turns (each a system call over TCP) before it first looked at
  // the clock; 4 ranks on 2 cores over UCX's TCP took 110-116 us an 8-byte allreduce against
  // 61-85 with the yield, and 16-20 ms against 12-13 at 8 MiB.
  const bool yield_idle = o.yield_when_idle && o.progress == transport::ProgressMode::Adaptive;
  unsigned turns = 0;
  bool moved = false, yielding = false;
  while (!test()) {
    // A turn that moved something restarts the spin; the clock says when at its next reading.
    const uint64_t ev = c.queue.empty() ? 0 : c.queue.front()->events;
    const bool idle = ev == seen;
    if (!idle) seen = ev, moved = true, yielding = false;
    if (++turns % kClockEvery != 0) {
      if (yielding || (idle && yield_idle)) std::this_thread::yield();
      continue;
    }
    const auto now = bootstrap::Clock::now();
    if (turns == kClockEvery) {
      last_change = now, moved = false;
      if (!until)
        deadline = now + std::chrono::duration_cast<bootstrap::Clock::duration>(std::chrono::duration<double>(c.options.timeout_s));
    }
    if (moved) last_change = now, moved = false;
    if (now >= deadline) {
      const Operation& head = c.queue.empty() ? *op_ : *c.queue.front();
      std::string msg = "rdmacoll: rank " + std::to_string(t.rank()) + ": " + (&head == op_.get() ? "" : "waiting for ") +
                        head.describe() + " timed out";
      if (&head != op_.get()) msg += "; " + op_->name + " #" + std::to_string(op_->seq) + " is queued behind it";
      // (timed_out adds the connections itself: the report is read only where it is thrown.)
      const auto with_links = [&] { return msg + c.connections_note(head.waiting_for()); };
      if (!fatal) throw TimeoutError(with_links());
      // The collective's own deadline: the communicator fails, and the ranks agree on who is missing.
      try {
        if (!c.options.abort_on_error || !c.control.started()) throw TimeoutError(with_links());
        c.timed_out({}, msg);
      } catch (...) {
        c.fail(std::current_exception(), false);
      }
      std::rethrow_exception(c.failed);
    }
    // Spin while things move. Where ranks outnumber cores (transport::Options::yield_when_idle),
    // yield the core: with adaptive progress on every idle turn (yield_idle, above), with the
    // other modes once a few microseconds pass with nothing (longer than a message takes over
    // shared memory): a spinning rank would otherwise hold its core for a whole time slice
    // while the peer it waits for cannot run. Once things stop for the spin
    // time, let the transport sleep until it has an event (capped, so the deadline is checked).
    // A direct call (direct.h) waits on memory, mapped or written by the peers' RDMA writes,
    // which wakes no transport event: it yields instead, and once a peer is a millisecond late
    // (a straggler still computing) it naps between looks rather than keep a core busy, which
    // costs at most the nap (and the timer's slack) on a wait already that long.
    const bool on_memory = !c.queue.empty() && c.queue.front()->direct != nullptr;
    if (on_memory && o.progress != transport::ProgressMode::Poll && now - last_change > kNapAfter)
      std::this_thread::sleep_for(kNap);
    else if (o.progress != transport::ProgressMode::Poll && now - last_change > spin && !on_memory)
      t.wait_for_event(std::min(deadline, now + std::chrono::milliseconds(5)));
    else
      yielding = o.yield_when_idle ? now - last_change > kSpinBeforeYield : on_memory && now - last_change > spin;
  }
}

}  // namespace rdmacoll::collectives
