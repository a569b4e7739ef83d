// The registration cache with a fake backend (no device): lookups, merging, statistics,
// threads, and invalidation through the process's real memory events (memhooks.cc).
#include "regcache.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <strings.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <ucm/api/ucm.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace rdmacoll::transport {
namespace {

const uintptr_t kPage = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));

uintptr_t u(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// Records every registration it is asked for; its registrations count themselves while alive.
class FakeBackend {
 public:
  struct Call {
    uintptr_t addr;
    size_t length;
    unsigned access;
  };

  RegCache::Register callback() {
    return [this](void* addr, size_t length, unsigned access) {
      auto m = std::make_shared<Registration>(live_);
      m->addr = addr;
      m->length = length;
      m->access = access;
      std::lock_guard lock(mu_);
      calls_.push_back({u(addr), length, access});
      return m;
    };
  }
  size_t calls() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  Call last() const {
    std::lock_guard lock(mu_);
    return calls_.back();
  }
  int live() const { return live_.load(); }

 private:
  struct Registration : Memory::Impl {
    explicit Registration(std::atomic<int>& live) : live_(live) { ++live_; }
    ~Registration() override { --live_; }
    std::atomic<int>& live_;
  };
  mutable std::mutex mu_;
  std::vector<Call> calls_;
  std::atomic<int> live_{0};
};

// Page-aligned anonymous memory that unmaps itself unless the test did.
class Mapping {
 public:
  explicit Mapping(size_t length) : length_(length) {
    addr_ = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (addr_ == MAP_FAILED) throw std::runtime_error("mmap failed");
  }
  ~Mapping() {
    if (addr_) munmap(addr_, length_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* data() const { return static_cast<char*>(addr_); }
  size_t size() const { return length_; }
  void forget() { addr_ = nullptr; }

 private:
  void* addr_;
  size_t length_;
};

// Which memory events reach the caches in this process (memhooks.cc): bit 0 free()/realloc(),
// bit 1 munmap & co. through UCX's memory hooks. Not in a header: only this test asks.
}  // namespace
namespace detail {
unsigned memhooks_events();
std::string memhooks_problem();
bool memhooks_off_by_user();
}  // namespace detail
namespace {

#define SKIP_UNLESS_EVENTS(bit)                                                               \
  if (!(detail::memhooks_events() & (bit)))                                                   \
  GTEST_SKIP() << "not watched in this process (sanitizer, valgrind, RDMACOLL_MEMHOOKS=0 or " \
                  "UCX_MEM_EVENTS=no): "                                                      \
               << detail::memhooks_problem()
#define SKIP_UNLESS_FREE_HOOKED() SKIP_UNLESS_EVENTS(1u)
#define SKIP_UNLESS_HOOKED() SKIP_UNLESS_EVENTS(2u)

// The tests of the cache's own mechanics keep entries whatever this process's hooks see (a
// TSan build sees no address-space events, where a backend's cache would keep nothing).
constexpr auto kRetain = RegCache::Retention::always;

// Touches memory so that the compiler cannot drop an allocation.
void touch(void* p, size_t n) {
  std::memset(p, 0x5a, n);
  asm volatile("" : : "r"(p) : "memory");  // the block escapes: malloc/free pairs stay
}

// A backend's cache (Retention::when_safe) keeps entries only where the address-space events
// are seen; elsewhere (under ThreadSanitizer, or UCX's hooks refused) a freed and remapped
// range would keep its stale pages, so every get() registers afresh and the registration
// ends with the caller's handle.
TEST(RegCache, BackendsRetainOnlyWhereTheAddressSpaceEventsAreSeen) {
  FakeBackend fake;
  RegCache cache(fake.callback());
  Mapping m(4 * kPage);
  // RDMACOLL_MEMHOOKS=0 is the user's promise to register only memory never freed: kept.
  const bool events = (detail::memhooks_events() & 2u) != 0 || detail::memhooks_off_by_user();
  EXPECT_EQ(cache.retains(), events) << detail::memhooks_problem();
  {
    Memory a = cache.get(m.data(), 2 * kPage, kLocalOnly);
    Memory b = cache.get(m.data(), 2 * kPage, kLocalOnly);
    EXPECT_EQ(fake.calls(), events ? 1u : 2u);
    EXPECT_EQ(a.impl() == b.impl(), events);
    EXPECT_EQ(cache.stats().entries, events ? 1u : 0u);
  }
  EXPECT_EQ(fake.live(), events ? 1 : 0) << "a registration nobody holds outlived its handles";
}

TEST(RegCache, HitOnSameRangeAndOnSubRange) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(16 * kPage);
  Memory a = cache.get(m.data() + 100, 8 * kPage, kRemoteWrite);
  ASSERT_EQ(fake.calls(), 1u);
  Memory b = cache.get(m.data() + 100, 8 * kPage, kRemoteWrite);
  Memory c = cache.get(m.data() + kPage, 2 * kPage, kRemoteWrite);
  Memory d = cache.get(m.data() + 200, 10, kLocalOnly);  // less access is still a hit
  EXPECT_EQ(fake.calls(), 1u);
  EXPECT_EQ(a.impl(), b.impl());
  EXPECT_EQ(a.impl(), c.impl());
  EXPECT_EQ(a.impl(), d.impl());
  // The handle describes the range asked for; the registration behind it covers whole pages.
  EXPECT_EQ(c.addr(), m.data() + kPage);
  EXPECT_EQ(c.length(), 2 * kPage);
  EXPECT_EQ(c.impl()->addr, m.data());
  EXPECT_EQ(c.impl()->length, 9 * kPage);
}

TEST(RegCache, MissOnLargerRange) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(16 * kPage);
  Memory a = cache.get(m.data(), 2 * kPage, kLocalOnly);
  Memory b = cache.get(m.data(), 4 * kPage, kLocalOnly);
  ASSERT_EQ(fake.calls(), 2u);
  EXPECT_NE(a.impl(), b.impl());
  EXPECT_EQ(fake.last().addr, u(m.data()));
  EXPECT_EQ(fake.last().length, 4 * kPage);
  EXPECT_EQ(cache.stats().entries, 1u);  // the larger one replaced the smaller
}

// Rights are never merged: a registration gets exactly the rights its caller asked for, so
// remote access reaches only the ranges registered for it (issue 8: windows only).
TEST(RegCache, AccessUpgradeRegistersOnlyTheRangeAskedForWithOnlyTheRightsAskedFor) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(16 * kPage);
  Memory local = cache.get(m.data(), 4 * kPage, kLocalOnly);
  Memory remote = cache.get(m.data() + 2 * kPage, 4 * kPage, kRemoteWrite);
  ASSERT_EQ(fake.calls(), 2u);
  EXPECT_EQ(fake.last().addr, u(m.data()) + 2 * kPage);
  EXPECT_EQ(fake.last().length, 4 * kPage);
  EXPECT_EQ(fake.last().access, unsigned{kRemoteWrite});
  EXPECT_EQ(cache.stats().entries, 1u);  // the local entry it overlapped is dropped, not merged
  // Inside the window, local use is a hit on it; the window's own range too.
  EXPECT_EQ(cache.get(m.data() + 3 * kPage, kPage, kLocalOnly).impl(), remote.impl());
  EXPECT_EQ(cache.get(m.data() + 2 * kPage, 4 * kPage, kRemoteWrite).impl(), remote.impl());
  // Read access on part of it is a new registration of that part with read only.
  Memory read = cache.get(m.data() + 2 * kPage, kPage, kRemoteRead);
  EXPECT_EQ(fake.last().addr, u(m.data()) + 2 * kPage);
  EXPECT_EQ(fake.last().length, kPage);
  EXPECT_EQ(read.impl()->access, unsigned{kRemoteRead});
  EXPECT_EQ(fake.calls(), 3u);
  // The callers' handles to the replaced registrations are still whole.
  EXPECT_EQ(local.impl()->length, 4 * kPage);
  EXPECT_EQ(local.impl()->access, unsigned{kLocalOnly});
  EXPECT_EQ(remote.impl()->length, 4 * kPage);
  EXPECT_EQ(remote.impl()->access, unsigned{kRemoteWrite});
}

