// Compressed allreduce (communicator.h, Compression): the codec runs inside the collective.
//
// A call is cut into segments whose encoded blocks fit half the pool. Each segment is one or
// two runs of byte schedules over the communicator's compression buffers, with the codec work
// in the runs' before/after hooks (they run in the executor, when the run starts or ends, so
// a non-blocking call encodes nothing until its turn):
//
//   two_phase    before run 1: encode this rank's share of every block (worker residual)
//                run 1: alltoall of the shares (block q to its owner q)
//                before run 2: the owner sums the n shares of its block in rank order,
//                  (divides for avg) and re-encodes the sum (server residual)
//                run 2: allgather of the owners' encoded blocks
//                after run 2: decode every block into the output
//   allgather    before: encode the whole segment; run: allgather; after: decode the n
//                encodings and sum them in rank order
//
// Every block is padded to the same size W (the encoding of the largest block), so the byte
// schedules see equal blocks; the padding is zeros and goes on the wire like the rest.
#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

#include "exec/comm_impl.h"
#include "rdmacoll/collectives/codec.h"
#include "rdmacoll/log.h"

namespace rdmacoll::collectives {
namespace {

using schedules::Block;

// splitmix64's finalizer: independent seeds for (call, phase, segment, block, rank).
uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

struct Call {
  const Codec* codec;
  ErrorFeedback* feedback;
  uint64_t seed;
  const float* in;
  float* out;
  size_t count;
  bool avg;
  int n, me;
};

// Encodes x[0, len) into wire (W bytes, the tail zeroed), through `residual` if given.
uint64_t encode_padded(const Codec& codec, const float* x, size_t len, float* residual, std::byte* wire, size_t w,
                       uint64_t seed) {
  const EncodeStats st =
      residual ? encode_with_feedback(codec, x, len, residual, wire, seed) : codec.encode(x, len, wire, seed);
  std::memset(wire + st.bytes, 0, w - st.bytes);
  return st.nonfinite;
}

std::invalid_argument bad(const std::string& what) { return std::invalid_argument("allreduce (compressed): " + what); }

// Two-phase calls are cut into at least this many segments where each still has kMinPipelined
// elements: the codec work of one overlaps the transfers of the next.
constexpr size_t kPipeline = 4;
constexpr size_t kMinPipelined = size_t{1} << 18;
// Pipelining is chosen where the estimated time on the wire is at most this many times the
// codec's arithmetic, taken at kCodecBytesPerSecond of fp32 input for a whole two-phase call
// (encode with feedback, decode and sum the shares, re-encode, decode: 1.7-3.5 GB/s measured
// for qsgd:4, int8 and sign on this machine's cores).
constexpr double kPipelineWireOverCodec = 4.0;
constexpr double kCodecBytesPerSecond = 2e9;

bool use_two_phase(const Codec& codec, Compression::Scheme scheme) {
  return scheme == Compression::Scheme::two_phase || (scheme == Compression::Scheme::automatic && !codec.sparse());
}

}  // namespace

// Measured, not modelled: the first time a codec is asked about for counts in [2^k, 2^(k+1)),
// plain and compressed allreduces of `count` floats run, alternating, three of each after an
// untimed one (the fastest of each counts), and each rank's times are maxed over ranks, so every rank decides alike. The model's
// link bandwidth, measured on small blocks at creation, misjudges large transfers over shared
// memory by a factor of a few; a direct comparison does not, and it prices in the codec's
// encode and decode on this CPU exactly as the call would see them.
bool Communicator::compression_pays(const Codec& codec, size_t count, Compression::Scheme scheme) {
  const int n = size();
  if (n == 1 || count == 0) return false;
  Impl& c = *impl_;
  const std::string key = codec.name() + "/" + std::to_string(static_cast<int>(scheme)) + "/" +
                          std::to_string(std::bit_width(count));
  if (auto it = c.codec_pays.find(key); it != c.codec_pays.end()) return it->second;
  std::vector<float> in(count), out(count);
  for (size_t i = 0; i < count; ++i) in[i] = static_cast<float>(std::sin(0.37 * static_cast<double>(i + rank())) * 1e-3);
  const Compression comp{&codec, nullptr, 0, scheme, false};
  auto plain = [&] { allreduce(in.data(), out.data(), count, DataType::f32, ReduceOp::sum); };
  auto compressed = [&] { allreduce(in.data(), out.data(), count, ReduceOp::sum, comp); };
  auto timed = [&](auto call) {
    barrier();
    const auto t0 = std::chrono::steady_clock::now();
    call();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  plain(), compressed();  // untimed: registrations, first touch of the buffers
  double t[2] = {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
  for (int round = 0; round < 3; ++round)  // alternating, the fastest of each: load comes and goes
    t[0] = std::min(t[0], timed(plain)), t[1] = std::min(t[1], timed(compressed));
  allreduce(t, t, 2, DataType::f64, ReduceOp::max);
  const bool pays = t[1] < t[0];
  RDMACOLL_INFO(kColl, "compression with %s for %zu floats: plain %.3f ms, compressed %.3f ms: %s", codec.name().c_str(),
                count, t[0] * 1e3, t[1] * 1e3, pays ? "compress" : "do not compress");
  c.codec_pays[key] = pays;
  return pays;
}

Work Communicator::allreduce_async(const float* in, float* out, size_t count, ReduceOp op,
                                   const Compression& compression) {
  if (compression.codec == nullptr) throw bad("Compression::codec is null");
  if (op != ReduceOp::sum && op != ReduceOp::avg)
    throw bad("op " + std::string(to_string(op)) + ": a compressed allreduce sums (sum or avg)");
  if (count > 0 && (in == nullptr || out == nullptr)) throw bad("null buffer with count " + std::to_string(count));
  if (count > std::numeric_limits<size_t>::max() / sizeof(float)) throw std::length_error("allreduce (compressed): count overflows");
  const auto a = reinterpret_cast<uintptr_t>(in), b = reinterpret_cast<uintptr_t>(out);
  if (count > 0 && a != b && a < b + count * 4 && b < a + count * 4)
    throw bad("the input and output buffers overlap without being the same buffer");
  ErrorFeedback* ef = compression.feedback;
  if (ef != nullptr) {
    for (std::vector<float>* v : {&ef->worker, &ef->server}) {
      if (v->empty()) v->assign(count, 0.0f);
      else if (v->size() != count)
        throw bad("the error feedback holds " + std::to_string(v->size()) + " elements but the call has " +
                  std::to_string(count) + ": use one ErrorFeedback per buffer (or reset() it)");
    }
  }
  const Codec& codec = *compression.codec;
  const bool two_phase = use_two_phase(codec, compression.scheme);
  if (compression.only_if_faster && !compression_pays(codec, count, compression.scheme))
    return allreduce_async(in, out, count, DataType::f32, op);
  Impl& c = *impl_;
  const int n = size(), me = rank();
  const auto un = static_cast<size_t>(n);

  auto w = std::make_shared<Operation>();
  w->compressed = true;
  w->seq = c.next_seq++;
  w->name = "allreduce";
  w->algorithm_storage = std::string(two_phase ? "compressed two-phase " : "compressed allgather ") + codec.name();
  w->algorithm = w->algorithm_storage;
  w->type = DataType::u8;
  if (c.options.check_args && n > 1)
    w->args = std::make_shared<const std::string>("call=allreduce count=" + std::to_string(count) + " type=f32 op=" +
                                                  std::string(to_string(op)) + " codec=" + codec.name() +
                                                  " scheme=" + (two_phase ? "two_phase" : "allgather"));
  const Call call{&codec, ef, mix(compression.seed ^ mix(w->seq)), in, out, count, op == ReduceOp::avg, n, me};
  Operation* self = w.get();  // the hooks run while the operation is alive

  // Segments. Two-phase: block q of the call (even_blocks: its owner reduces it) is cut into
  // sub-ranges of `seg` elements, and segment s is sub-range s of every block, so each element
  // has the same owner and the same codec blocks however the call is cut (seg is a multiple of
  // the codec's block). seg is the largest that fits half the pool and, where the codec's
  // arithmetic is not small against the time on the wire (below), at most a kPipeline-th of a
  // block (not below kMinPipelined / n): the codec work of one segment then overlaps the
  // transfers of its neighbours (Plan::before_early, after_late, below). Where the wire
  // dominates, more segments only add exchange steps (100 Mbit/s, 4 ranks: int8 and fp16 lost
  // 40% that way). Both estimates use what every rank agrees on: the cost model's link
  // bandwidth and a fixed codec speed. Allgather: contiguous segments, the largest that fit.
  const std::vector<Block> blocks = schedules::even_blocks(count, two_phase ? un : 1);
  const size_t span = blocks.empty() ? 0 : blocks.front().count;  // the longest block (or the call)
  auto need = [&](size_t len) { return (two_phase ? 2 : 1) * un * codec.wire_bytes(len); };
  size_t seg = largest_fitting(span, [&](size_t len) { return need(len) <= c.pool.bytes / 2; });
  if (count > 0 && seg == 0) throw pool_too_small("allreduce (compressed)", c.pool.bytes);
  const double wire_s = 2.0 * static_cast<double>(un - 1) * static_cast<double>(codec.wire_bytes(span)) * c.cost.beta_s_per_byte;
  const double codec_s = static_cast<double>(count) * sizeof(float) / kCodecBytesPerSecond;
  if (two_phase && n > 1 && wire_s <= kPipelineWireOverCodec * codec_s)
    seg = std::min(seg, std::max(kMinPipelined / un, (span + kPipeline - 1) / kPipeline));
  if (const size_t grain = std::max<size_t>(codec.spec().block, 1); seg < span && seg >= grain) seg -= seg % grain;
  const size_t wmax = codec.wire_bytes(seg), acc_len = two_phase ? seg : 0;
  if (!c.compress || c.compress->send.size() < un * wmax || c.compress->acc.size() < acc_len) {
    auto bigger = std::make_shared<Impl::CompressBuffers>();
    const size_t bytes = std::max(un * wmax, c.compress ? c.compress->send.size() : 0);
    bigger->send.resize(bytes), bigger->recv.resize(bytes), bigger->gather.resize(bytes);
    bigger->acc.resize(std::max(acc_len, c.compress ? c.compress->acc.size() : 0));
    c.compress = std::move(bigger);
  }
  const std::shared_ptr<Impl::CompressBuffers> buf = c.compress;  // the hooks hold it
  std::vector<std::function<void()>> local;  // one rank: the segments' arithmetic, in order

  // A run that allgathers the n encoded blocks of wb bytes in `gather` (block q from rank q).
  auto add_gather = [&](size_t wb, std::byte* gather) {
    std::vector<Block> equal(un);
    for (size_t q = 0; q < un; ++q) equal[q] = {q * wb, wb};
    const schedules::Algorithm ag = allgather_algorithm(n);
    c.add_run(*w, true, un * wb, [me, n, ag, equal] {
      return ag == schedules::Algorithm::recursive_doubling_allgather ? schedules::recursive_doubling_allgather(me, n, equal)
                                                                      : schedules::ring_allgather(me, n, equal);
    }, {{0, reinterpret_cast<char*>(gather), un * wb, nullptr}});
  };
  for (size_t begin = 0, index = 0; begin < span; begin += seg, ++index) {
    const uint64_t seed = mix(call.seed ^ (index << 32));
    std::byte* gather = buf->gather.data();
    if (two_phase) {
      // Segment `index`: elements [begin, begin + seg) of every block q, at parts[q].offset.
      const std::vector<Block> parts = schedules::segment_blocks(blocks, begin, seg);
      const size_t wb = codec.wire_bytes(std::min(seg, span - begin));
      std::byte* send = buf->send.data();
      std::byte* recv = buf->recv.data();
      auto encode_shares = [=] {
        for (size_t q = 0; q < un; ++q) {
          const Block& bq = parts[q];
          float* res = call.feedback ? call.feedback->worker.data() + bq.offset : nullptr;
          self->nonfinite += encode_padded(*call.codec, call.in + bq.offset, bq.count, res, send + q * wb, wb,
                                           mix(seed ^ mix(q * 2 * un + static_cast<size_t>(call.me))));
        }
      };
      auto reduce_and_reencode = [=] {
        const Block mine = parts[static_cast<size_t>(call.me)];
        float* acc = buf->acc.data();
        std::fill(acc, acc + mine.count, 0.0f);
        for (size_t q = 0; q < un; ++q) call.codec->decode_add(recv + q * wb, mine.count, acc);
        if (call.avg)
          for (size_t i = 0; i < mine.count; ++i) acc[i] /= static_cast<float>(call.n);
        float* res = call.feedback ? call.feedback->server.data() + mine.offset : nullptr;
        encode_padded(*call.codec, acc, mine.count, res, gather + static_cast<size_t>(call.me) * wb, wb,
                      mix(seed ^ mix((2 * un + 1) * un + static_cast<size_t>(call.me))));
      };
      auto decode_all = [=] {
        for (size_t q = 0; q < un; ++q) call.codec->decode(gather + q * wb, parts[q].count, call.out + parts[q].offset);
      };
      if (n == 1) {  // nothing to exchange: the same arithmetic, locally
        local.push_back([=] {
          encode_shares();
          std::memcpy(recv, send, wb);
          reduce_and_reencode();
          decode_all();
        });
        continue;
      }
      c.add_run(*w, true, 2 * un * wb, [me, n, wb] { return schedules::alltoall(me, n, wb); },
                {{0, reinterpret_cast<char*>(send), un * wb, nullptr}, {un * wb, reinterpret_cast<char*>(recv), un * wb, nullptr}});
      // Encoding segment s+1 may run while segment s's allgather is on the wire (segment s's
      // alltoall, the last to read the send buffer, is over); decoding segment s while segment
      // s+1's alltoall is (the gather buffer is next written when segment s+1's allgather
      // starts, and the late decode runs before that).
      w->plans.back().before = encode_shares;
      w->plans.back().before_early = true;
      add_gather(wb, gather);
      w->plans.back().before = reduce_and_reencode;
      w->plans.back().after = decode_all;
      w->plans.back().after_late = true;
    } else {
      const size_t len = std::min(seg, count - begin);
      const size_t wb = codec.wire_bytes(len);
      // Both hooks hold `buf`, as the two-phase ones do through reduce_and_reencode: the next
      // call may replace c.compress with bigger buffers while this one is still in flight.
      auto encode_mine = [=, hold = buf] {
        float* res = call.feedback ? call.feedback->worker.data() + begin : nullptr;
        self->nonfinite += encode_padded(*call.codec, call.in + begin, len, res, gather + static_cast<size_t>(call.me) * wb, wb,
                                         mix(seed ^ mix(static_cast<size_t>(call.me))));
      };
      auto sum_all = [=, hold = buf] {
        float* dst = call.out + begin;
        call.codec->decode(gather, len, dst);
        for (size_t q = 1; q < un; ++q) call.codec->decode_add(gather + q * wb, len, dst);
        if (call.avg)
          for (size_t i = 0; i < len; ++i) dst[i] /= static_cast<float>(call.n);
      };
      if (n == 1) {
        local.push_back([=] { encode_mine(), sum_all(); });
        continue;
      }
      add_gather(wb, gather);
      w->plans.back().before = encode_mine;
      w->plans.back().after = sum_all;
    }
  }
  if (!local.empty())
    w->prologue = [local = std::move(local)] {
      for (const auto& f : local) f();
    };
  return c.submit(this, std::move(w));
}

}  // namespace rdmacoll::collectives
