// Collective algorithms as schedules: pure functions, no transport, that say which rank sends
// which element range to whom, in which step, and where the receiver puts or reduces it.
// One executor runs any schedule on any transport; the unit tests run them in an in-memory
// simulator that checks every rule below (tests/collectives/schedule_sim.h).
//
// How an executor runs a schedule
// -------------------------------
// Memory. A rank's schedule addresses two regions, both in ELEMENTS (the executor multiplies
// by the element size):
//   - user: the buffer the schedule was built for, worked on in place; offsets count from the
//     base the executor chose for this run (see segmentation below). An out-of-place call
//     copies its input into the output buffer first.
//   - scratch: Schedule::scratch elements from the executor's pool. The bound depends only on
//     the algorithm, the rank count and the element count (never on the rank), so every rank
//     reserves the same amount and a pre-exchanged window can be addressed by offset.
//
// Steps. Run steps in order. Step s starts when step s-1 is complete on this rank: its sends
// done, its receives landed (and reduced), its local ops run. Inside a step every transfer
// may proceed at once, in any order; then the step's local ops run, in list order. Every
// rank's schedule has the same number of steps (idle ranks have empty steps).
//
// Transfers. The sender reads `count` elements at `src` in its memory and puts them at
// landing(t) in the receiver's memory. overwrite: they land in `dst` and that is all.
// reduce: they land at `staging` in the receiver's scratch and the receiver then computes
// dst = dst op staged (reduce_into(dst, staged)), so dst is the left operand. The executor
// may cut a transfer into chunks and reduce chunk k while chunk k+1 is on the wire. Reduce
// transfers of one step may share a dst (a tree rank adding its two children's sums); the
// executor applies those one at a time in list order, so results do not vary between runs.
// Apart from that, nothing a step's transfers write overlaps anything else the step touches.
//
// Pairing. The sender and the receiver hold equal copies of each Transfer, in the same step.
// Between one ordered pair of ranks a step may hold several transfers; they pair up in list
// order, so (step, from, to, index among that pair's transfers in the step) identifies one,
// e.g. as a message tag. A transfer with count 0 carries no data but must still be
// delivered: it is a synchronisation (only the barrier has them; the data schedules leave
// empty transfers out).
//
// One-sided safety. A sender may write a transfer of step s into the receiver's memory as
// soon as it starts step s, without asking whether the receiver is ready. Every schedule
// makes sure that by then the sender knows, through the chain of transfers between them,
// that the receiver has finished the last step that touched the landing range, or, if the
// receiver only sent from it in that step, that those transfers arrived (data that arrived
// has been read). That is why a staging range is never written twice in one run. Two-sided
// messages get this for free. Data moves when the sender is ready: an executor that pulls
// (RDMA READ by the receiver) needs the sender's go-ahead, as the verbs rendezvous has.
// Between two runs that share scratch (segments, consecutive calls) the executor must
// fence: a peer that finished run k could otherwise write run k+1's data into scratch this
// rank still reduces from.
//
// Segmentation. With a fixed scratch pool (64 MiB by default) the executor splits a large
// call into segments whose scratch_elements() fits, and runs one schedule per segment.
// scratch_elements() never decreases as the count grows, so the largest segment that fits
// can be found by bisection. Allreduce, broadcast and reduce cut the user buffer into
// contiguous segments and shift the user base. Reduce-scatter and allgather must keep
// block r on rank r, so a segment there is the same sub-range of every rank's block:
// segment_blocks() makes those, and the builders that take blocks accept them.
//
// Pipelining. Spec::pieces > 1 (allreduce, broadcast, reduce) cuts the data into pieces and
// staggers one instance of the algorithm per piece by one step (see pipelined()), so rank
// i forwards piece k while receiving piece k+1: that is what makes a chain or a tree fast
// for large messages. estimate() says how many pieces pay off.
//
// Results, in place. allreduce: every rank's buffer. reduce_scatter: block r of rank r's
// buffer. allgather: all blocks everywhere (rank r contributes block r). broadcast: root's
// buffer everywhere. reduce: root's buffer. What else the buffers hold afterwards is
// unspecified (they serve as accumulators). avg reduces like sum; the executor calls
// finalize_avg() afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace rdmacoll::collectives::schedules {

enum class Memory : std::uint8_t { user, scratch };

// A position in one rank's memory, in elements.
struct Place {
  Memory memory = Memory::user;
  std::size_t offset = 0;
  friend bool operator==(const Place&, const Place&) = default;
};

