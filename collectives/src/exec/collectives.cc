// The collective calls: pick the algorithm, cut the call into segments that fit the scratch
// pool, and queue it as an Operation (communicator.cc runs it).
#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "exec/comm_impl.h"
#include "rdmacoll/collectives/reduce.h"

namespace rdmacoll::collectives {
namespace {

using schedules::Algorithm;
using schedules::Block;

// The algorithm name of direct calls (exec/direct.h) in argument lines and messages.
constexpr std::string_view kDirectAlgorithm = "shared_memory_allreduce";
constexpr std::string_view kPushedAlgorithm = "rdma_mailbox_allreduce";

Algorithm allreduce_algorithm(Communicator::Impl& c, const CallOptions& call, int n, size_t count,
                              size_t es) {
  const Communicator::Options& o = c.options;
  AllreduceAlgorithm want = call.algorithm.value_or(o.algorithm);
  Algorithm a = Algorithm::ring_allreduce;
  switch (want) {
    case AllreduceAlgorithm::ring: a = Algorithm::ring_allreduce; break;
    case AllreduceAlgorithm::double_binary_tree: a = Algorithm::double_binary_tree_allreduce; break;
    case AllreduceAlgorithm::halving_doubling: a = Algorithm::halving_doubling_allreduce; break;
    case AllreduceAlgorithm::recursive_doubling: a = Algorithm::recursive_doubling_allreduce; break;
    case AllreduceAlgorithm::automatic: {
      // Training loops repeat the same sizes: the last answer is kept.
      if (c.last_choice.count == count && c.last_choice.element_size == es) {
        a = c.last_choice.algorithm;
        break;
      }
      double best = std::numeric_limits<double>::infinity();
      for (Algorithm candidate : {Algorithm::ring_allreduce, Algorithm::double_binary_tree_allreduce,
                                  Algorithm::halving_doubling_allreduce, Algorithm::recursive_doubling_allreduce}) {
        const double s = schedules::estimate(candidate, n, count, es, c.model()).seconds;
        if (s < best) best = s, a = candidate;
      }
      c.last_choice = {count, es, a};
      break;
    }
  }
  return call.deterministic.value_or(o.deterministic) ? schedules::reproducible(a) : a;
}

// Pipelining pays off where the cost model says so; only these collectives take pieces.
size_t pieces_for(Algorithm a, int n, size_t count, size_t es, const schedules::CostModel& model) {
  switch (schedules::collective_of(a)) {
    case schedules::Collective::allreduce:
    case schedules::Collective::broadcast:
    case schedules::Collective::reduce: return std::max<size_t>(1, schedules::estimate(a, n, count, es, model).pieces);
    default: return 1;
  }
}

// Allreduce, broadcast, reduce: contiguous segments of the buffer, each its own run. `in`:
// the input where the run takes it from the caller's buffer itself (UserPiece::in).
void add_contiguous_runs(Communicator::Impl& c, Operation& op, Algorithm a, char* out, size_t count, int root,
                         const char* in = nullptr) {
  const int n = c.transport->size(), me = c.transport->rank();
  const size_t es = dtype_size(op.type);
  // Repeated calls (same algorithm, count and element size) reuse the last call's cut.
  Communicator::Impl::Segments& last = c.last_segments;
  const schedules::CostModel model = c.model();
  if (!(last.algorithm == a && last.n == n && last.count == count && last.es == es && last.pool == c.pool.bytes &&
        last.model.alpha == model.alpha && last.model.beta == model.beta &&
        last.model.gamma == model.gamma)) {
    const size_t pieces = pieces_for(a, n, count, es, model);
    auto need = [&](size_t seg) { return (schedules::scratch_elements(a, n, seg, std::min(pieces, seg)) + seg) * es; };
    const size_t seg = largest_fitting(count, [&](size_t s) { return need(s) <= c.pool.bytes; });
    if (count > 0 && seg == 0) throw pool_too_small(op.name, c.pool.bytes);
    last = {a, n, count, es, c.pool.bytes, model, pieces, seg, count > 0 ? need(seg) : 0, count % std::max<size_t>(seg, 1),
            count % std::max<size_t>(seg, 1) > 0 ? need(count % seg) : 0,
            schedules::collective_of(a) == schedules::Collective::allreduce};
  }
  const size_t pieces = last.pieces, seg = last.seg;
  for (size_t begin = 0; begin < count; begin += seg) {
    const size_t len = std::min(seg, count - begin);
    schedules::Spec spec{a, me, n, len, root, std::min(pieces, len)};
    // An allreduce's every element holds every rank's contribution; a broadcast's or a
    // reduce's ranks need not hear from all.
    const bool all_dependent = last.all_dependent;
    c.add_run(op, all_dependent, len == seg ? last.need_seg : last.need_tail, {},
              {{0, out + begin * es, len, in ? in + begin * es : nullptr}});
    op.plans.back().schedule = c.schedule(spec);
  }
}

// Reduce-scatter and allgather keep block r on rank r: a segment is the same sub-range of
// every block, laid out compactly in the schedule's user space.
void add_block_runs(Communicator::Impl& c, Operation& op, Algorithm a, char* out, size_t count,
                    const char* in = nullptr) {
  const int n = c.transport->size(), me = c.transport->rank();
  const size_t es = dtype_size(op.type);
  const std::vector<Block> blocks = schedules::even_blocks(count, static_cast<size_t>(n));
  const size_t longest = blocks.empty() ? 0 : blocks.front().count;
  auto need = [&](size_t len) {
    const size_t total = len * static_cast<size_t>(n);
    return (schedules::scratch_elements(a, n, total) + total) * es;
  };
  const size_t seg = largest_fitting(longest, [&](size_t s) { return need(s) <= c.pool.bytes; });
  if (longest > 0 && seg == 0) throw pool_too_small(op.name, c.pool.bytes);
  for (size_t begin = 0; begin < longest; begin += seg) {
    const std::vector<Block> part = schedules::segment_blocks(blocks, begin, seg);
    std::vector<Block> compact;
    std::vector<exec::UserPiece> user;
    size_t at = 0;
    for (const Block& b : part) {
      compact.push_back({at, b.count});
      if (b.count > 0) user.push_back({at, out + b.offset * es, b.count, in ? in + b.offset * es : nullptr});
      at += b.count;
    }
    const bool all_dependent = std::all_of(part.begin(), part.end(), [](const Block& b) { return b.count > 0; });
    c.add_run(op, all_dependent, need(std::min(seg, longest - begin)), [a, me, n, compact] {
      switch (a) {
        case Algorithm::ring_reduce_scatter: return schedules::ring_reduce_scatter(me, n, compact);
        case Algorithm::ordered_reduce_scatter: return schedules::ordered_reduce_scatter(me, n, compact);
        case Algorithm::recursive_doubling_allgather: return schedules::recursive_doubling_allgather(me, n, compact);
        default: return schedules::ring_allgather(me, n, compact);
      }
    }, std::move(user));
  }
}

std::shared_ptr<Operation> new_op(Communicator::Impl& c, std::string name, std::string_view algorithm, DataType type,
                                  ReduceOp op, size_t count, bool reduces, int root = -1) {
  dtype_size(type);  // validates the enum
  std::shared_ptr<Operation> o;
  if (c.spare_op && c.spare_op.use_count() == 1) o = std::move(c.spare_op), o->reset();
  else o = std::make_shared<Operation>();
  c.spare_op = o;
  o->seq = c.next_seq++;
  o->name = std::move(name);
  o->algorithm = algorithm;
  o->type = type;
  o->op = op;
  set_args(c, *o, count, reduces, root);
  return o;
}

// Null buffers, byte counts that overflow, and inputs that partly overlap the output (in == out
// is the in-place form; anything else overlapping would be read after being overwritten).
void check_buffers(std::string_view name, const void* in, const void* out, size_t count, DataType type) {
  const size_t es = dtype_size(type);
  if (count > std::numeric_limits<size_t>::max() / es)
    throw std::length_error(std::string(name) + ": count " + std::to_string(count) + " of " +
                            std::string(to_string(type)) + " overflows a byte count");
  if (count > 0 && (in == nullptr || out == nullptr))
    throw std::invalid_argument(std::string(name) + ": null buffer with count " + std::to_string(count));
  const auto a = reinterpret_cast<uintptr_t>(in), b = reinterpret_cast<uintptr_t>(out), bytes = count * es;
  if (count > 0 && a != b && a < b + bytes && b < a + bytes)
    throw std::invalid_argument(std::string(name) + ": the input and output buffers overlap without being the same "
                                "buffer; pass in == out for the in-place form");
}

// Out of place, the runs take the input from `in` as they go (UserPiece::in).
const char* input_of(const void* in, const void* out) {
  return in == out ? nullptr : static_cast<const char*>(in);
}

// out = in unless in place; done when the call starts, not when it is queued.
std::function<void()> copy_in(const void* in, void* out, size_t bytes) {
  if (in == out || bytes == 0) return {};
  return [in, out, bytes] { std::memcpy(out, in, bytes); };
}

void check_root(std::string_view name, int root, int n) {
  if (root < 0 || root >= n)
    throw std::invalid_argument(std::string(name) + ": root " + std::to_string(root) + " is not in [0, " +
                                std::to_string(n) + ")");
}

}  // namespace

void set_args(Communicator::Impl& c, Operation& op, size_t count, bool reduces, int root) {
  if (!c.options.check_args || c.transport->size() == 1) return;
  Communicator::Impl::ArgsCache& last = c.last_args;
  if (last.line && last.count == count && last.type == op.type && last.op == op.op && last.reduces == reduces &&
      last.root == root && last.name == op.name && last.algorithm == op.algorithm) {
    op.args = last.line, op.digest = last.digest;
    return;
  }
  std::string a;
  a.reserve(96);
  a += "call=", a += op.name;
  a += " count=", a += std::to_string(count);
  if (count > 0 || op.name != "barrier") a += " type=", a += to_string(op.type);
  if (reduces) a += " op=", a += to_string(op.op);
  if (root >= 0) a += " root=", a += std::to_string(root);
  a += " algorithm=", a += op.algorithm;
  op.digest = exec::digest_of(a);
  op.args = std::make_shared<const std::string>(std::move(a));
  last = {op.name, std::string(op.algorithm), count, op.type, op.op, reduces, root, op.args, op.digest};
}

std::length_error pool_too_small(std::string_view what, size_t pool) {
  return std::length_error(std::string(what) + ": RDMACOLL_BUFFSIZE (" + std::to_string(pool) +
                           " bytes) is too small for even one element per segment");
}

// Recursive doubling has log n steps against the ring's n-1, for the same bytes.
Algorithm allgather_algorithm(int n) {
  const bool pow2 = (n & (n - 1)) == 0;
  return pow2 && n > 2 ? Algorithm::recursive_doubling_allgather : Algorithm::ring_allgather;
}

Work Communicator::allreduce_async(const void* in, void* out, size_t count, DataType type, ReduceOp op,
                                   const CallOptions& o) {
  check_buffers("allreduce", in, out, count, type);
  Impl& c = *impl_;
  const int n = size();
  const size_t es = dtype_size(type);
  // Small calls go through the mailboxes (exec/direct.h) where every peer's pool is mapped (UCX
  // shared memory) or over verbs (pushed, up to 8 ranks), unless the caller named an algorithm.
  // Their rank-order fold is the reproducible order too.
  std::shared_ptr<Operation> w;
  if (n > 1 && count > 0 && count * es <= exec::kDirectMaxBytes && c.direct.usable() &&
      o.algorithm.value_or(c.options.algorithm) == AllreduceAlgorithm::automatic) {
    w = new_op(c, "allreduce", c.direct.pushed() ? kPushedAlgorithm : kDirectAlgorithm, type, op, count, true);
    w->direct_call = Operation::DirectCall{in, out, count};
  } else {
    const Algorithm a = allreduce_algorithm(c, o, n, count, es);
    w = new_op(c, "allreduce", schedules::to_string(a), type, op, count, true);
    if (n > 1) add_contiguous_runs(c, *w, a, static_cast<char*>(out), count, 0, input_of(in, out));
    else w->prologue = copy_in(in, out, count * es);
  }
  if (op == ReduceOp::avg) w->epilogue = [type, out, count, n] { finalize_avg(type, out, count, static_cast<size_t>(n)); };
  return c.submit(this, std::move(w));
}

Work Communicator::reduce_scatter_async(const void* in, void* out, size_t count, DataType type, ReduceOp op,
                                        const CallOptions& o) {
  check_buffers("reduce_scatter", in, out, count, type);
  Impl& c = *impl_;
  const int n = size(), me = rank();
  const bool det = o.deterministic.value_or(c.options.deterministic);
  const Algorithm a = det ? Algorithm::ordered_reduce_scatter : Algorithm::ring_reduce_scatter;
  auto w = new_op(c, "reduce_scatter", schedules::to_string(a), type, op, count, true);
  const size_t es = dtype_size(type);
  if (n > 1) add_block_runs(c, *w, a, static_cast<char*>(out), count, input_of(in, out));
  else w->prologue = copy_in(in, out, count * es);
  if (op == ReduceOp::avg) {
    const Block b = schedules::even_blocks(count, static_cast<size_t>(n))[static_cast<size_t>(me)];
    char* mine = static_cast<char*>(out) + b.offset * es;
    w->epilogue = [type, mine, b, n] { finalize_avg(type, mine, b.count, static_cast<size_t>(n)); };
  }
  return c.submit(this, std::move(w));
}

Work Communicator::allgather_async(const void* in, void* out, size_t count, DataType type) {
  check_buffers("allgather", in, out, count, type);
  Impl& c = *impl_;
  const int n = size(), me = rank();
  const size_t es = dtype_size(type);
  const Algorithm a = allgather_algorithm(n);
  auto w = new_op(c, "allgather", schedules::to_string(a), type, ReduceOp::sum, count, false);
  const Block b = schedules::even_blocks(count, static_cast<size_t>(n))[static_cast<size_t>(me)];
  w->prologue = copy_in(static_cast<const char*>(in) + b.offset * es, static_cast<char*>(out) + b.offset * es,
                        b.count * es);
  if (n > 1) add_block_runs(c, *w, a, static_cast<char*>(out), count);
  return c.submit(this, std::move(w));
}

Work Communicator::broadcast_async(const void* in, void* out, size_t count, DataType type, int root) {
  Impl& c = *impl_;
  const int n = size();
  check_root("broadcast", root, n);
  check_buffers("broadcast", rank() == root ? in : out, out, count, type);
  const size_t es = dtype_size(type);
  // The chain pipelines well for large messages; the binomial tree has fewer steps.
  const Algorithm a =
      schedules::estimate(Algorithm::chain_broadcast, n, count, es, c.model()).seconds <
              schedules::estimate(Algorithm::binomial_broadcast, n, count, es, c.model()).seconds
          ? Algorithm::chain_broadcast
          : Algorithm::binomial_broadcast;
  auto w = new_op(c, "broadcast", schedules::to_string(a), type, ReduceOp::sum, count, false, root);
  if (rank() == root) w->prologue = copy_in(in, out, count * es);
  if (n > 1) add_contiguous_runs(c, *w, a, static_cast<char*>(out), count, root);
  return c.submit(this, std::move(w));
}

Work Communicator::reduce_async(const void* in, void* out, size_t count, DataType type, ReduceOp op, int root,
                                const CallOptions& o) {
  check_buffers("reduce", in, out, count, type);
  Impl& c = *impl_;
  const int n = size();
  check_root("reduce", root, n);
  const bool det = o.deterministic.value_or(c.options.deterministic);
  const Algorithm a = det ? Algorithm::ordered_reduce : Algorithm::binomial_reduce;
  auto w = new_op(c, "reduce", schedules::to_string(a), type, op, count, true, root);
  const size_t es = dtype_size(type);
  if (n > 1) add_contiguous_runs(c, *w, a, static_cast<char*>(out), count, root, input_of(in, out));
  else w->prologue = copy_in(in, out, count * es);
  if (op == ReduceOp::avg && rank() == root)
    w->epilogue = [type, out, count, n] { finalize_avg(type, out, count, static_cast<size_t>(n)); };
  return c.submit(this, std::move(w));
}

Work Communicator::barrier_async() {
  Impl& c = *impl_;
  const int n = size();
  auto w = new_op(c, "barrier", schedules::to_string(Algorithm::dissemination_barrier), DataType::u8, ReduceOp::sum, 0, false);
  // Zero-count transfers touch no scratch, so a barrier needs no fence; and it is one itself.
  if (n > 1) w->plans.push_back(c.fence());
  c.scratch_dirty = false;
  return c.submit(this, std::move(w));
}

}  // namespace rdmacoll::collectives