TEST(RegCache, RegistersThePageAlignedEnclosingRange) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(8 * kPage);
  Memory a = cache.get(m.data() + kPage + 10, kPage, kLocalOnly);  // straddles two pages
  ASSERT_EQ(fake.calls(), 1u);
  EXPECT_EQ(fake.last().addr, u(m.data()) + kPage);
  EXPECT_EQ(fake.last().length, 2 * kPage);
  EXPECT_EQ(a.impl()->addr, m.data() + kPage);
  EXPECT_EQ(a.impl()->length, 2 * kPage);
  Memory b = cache.get(m.data() + 2 * kPage + 1, 1, kLocalOnly);  // inside the rounded range
  EXPECT_EQ(b.impl(), a.impl());
  EXPECT_EQ(fake.calls(), 1u);
}

TEST(RegCache, StatsCountHitsMissesInvalidationsAndEntries) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(32 * kPage);
  (void)cache.get(m.data(), kPage, kLocalOnly);                // miss
  (void)cache.get(m.data(), kPage, kLocalOnly);                // hit
  (void)cache.get(m.data() + 8 * kPage, kPage, kRemoteWrite);  // miss
  (void)cache.get(m.data() + 16 * kPage, kPage, kRemoteRead);  // miss
  (void)cache.get(m.data() + 16 * kPage, 10, kRemoteRead);     // hit
  CacheStats s = cache.stats();
  EXPECT_EQ(s.hits, 2u);
  EXPECT_EQ(s.misses, 3u);
  EXPECT_EQ(s.invalidations, 0u);
  EXPECT_EQ(s.entries, 3u);
  cache.invalidate(m.data(), 9 * kPage);  // the first two
  s = cache.stats();
  EXPECT_EQ(s.invalidations, 2u);
  EXPECT_EQ(s.entries, 1u);
  EXPECT_EQ(s.hits + s.misses, 5u);
}

