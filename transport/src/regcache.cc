// The registration cache and the process-wide registry that memory events reach.
//
//   memhooks.cc: free/realloc (interposed), munmap/mremap/madvise/... (UCX's memory events)
//                                                               │
//                                                 invalidate_range(addr, len)
//                                                               │
//     lock-free filter: no tracked range anywhere near? ──yes──> return  (the common case)
//                                                               │ maybe
//     g_mu: every live RegCache, every registration in flight ──> overlapping entries move to
//                                                                 the graveyard; released at
//                                                                 the next cache call
//
// Locking. g_mu (the registry: caches, registrations in flight, graveyard) is taken before a
// cache's mu_; never the other way round. No lock is held while foreign code runs: the Register
// callback and the destructors of registrations (ibv_dereg_mr, ucp_mem_unmap) run unlocked.
//
// Reentrancy. Our own code frees memory while it holds a lock (map nodes); that free() comes
// back through the hook into invalidate_range. A thread-local flag (t_busy) marks "this thread
// is inside the cache" and such nested calls return at once. They can skip nothing that
// matters: the memory they release is the cache's own bookkeeping, never a user's buffer.
//
// Hook context. invalidate_range runs inside free()/munmap() of arbitrary callers, possibly
// while they hold their own locks (UCX, a verbs provider, the allocator's caller). So there it
// neither allocates (the graveyard's capacity is reserved when entries are inserted) nor
// releases registrations: dropping the last reference would run ibv_dereg_mr/ucp_mem_unmap
// inside someone else's free(), which can deadlock (UCX's rcache defers for the same reason).
// Dropped registrations wait in the graveyard until the next get()/invalidate()/destructor.
//
// What the memory events (memhooks.cc) cannot see; call invalidate_range() yourself then:
//  - Address-space changes that bypass libc's functions: raw syscall(SYS_munmap, ...), runtimes
//    that make system calls directly (Go), io_uring-issued mapping changes.
//  - Everything but free()/realloc() when UCX's memory hooks are off or refused our handler
//    (UCX_MEM_EVENTS=no, UCX_MEM_MMAP_HOOK_MODE=none); with UCX_MEM_MMAP_HOOK_MODE=reloc also
//    libc's internal calls (thread stacks unmapped after pthread_join, dlclose, malloc_trim).
//    The first RegCache logs a warning in these cases.
//  - free() when the process's free() is not ours: AddressSanitizer/TSan/MSan, valgrind, an
//    allocator LD_PRELOADed or linked before librdmacoll_transport (jemalloc, tcmalloc,
//    mimalloc: their munmap/madvise are still seen through UCX, the reuse of small blocks is
//    not), UCX's own malloc replacement (UCX_MEM_MALLOC_RELOC in reloc mode), or
//    librdmacoll_transport loaded with dlopen() (LD_PRELOAD it instead).
//  - Page replacement without an address-space call: ftruncate()/fallocate(PUNCH_HOLE) of a
//    file or memfd mapped MAP_SHARED, process_madvise() from another process, fork()'s
//    copy-on-write in the parent (use ibv_fork_init / MADV_DONTFORK for that).
//  - free_sized()/free_aligned_sized() (glibc 2.41+), which are not interposed.
//  - A free() racing with get() of the same memory on another thread: a program bug; the
//    in-flight registration is then returned but not cached.
// Small frees are conservative: a free() drops every entry overlapping the block, including an
// entry whose page-rounded range merely shares a page with it.
#include "regcache.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "rdmacoll/log.h"

