// Memory events: tell the registration caches when memory goes away.
//
// Two sources, because no single one sees everything:
//
//   free(p), cfree(p)            interposed here: [p, p + malloc_usable_size(p)) is dropped
//   realloc/reallocarray(p, ..)  before the block is released, which covers glibc's internal
//                                munmap of large chunks, its internal mremap in realloc, and the
//                                reuse of small chunks at the same address (no unmap at all)
//
//   munmap, mremap (old range;   UCX's memory hooks (ucm): libucs installs them when it is
//   MREMAP_FIXED target), mmap   loaded (librdmacoll_transport links UCX), patching the code of
//   MAP_FIXED, madvise DONTNEED  libc's functions, so they also see libc's internal calls
//   /FREE/REMOVE, brk/sbrk       (thread stacks, dlclose, malloc_trim). We subscribe to their
//   shrinking, shmdt, shmat      VM_UNMAPPED event, dispatched before the memory is released.
//   SHM_REMAP
//
// Why the second group is not interposed here as well: ucm (UCX 1.13) finds the function to
// patch with dlsym(RTLD_NEXT) from libucm, falling back to dlsym(RTLD_DEFAULT). libucm is loaded
// after libc, so if this library defined munmap, ucm would patch *our* munmap and leave libc's
// alone: our code would never run (ucm's jump replaces it and then makes the system call
// itself), and UCX's own registration cache would stop seeing free()'s internal munmap, handing
// out stale registrations in the UCX backend. (Measured: with a munmap interposer here, a UCX
// handler saw 0 events for free() of an 8 MiB block; without it, 1.)
//
// Cost. invalidate_range returns after one atomic load when no cache holds an entry, and after
// a few loads of a lock-free filter when none is near the range; free() measures the block only
// when some cache holds an entry. Nothing here allocates on the way to the real function.
//
// Bootstrap. The real free/realloc are looked up with dlsym(RTLD_NEXT) on first use (libc's, or
// an allocator's linked after us). dlsym may itself call free(); a free() arriving on the thread
// that is inside the lookup leaks its block (a few bytes, once), and realloc falls back to
// malloc + copy.
//
// Sanitizers and other allocators. If the process's free() is not ours (ASan, TSan, MSan or an
// LD_PRELOADed allocator come first; or this library was dlopen'ed) the free/realloc hooks
// only forward: their pointers belong to another allocator and malloc_usable_size could not be
// trusted. Valgrind's memcheck replaces every object's free(), ours included, so free() is not
// seen under valgrind either. ucm's events are independent of both, except that a ThreadSanitizer
// build does not take them (see kThreadSanitizer). RDMACOLL_MEMHOOKS=0 turns
// the free hooks into plain forwarders and skips the ucm subscription; building with
// -DRDMACOLL_NO_MEMHOOKS leaves the interposers out (for static links, where they would clash
// with libc.a). The first RegCache logs a warning naming whatever is not seen.
//
// What can still escape is listed in regcache.cc.
#include <dlfcn.h>
#include <malloc.h>
#include <strings.h>
#include <ucm/api/ucm.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "regcache.h"

namespace rdmacoll::transport::detail {
std::string memhooks_problem();
unsigned memhooks_events();
bool memhooks_off_by_user();  // RDMACOLL_MEMHOOKS=0
bool regcache_tracking() noexcept;  // regcache.cc
}  // namespace rdmacoll::transport::detail