TEST(RegCache, OverlappingEntriesWithTheSameRightsMergeIntoOne) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(32 * kPage);
  Memory a = cache.get(m.data(), 2 * kPage, kLocalOnly);
  Memory b = cache.get(m.data() + 4 * kPage, 2 * kPage, kLocalOnly);
  Memory c = cache.get(m.data() + 10 * kPage, kPage, kLocalOnly);  // not touched below
  ASSERT_EQ(cache.stats().entries, 3u);
  Memory merged = cache.get(m.data() + kPage, 4 * kPage, kLocalOnly);  // overlaps a and b
  EXPECT_EQ(fake.last().addr, u(m.data()));
  EXPECT_EQ(fake.last().length, 6 * kPage);
  EXPECT_EQ(fake.last().access, unsigned{kLocalOnly});
  EXPECT_EQ(cache.stats().entries, 2u);
  EXPECT_EQ(cache.stats().invalidations, 0u);  // a merge is not an invalidation
  EXPECT_EQ(cache.get(m.data() + 5 * kPage, kPage, kLocalOnly).impl(), merged.impl());
  EXPECT_EQ(cache.get(m.data() + 10 * kPage, kPage, kLocalOnly).impl(), c.impl());
  // Adjacent is not overlapping.
  (void)cache.get(m.data() + 6 * kPage, kPage, kLocalOnly);
  EXPECT_EQ(cache.stats().entries, 3u);
}

TEST(RegCache, EntriesWithOtherRightsAreReplacedNeverMergedInto) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(32 * kPage);
  Memory window = cache.get(m.data(), 2 * kPage, kRemoteWrite);
  Memory readable = cache.get(m.data() + 4 * kPage, 2 * kPage, kRemoteRead);
  Memory local = cache.get(m.data() + kPage, 4 * kPage, kLocalOnly);  // overlaps both
  EXPECT_EQ(fake.last().addr, u(m.data()) + kPage);
  EXPECT_EQ(fake.last().length, 4 * kPage);
  EXPECT_EQ(fake.last().access, unsigned{kLocalOnly});
  EXPECT_EQ(cache.stats().entries, 1u);
  // A window next to local memory stays exactly the window.
  Memory again = cache.get(m.data(), 2 * kPage, kRemoteWrite);
  EXPECT_EQ(fake.last().addr, u(m.data()));
  EXPECT_EQ(fake.last().length, 2 * kPage);
  EXPECT_EQ(fake.last().access, unsigned{kRemoteWrite});
}

