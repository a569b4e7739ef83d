#include "exec/run.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "rdmacoll/collectives/reduce.h"
#include "rdmacoll/error.h"

namespace rdmacoll::collectives::exec {

using schedules::Action;
using schedules::Memory;
using schedules::Place;
using schedules::Transfer;

std::size_t pool_bytes(const schedules::Schedule& s, DataType type) {
  return (s.scratch + s.count) * dtype_size(type);
}

Run::Run(transport::Transport& t, const Pool& pool, std::size_t region, std::size_t region_bytes,
         std::shared_ptr<const schedules::Schedule> schedule, const std::vector<UserPiece>& user, DataType type,
         ReduceOp op, uint16_t tag, Control* control, uint64_t seq, uint64_t digest)
    : t_(t), pool_(pool) {
  restart(region, region_bytes, std::move(schedule), user, type, op, tag, control, seq, digest);
}

void Run::restart(std::size_t region, std::size_t region_bytes, std::shared_ptr<const schedules::Schedule> schedule,
                  const std::vector<UserPiece>& user, DataType type, ReduceOp op, uint16_t tag, Control* control,
                  uint64_t seq, uint64_t digest) {
  if (region > pool_.bytes || region_bytes > pool_.bytes - region || pool_bytes(*schedule, type) > region_bytes)
    throw std::length_error("collective run needs " + std::to_string(pool_bytes(*schedule, type)) +
                            " scratch bytes, its region of the pool has " + std::to_string(region_bytes));
  schedule_ = std::move(schedule);
  type_ = type, op_ = op, es_ = dtype_size(type), tag_ = tag;
  region_ = region, mirror_ = region + schedule_->scratch * es_;
  control_ = control, seq_ = seq, digest_ = digest;
  step_ = 0, events_ = 0, started_ = false;
  // Vectors are cleared, not freed: a communicator reuses its finished run (small calls would
  // otherwise spend much of their time allocating them).
  user_.assign(user.begin(), user.end());
  std::sort(user_.begin(), user_.end(), [](const UserPiece& a, const UserPiece& b) { return a.sched < b.sched; });
  bounds_.clear(), untouched_.clear();
  for (const UserPiece& p : user_) {
    bounds_.push_back(p.sched);
    if (p.in != nullptr && p.count > 0) untouched_.emplace_back(p.sched, p.sched + p.count);
  }
  const auto n = static_cast<std::size_t>(t_.size());
  drop_requests();
  expected_.resize(n), note_.resize(n);
  next_.assign(n, 0), sent_count_.assign(n, 0), recv_count_.assign(n, 0);
  checks_.clear();
  if (control_ != nullptr) checks_.resize(n);
}

void Run::take_ring(Ring ring) {
  ring_ = std::move(ring);
  ring_send_ = first_framed(ring_.next, true);
  if (!ring_send_) control_->send_ring(seq_, digest_);
  if (ring_.recv && !first_framed(ring_.prev, false)) ring_.recv.reset();
}

bool Run::first_framed(int peer, bool sending) const {
  std::vector<Chunk>& chunks = probe_;
  for (const schedules::Step& s : schedule_->steps) {
    for (const Transfer& tr : sending ? s.sends : s.recvs) {
      if ((sending ? tr.to : tr.from) != peer) continue;
      chunks_of(tr, chunks);
      return framed(static_cast<std::size_t>(peer), chunks.front().count * es_);
    }
  }
  return false;
}

void Run::drop_requests() {
  ring_ = {}, ring_send_ = false;
  sends_.clear();
  for (auto& e : expected_) e.clear();
  for (auto& r : note_) r = transport::Request();
}

namespace {
// Two-sided chunks' tags: clear of the communicator's setup tag (below 2^32), unique per peer
// while in flight (a run's chunks to one peer are far fewer than 2^16).
uint64_t chunk_tag(uint32_t imm) { return (uint64_t{1} << 38) | imm; }
}  // namespace

char* Run::user(std::size_t offset) const {
  auto it = std::upper_bound(user_.begin(), user_.end(), offset,
                             [](std::size_t o, const UserPiece& p) { return o < p.sched; });
  if (it == user_.begin()) throw std::logic_error("schedule offset " + std::to_string(offset) + " outside user memory");
  --it;
  return it->base + (offset - it->sched) * es_;
}

const char* Run::input(std::size_t offset) const {
  auto it = std::upper_bound(user_.begin(), user_.end(), offset,
                             [](std::size_t o, const UserPiece& p) { return o < p.sched; });
  --it;  // offsets come from ranges untouched_ holds, which lie inside pieces
  return it->in + (offset - it->sched) * es_;
}

bool Run::untouched(std::size_t begin, std::size_t end) const {
  auto it = std::upper_bound(untouched_.begin(), untouched_.end(), begin,
                             [](std::size_t o, const auto& r) { return o < r.first; });
  if (it == untouched_.begin()) return false;
  --it;
  return it->first <= begin && end <= it->second;
}

void Run::forget(std::size_t begin, std::size_t end) {
  if (untouched_.empty() || begin >= end) return;
  std::vector<std::pair<std::size_t, std::size_t>> keep;
  keep.reserve(untouched_.size() + 1);
  for (const auto& [a, b] : untouched_) {
    if (b <= begin || a >= end) {
      keep.emplace_back(a, b);
      continue;
    }
    if (a < begin) keep.emplace_back(a, begin);
    if (end < b) keep.emplace_back(end, b);
  }
  untouched_.swap(keep);
}

void Run::settle(std::size_t begin, std::size_t end) {
  for (const auto& [a, b] : untouched_) {
    const std::size_t lo = std::max(a, begin), hi = std::min(b, end);
    // Ranges lie inside one piece each (they start as pieces and only shrink).
    if (lo < hi) std::memcpy(user(lo), input(lo), (hi - lo) * es_);
  }
  forget(begin, end);
}

// out = out op data over [offset, offset + count) of user space; where the output does not
// hold the input yet, out = in op data instead, in one pass.
void Run::reduce_user(std::size_t offset, const char* data, std::size_t count) {
  char* out = user(offset);
  if (!untouched(offset, offset + count)) {
    settle(offset, offset + count);
    reduce_into(type_, op_, out, data, count);
    return;
  }
  reduce_to(type_, op_, out, input(offset), data, count);
  forget(offset, offset + count);
}

char* Run::at(Place p, std::size_t extra) const {
  return p.memory == Memory::user ? user(p.offset + extra) : pool_.base + region_ + (p.offset + extra) * es_;
}

// Cut at every kChunkBytes and wherever a user range crosses from one piece to the next, so
// each chunk is contiguous on both sides. Sender and receiver hold the same pieces, so they
// cut alike.
void Run::chunks_of(const Transfer& t, std::vector<Chunk>& out) const {
  const std::size_t step = std::max<std::size_t>(1, kChunkBytes / es_);
  std::vector<std::size_t>& cuts = cuts_;
  cuts.clear();
  auto add_bounds = [&](Place p) {
    if (p.memory != Memory::user) return;
    for (std::size_t b : bounds_)
      if (b > p.offset && b < p.offset + t.count) cuts.push_back(b - p.offset);
  };
  add_bounds(t.src);
  add_bounds(t.dst);
  for (std::size_t o = step; o < t.count; o += step) cuts.push_back(o);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  out.clear();
  std::size_t begin = 0;
  for (std::size_t c : cuts) out.push_back({begin, c - begin, false}), begin = c;
  out.push_back({begin, t.count - begin, false});  // a zero-count transfer is one empty chunk: still delivered
}

std::size_t Run::landing_bytes(const Transfer& t, std::size_t offset) const {
  if (t.action == Action::reduce) return region_ + (t.staging + offset) * es_;
  if (t.dst.memory == Memory::user) return mirror_ + (t.dst.offset + offset) * es_;
  return region_ + (t.dst.offset + offset) * es_;
}

void Run::start_step() {
  const schedules::Step& s = schedule_->steps[step_];
  sends_.clear();
  for (const Transfer& tr : s.sends) {
    chunks_of(tr, send_chunks_);
    for (const Chunk& c : send_chunks_) {
      const auto to = static_cast<std::size_t>(tr.to);
      const uint32_t imm = immediate(sent_count_[to]++);
      const char* src = pool_.base;
      if (c.count > 0 && tr.src.memory == Memory::user && !untouched_.empty()) {
        const std::size_t b = tr.src.offset + c.offset, e = b + c.count;
        if (untouched(b, e)) src = input(b);
        else settle(b, e), src = at(tr.src, c.offset);
      } else if (c.count > 0) {
        src = at(tr.src, c.offset);
      }
      // The run's first chunk to a peer carries the check (control.h): in front of it where
      // it is framed, else just before it.
      const bool first = control_ != nullptr && sent_count_[to] == 1;
      if (first && framed(to, c.count * es_)) {
        if (ring_send_ && tr.to == ring_.next) {  // on the ring check's tag: both at once
          sends_.emplace_back(tr.to, control_->send_ring(seq_, digest_, src, c.count * es_));
          ring_send_ = false;
        } else {
          sends_.emplace_back(tr.to, control_->send_framed(tr.to, chunk_tag(imm), seq_, digest_, src, c.count * es_));
        }
        continue;
      }
      if (first) control_->send_check(tr.to, tag_, seq_, digest_);
      if (sends(to, c.count * es_))
        sends_.emplace_back(tr.to, t_.send(tr.to, chunk_tag(imm), src, c.count * es_));
      else
        sends_.emplace_back(tr.to, t_.write(tr.to, src, c.count * es_, pool_.peers[to], landing_bytes(tr, c.offset), imm));
    }
  }
  incoming_.resize(s.recvs.size());
  for (Incoming& in : incoming_) in.arrived = in.applied = 0, in.blockers.clear();
  for (auto& e : expected_) e.clear();
  std::fill(next_.begin(), next_.end(), 0);
  for (std::size_t i = 0; i < s.recvs.size(); ++i) {
    const Transfer& tr = s.recvs[i];
    const auto from = static_cast<std::size_t>(tr.from);
    chunks_of(tr, incoming_[i].chunks);
    for (std::size_t k = 0; k < incoming_[i].chunks.size(); ++k) {
      Chunk& c = incoming_[i].chunks[k];
      const uint32_t imm = immediate(recv_count_[from]++);
      transport::Request recv;
      std::shared_ptr<Control::Pending> framed_recv;
      const bool first = control_ != nullptr && recv_count_[from] == 1;
      if (first && framed(from, c.count * es_)) {
        // Lands behind the check in Control's buffer, and is applied from there once it matched.
        if (ring_.recv && tr.from == ring_.prev) {  // it comes as the ring check (take_ring)
          framed_recv = std::move(ring_.recv);
          Control::adopt_ring(*framed_recv, c.count * es_);
        } else {
          framed_recv = control_->expect_framed(tr.from, chunk_tag(imm), seq_, digest_, c.count * es_);
        }
        c.framed = framed_recv->data();
      } else if (first) {
        checks_[from] = control_->expect_check(tr.from, tag_, seq_, digest_);
      }
      if (!framed_recv && sends(from, c.count * es_)) {
        char* where = pool_.base + landing_bytes(tr, c.offset);
        c.direct = tr.action == Action::overwrite && tr.dst.memory == Memory::user && c.count > 0;
        if (c.direct) {
          forget(tr.dst.offset + c.offset, tr.dst.offset + c.offset + c.count);  // about to be overwritten
          where = at(tr.dst, c.offset);
        }
        recv = t_.recv(tr.from, chunk_tag(imm), where, c.count * es_);
      }
      expected_[from].push_back({i, k, imm, std::move(recv), std::move(framed_recv)});
    }
    // Reduces into the same elements apply in list order, so results do not vary between runs.
    if (tr.action != Action::reduce) continue;
    for (std::size_t j = 0; j < i; ++j) {
      const Transfer& u = s.recvs[j];
      if (u.action == Action::reduce && u.dst.memory == tr.dst.memory && u.dst.offset < tr.dst.offset + tr.count &&
          tr.dst.offset < u.dst.offset + u.count)
        incoming_[i].blockers.push_back(j);
    }
  }
  started_ = true;
}

void Run::apply(const Transfer& tr, const Chunk& c) {
  if (c.count == 0 || c.direct) return;
  const char* landed = c.framed ? c.framed : pool_.base + landing_bytes(tr, c.offset);
  if (tr.action == Action::reduce && tr.dst.memory == Memory::user) {
    reduce_user(tr.dst.offset + c.offset, landed, c.count);
  } else if (tr.action == Action::reduce) {
    reduce_into(type_, op_, at(tr.dst, c.offset), landed, c.count);
  } else if (tr.dst.memory == Memory::user) {
    forget(tr.dst.offset + c.offset, tr.dst.offset + c.offset + c.count);
    std::memcpy(at(tr.dst, c.offset), landed, c.count * es_);
  } else if (c.framed) {
    std::memcpy(at(tr.dst, c.offset), landed, c.count * es_);
  }  // else an overwrite into scratch: it has landed where it belongs
}

void Run::apply_arrived() {
  const schedules::Step& s = schedule_->steps[step_];
  for (std::size_t i = 0; i < incoming_.size(); ++i) {
    Incoming& in = incoming_[i];
    bool blocked = false;
    for (std::size_t j : in.blockers) blocked |= incoming_[j].applied < incoming_[j].chunks.size();
    if (blocked) continue;
    while (in.applied < in.arrived) apply(s.recvs[i], in.chunks[in.applied++]);
  }
}

bool Run::poll_step() {
  for (std::size_t p = 0; p < expected_.size(); ++p) {
    if (next_[p] < expected_[p].size() && !checks_.empty() && checks_[p]) {
      const std::optional<bool> same = control_->checked(*checks_[p]);
      if (!same) continue;  // nothing from p is used before its check
      if (!*same) throw CheckFailed{static_cast<int>(p)};
      checks_[p].reset();
      ++events_;
    }
    while (next_[p] < expected_[p].size()) {
      Expected& e = expected_[p][next_[p]];
      if (e.framed) {  // the check in front of the chunk: nothing of it is used unless it matched
        const std::optional<bool> same = control_->checked(*e.framed);
        if (!same) break;
        if (!*same) throw CheckFailed{static_cast<int>(p)};
      } else if (e.recv.valid()) {  // a message: its tag was the check
        if (!e.recv.test()) break;
      } else {
        if (!note_[p].valid()) note_[p] = t_.notification(static_cast<int>(p));
        if (!note_[p].test()) break;
        const uint32_t imm = note_[p].wait_value(transport::Deadline::max());  // complete: test() said so
        if (imm != e.imm)
          throw ProtocolError("collective: notification " + std::to_string(imm) + " from rank " + std::to_string(p) +
                              " where " + std::to_string(e.imm) +
                              " was expected (run tag, chunk index): the ranks disagree on the sequence of calls");
        note_[p] = transport::Request();
      }
      ++events_;
      ++next_[p];
      ++incoming_[e.transfer].arrived;
    }
  }
  apply_arrived();
  events_ += std::erase_if(sends_, [](auto& s) { return s.second.test(); });
  if (!sends_.empty()) return false;
  return std::all_of(incoming_.begin(), incoming_.end(), [](const Incoming& in) { return in.applied == in.chunks.size(); });
}

void Run::run_locals() {
  for (const schedules::Local& l : schedule_->steps[step_].local) {
    if (l.count == 0) continue;
    // Locals may cross user pieces: go element range by element range within one piece.
    for (std::size_t done = 0; done < l.count;) {
      std::size_t n = l.count - done;
      for (Place p : {l.src, l.dst}) {
        if (p.memory != Memory::user) continue;
        for (std::size_t b : bounds_)
          if (b > p.offset + done && b < p.offset + done + n) n = b - (p.offset + done);
      }
      // Rare (the ordered schedules): take untouched ranges from the input first.
      if (l.src.memory == Memory::user) settle(l.src.offset + done, l.src.offset + done + n);
      if (l.dst.memory == Memory::user) {
        if (l.action == Action::reduce) settle(l.dst.offset + done, l.dst.offset + done + n);
        else forget(l.dst.offset + done, l.dst.offset + done + n);
      }
      char* dst = at(l.dst, done);
      const char* src = at(l.src, done);
      if (l.action == Action::reduce) reduce_into(type_, op_, dst, src, n);
      else std::memmove(dst, src, n * es_);
      done += n;
    }
  }
}

bool Run::advance() {
  while (step_ < schedule_->steps.size()) {
    if (!started_) start_step();
    if (!poll_step()) return false;
    run_locals();
    ++step_;
    started_ = false;
  }
  // What the schedule never touched still has to reach the output.
  while (!untouched_.empty()) settle(untouched_.front().first, untouched_.front().second);
  for (auto& c : checks_)
    if (c) control_->keep(std::move(c));
  return true;
}

std::vector<int> Run::waiting_for() const {
  std::vector<int> out;
  for (std::size_t p = 0; p < expected_.size(); ++p)
    if (next_[p] < expected_[p].size()) out.push_back(static_cast<int>(p));
  for (const auto& s : sends_) out.push_back(s.first);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::string Run::pending() const {
  std::string from, to;
  for (std::size_t p = 0; p < expected_.size(); ++p)
    if (next_[p] < expected_[p].size()) from += (from.empty() ? "" : ", ") + std::to_string(p);
  std::vector<int> peers;
  for (const auto& s : sends_) peers.push_back(s.first);
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  for (int p : peers) to += (to.empty() ? "" : ", ") + std::to_string(p);
  std::string out = "step " + std::to_string(step_ + 1) + "/" + std::to_string(schedule_->steps.size());
  if (!from.empty()) out += ", waiting for data from ranks " + from;
  if (!to.empty()) out += ", writes to ranks " + to + " not complete";
  if (from.empty() && to.empty()) out += ", reductions pending";
  return out;
}

}  // namespace rdmacoll::collectives::exec