namespace rdmacoll::transport {

namespace detail {
// memhooks.cc: empty when free() and the address-space calls are both seen, otherwise why not.
std::string memhooks_problem();
// memhooks.cc: bit 0 free()/realloc() seen, bit 1 munmap & co. seen; and RDMACOLL_MEMHOOKS=0.
unsigned memhooks_events();
bool memhooks_off_by_user();
// For memhooks.cc: true when some cache tracks a range (the hooks then measure the block).
bool regcache_tracking() noexcept;
}  // namespace detail

namespace {

using Impl = Memory::Impl;
using Impls = std::vector<std::shared_ptr<Impl>>;
using Entries = std::map<uintptr_t, std::shared_ptr<Impl>>;

// ---- the lock-free filter --------------------------------------------------------------------
// Every tracked range (cache entries and registrations in flight) adds 1 to the counter of each
// 64 KiB granule it touches, hashed into kSlots counters. A range whose granules all count zero
// overlaps nothing, which invalidate_range learns without a lock. Collisions only cost a trip to
// the slow path. All of it is constant-initialised and trivially destructible, so the hooks may
// call in before our static constructors and after our static destructors.
constexpr unsigned kGranuleShift = 16;
constexpr uintptr_t kSlots = uintptr_t{1} << 14;
constinit std::atomic<uint32_t> g_slots[kSlots] = {};
constinit std::atomic<uint64_t> g_tracked{0};  // ranges currently counted in g_slots

void filter_update(uintptr_t start, uintptr_t end, bool add) {
  const uintptr_t first = start >> kGranuleShift, last = (end - 1) >> kGranuleShift;
  const bool all = last - first >= kSlots - 1;
  const uintptr_t lo = all ? 0 : first, hi = all ? kSlots - 1 : last;
  if (add) g_tracked.fetch_add(1, std::memory_order_acq_rel);
  for (uintptr_t g = lo; g <= hi; ++g) {
    if (add)
      g_slots[g & (kSlots - 1)].fetch_add(1, std::memory_order_acq_rel);
    else
      g_slots[g & (kSlots - 1)].fetch_sub(1, std::memory_order_acq_rel);
  }
  if (!add) g_tracked.fetch_sub(1, std::memory_order_acq_rel);
}

bool filter_may_overlap(uintptr_t start, uintptr_t end) noexcept {
  if (g_tracked.load(std::memory_order_acquire) == 0) return false;
  const uintptr_t first = start >> kGranuleShift, last = (end - 1) >> kGranuleShift;
  if (last - first >= kSlots - 1) return true;
  for (uintptr_t g = first; g <= last; ++g)
    if (g_slots[g & (kSlots - 1)].load(std::memory_order_acquire) != 0) return true;
  return false;
}

// ---- the registry ----------------------------------------------------------------------------
// The per-cache operations the registry needs; filled in by the constructor, whose lambdas may
// touch RegCache's private members.
struct CacheOps {
  size_t (*take)(RegCache&, uintptr_t start, uintptr_t end, Impls& out);  // caller holds g_mu
  void (*lock)(RegCache&);
  void (*unlock)(RegCache&);
};

struct CacheNode {
  RegCache* cache;
  CacheOps ops;
  CacheNode* next;
};

// A registration in flight (the Register callback runs unlocked). It lives on get()'s stack.
// An invalidation that overlaps it marks it, and get() then does not cache the result.
struct Pending {
  const RegCache* cache;
  uintptr_t start, end;
  bool invalidated = false;
  Pending* prev = nullptr;
  Pending* next = nullptr;
};

constinit std::mutex g_mu;
constinit CacheNode* g_caches = nullptr;
constinit Pending* g_pending = nullptr;
// Registrations dropped in hook context, released at the next cache call. Created by the first
// cache and never destroyed (hooks may still run during static destruction). Its capacity
// always covers every entry of every cache, so pushing onto it never allocates.
constinit Impls* g_graveyard = nullptr;
constinit std::atomic<bool> g_graveyard_full{false};
constinit size_t g_entries_total = 0;  // under g_mu

[[gnu::tls_model("initial-exec")]] constinit thread_local bool t_busy = false;

// Marks this thread as inside the cache for as long as it holds one of our locks.
class Busy {
 public:
  Busy() : prev_(t_busy) { t_busy = true; }
  ~Busy() { t_busy = prev_; }
  Busy(const Busy&) = delete;
  Busy& operator=(const Busy&) = delete;