TEST(RegCache, ZeroLengthIsAnEmptyMemoryAndNullIsRejected) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(kPage);
  EXPECT_FALSE(cache.get(m.data(), 0, kRemoteWrite));
  EXPECT_FALSE(cache.get(nullptr, 0, kRemoteWrite));
  EXPECT_EQ(fake.calls(), 0u);
  EXPECT_THROW(cache.get(nullptr, 10, kLocalOnly), std::invalid_argument);
  EXPECT_THROW(cache.get(reinterpret_cast<void*>(UINTPTR_MAX - 10), 100, kLocalOnly), std::invalid_argument);
  EXPECT_EQ(fake.calls(), 0u);
}

TEST(RegCache, RegisterFailurePropagatesAndCachesNothing) {
  RegCache cache([](void*, size_t, unsigned) -> std::shared_ptr<Memory::Impl> {
    throw std::runtime_error("ibv_reg_mr failed: Cannot allocate memory (check ulimit -l)");
  });
  Mapping m(kPage);
  EXPECT_THROW(cache.get(m.data(), 10, kLocalOnly), std::runtime_error);
  EXPECT_EQ(cache.stats().entries, 0u);
  munmap(m.data(), m.size());  // the failed attempt must not linger in the invalidation path
  m.forget();
}

TEST(RegCache, InvalidateDropsOnlyOverlappingEntries) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(16 * kPage);
  Memory a = cache.get(m.data(), kPage, kLocalOnly);
  Memory b = cache.get(m.data() + 4 * kPage, kPage, kLocalOnly);
  cache.invalidate(m.data() + 4 * kPage + 100, 1);
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.get(m.data(), kPage, kLocalOnly).impl(), a.impl());
  (void)cache.get(m.data() + 4 * kPage, kPage, kLocalOnly);
  EXPECT_EQ(fake.calls(), 3u);
}

TEST(RegCache, InvalidateRangeOfUnrelatedMemoryKeepsEntries) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(16 * kPage);
  Mapping other(16 * kPage);
  Memory a = cache.get(m.data() + kPage, 2 * kPage, kRemoteWrite);
  invalidate_range(other.data(), other.size());
  invalidate_range(m.data(), kPage);              // the page just before
  invalidate_range(m.data() + 3 * kPage, kPage);  // the page just after
  invalidate_range(m.data(), 0);
  std::vector<char> unrelated(1 << 20);  // and heap traffic elsewhere
  touch(unrelated.data(), unrelated.size());
  EXPECT_EQ(cache.stats().entries, 1u);
  EXPECT_EQ(cache.stats().invalidations, 0u);
  EXPECT_EQ(cache.get(m.data() + kPage, 2 * kPage, kRemoteWrite).impl(), a.impl());
  EXPECT_EQ(fake.calls(), 1u);
}

TEST(RegCache, InvalidateRangeReachesEveryLiveCache) {
  FakeBackend f1, f2;
  Mapping m(4 * kPage);
  auto c1 = std::make_unique<RegCache>(f1.callback(), kRetain);
  RegCache c2(f2.callback(), kRetain);
  (void)c1->get(m.data(), kPage, kLocalOnly);
  (void)c2.get(m.data(), kPage, kLocalOnly);
  c1.reset();  // a destroyed cache leaves the registry
  EXPECT_EQ(f1.live(), 0);
  invalidate_range(m.data(), kPage);
  EXPECT_EQ(c2.stats().invalidations, 1u);
  EXPECT_EQ(c2.stats().entries, 0u);
}