namespace {

using rdmacoll::transport::invalidate_range;

bool env_says_off() {
  const char* v = std::getenv("RDMACOLL_MEMHOOKS");
  return v && (std::strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0 ||
               strcasecmp(v, "false") == 0);
}

// ---- UCX's memory events -------------------------------------------------------------------

void on_unmapped(ucm_event_type_t, ucm_event_t* event, void*) {
  invalidate_range(event->vm_unmapped.address, event->vm_unmapped.size);
}

constinit std::atomic<bool> g_ucm_subscribed{false};
ucs_status_t g_ucm_status = UCS_OK;

// Under ThreadSanitizer ucm's events are not taken: glibc madvises a finished thread's stack
// after TSan has torn that thread's state down, and ucm reports the madvise to on_unmapped,
// whose instrumented code then crashes inside TSan (seen in the regcache thread tests).
#if defined(__SANITIZE_THREAD__)
constexpr bool kThreadSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kThreadSanitizer = true;
#else
constexpr bool kThreadSanitizer = false;
#endif
#else
constexpr bool kThreadSanitizer = false;
#endif

// Subscribes once, from the first RegCache (an ordinary context: ucm may install its hooks).
void subscribe_ucm() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (env_says_off() || kThreadSanitizer) return;
    g_ucm_status = ucm_set_event_handler(UCM_EVENT_VM_UNMAPPED, /*priority=*/1000, on_unmapped, nullptr);
    g_ucm_subscribed.store(g_ucm_status == UCS_OK, std::memory_order_release);
  });
}

// A library unloaded with dlclose must not leave ucm calling into it.
[[gnu::destructor]] void unsubscribe_ucm() {
  if (g_ucm_subscribed.exchange(false)) ucm_unset_event_handler(UCM_EVENT_VM_UNMAPPED, on_unmapped, nullptr);
}

}  // namespace

#ifndef RDMACOLL_NO_MEMHOOKS

namespace {

enum Sym { kFree, kRealloc, kReallocarray, kSyms };
constexpr const char* kSymNames[kSyms] = {"free", "realloc", "reallocarray"};

// Everything is constant-initialised: the hooks run before our constructors and after our
// destructors.
constinit std::atomic<void*> g_real[kSyms] = {};
constinit std::atomic<bool> g_resolved{false};
constinit std::atomic<bool> g_free_hook{false};  // the process's free() is ours, and not turned off
[[gnu::tls_model("initial-exec")]] constinit thread_local bool t_resolving = false;

// Looks up the real functions once; false when called again from inside the lookup.
bool resolve() noexcept {
  if (g_resolved.load(std::memory_order_acquire)) return true;
  if (t_resolving) return false;
  t_resolving = true;
  for (int i = 0; i < kSyms; ++i) g_real[i].store(dlsym(RTLD_NEXT, kSymNames[i]), std::memory_order_relaxed);
  Dl_info self{}, owner{};
  void* global_free = dlsym(RTLD_DEFAULT, "free");
  const bool owned = global_free && dladdr(reinterpret_cast<void*>(&resolve), &self) && dladdr(global_free, &owner) &&
                     self.dli_fbase == owner.dli_fbase;
  g_free_hook.store(owned && !env_says_off(), std::memory_order_relaxed);
  g_resolved.store(true, std::memory_order_release);
  t_resolving = false;
  return true;
}

template <class F>
F real(Sym s) {
  return reinterpret_cast<F>(g_real[s].load(std::memory_order_relaxed));
}

bool free_hook() noexcept {
  return g_free_hook.load(std::memory_order_relaxed) && rdmacoll::transport::detail::regcache_tracking();
}

// realloc while our own lookup is under way on this thread (dlsym should never do this).
void* fallback_realloc(void* ptr, size_t size) {
  if (!ptr) return std::malloc(size);
  if (size == 0) return nullptr;  // the old block leaks, as in free() below
  void* p = std::malloc(size);
  if (p) std::memcpy(p, ptr, std::min(size, malloc_usable_size(ptr)));
  return p;
}

bool multiply(size_t a, size_t b, size_t* out) {
  if (__builtin_mul_overflow(a, b, out)) {
    errno = ENOMEM;
    return false;
  }
  return true;
}

}  // namespace

#define RDMACOLL_HOOK extern "C" __attribute__((visibility("default")))

RDMACOLL_HOOK void free(void* ptr) noexcept {
  if (!ptr || !resolve()) return;  // !resolve(): dlsym freeing on this thread; leak it
  if (free_hook()) invalidate_range(ptr, malloc_usable_size(ptr));
  if (auto fn = real<void (*)(void*)>(kFree)) fn(ptr);
}

