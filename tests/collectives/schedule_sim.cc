#include "schedule_sim.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <sstream>
#include <utility>

#include "rdmacoll/collectives/reduce.h"

namespace rdmacoll::collectives::schedules {
namespace {

std::string describe(const Place& p) {
  return std::string(p.memory == Memory::user ? "user" : "scratch") + "[" +
         std::to_string(p.offset) + "]";
}

std::string describe(const Transfer& t) {
  std::ostringstream out;
  out << t.from << "->" << t.to << " " << t.count << " from " << describe(t.src) << " to "
      << describe(t.dst);
  if (t.action == Action::reduce) out << " (reduce, staged at scratch[" << t.staging << "])";
  return out.str();
}

// A range of elements in one rank's memory.
struct Range {
  Place at;
  std::size_t count = 0;
};

bool overlap(const Range& a, const Range& b) {
  return a.at.memory == b.at.memory && a.count > 0 && b.count > 0 &&
         a.at.offset < b.at.offset + b.count && b.at.offset < a.at.offset + a.count;
}

// What one rank touches in one step.
struct Touches {
  std::vector<Range> reads;    // send sources
  std::vector<Range> lands;    // where receives land
  std::vector<Range> reduces;  // reduce targets: may be shared, reduced in list order
  std::vector<Range> local;    // local ops, run after the transfers
};

Touches touches(const Step& step) {
  Touches t;
  for (const Transfer& x : step.sends) t.reads.push_back({x.src, x.count});
  for (const Transfer& x : step.recvs) {
    t.lands.push_back({landing(x), x.count});
    if (x.action == Action::reduce) t.reduces.push_back({x.dst, x.count});
  }
  for (const Local& l : step.local) {
    t.local.push_back({l.src, l.count});
    t.local.push_back({l.dst, l.count});
  }
  return t;
}

// What a rank last did to each element of one of its regions: the step (+1; 0 = never) and
// whether it only sent from it then. Kept as runs of equal entries, so recording and
// checking a transfer costs a few map operations, not one per element.
struct Touch {
  std::size_t step = 0;
  bool only_sent = false;
};

class History {
 public:
  // f(lo, hi, touch) for each run overlapping [lo, hi), clipped to it.
  template <class F>
  void each(std::size_t lo, std::size_t hi, F f) const {
    for (auto it = std::prev(runs_.upper_bound(lo)); it != runs_.end() && it->first < hi; ++it) {
      const auto next = std::next(it);
      f(std::max(lo, it->first), next == runs_.end() ? hi : std::min(hi, next->first), it->second);
    }
  }

  void set(std::size_t lo, std::size_t hi, Touch t) {
    if (lo >= hi) return;
    split(lo);
    split(hi);
    runs_.erase(runs_.find(lo), runs_.find(hi));
    runs_[lo] = t;
  }

 private:
  void split(std::size_t at) {
    const auto it = std::prev(runs_.upper_bound(at));
    if (it->first != at) runs_.emplace_hint(std::next(it), at, it->second);
  }

  std::map<std::size_t, Touch> runs_{{0, Touch{}}};  // a run lasts until the next key
};

class Validator {
 public:
  Validator(std::span<const Schedule> ranks, bool allow_empty)
      : ranks_(ranks), n_(ranks.size()), allow_empty_(allow_empty) {}

  Validation run() {
    Validation v;
    v.error = agreement();
    if (!v.error.empty()) return v;
    history_.resize(n_);
    // known_[r][q]: steps of q that r knows have started; at the start of step 0 a rank
    // knows only that it has started itself.
    known_.assign(n_, std::vector<std::size_t>(n_, 0));
    for (std::size_t r = 0; r < n_; ++r) known_[r][r] = 1;
    for (std::size_t s = 0; s < ranks_[0].steps.size() && v.error.empty(); ++s) v.error = step(s);
    v.known = known_;
    return v;
  }

 private:
  std::string agreement() const {
    if (n_ == 0) return "no schedules";
    for (std::size_t r = 0; r < n_; ++r) {
      const Schedule& s = ranks_[r];
      if (s.rank != static_cast<int>(r) || s.nranks != static_cast<int>(n_))
        return "schedule " + std::to_string(r) + " says rank " + std::to_string(s.rank) + " of " +
               std::to_string(s.nranks);
      if (s.steps.size() != ranks_[0].steps.size() || s.count != ranks_[0].count ||
          s.scratch != ranks_[0].scratch)
        return "rank " + std::to_string(r) + " has " + std::to_string(s.steps.size()) +
               " steps, count " + std::to_string(s.count) + ", scratch " +
               std::to_string(s.scratch) + "; rank 0 has " +
               std::to_string(ranks_[0].steps.size()) + ", " + std::to_string(ranks_[0].count) +
               ", " + std::to_string(ranks_[0].scratch);
    }
    return "";
  }

