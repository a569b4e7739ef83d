#include "exec/direct.h"

#include <atomic>
#include <cstring>

#include "exec/control.h"
#include "rdmacoll/collectives/reduce.h"

namespace rdmacoll::collectives::exec {
namespace {

using Word = std::atomic_ref<uint64_t>;
static_assert(Word::required_alignment <= 8);

uint64_t& word_at(char* p) { return *reinterpret_cast<uint64_t*>(p); }

// The call line's word: (seq + 1) in the top 24 bits, the digest's low 40 bits below (a peer
// is never 2^24 calls away; 0 in the low bits: no check).
constexpr uint64_t kDigestBits = 0xFF'FFFF'FFFFull;
uint64_t call_word(uint64_t seq, uint64_t digest) { return ((seq + 1) << 40) | (digest & kDigestBits); }

}  // namespace

void Direct::attach(int me, std::vector<char*> boxes) {
  me_ = me;
  boxes_ = std::move(boxes);
  seen_.assign(boxes_.size(), 0);
  if (!boxes_.empty()) std::memset(boxes_[static_cast<std::size_t>(me)], 0, kMailboxBytes);
}

char* Direct::slot(int rank, uint64_t call) const {
  return boxes_[static_cast<std::size_t>(rank)] + kMailboxLine + (call & 1) * kSlotBytes;
}

void Direct::announce(uint64_t seq, uint64_t digest) {
  Word(word_at(boxes_[static_cast<std::size_t>(me_)])).store(call_word(seq, digest), std::memory_order_release);
}

int Direct::disagreeing(uint64_t seq, uint64_t digest) const {
  if ((digest & kDigestBits) == 0) return -1;
  for (std::size_t q = 0; q < boxes_.size(); ++q) {
    if (static_cast<int>(q) == me_) continue;
    const uint64_t w = Word(word_at(boxes_[q])).load(std::memory_order_acquire);
    if ((w >> 40) != ((seq + 1) & 0xFF'FFFF) || (w & kDigestBits) == 0) continue;
    if ((w & kDigestBits) != (digest & kDigestBits)) return static_cast<int>(q);
  }
  return -1;
}

void Direct::start(const void* in, void* out, std::size_t count, DataType type, ReduceOp op, uint64_t digest) {
  const uint64_t call = calls_++;
  out_ = out, count_ = count, type_ = type, op_ = op, digest_ = digest, idle_ = 0;
  char* mine = slot(me_, call);
  std::memcpy(mine + kSlotHeader, in, count * dtype_size(type));
  word_at(mine + 8) = digest;
  Word(word_at(mine)).store(call + 1, std::memory_order_release);
  std::fill(seen_.begin(), seen_.end(), uint8_t{0});
  seen_[static_cast<std::size_t>(me_)] = 1;
  missing_ = boxes_.size() - 1;
}

bool Direct::advance() {
  const uint64_t call = calls_ - 1;
  if (missing_ > 0) {
    for (std::size_t q = 0; q < boxes_.size(); ++q) {
      if (seen_[q]) continue;
      char* s = slot(static_cast<int>(q), call);
      if (Word(word_at(s)).load(std::memory_order_acquire) != call + 1) continue;
      const uint64_t theirs = word_at(s + 8);
      if (digest_ != 0 && theirs != 0 && theirs != digest_) throw CheckFailed{static_cast<int>(q)};
      seen_[q] = 1;
      --missing_;
      ++events_;
    }
    if (missing_ > 0) {
      ++idle_;
      return false;
    }
  }
  // Every input is there: fold them in rank order.
  const char* x0 = slot(0, call) + kSlotHeader;
  const char* x1 = slot(1, call) + kSlotHeader;
  reduce_to(type_, op_, out_, x0, x1, count_);
  for (std::size_t q = 2; q < boxes_.size(); ++q) reduce_into(type_, op_, out_, slot(static_cast<int>(q), call) + kSlotHeader, count_);
  return true;
}

std::vector<int> Direct::waiting_for() const {
  std::vector<int> r;
  if (missing_ == 0) return r;
  for (std::size_t q = 0; q < seen_.size(); ++q)
    if (!seen_[q]) r.push_back(static_cast<int>(q));
  return r;
}

std::string Direct::pending() const {
  const std::vector<int> w = waiting_for();
  if (w.empty()) return "reducing the inputs";
  return std::string("waiting for the input") + (w.size() > 1 ? "s" : "") + " of rank" + (w.size() > 1 ? "s " : " ") +
         format_ranks(w, ", ") + " in shared memory";
}

}  // namespace rdmacoll::collectives::exec
