// Logging in the NCCL_DEBUG style: RDMACOLL_LOG_LEVEL picks the level, RDMACOLL_LOG_SUBSYS the
// subsystems ("INIT,NET", or "^UCX" for all but UCX). The level and subsystem are checked
// before the message is formatted, so a disabled log line costs one load and one compare.
// Each line starts with "host:pid:rank" so the output of many ranks can be merged.
#pragma once

#include <atomic>
#include <cstdint>

namespace rdmacoll::log {

enum class Level : int { None = 0, Error = 1, Warn = 2, Info = 3, Debug = 4, Trace = 5 };

enum Subsys : uint32_t {
  kInit = 1u << 0,   // setup, settings, devices
  kNet = 1u << 1,    // verbs transport
  kUcx = 1u << 2,    // UCX transport
  kBoot = 1u << 3,   // rendezvous / store / launch
  kColl = 1u << 4,   // collectives
  kTrain = 1u << 5,  // trainer
  kAll = 0xffffffffu,
};

namespace detail {
extern std::atomic<int> g_level;        // -1 until read from the environment
extern std::atomic<uint32_t> g_subsys;
void init_from_env();
[[gnu::format(printf, 3, 4)]] void write(Level level, Subsys subsys, const char* fmt, ...);
}  // namespace detail

inline bool enabled(Level level, Subsys subsys) {
  int current = detail::g_level.load(std::memory_order_relaxed);
  if (current < 0) {
    detail::init_from_env();
    current = detail::g_level.load(std::memory_order_relaxed);
  }
  return static_cast<int>(level) <= current &&
         (detail::g_subsys.load(std::memory_order_relaxed) & subsys) != 0;
}

// The rank shown in the line prefix ("-" until set).
void set_rank(int rank);
// Re-read RDMACOLL_LOG_LEVEL / RDMACOLL_LOG_SUBSYS (tests change them).
void reload();

}  // namespace rdmacoll::log

#define RDMACOLL_LOG(level, subsys, ...)                                             \
  do {                                                                               \
    if (::rdmacoll::log::enabled(::rdmacoll::log::Level::level, ::rdmacoll::log::subsys)) \
      ::rdmacoll::log::detail::write(::rdmacoll::log::Level::level, ::rdmacoll::log::subsys, \
                                     __VA_ARGS__);                                   \
  } while (0)

#define RDMACOLL_WARN(subsys, ...) RDMACOLL_LOG(Warn, subsys, __VA_ARGS__)
#define RDMACOLL_INFO(subsys, ...) RDMACOLL_LOG(Info, subsys, __VA_ARGS__)
#define RDMACOLL_DEBUG(subsys, ...) RDMACOLL_LOG(Debug, subsys, __VA_ARGS__)