 private:
  bool prev_;
};

uintptr_t entry_end(const Entries::value_type& e) { return e.first + e.second->length; }

// Moves the entries of `m` overlapping [start, end) to `out`. Entries never overlap each other,
// so only the one starting below `start` can reach into the range from the left.
size_t take_overlapping(Entries& m, uintptr_t start, uintptr_t end, Impls& out) {
  auto it = m.lower_bound(start);
  if (it != m.begin() && entry_end(*std::prev(it)) > start) --it;
  size_t n = 0;
  while (it != m.end() && it->first < end) {
    filter_update(it->first, entry_end(*it), false);
    out.push_back(std::move(it->second));
    it = m.erase(it);
    ++n;
  }
  return n;
}

void mark_pending(const RegCache* cache, uintptr_t start, uintptr_t end) {
  for (Pending* p = g_pending; p; p = p->next)
    if ((!cache || p->cache == cache) && p->start < end && start < p->end) p->invalidated = true;
}

// Releases what invalidate_range dropped; called where no lock is held and no hook is running.
void drain_graveyard() {
  if (!g_graveyard_full.load(std::memory_order_acquire)) return;
  Impls dead;
  {
    Busy busy;
    std::lock_guard lock(g_mu);
    dead.reserve(g_graveyard->size());  // allocation here is fine; clear() keeps the capacity
    for (auto& e : *g_graveyard) dead.push_back(std::move(e));
    g_graveyard->clear();
    g_graveyard_full.store(false, std::memory_order_release);
  }
}

// fork() while another thread is inside the cache would leave its locks held in the child.
void atfork_prepare() {
  t_busy = true;
  g_mu.lock();
  for (CacheNode* n = g_caches; n; n = n->next) n->ops.lock(*n->cache);
}
void atfork_release() {
  for (CacheNode* n = g_caches; n; n = n->next) n->ops.unlock(*n->cache);
  g_mu.unlock();
  t_busy = false;
}

size_t page_size() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

// [addr, addr+length) as integers, the end clamped at the top of the address space.
std::pair<uintptr_t, uintptr_t> span_of(const void* addr, size_t length) {
  const auto start = reinterpret_cast<uintptr_t>(addr);
  return {start, start + std::min<uintptr_t>(length, UINTPTR_MAX - start)};
}

}  // namespace

bool detail::regcache_tracking() noexcept { return g_tracked.load(std::memory_order_relaxed) != 0; }

RegCache::RegCache(Register reg, Retention retention) : register_(std::move(reg)) {
  if (!register_) throw std::invalid_argument("RegCache: the Register callback is empty");
  // Without the address-space events nothing tells the cache that a range's pages changed.
  static const bool events_seen = (detail::memhooks_events() & 2u) != 0 || detail::memhooks_off_by_user();
  static const bool warned = [] {
    pthread_atfork(atfork_prepare, atfork_release, atfork_release);
    const std::string why = detail::memhooks_problem();
    if (why.empty()) return true;
    if (!events_seen) {
      RDMACOLL_WARN(kInit,
                    "registration cache: %s. So memory is registered afresh for each operation and not kept "
                    "(correct, but slower for large buffers)",
                    why.c_str());
    } else {
      RDMACOLL_WARN(kInit,
                    "registration cache: %s. Registrations of memory that is freed and reused may go stale; "
                    "call rdmacoll::transport::invalidate_range() when releasing registered memory",
                    why.c_str());
    }
    return true;
  }();
  (void)warned;
  retain_ = retention == Retention::always || events_seen;
  auto* node = new CacheNode{this,
                             {[](RegCache& c, uintptr_t s, uintptr_t e, Impls& out) {
                                std::lock_guard lock(c.mu_);
                                size_t n = take_overlapping(c.entries_, s, e, out);
                                c.stats_.invalidations += n;
                                return n;
                              },
                              [](RegCache& c) { c.mu_.lock(); }, [](RegCache& c) { c.mu_.unlock(); }},
                             nullptr};
  Busy busy;
  std::lock_guard lock(g_mu);
  if (!g_graveyard) g_graveyard = new Impls();
  node->next = g_caches;
  g_caches = node;
}

RegCache::~RegCache() {
  CacheNode* node = nullptr;
  Impls dead;
  {
    Busy busy;
    std::lock_guard lock(g_mu);
    for (CacheNode** p = &g_caches; *p; p = &(*p)->next)
      if ((*p)->cache == this) {
        node = *p;
        *p = node->next;
        break;
      }
    std::lock_guard cache_lock(mu_);
    g_entries_total -= take_overlapping(entries_, 0, UINTPTR_MAX, dead);
  }
  delete node;
  drain_graveyard();  // may hold entries of this cache, which must not outlive its backend
}

void RegCache::adopt(const std::shared_ptr<Impl>& allocation) {
  std::lock_guard lock(mu_);
  std::erase_if(adopted_, [](const std::weak_ptr<Impl>& w) { return w.expired(); });
  adopted_.push_back(allocation);
}

Memory RegCache::get(void* addr, size_t length, unsigned access) {
  // A zero-length range needs no registration: nothing can be read or written through it, and
  // registering "the page at addr" could fail (one-past-the-end pointers often point at an
  // unmapped page) or pin memory nobody asked for. Callers get an empty Memory.
  if (length == 0) return Memory();
  if (addr == nullptr)
    throw std::invalid_argument("register_memory: null address with length " + std::to_string(length));
  const auto a = reinterpret_cast<uintptr_t>(addr);
  const uintptr_t page = page_size();
  if (length > UINTPTR_MAX - a || a + length > UINTPTR_MAX - (page - 1))
    throw std::invalid_argument("register_memory: the range at " + std::to_string(a) + " of " + std::to_string(length) +
                                " bytes wraps around the address space");
  drain_graveyard();

  uintptr_t start = a & ~(page - 1), end = (a + length + page - 1) & ~(page - 1);
  unsigned want = access;
  {
    Busy busy;
    std::lock_guard lock(mu_);
    for (const auto& weak : adopted_) {
      std::shared_ptr<Impl> own = weak.lock();
      const auto base = own ? reinterpret_cast<uintptr_t>(own->addr) : 0;
      if (own && base <= a && a + length <= base + own->length && (own->access & access) == access) {
        ++stats_.hits;
        return Memory(std::move(own), addr, length);
      }
    }
    auto it = entries_.upper_bound(a);
    if (it != entries_.begin()) {
      const auto& [key, entry] = *std::prev(it);
      if (key + entry->length >= a + length && (entry->access & access) == access) {
        ++stats_.hits;
        return Memory(entry, addr, length);
      }
    }
    ++stats_.misses;
    // The new registration replaces every entry it overlaps (their holders keep them alive).
    // It grows to cover the ones with exactly the rights asked for, so that they stay hits, but
    // never takes over another entry's range or rights: merging a kRemoteWrite window with a
    // neighbouring kLocalOnly entry would expose memory to remote writes that no caller asked to
    // expose. An overlapping entry with other rights is only dropped from the cache.
    it = entries_.lower_bound(start);
    if (it != entries_.begin() && entry_end(*std::prev(it)) > start) --it;
    for (; it != entries_.end() && it->first < end; ++it) {
      if (it->second->access != want) continue;
      start = std::min(start, it->first);
      end = std::max(end, entry_end(*it));
    }
  }

  Pending pending{this, start, end};
  {
    Busy busy;
    std::lock_guard lock(g_mu);
    filter_update(start, end, true);
    pending.next = g_pending;
    if (g_pending) g_pending->prev = &pending;
    g_pending = &pending;
  }
  auto unlink = [&] {  // caller holds g_mu
    (pending.prev ? pending.prev->next : g_pending) = pending.next;
    if (pending.next) pending.next->prev = pending.prev;
    filter_update(start, end, false);
  };

  std::shared_ptr<Impl> impl;
  try {
    impl = register_(reinterpret_cast<void*>(start), end - start, want);
    if (!impl) throw std::logic_error("RegCache: the Register callback returned no registration");
  } catch (...) {
    Busy busy;
    std::lock_guard lock(g_mu);
    unlink();
    throw;
  }
  // The cache relies on these to find and match entries.
  impl->addr = reinterpret_cast<void*>(start);
  impl->length = end - start;
  impl->access = want;

  Impls replaced;  // released after the locks, in this (ordinary) context
  {
    Busy busy;
    std::lock_guard lock(g_mu);
    // Not kept without retention (entries_ then stays empty, so lookups above always miss):
    // the registration is this caller's only, and its handle ends it.
    if (retain_ && !pending.invalidated) {
      // Room in the graveyard for every entry first: reserve() may throw, and must not do so
      // in hook context later.
      if (g_graveyard->capacity() < g_graveyard->size() + g_entries_total + 1)
        g_graveyard->reserve(2 * (g_graveyard->size() + g_entries_total + 1));
      std::lock_guard cache_lock(mu_);
      g_entries_total -= take_overlapping(entries_, start, end, replaced);
      filter_update(start, end, true);
      entries_.emplace(start, impl);
      ++g_entries_total;
    }
    // Else the memory was released while we registered it: hand out the registration, but do
    // not remember it.
    unlink();
  }
  return Memory(std::move(impl), addr, length);
}

void RegCache::invalidate(const void* addr, size_t length) {
  if (length == 0) return;
  drain_graveyard();
  auto [start, end] = span_of(addr, length);
  Impls dropped;
  {
    Busy busy;
    std::lock_guard lock(g_mu);
    mark_pending(this, start, end);
    std::lock_guard cache_lock(mu_);
    size_t n = take_overlapping(entries_, start, end, dropped);
    stats_.invalidations += n;
    g_entries_total -= n;
  }
}

CacheStats RegCache::stats() const {
  drain_graveyard();
  Busy busy;
  std::lock_guard lock(mu_);
  CacheStats s = stats_;
  s.entries = entries_.size();
  return s;
}

void invalidate_range(const void* addr, size_t length) {
  if (length == 0) return;
  auto [start, end] = span_of(addr, length);
  if (!filter_may_overlap(start, end)) return;  // no lock, no allocation
  if (t_busy) return;                           // our own bookkeeping being freed under our locks
  Busy busy;
  std::lock_guard lock(g_mu);
  mark_pending(nullptr, start, end);
  size_t n = 0;
  for (CacheNode* c = g_caches; c; c = c->next) n += c->ops.take(*c->cache, start, end, *g_graveyard);
  if (n) {
    g_entries_total -= n;
    g_graveyard_full.store(true, std::memory_order_release);
  }
}

}  // namespace rdmacoll::transport