TEST(RegCache, HeldMemoryOutlivesInvalidationAndDroppedOnesAreReleased) {
  FakeBackend fake;
  Mapping m(8 * kPage);
  {
    RegCache cache(fake.callback(), kRetain);
    Memory held = cache.get(m.data(), 2 * kPage, kRemoteWrite);
    (void)cache.get(m.data() + 4 * kPage, kPage, kLocalOnly);
    EXPECT_EQ(fake.live(), 2);
    invalidate_range(m.data(), m.size());
    EXPECT_EQ(cache.stats().entries, 0u);  // stats() also releases what the hooks dropped
    EXPECT_EQ(fake.live(), 1);             // only the held one remains
    EXPECT_EQ(held.impl()->addr, m.data());
    EXPECT_EQ(held.impl()->length, 2 * kPage);
    EXPECT_EQ(held.impl()->access, unsigned{kRemoteWrite});
    (void)cache.get(m.data(), kPage, kLocalOnly);
    EXPECT_EQ(fake.live(), 2);
  }
  EXPECT_EQ(fake.live(), 0);  // the cache's destructor releases its entries
}

TEST(RegCache, ThreadsHammeringGetAndInvalidate) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  constexpr int kBuffers = 16, kThreads = 6, kIters = 3000;
  Mapping m(kBuffers * 4 * kPage);
  std::atomic<uint64_t> gets{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < kIters; ++i) {
        char* p = m.data() + (rng() % kBuffers) * 4 * kPage + rng() % kPage;
        switch (rng() % 8) {
          case 0: cache.invalidate(p, kPage); break;
          case 1: invalidate_range(p, 1); break;
          case 2: {  // heap churn through the free() hook meanwhile
            std::vector<char> v(rng() % 200000 + 1);
            touch(v.data(), v.size());
            break;
          }
          default: {
            Memory mem = cache.get(p, rng() % (3 * kPage) + 1, rng() % 2 ? kRemoteWrite : kLocalOnly);
            ++gets;
            ASSERT_LE(u(mem.impl()->addr), u(p));
          }
        }
      }
    });
  for (auto& t : threads) t.join();
  CacheStats s = cache.stats();
  EXPECT_EQ(s.hits + s.misses, gets.load());
  EXPECT_EQ(s.misses, fake.calls());
  EXPECT_LE(s.entries, size_t{4 * kBuffers});
  EXPECT_EQ(fake.live(), static_cast<int>(s.entries));
}

// ---- invalidation through the process's memory events -----------------------------------------

// The address of a block about to be freed, as an integer the compiler cannot trace back to the
// block (it rightly warns about pointers used after free; these are only ever compared).
uintptr_t address_of(const void* p) {
  volatile uintptr_t v = u(p);
  return v;
}

// Registers [addr, addr+n), checks that a second lookup hits, runs `release`, and expects the
// next lookup at the same address to register again.
template <class Release>
void expect_released(uintptr_t addr, size_t n, Release release) {
  void* p = reinterpret_cast<void*>(addr);
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Memory held = cache.get(p, n, kRemoteWrite);
  (void)cache.get(p, n, kRemoteWrite);
  ASSERT_EQ(fake.calls(), 1u) << "second lookup should hit";
  release();
  EXPECT_EQ(cache.stats().invalidations, 1u);
  EXPECT_EQ(cache.stats().entries, 0u);
  (void)cache.get(p, n, kRemoteWrite);
  EXPECT_EQ(fake.calls(), 2u) << "lookup after the release should register again";
  // The handle taken before the release still describes its registration.
  EXPECT_LE(u(held.impl()->addr), addr);
  EXPECT_GE(u(held.impl()->addr) + held.impl()->length, addr + n);
}

std::string owner_of(const char* symbol) {
  Dl_info info{};
  void* f = dlsym(RTLD_DEFAULT, symbol);
  return f && dladdr(f, &info) && info.dli_fname ? info.dli_fname : "?";
}

// free() must be ours; munmap must not be: UCX's hooks patch whatever munmap the process
// resolves to, and if that were ours they would stop seeing libc's internal munmap calls.
TEST(MemHooks, InterposesFreeButLeavesMunmapToLibcForUcx) {
  SKIP_UNLESS_FREE_HOOKED();
  EXPECT_NE(owner_of("free").find("rdmacoll_transport"), std::string::npos) << owner_of("free");
  EXPECT_NE(owner_of("realloc").find("rdmacoll_transport"), std::string::npos) << owner_of("realloc");
  for (const char* s : {"munmap", "mremap", "madvise", "mmap", "brk", "sbrk", "shmdt"})
    EXPECT_EQ(owner_of(s).find("rdmacoll_transport"), std::string::npos) << s << " is " << owner_of(s);
}