  bool inside(std::size_t r, const Range& x) const {
    const std::size_t limit = x.at.memory == Memory::user ? ranks_[r].count : ranks_[r].scratch;
    return x.at.offset <= limit && x.count <= limit - x.at.offset;
  }

  bool is_rank(int r) const { return r >= 0 && static_cast<std::size_t>(r) < n_; }

  // Structure, bounds and in-step hazards of rank r's step s.
  std::string shape(std::size_t s, std::size_t r) const {
    const Step& st = ranks_[r].steps[s];
    const std::string where = "step " + std::to_string(s) + ", rank " + std::to_string(r) + ": ";
    const int me = static_cast<int>(r);
    for (const Transfer& t : st.sends) {
      if (t.from != me || !is_rank(t.to) || t.to == me)
        return where + "send " + describe(t) + " is not from this rank to another";
      if (t.count == 0 && !allow_empty_) return where + "empty send " + describe(t);
      if (!inside(r, {t.src, t.count})) return where + "send " + describe(t) + " out of bounds";
    }
    for (const Transfer& t : st.recvs) {
      if (t.to != me || !is_rank(t.from) || t.from == me)
        return where + "receive " + describe(t) + " is not from another rank to this one";
      if (t.count == 0 && !allow_empty_) return where + "empty receive " + describe(t);
      if (!inside(r, {landing(t), t.count}) || !inside(r, {t.dst, t.count}))
        return where + "receive " + describe(t) + " out of bounds";
    }
    for (const Local& l : st.local) {
      const Range src{l.src, l.count};
      const Range dst{l.dst, l.count};
      if (!inside(r, src) || !inside(r, dst) || overlap(src, dst))
        return where + "local op " + describe(l.src) + " -> " + describe(l.dst) + " x" +
               std::to_string(l.count) + " out of bounds or overlapping itself";
    }
    // Landings are written by the network while the step runs: they must not meet anything
    // else of the step. Reduce targets must not meet what the step sends; several may share
    // a range (the executor reduces into it in list order, one at a time).
    const Touches t = touches(st);
    auto clash = [&](const std::vector<Range>& a, const std::vector<Range>& b, bool self,
                     const char* what) -> std::string {
      for (std::size_t i = 0; i < a.size(); ++i)
        for (std::size_t j = self ? i + 1 : 0; j < b.size(); ++j)
          if (overlap(a[i], b[j]))
            return where + what + " " + describe(a[i].at) + " and " + describe(b[j].at) +
                   " overlap";
      return "";
    };
    for (std::string e : {clash(t.lands, t.lands, true, "landings"),
                          clash(t.lands, t.reduces, false, "landing and reduce target"),
                          clash(t.lands, t.reads, false, "landing and send source"),
                          clash(t.reduces, t.reads, false, "reduce target and send source")})
      if (!e.empty()) return e;
    return "";
  }

  std::string pairing(std::size_t s) const {
    std::map<std::pair<int, int>, std::vector<Transfer>> sent;
    std::map<std::pair<int, int>, std::vector<Transfer>> received;
    for (std::size_t r = 0; r < n_; ++r) {
      for (const Transfer& t : ranks_[r].steps[s].sends) sent[{t.from, t.to}].push_back(t);
      for (const Transfer& t : ranks_[r].steps[s].recvs) received[{t.from, t.to}].push_back(t);
    }
    if (sent == received) return "";
    for (const auto& [pair, list] : sent) {
      const auto it = received.find(pair);
      if (it == received.end() || it->second != list)
        return "step " + std::to_string(s) + ": sends " + describe(list.front()) +
               (list.size() > 1 ? " and more" : "") + " do not match the receives";
    }
    const auto& [pair, list] = *received.begin();
    return "step " + std::to_string(s) + ": receive " + describe(list.front()) +
           " has no matching send";
  }

