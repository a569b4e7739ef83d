// Private: the registration cache every backend uses. Registering memory is expensive (the
// kernel pins pages), so a range registered once is reused: a lookup covered by an existing
// entry with enough access rights is a hit and costs a map lookup.
//
// Entries must not outlive the memory they describe: when a range is freed or remapped, the
// pinned pages the old registration holds are no longer the ones at that address. The cache
// therefore listens for the process's memory events (see invalidate_range below and
// regcache.cc for how they are caught) and drops every entry overlapping a released range.
// A Memory handle the caller still holds keeps its registration alive; it is only the cache
// that forgets it.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "rdmacoll/transport/transport.h"
#include "transport_impl.h"

namespace rdmacoll::transport {

class RegCache {
 public:
  // Registers [addr, addr+length) with `access`; called on a miss.
  using Register = std::function<std::shared_ptr<Memory::Impl>(void* addr, size_t length, unsigned access)>;

  // Whether entries outlive the Memory handles get() returns. when_safe (backends): only if the
  // address-space changes (munmap, madvise, mremap, brk, shmdt) are seen, or the user turned
  // the hooks off on purpose (RDMACOLL_MEMHOOKS=0: only memory never freed is registered);
  // otherwise a released and remapped range would keep its stale pinned pages and collectives
  // would move the wrong bytes, so each get() registers afresh (slower, never stale). always:
  // for the cache's own tests, which drive invalidation themselves.
  enum class Retention { when_safe, always };
  explicit RegCache(Register reg, Retention retention = Retention::when_safe);
  // False when get() registers afresh every time (Retention::when_safe without the events).
  bool retains() const { return retain_; }
  ~RegCache();
  RegCache(const RegCache&) = delete;
  RegCache& operator=(const RegCache&) = delete;

  // A hit when an entry covers the range with at least `access`; otherwise registers the range
  // (page-aligned outwards) and caches it.
  Memory get(void* addr, size_t length, unsigned access);
  // Drops entries overlapping [addr, addr+length).
  void invalidate(const void* addr, size_t length);
  // Memory the backend allocated and registered itself (Transport::allocate_memory): get()
  // answers from it while it lives, instead of registering its pages a second time. Only a weak
  // reference is kept, so the allocation is still freed when its last Memory handle goes.
  void adopt(const std::shared_ptr<Memory::Impl>& allocation);
  CacheStats stats() const;

 private:
  Register register_;
  bool retain_ = true;
  mutable std::mutex mu_;
  std::map<uintptr_t, std::shared_ptr<Memory::Impl>> entries_;  // keyed by start address
  std::vector<std::weak_ptr<Memory::Impl>> adopted_;
  CacheStats stats_;
};

// Tells every live RegCache that [addr, addr+length) was released or remapped. Called by the
// memory-event hooks; callable by users who manage memory in ways the hooks cannot see.
void invalidate_range(const void* addr, size_t length);

}  // namespace rdmacoll::transport