// The same from UCX's side: its own registration cache still hears glibc's internal munmap
// when free() returns a large block.
TEST(MemHooks, UcxStillSeesTheMunmapInsideFree) {
  SKIP_UNLESS_HOOKED();
  SKIP_UNLESS_FREE_HOOKED();  // otherwise free() is not glibc's, which need not unmap at once
  using SetHandler = ucs_status_t (*)(int, int, ucm_event_callback_t, void*);
  using UnsetHandler = void (*)(int, ucm_event_callback_t, void*);
  auto set = reinterpret_cast<SetHandler>(dlsym(RTLD_DEFAULT, "ucm_set_event_handler"));
  auto unset = reinterpret_cast<UnsetHandler>(dlsym(RTLD_DEFAULT, "ucm_unset_event_handler"));
  ASSERT_TRUE(set && unset);
  static std::atomic<size_t> unmapped{0};
  auto cb = [](ucm_event_type_t, ucm_event_t* e, void*) {
    if (e->vm_unmapped.size >= (size_t{64} << 20)) ++unmapped;
  };
  ASSERT_EQ(set(UCM_EVENT_VM_UNMAPPED, 1000, cb, nullptr), UCS_OK);
  unmapped = 0;
  // Above glibc's largest dynamic mmap threshold (32 MiB), so always mmap-backed.
  void* p = std::malloc(size_t{64} << 20);
  touch(p, 4096);
  std::free(p);
  unset(UCM_EVENT_VM_UNMAPPED, cb, nullptr);
  EXPECT_EQ(unmapped.load(), 1u);
}

TEST(MemHooks, MunmapInvalidates) {
  SKIP_UNLESS_HOOKED();
  Mapping m(8 * kPage);
  expect_released(address_of(m.data() + kPage), 2 * kPage, [&] {
    ASSERT_EQ(munmap(m.data(), m.size()), 0);
    m.forget();
  });
}

TEST(MemHooks, PartialMunmapInvalidatesOnlyWhatItTouches) {
  SKIP_UNLESS_HOOKED();
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(8 * kPage);
  (void)cache.get(m.data(), kPage, kLocalOnly);
  (void)cache.get(m.data() + 4 * kPage, kPage, kLocalOnly);
  ASSERT_EQ(munmap(m.data() + 4 * kPage, 4 * kPage), 0);
  EXPECT_EQ(cache.stats().invalidations, 1u);
  EXPECT_EQ(cache.stats().entries, 1u);
  munmap(m.data(), 4 * kPage);
  m.forget();
}

