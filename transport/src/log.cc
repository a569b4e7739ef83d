#include "rdmacoll/log.h"

#include <unistd.h>

#include <cctype>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "rdmacoll/settings.h"

namespace rdmacoll::log {
namespace detail {

std::atomic<int> g_level{-1};
std::atomic<uint32_t> g_subsys{kAll};

namespace {
std::atomic<int> g_rank{-1};

constexpr struct {
  std::string_view name;
  uint32_t bit;
} kSubsysNames[] = {{"INIT", kInit}, {"NET", kNet},   {"UCX", kUcx},
                    {"BOOT", kBoot}, {"COLL", kColl}, {"TRAIN", kTrain}, {"ALL", kAll}};

constexpr std::string_view kLevelNames[] = {"NONE", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};

std::string upper(std::string_view s) {
  std::string u(s);
  for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

int parse_level(const std::string& v) {
  std::string u = upper(v);
  for (size_t i = 0; i < std::size(kLevelNames); ++i)
    if (u == kLevelNames[i]) return static_cast<int>(i);
  std::fprintf(stderr, "rdmacoll: RDMACOLL_LOG_LEVEL='%s' is not one of NONE ERROR WARN INFO DEBUG TRACE; using WARN\n",
               v.c_str());
  return static_cast<int>(Level::Warn);
}

uint32_t parse_subsys(const std::string& v) {
  std::string_view s(v);
  bool exclude = !s.empty() && s.front() == '^';
  if (exclude) s.remove_prefix(1);
  uint32_t mask = 0;
  while (!s.empty()) {
    size_t comma = s.find(',');
    std::string name = upper(s.substr(0, comma));
    bool found = false;
    for (const auto& n : kSubsysNames)
      if (name == n.name) mask |= n.bit, found = true;
    if (!found && !name.empty())
      std::fprintf(stderr, "rdmacoll: RDMACOLL_LOG_SUBSYS names unknown subsystem '%s' (known: INIT NET UCX BOOT COLL TRAIN ALL)\n",
                   name.c_str());
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
  }
  return exclude ? ~mask : mask;
}
}  // namespace

void init_from_env() {
  g_subsys.store(parse_subsys(settings::get_string("RDMACOLL_LOG_SUBSYS")), std::memory_order_relaxed);
  g_level.store(parse_level(settings::get_string("RDMACOLL_LOG_LEVEL")), std::memory_order_relaxed);
}

void write(Level level, Subsys subsys, const char* fmt, ...) {
  static const std::string host = [] {
    char h[256] = {};
    gethostname(h, sizeof h - 1);
    return std::string(h);
  }();
  std::string_view sub = "?";
  for (const auto& n : kSubsysNames)
    if (n.bit == subsys) sub = n.name;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int rank = g_rank.load(std::memory_order_relaxed);
  char rank_s[16] = "-";
  if (rank >= 0) std::snprintf(rank_s, sizeof rank_s, "%d", rank);
  // One fprintf per line so lines from threads do not interleave.
  std::fprintf(stderr, "%s:%d:%s rdmacoll %s %.*s %s\n", host.c_str(), static_cast<int>(getpid()), rank_s,
               kLevelNames[static_cast<int>(level)].data(), static_cast<int>(sub.size()), sub.data(), msg);
}

}  // namespace detail

void set_rank(int rank) { detail::g_rank.store(rank, std::memory_order_relaxed); }
void reload() { detail::init_from_env(); }

}  // namespace rdmacoll::log