enum class Action : std::uint8_t {
  overwrite,  // dst = data
  reduce,     // dst = dst op data
};

// `count` elements from rank `from` to rank `to`. See the top of this file.
struct Transfer {
  int from = 0;
  int to = 0;
  std::size_t count = 0;
  Place src;  // in from's memory
  Place dst;  // in to's memory: overwritten, or reduced into
  Action action = Action::overwrite;
  std::size_t staging = 0;  // reduce only: offset in to's scratch where the data lands
  friend bool operator==(const Transfer&, const Transfer&) = default;
};

// Where a transfer's data lands in the receiver's memory: what a one-sided write targets.
inline Place landing(const Transfer& t) {
  return t.action == Action::reduce ? Place{Memory::scratch, t.staging} : t.dst;
}

// Within one rank, after the step's transfers: dst = src (overwrite) or dst = dst op src
// (reduce). The ordered algorithms use these to add contributions in rank order.
struct Local {
  Action action = Action::overwrite;
  std::size_t count = 0;
  Place src;
  Place dst;
  friend bool operator==(const Local&, const Local&) = default;
};

struct Step {
  std::vector<Transfer> sends;  // from == this rank
  std::vector<Transfer> recvs;  // to == this rank
  std::vector<Local> local;
};

// One rank's part of a collective.
struct Schedule {
  int rank = 0;
  int nranks = 1;
  std::size_t count = 0;    // user elements the schedule addresses: [0, count)
  std::size_t scratch = 0;  // scratch elements it may use: [0, scratch), the same on every rank
  std::vector<Step> steps;
};

// A range of elements of the user buffer.
struct Block {
  std::size_t offset = 0;
  std::size_t count = 0;
  friend bool operator==(const Block&, const Block&) = default;
};

// The partition reduce-scatter and allgather expose: `parts` consecutive blocks covering
// [0, count), the first count % parts of them one element longer. Block r is rank r's.
std::vector<Block> even_blocks(std::size_t count, std::size_t parts);

// [begin, begin + length) of every block, clipped to the block (possibly empty): one
// segment of a reduce-scatter or allgather that keeps block r on rank r.
std::vector<Block> segment_blocks(std::span<const Block> blocks, std::size_t begin,
                                  std::size_t length);

// ---- algorithms (each .cc has the diagram) --------------------------------------------------
// Every builder throws std::invalid_argument for nranks < 1, a rank or root outside
// [0, nranks), or blocks that are not one per rank or that overlap. Block r is rank r's.

// schedules/ring.cc
Schedule ring_reduce_scatter(int rank, int nranks, std::span<const Block> blocks);
Schedule ring_allgather(int rank, int nranks, std::span<const Block> blocks);
Schedule ring_allreduce(int rank, int nranks, std::size_t count);

// schedules/tree.cc: NCCL's double binary tree, each tree reducing then broadcasting half.
Schedule double_binary_tree_allreduce(int rank, int nranks, std::size_t count);

// schedules/halving_doubling.cc. recursive_doubling_allgather needs a power-of-two nranks.
Schedule halving_doubling_allreduce(int rank, int nranks, std::size_t count);
Schedule recursive_doubling_allreduce(int rank, int nranks, std::size_t count);
Schedule recursive_doubling_allgather(int rank, int nranks, std::span<const Block> blocks);

// schedules/binomial.cc
Schedule binomial_broadcast(int rank, int nranks, int root, std::size_t count);
Schedule binomial_reduce(int rank, int nranks, int root, std::size_t count);
Schedule dissemination_barrier(int rank, int nranks);

// schedules/chain.cc: root -> root+1 -> ... ; pipelined through Spec::pieces.
Schedule chain_broadcast(int rank, int nranks, int root, std::size_t count);

// User space [0, n*block) is the send region (block q goes to rank q), [n*block, 2n*block) the
// receive region (block q comes from rank q); n-1 steps of one exchange each, no scratch. One
// rank: no steps (the caller copies its block).
Schedule alltoall(int rank, int nranks, std::size_t block);

// schedules/ordered.cc: reproducible reductions. Every element's result is
//   ((x_0 op x_1) op x_2) ... op x_{n-1}
// with x_q rank q's input, computed by a single rank, whatever the segment size or pieces:
// bitwise the same across runs and across these algorithms (for one rank count).
Schedule ordered_reduce_scatter(int rank, int nranks, std::span<const Block> blocks);
Schedule ordered_allreduce(int rank, int nranks, std::size_t count);
Schedule ordered_reduce(int rank, int nranks, int root, std::size_t count);