// Removed from glibc's headers in 2.26; old binaries still call it.
RDMACOLL_HOOK void cfree(void* ptr) noexcept { free(ptr); }

// Whether the block will move or shrink is only known afterwards, and by then its old pages may
// belong to someone else: the whole old block is dropped first.
RDMACOLL_HOOK void* realloc(void* ptr, size_t size) noexcept {
  if (!resolve()) return fallback_realloc(ptr, size);
  if (ptr && free_hook()) invalidate_range(ptr, malloc_usable_size(ptr));
  auto fn = real<void* (*)(void*, size_t)>(kRealloc);
  return fn ? fn(ptr, size) : fallback_realloc(ptr, size);
}

// glibc's reallocarray calls its realloc internally, out of our reach.
RDMACOLL_HOOK void* reallocarray(void* ptr, size_t nmemb, size_t size) noexcept {
  size_t bytes = 0;
  if (!resolve()) return multiply(nmemb, size, &bytes) ? fallback_realloc(ptr, bytes) : nullptr;
  if (ptr && free_hook()) invalidate_range(ptr, malloc_usable_size(ptr));
  if (auto fn = real<void* (*)(void*, size_t, size_t)>(kReallocarray)) return fn(ptr, nmemb, size);
  if (!multiply(nmemb, size, &bytes)) return nullptr;
  auto fn = real<void* (*)(void*, size_t)>(kRealloc);
  return fn ? fn(ptr, bytes) : fallback_realloc(ptr, bytes);
}

#endif  // RDMACOLL_NO_MEMHOOKS

namespace rdmacoll::transport::detail {

// Bit 0: free()/realloc() are seen. Bit 1: munmap & co. are seen (through ucm).
unsigned memhooks_events() {
  subscribe_ucm();
  unsigned events = g_ucm_subscribed.load(std::memory_order_acquire) ? 2u : 0u;
#ifndef RDMACOLL_NO_MEMHOOKS
  resolve();
  const char* preload = std::getenv("LD_PRELOAD");
  if (g_free_hook.load() && !(preload && std::strstr(preload, "vgpreload"))) events |= 1u;
#endif
  return events;
}

bool memhooks_off_by_user() { return env_says_off(); }

std::string memhooks_problem() {
  const unsigned events = memhooks_events();
  if (events == 3u) return {};
  if (env_says_off()) return "memory events are not watched (RDMACOLL_MEMHOOKS is off)";
  std::string why;
  if (!(events & 1u)) {
#ifdef RDMACOLL_NO_MEMHOOKS
    why = "free() is not seen: this build left the interposers out (RDMACOLL_NO_MEMHOOKS)";
#else
    Dl_info owner{};
    void* global_free = dlsym(RTLD_DEFAULT, "free");
    const char* name = global_free && dladdr(global_free, &owner) && owner.dli_fname ? owner.dli_fname : "?";
    const char* preload = std::getenv("LD_PRELOAD");
    why = preload && std::strstr(preload, "vgpreload")
              ? std::string("free() is not seen: valgrind replaces it in every library, this one included")
              : std::string("free() is not seen: the process's free() is ") + name +
                    "'s (a sanitizer, an LD_PRELOADed allocator, or librdmacoll_transport loaded by dlopen)";
#endif
  }
  if (!(events & 2u)) {
    if (!why.empty()) why += "; ";
    if (kThreadSanitizer) return why + "munmap/mremap/madvise/brk/shmdt are not seen: not taken under ThreadSanitizer";
    why += std::string("munmap/mremap/madvise/brk/shmdt are not seen: UCX's memory hooks refused the handler (") +
           ucs_status_string(g_ucm_status) + "; check UCX_MEM_EVENTS and UCX_MEM_MMAP_HOOK_MODE)";
  }
  return why;
}

}  // namespace rdmacoll::transport::detail