TEST(MemHooks, MremapThatMovesInvalidates) {
  SKIP_UNLESS_HOOKED();
  Mapping m(4 * kPage);
  void* moved = nullptr;
  expect_released(address_of(m.data()), 4 * kPage, [&] {
    // Occupy the page right after so that growing in place is impossible.
    void* after =
        mmap(m.data() + 4 * kPage, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    moved = mremap(m.data(), 4 * kPage, 64 * kPage, MREMAP_MAYMOVE);
    ASSERT_NE(moved, MAP_FAILED);
    if (after != MAP_FAILED) munmap(after, kPage);
    m.forget();
  });
  munmap(moved, 64 * kPage);
}

TEST(MemHooks, MadviseDontneedAndFreeInvalidate) {
  SKIP_UNLESS_HOOKED();
  Mapping m(8 * kPage);
  touch(m.data(), m.size());
  expect_released(address_of(m.data()), 2 * kPage, [&] { ASSERT_EQ(madvise(m.data(), 2 * kPage, MADV_DONTNEED), 0); });
  expect_released(address_of(m.data() + 4 * kPage), kPage,
                  [&] { ASSERT_EQ(madvise(m.data() + 4 * kPage, kPage, MADV_FREE), 0); });
  // Advice that keeps the pages does not invalidate.
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  (void)cache.get(m.data(), kPage, kLocalOnly);
  ASSERT_EQ(madvise(m.data(), kPage, MADV_WILLNEED), 0);
  EXPECT_EQ(cache.stats().entries, 1u);
}

TEST(MemHooks, MmapFixedOverAMappingInvalidates) {
  SKIP_UNLESS_HOOKED();
  Mapping m(4 * kPage);
  expect_released(address_of(m.data() + kPage), kPage, [&] {
    void* p = mmap(m.data(), 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ASSERT_EQ(p, static_cast<void*>(m.data()));
  });
}

TEST(MemHooks, ShmdtInvalidates) {
  SKIP_UNLESS_HOOKED();
  int id = shmget(IPC_PRIVATE, 4 * kPage, IPC_CREAT | 0600);
  if (id < 0) GTEST_SKIP() << "shmget: " << std::strerror(errno);
  void* p = shmat(id, nullptr, 0);
  shmctl(id, IPC_RMID, nullptr);
  ASSERT_NE(p, reinterpret_cast<void*>(-1));
  expect_released(address_of(static_cast<char*>(p) + 2 * kPage), 100, [&] { ASSERT_EQ(shmdt(p), 0); });
}

TEST(MemHooks, SbrkShrinkInvalidates) {
  SKIP_UNLESS_HOOKED();
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  // malloc also moves the break: shrink only what we grew, and only if nobody grew it since.
  void* start = sbrk(0);
  if (sbrk(static_cast<intptr_t>(4 * kPage)) == reinterpret_cast<void*>(-1)) GTEST_SKIP() << "sbrk cannot grow";
  char* top = static_cast<char*>(start) + 4 * kPage;
  char* region = reinterpret_cast<char*>((u(start) + kPage - 1) & ~(kPage - 1));
  (void)cache.get(region, kPage, kRemoteWrite);
  if (sbrk(0) != static_cast<void*>(top)) GTEST_SKIP() << "malloc moved the break meanwhile";
  ASSERT_NE(sbrk(-static_cast<intptr_t>(4 * kPage)), reinterpret_cast<void*>(-1));
  EXPECT_EQ(cache.stats().invalidations, 1u);
  (void)cache.get(region, kPage, kRemoteWrite);
  EXPECT_EQ(fake.calls(), 2u);
}

TEST(MemHooks, FreeOfALargeMallocBlockInvalidates) {
  SKIP_UNLESS_FREE_HOOKED();
  // Above glibc's largest dynamic mmap threshold (32 MiB): free() munmaps it inside libc.
  constexpr size_t kSize = size_t{64} << 20;
  void* p = std::malloc(kSize);
  ASSERT_NE(p, nullptr);
  touch(p, 4096);
  expect_released(address_of(static_cast<char*>(p) + 12345), kSize / 2, [&] { std::free(p); });
}

TEST(MemHooks, FreeOfASmallMallocBlockInvalidates) {
  SKIP_UNLESS_FREE_HOOKED();
  void* p = std::malloc(64);
  ASSERT_NE(p, nullptr);
  touch(p, 64);
  expect_released(address_of(p), 64, [&] { std::free(p); });
}

TEST(MemHooks, ReallocThatMovesInvalidates) {
  SKIP_UNLESS_FREE_HOOKED();
  void* p = std::malloc(256);
  touch(p, 256);
  void* q = nullptr;
  expect_released(address_of(p), 256, [&] {
    q = std::realloc(p, 8 << 20);
    ASSERT_NE(q, nullptr);
  });
  std::free(q);
}

TEST(MemHooks, DeleteArrayOfANewArrayInvalidates) {
  SKIP_UNLESS_FREE_HOOKED();
  auto* p = new char[3 << 20];
  touch(p, 3 << 20);
  expect_released(address_of(p), 3 << 20, [&] { delete[] p; });
  auto* small = new int[10];
  touch(small, sizeof(int[10]));
  expect_released(address_of(small), sizeof(int[10]), [&] { delete[] small; });
}

TEST(MemHooks, VectorGoingOutOfScopeInvalidates) {
  SKIP_UNLESS_FREE_HOOKED();
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  uintptr_t addr = 0;
  size_t bytes = 0;
  {
    std::vector<float> v(1 << 20, 1.0f);
    addr = address_of(v.data());
    bytes = v.size() * sizeof(float);
    (void)cache.get(v.data(), bytes, kRemoteWrite);
    (void)cache.get(v.data(), bytes, kRemoteWrite);
    ASSERT_EQ(fake.calls(), 1u);
  }
  EXPECT_EQ(cache.stats().invalidations, 1u);
  (void)cache.get(reinterpret_cast<void*>(addr), bytes, kRemoteWrite);
  EXPECT_EQ(fake.calls(), 2u);
}

TEST(MemHooks, HeldMemoryKeepsDescribingTheFreedBlock) {
  SKIP_UNLESS_FREE_HOOKED();
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  auto* p = static_cast<char*>(std::malloc(2 << 20));
  touch(p, 2 << 20);
  Memory held = cache.get(p, 2 << 20, kRemoteWrite);
  const void* addr = held.impl()->addr;
  const size_t length = held.impl()->length;
  const uintptr_t block = address_of(p);
  std::free(p);
  EXPECT_EQ(cache.stats().entries, 0u);
  EXPECT_EQ(fake.live(), 1);  // kept alive by `held` alone
  EXPECT_EQ(held.impl()->addr, addr);
  EXPECT_EQ(held.impl()->length, length);
  EXPECT_LE(u(addr), block);
  EXPECT_GE(u(addr) + length, block + (2 << 20));
}

TEST(MemHooks, FreeOfUnrelatedBlocksKeepsEntries) {
  FakeBackend fake;
  RegCache cache(fake.callback(), kRetain);
  Mapping m(4 * kPage);
  (void)cache.get(m.data(), 4 * kPage, kRemoteWrite);
  for (int i = 0; i < 1000; ++i) {
    std::unique_ptr<char[]> small(new char[static_cast<size_t>(i) * 7 + 1]);
    touch(small.get(), 1);
  }
  std::vector<char> big(8 << 20);
  touch(big.data(), big.size());
  big = {};
  EXPECT_EQ(cache.stats().invalidations, 0u);
  EXPECT_EQ(cache.stats().entries, 1u);
}

// The free() hooks do not depend on UCX: run the free() tests again in a child process with
// UCX's memory events off (munmap & co. then skip, naming the reason).
TEST(MemHooks, FreeIsSeenEvenWithUcxMemoryEventsOff) {
  SKIP_UNLESS_FREE_HOOKED();
  if (std::getenv("REGCACHE_TEST_CHILD")) GTEST_SKIP() << "this is the child";
  char log[] = "/tmp/regcache_test_child_XXXXXX";  // the child's output, shown if it fails
  const int log_fd = mkstemp(log);
  ASSERT_GE(log_fd, 0) << std::strerror(errno);
  unlink(log);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    setenv("UCX_MEM_EVENTS", "no", 1);
    setenv("REGCACHE_TEST_CHILD", "1", 1);
    char exe[] = "/proc/self/exe";
    char filter[] =
        "--gtest_filter=MemHooks.Free*:MemHooks.Realloc*:MemHooks.Delete*:MemHooks.Vector*:MemHooks.Held*:"
        "MemHooks.Munmap*";
    char* argv[] = {exe, filter, nullptr};
    execv(exe, argv);
    _exit(127);
  }
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      FAIL() << "the child running the free() tests with UCX_MEM_EVENTS=no did not finish in 60 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string output;
  char buf[4096];
  for (ssize_t n; (n = pread(log_fd, buf, sizeof buf, static_cast<off_t>(output.size()))) > 0;)
    output.append(buf, static_cast<size_t>(n));
  close(log_fd);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the free() tests failed with UCX_MEM_EVENTS=no (status " << status << "):\n"
      << output;
  EXPECT_NE(output.find("MunmapInvalidates"), std::string::npos) << output;  // ran, and skipped
}

}  // namespace
}  // namespace rdmacoll::transport
