#include "heap_count.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_news{0};
}  // namespace

uint64_t rdmacoll::testing::heap_allocations() { return g_news.load(std::memory_order_relaxed); }

// new takes its memory from malloc, so delete must give it back with free: a replaced new with
// the library's delete only works while that delete happens to be free() (AddressSanitizer's is
// not, and reports every pair as a mismatch). The array and nothrow forms call these ones.
void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
