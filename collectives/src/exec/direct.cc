#include "exec/direct.h"

#include <atomic>
#include <cstring>

#include "exec/control.h"
#include "rdmacoll/collectives/reduce.h"
#include "rdmacoll/error.h"

namespace rdmacoll::collectives::exec {
namespace {

using Word = std::atomic_ref<uint64_t>;
static_assert(Word::required_alignment <= 8);

uint64_t& word_at(char* p) { return *reinterpret_cast<uint64_t*>(p); }

// The call line's word: (seq + 1) in the top 24 bits, the digest's low 40 bits below (a peer
// is never 2^24 calls away; 0 in the low bits: no check).
constexpr uint64_t kDigestBits = 0xFF'FFFF'FFFFull;
uint64_t call_word(uint64_t seq, uint64_t digest) { return ((seq + 1) << 40) | (digest & kDigestBits); }

// Whether a call word says "call seq, with a digest other than ours" (both checked).
bool differs(uint64_t w, uint64_t seq, uint64_t digest) {
  if ((w >> 40) != ((seq + 1) & 0xFF'FFFF) || (w & kDigestBits) == 0) return false;
  return (w & kDigestBits) != (digest & kDigestBits);
}

// A pushed slot's check: a hash of its mark, digest and `bytes` of data (the last word padded
// with zeros), read word by word in four lanes (independent multiplies). Each lane folds its
// words in order, so the same words in other places hash differently: a slot mixing an
// earlier call's words with this one's fails the check but for a 2^-64 chance.
uint64_t slot_check(const char* slot, std::size_t bytes) {
  constexpr uint64_t kMul = 0x9E37'79B9'7F4A'7C15ull;
  const std::size_t words = (kSlotHeader + bytes) / 8, tail = (kSlotHeader + bytes) % 8;
  uint64_t h[4] = {1, 2, 3, 4};
  std::size_t i = 0;
  for (; i + 4 <= words; i += 4)
    for (std::size_t l = 0; l < 4; ++l) {
      uint64_t w;
      std::memcpy(&w, slot + 8 * (i + l), 8);
      h[l] = (h[l] ^ w) * kMul;
      h[l] ^= h[l] >> 31;
    }
  for (; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, slot + 8 * i, 8);
    h[i % 4] = (h[i % 4] ^ w) * kMul;
    h[i % 4] ^= h[i % 4] >> 31;
  }
  if (tail) {
    uint64_t w = 0;
    std::memcpy(&w, slot + 8 * words, tail);
    h[0] = (h[0] ^ w ^ (tail << 56)) * kMul;
  }
  uint64_t r = bytes;
  for (uint64_t x : h) r = (r ^ x) * kMul, r ^= r >> 29;
  return r;
}

char* check_word(char* slot, std::size_t bytes) { return slot + pushed_slot_bytes(bytes) - 8; }

}  // namespace

void Direct::attach(int me, std::vector<char*> boxes) {
  me_ = me;
  n_ = static_cast<int>(boxes.size());
  boxes_ = std::move(boxes);
  seen_.assign(boxes_.size(), 0);
}

void Direct::attach_push(transport::Transport& t, char* box, const std::vector<transport::RemoteWindow>* windows) {
  me_ = t.rank();
  n_ = t.size();
  t_ = &t;
  windows_ = windows;
  // Each peer's mailbox ends its pool allocation (whose size is that peer's RDMACOLL_BUFFSIZE).
  offsets_.assign(static_cast<std::size_t>(n_), 0);
  for (std::size_t q = 0; q < offsets_.size(); ++q)
    if (static_cast<int>(q) != me_) offsets_[q] = (*windows)[q].length() - mailbox_bytes(n_);
  boxes_ = {box};
  seen_.assign(static_cast<std::size_t>(n_), 0);
  writes_.assign(static_cast<std::size_t>(n_), {});
  reads_.assign(static_cast<std::size_t>(n_), {});
}

char* Direct::slot(int rank, uint64_t call) const {
  if (pushed())
    return boxes_[0] + 2 * kMailboxLine + ((call & 1) * static_cast<std::size_t>(n_) + static_cast<std::size_t>(rank)) * kSlotBytes;
  return boxes_[static_cast<std::size_t>(rank)] + kMailboxLine + (call & 1) * kSlotBytes;
}

void Direct::announce(uint64_t seq, uint64_t digest) {
  Word(word_at(boxes_[pushed() ? 0 : static_cast<std::size_t>(me_)])).store(call_word(seq, digest), std::memory_order_release);
}

int Direct::disagreeing(uint64_t seq, uint64_t digest) {
  if ((digest & kDigestBits) == 0) return -1;
  if (!pushed()) {
    for (std::size_t q = 0; q < boxes_.size(); ++q)
      if (static_cast<int>(q) != me_ && differs(Word(word_at(boxes_[q])).load(std::memory_order_acquire), seq, digest))
        return static_cast<int>(q);
    return -1;
  }
  // Pushed: the lines read by an earlier look, once every read is back; then new reads, every
  // 64th look (each read is a work request).
  bool posted = false, back = true;
  for (const transport::Request& r : reads_) posted = posted || r.valid();
  if (posted) {
    for (transport::Request& r : reads_) back = back && (!r.valid() || r.test());
    if (!back) return -1;
    int who = -1;
    for (std::size_t q = 0; q < reads_.size(); ++q) {
      if (!reads_[q].valid()) continue;
      reads_[q] = {};
      if (who < 0 && differs(word_at(boxes_[0] + kMailboxLine + 8 * q), seq, digest)) who = static_cast<int>(q);
    }
    return who;
  }
  if (looks_++ % 64 != 0) return -1;
  for (std::size_t q = 0; q < reads_.size(); ++q)
    if (static_cast<int>(q) != me_ && !seen_[q])
      reads_[q] = t_->read(static_cast<int>(q), boxes_[0] + kMailboxLine + 8 * q, 8, (*windows_)[q], offsets_[q]);
  return -1;
}

void Direct::start(const void* in, void* out, std::size_t count, DataType type, ReduceOp op, uint64_t digest) {
  const uint64_t call = calls_++;
  const std::size_t bytes = count * dtype_size(type);
  out_ = out, count_ = count, bytes_ = bytes, type_ = type, op_ = op, digest_ = digest, idle_ = 0, looks_ = 0;
  char* mine = slot(me_, call);
  std::memcpy(mine + kSlotHeader, in, bytes);
  word_at(mine + 8) = digest;
  Word(word_at(mine)).store(call + 1, std::memory_order_release);
  std::fill(seen_.begin(), seen_.end(), uint8_t{0});
  seen_[static_cast<std::size_t>(me_)] = 1;
  missing_ = static_cast<std::size_t>(n_) - 1;
  if (!pushed()) return;
  // This rank's slot, as it is, with its padding and check, into its slot of every peer's
  // mailbox; the peers' inputs land in ours (landed()). Writes go to the next ranks first (rank
  // me+1 first). They are not waited for: their source, this rank's slot, is written again two
  // direct calls later, when every peer has finished the next call and so has used this one's
  // input. A write that fails is seen while this rank waits for that peer's input (landed()).
  std::memset(mine + kSlotHeader + bytes, 0, pushed_slot_bytes(bytes) - 8 - kSlotHeader - bytes);
  word_at(check_word(mine, bytes)) = slot_check(mine, bytes);
  const std::size_t at = static_cast<std::size_t>(mine - boxes_[0]);
  for (int k = 1; k < n_; ++k) {
    const int q = (me_ + k) % n_;
    const auto uq = static_cast<std::size_t>(q);
    writes_[uq] = t_->write(q, mine, pushed_slot_bytes(bytes), (*windows_)[uq], offsets_[uq] + at);
  }
}

bool Direct::landed(std::size_t q, uint64_t call) {
  char* s = slot(static_cast<int>(q), call);
  // The mark is read whole (an aligned word), but may be this call's before the rest of the
  // slot is: the check says when all of it is.
  if (Word(word_at(s)).load(std::memory_order_acquire) == call + 1 &&
      Word(word_at(check_word(s, bytes_))).load(std::memory_order_acquire) == slot_check(s, bytes_))
    return true;
  // Not there yet. This rank's own write to q, while it is outstanding: its failure (the peer
  // gone, the connection broken) is rethrown here rather than waited out.
  transport::Request& w = writes_[q];
  if (w.valid() && w.test()) w = {};
  return false;
}

bool Direct::advance() {
  const uint64_t call = calls_ - 1;
  if (missing_ > 0) {
    for (std::size_t q = 0; q < seen_.size(); ++q) {
      if (seen_[q]) continue;
      char* s = slot(static_cast<int>(q), call);
      if (pushed() ? !landed(q, call) : Word(word_at(s)).load(std::memory_order_acquire) != call + 1) continue;
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
  // Pushed: a look at the peers' call lines still in flight is dropped (its word lands in line 1,
  // which only the next look reads). This rank's writes are not waited for (start()), but those
  // complete by now are reaped, so the transport counts them in this call's wire bytes (soft-RoCE
  // looped back completes a write within its post; over a link its acknowledgement may still be
  // on its way, and then it is counted where it completes).
  if (pushed()) {
    for (transport::Request& r : reads_) r = {};
    for (transport::Request& w : writes_)
      if (w.valid() && w.test()) w = {};
  }
  // Every input is there: fold them in rank order.
  const char* x0 = slot(0, call) + kSlotHeader;
  const char* x1 = slot(1, call) + kSlotHeader;
  reduce_to(type_, op_, out_, x0, x1, count_);
  for (int q = 2; q < n_; ++q) reduce_into(type_, op_, out_, slot(q, call) + kSlotHeader, count_);
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
  if (w.empty()) {
    std::vector<int> unacked;  // pushed: this rank's writes found not complete once the inputs were in
    for (std::size_t q = 0; q < writes_.size(); ++q)
      if (writes_[q].valid()) unacked.push_back(static_cast<int>(q));
    if (unacked.empty()) return "reducing the inputs";
    return "every input in; its writes to rank" + std::string(unacked.size() > 1 ? "s " : " ") + format_ranks(unacked, ", ") +
           " not complete";
  }
  return std::string("waiting for the input") + (w.size() > 1 ? "s" : "") + " of rank" + (w.size() > 1 ? "s " : " ") +
         format_ranks(w, ", ") + (pushed() ? " in its RDMA mailbox" : " in shared memory");
}

}  // namespace rdmacoll::collectives::exec
