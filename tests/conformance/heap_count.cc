#include "heap_count.h"

#include <atomic>
#include <cstdlib>
#include <new>

namespace {
std::atomic<uint64_t> g_news{0};
}  // namespace

uint64_t rdmacoll::testing::heap_allocations() { return g_news.load(std::memory_order_relaxed); }

// Only new is replaced: libstdc++'s operator delete is free(), which matches; the array and
// nothrow forms call this one.
void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