  std::string step(std::size_t s) {
    for (std::size_t r = 0; r < n_; ++r)
      if (std::string e = shape(s, r); !e.empty()) return e;
    if (std::string e = pairing(s); !e.empty()) return e;

    // One-sided safety: the sender may write as soon as it starts step s. By then it must
    // know that the receiver finished the last step that touched the landing range
    // (finished step k = started k+1, so known >= k+2), or, if the receiver only sent from
    // it then, that those transfers arrived (their receivers started k+1): data that
    // arrived has been read.
    for (std::size_t b = 0; b < n_; ++b) {
      for (const Transfer& t : ranks_[b].steps[s].recvs) {
        const Place at = landing(t);
        const auto& knows = known_[static_cast<std::size_t>(t.from)];
        std::string error;
        region(b, at.memory)
            .each(at.offset, at.offset + t.count, [&](std::size_t lo, std::size_t hi, Touch was) {
              if (was.step == 0 || knows[b] >= was.step + 1 || !error.empty()) return;
              bool delivered = was.only_sent;
              for (const Transfer& x : ranks_[b].steps[was.step - 1].sends)
                if (overlap({x.src, x.count}, {{at.memory, lo}, hi - lo}))
                  delivered = delivered && knows[static_cast<std::size_t>(x.to)] >= was.step + 1;
              if (!delivered)
                error = "step " + std::to_string(s) + ": " + describe(t) + " may land in " +
                        describe({at.memory, lo}) + " while rank " + std::to_string(b) +
                        " still uses it in step " + std::to_string(was.step - 1);
            });
        if (!error.empty()) return error;
      }
    }
    // Record this step: sends first, so that a range also written counts as written.
    for (std::size_t r = 0; r < n_; ++r) {
      const Touches t = touches(ranks_[r].steps[s]);
      for (const Range& x : t.reads)
        region(r, x.at.memory).set(x.at.offset, x.at.offset + x.count, {s + 1, true});
      for (const auto* list : {&t.lands, &t.reduces, &t.local})
        for (const Range& x : *list)
          region(r, x.at.memory).set(x.at.offset, x.at.offset + x.count, {s + 1, false});
    }
    // A receiver learns everything its senders knew when they started this step.
    std::vector<std::vector<std::size_t>> next = known_;
    for (std::size_t b = 0; b < n_; ++b) {
      for (const Transfer& t : ranks_[b].steps[s].recvs) {
        const auto& theirs = known_[static_cast<std::size_t>(t.from)];
        for (std::size_t q = 0; q < n_; ++q) next[b][q] = std::max(next[b][q], theirs[q]);
      }
      next[b][b] = s + 2;
    }
    known_ = std::move(next);
    return "";
  }

  std::span<const Schedule> ranks_;
  std::size_t n_;
  bool allow_empty_;
  History& region(std::size_t r, Memory m) { return history_[r][m == Memory::user ? 0 : 1]; }

  std::vector<std::array<History, 2>> history_;  // [rank][user, scratch]
  std::vector<std::vector<std::size_t>> known_;
};

}  // namespace

Validation validate(std::span<const Schedule> ranks, bool allow_empty_transfers) {
  return Validator(ranks, allow_empty_transfers).run();
}

void run(std::span<const Schedule> ranks, DataType type,
         std::vector<std::vector<std::byte>>& user) {
  const std::size_t size = dtype_size(type);
  std::vector<std::vector<std::byte>> scratch;
  for (const Schedule& s : ranks) scratch.emplace_back(s.scratch * size, std::byte{0xA5});
  auto at = [&](int rank, Place p) {
    auto& region = p.memory == Memory::user ? user : scratch;
    return region[static_cast<std::size_t>(rank)].data() + p.offset * size;
  };
  // validate() ruled out in-step hazards and paired every receive with its send, so moving
  // all of a step's data first, then reducing, then running the local ops gives the result
  // of any interleaving a real executor produces.
  for (std::size_t s = 0; s < (ranks.empty() ? 0 : ranks[0].steps.size()); ++s) {
    for (const Schedule& r : ranks)
      for (const Transfer& t : r.steps[s].recvs)
        std::memcpy(at(t.to, landing(t)), at(t.from, t.src), t.count * size);
    for (const Schedule& r : ranks)
      for (const Transfer& t : r.steps[s].recvs)
        if (t.action == Action::reduce)
          reduce_into(type, ReduceOp::sum, at(t.to, t.dst), at(t.to, landing(t)), t.count);
    for (const Schedule& r : ranks)
      for (const Local& l : r.steps[s].local) {
        if (l.action == Action::reduce)
          reduce_into(type, ReduceOp::sum, at(r.rank, l.dst), at(r.rank, l.src), l.count);
        else
          std::memcpy(at(r.rank, l.dst), at(r.rank, l.src), l.count * size);
      }
  }
}

}  // namespace rdmacoll::collectives::schedules