// Cuts [0, count) into `pieces` even blocks, builds instance(piece's count) for each, and
// runs instance k's step j in step j + k, with its user offsets shifted to its piece and its
// scratch shifted to a slice of its own. Needs instances with the same number of steps
// whatever their count (all builders above, for count > 0). pieces is clamped to count.
Schedule pipelined(int rank, int nranks, std::size_t count, std::size_t pieces,
                   const std::function<Schedule(std::size_t piece_count)>& instance);

// ---- choosing an algorithm ------------------------------------------------------------------

enum class Collective { allreduce, reduce_scatter, allgather, broadcast, reduce, barrier };

enum class Algorithm {
  ring_allreduce,
  double_binary_tree_allreduce,
  halving_doubling_allreduce,
  recursive_doubling_allreduce,
  ordered_allreduce,
  ring_reduce_scatter,
  ordered_reduce_scatter,
  ring_allgather,
  recursive_doubling_allgather,
  binomial_broadcast,
  chain_broadcast,
  binomial_reduce,
  ordered_reduce,
  dissemination_barrier,
};

inline constexpr Algorithm kAllAlgorithms[] = {
    Algorithm::ring_allreduce,
    Algorithm::double_binary_tree_allreduce,
    Algorithm::halving_doubling_allreduce,
    Algorithm::recursive_doubling_allreduce,
    Algorithm::ordered_allreduce,
    Algorithm::ring_reduce_scatter,
    Algorithm::ordered_reduce_scatter,
    Algorithm::ring_allgather,
    Algorithm::recursive_doubling_allgather,
    Algorithm::binomial_broadcast,
    Algorithm::chain_broadcast,
    Algorithm::binomial_reduce,
    Algorithm::ordered_reduce,
    Algorithm::dissemination_barrier,
};

// "ring_allreduce", ...; "unknown" for a value outside the enum (never throws: for messages).
std::string_view to_string(Algorithm algorithm) noexcept;
// These throw std::invalid_argument for a value outside the enum.
Collective collective_of(Algorithm algorithm);
// The algorithm to run instead when results must be reproducible (RDMACOLL_DETERMINISTIC):
// the ordered one of the same collective for reductions; the algorithm itself otherwise
// (moving data without arithmetic is already reproducible).
Algorithm reproducible(Algorithm algorithm);

// What to build. reduce_scatter and allgather use even_blocks(count, nranks) (call the
// builders directly for other blocks); root matters for broadcast and reduce only; pieces
// other than 1 are for allreduce, broadcast and reduce only.
struct Spec {
  Algorithm algorithm = Algorithm::ring_allreduce;
  int rank = 0;
  int nranks = 1;
  std::size_t count = 0;
  int root = 0;
  std::size_t pieces = 1;
};

// Throws std::invalid_argument for a bad Spec (see the builders; also pieces == 0, pieces > 1
// where it does not apply, recursive doubling on a rank count that is not a power of two).
Schedule build(const Spec& spec);

// The scratch build() declares: a bound on every rank's scratch use, from the algorithm, the
// rank count, the element count and the pieces alone; non-decreasing in count.
std::size_t scratch_elements(Algorithm algorithm, int nranks, std::size_t count,
                             std::size_t pieces = 1);

// ---- cost model (schedules/cost.cc) ---------------------------------------------------------

// Hockney's alpha-beta model plus a reduction term. The defaults are placeholders until the
// communicator measures them: 5 us per message, 100 Gb/s links, a 10 GB/s reduction kernel.
struct CostModel {
  double alpha = 5e-6;        // seconds per message (latency, software overhead)
  double beta = 8.0 / 100e9;  // seconds per byte on a link
  double gamma = 1.0 / 10e9;  // seconds per byte reduced
};

struct Estimate {
  double seconds = 0;
  std::size_t pieces = 1;  // for Spec::pieces: the number that minimises seconds
};

// steps x alpha + bytes on the critical path x beta + bytes reduced on it x gamma, for
// `count` elements of `element_size` bytes (count is the whole buffer, as in Spec).
// Infinite where the algorithm does not apply (recursive doubling on 6 ranks).
Estimate estimate(Algorithm algorithm, int nranks, std::size_t count, std::size_t element_size,
                  const CostModel& model = {});

}  // namespace rdmacoll::collectives::schedules
