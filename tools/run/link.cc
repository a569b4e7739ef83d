#include "run/link.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "rdmacoll/error.h"

namespace rdmacoll::run {
namespace {

constexpr const char* kNetnsDir = "/run/netns";
constexpr auto kCommandDeadline = std::chrono::seconds(10);

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Runs `ip`/`tc` with its stderr captured; throws Error with the command line, its exit status
// and what it said. A command still running after kCommandDeadline is killed.
void run_command(const std::vector<std::string>& args) {
  std::string line;
  for (const std::string& a : args) line += (line.empty() ? "" : " ") + a;
  int err[2];
  if (pipe2(err, O_CLOEXEC) != 0) throw Error("cannot run '" + line + "': pipe: " + std::strerror(errno));
  pid_t pid = fork();
  if (pid < 0) throw Error("cannot run '" + line + "': fork: " + std::strerror(errno));
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the launcher blocks signals it reads from a signalfd
    setpgid(0, 0);  // a Ctrl-C reaches the launcher, which then still finishes or undoes the setup
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(err[1], 2);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    dprintf(2, "cannot execute %s: %s (it is part of iproute2)", argv[0], std::strerror(errno));
    _exit(127);
  }
  close(err[1]);
  std::string said;
  auto deadline = std::chrono::steady_clock::now() + kCommandDeadline;
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd p{err[0], POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      break;
    }
    char buf[1024];
    ssize_t n = read(err[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    said.append(buf, static_cast<size_t>(n));
  }
  close(err[0]);
  // Its stderr is closed; it should be gone, but the deadline holds for the exit too.
  int status = 0;
  for (pid_t w; (w = waitpid(pid, &status, WNOHANG)) == 0 || (w < 0 && errno == EINTR);) {
    if (std::chrono::steady_clock::now() >= deadline) {
      timed_out = true;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);  // SIGKILL cannot be ignored
      break;
    }
    usleep(1000);
  }
  while (!said.empty() && (said.back() == '\n' || said.back() == ' ')) said.pop_back();
  if (timed_out) throw Error("'" + line + "' did not finish in 10 s; killed it");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw Error("'" + line + "' failed (" +
                (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                   : "signal " + std::to_string(WTERMSIG(status))) +
                "): " + (said.empty() ? "no message" : said));
}

// What `ip netns del` does: detach the namespace's bind mount and remove the file. The
// namespace itself goes away with its last process, and its interfaces with it.
bool delete_namespace(const std::string& name) {
  std::string path = std::string(kNetnsDir) + "/" + name;
  if (umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    std::cerr << "rdmacoll-run: cannot remove network namespace " << name << ": umount2(" << path
              << "): " << std::strerror(errno) << "\n";
    return false;
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    std::cerr << "rdmacoll-run: cannot remove network namespace " << name << ": unlink(" << path
              << "): " << std::strerror(errno) << "\n";
    return false;
  }
  return true;
}

bool launcher_alive(pid_t pid) {
  if (pid == getpid()) return false;  // a launcher that had our pid before us; we have built nothing yet
  if (kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A pid reused by another program does not keep a namespace alive.
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  return !(comm >> name) || name == "rdmacoll-run";
}

}  // namespace

uint64_t parse_rate(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return ConfigError("bad --link rate '" + std::string(text) + "': " + std::string(why) +
                       "; expected a number and one of tc's units: bit, kbit, mbit, gbit, tbit (bits/s, powers of "
                       "1000), kibit, mibit, gibit, tibit (powers of 1024), or bps, kbps, mbps, gbps, tbps, kibps, "
                       "mibps, gibps, tibps (bytes/s), e.g. 100mbit or 1gbit");
  };
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || !std::isfinite(value)) throw bad("it does not start with a number");
  std::string unit = lower(std::string_view(end, static_cast<size_t>(text.data() + text.size() - end)));
  struct Unit {
    const char* name;
    double bits;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},          {"bit", 1},          {"kbit", 1e3},       {"mbit", 1e6},       {"gbit", 1e9},
      {"tbit", 1e12},   {"kibit", 1024.0},   {"mibit", 1048576.0}, {"gibit", 1073741824.0},
      {"tibit", 1099511627776.0},             {"bps", 8},          {"kbps", 8e3},       {"mbps", 8e6},
      {"gbps", 8e9},    {"tbps", 8e12},      {"kibps", 8 * 1024.0}, {"mibps", 8 * 1048576.0},
      {"gibps", 8 * 1073741824.0},            {"tibps", 8 * 1099511627776.0}};
  auto u = std::find_if(std::begin(kUnits), std::end(kUnits), [&](const Unit& k) { return unit == k.name; });
  if (u == std::end(kUnits)) throw bad("unknown unit '" + unit + "'");
  double bps = value * u->bits;
  // Below 8 kbit/s a single full-size frame takes over a second; above 100 Gbit/s tbf on a veth
  // no longer limits anything a single machine can send.
  if (!(bps >= 8e3 && bps <= 1e11)) throw bad("out of range (8kbit to 100gbit)");
  return static_cast<uint64_t>(std::llround(bps));
}

uint32_t parse_subnet(std::string_view text) {
  std::string t(text);
  if (t.size() > 3 && t.substr(t.size() - 3) == "/24") t.resize(t.size() - 3);
  unsigned o[4] = {0, 0, 0, 0};
  int parts = 0;
  const char* p = t.data();
  const char* end = t.data() + t.size();
  while (p < end && parts < 4) {
    auto [next, ec] = std::from_chars(p, end, o[parts]);
    if (ec != std::errc() || o[parts] > 255) break;
    ++parts;
    p = next;
    if (p < end && *p == '.') ++p;
    else break;
  }
  if (p != end || parts < 3 || (parts == 4 && o[3] != 0))
    throw ConfigError("bad --link-subnet '" + std::string(text) +
                      "': expected a /24 network such as 10.77.0.0/24 (the ranks get .1, .2, ...)");
  return (o[0] << 24 | o[1] << 16 | o[2] << 8);
}

TbfParams tbf_params(uint64_t rate_bps, std::optional<uint64_t> burst_bytes) {
  constexpr int kLatencyMs = 50;
  if (burst_bytes) return {*burst_bytes, kLatencyMs};
  // Up to 250 Mbit/s, two full-size frames. Above, a burst smaller than the 64 KB GSO packets
  // that TCP hands a veth makes tbf cut each one into frames in software, and on a busy 2-core
  // machine that halved allreduce throughput at 500mbit (4 ranks) and cut it 2-4x at 1gbit.
  if (rate_bps <= 250'000'000) return {2 * 1514, kLatencyMs};
  return {std::max<uint64_t>(128 * 1024, rate_bps / 8 / 10000), kLatencyMs};  // or 100 us at RATE
}

uint64_t parse_burst(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1514 || v > (64u << 20))
    throw ConfigError("bad --link-burst '" + std::string(text) +
                      "': expected bytes from 1514 (one full-size frame) to 67108864, e.g. 125000");
  return v;
}

void require_privileges() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0)
    throw ConfigError(std::string("--link: cannot read this process's capabilities: capget: ") + std::strerror(errno));
  std::string missing;
  for (auto [cap, name] : {std::pair{CAP_NET_ADMIN, "CAP_NET_ADMIN"}, std::pair{CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}})
    if (!(data[cap / 32].effective & (1u << (cap % 32)))) missing += (missing.empty() ? "" : " and ") + std::string(name);
  if (!missing.empty())
    throw ConfigError("--link creates network namespaces, a bridge, veth pairs and tc qdiscs, which needs "
                      "CAP_NET_ADMIN and CAP_SYS_ADMIN; this process lacks " + missing +
                      ". Run it as root (sudo rdmacoll-run ...), or leave out --link.");
}

void remove_stale_namespaces() {
  DIR* dir = opendir(kNetnsDir);
  if (!dir) return;  // no namespace was ever created on this host
  std::vector<std::string> stale;
  while (dirent* e = readdir(dir)) {
    std::string_view name = e->d_name;
    if (!name.starts_with("rdmacoll-")) continue;
    std::string_view rest = name.substr(9);
    pid_t pid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pid);
    if (ec != std::errc() || end == rest.data() + rest.size() || *end != '-' || pid <= 0) continue;
    if (!launcher_alive(pid)) stale.emplace_back(name);
  }
  closedir(dir);
  std::sort(stale.begin(), stale.end());
  for (const std::string& name : stale)
    if (delete_namespace(name))
      std::cerr << "rdmacoll-run: removed network namespace " << name << ", left by a launcher that is gone\n";
}

LinkNetwork::LinkNetwork(int ranks, uint64_t rate_bps, uint32_t subnet, const TbfParams& tbf)
    : prefix_("rdmacoll-" + std::to_string(getpid()) + "-"),
      ifprefix_("rc" + std::to_string(getpid())),
      ranks_(ranks),
      subnet_(subnet) {
  auto qdisc = [&](const std::string& ns, const std::string& dev) {
    run_command({"tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", std::to_string(rate_bps) + "bit",
                 "burst", std::to_string(tbf.burst_bytes), "latency", std::to_string(tbf.latency_ms) + "ms"});
  };
  try {
    std::string hub = hub_namespace(), bridge = ifprefix_ + "br";
    run_command({"ip", "netns", "add", hub});
    hub_ = true;
    run_command({"ip", "-n", hub, "link", "add", bridge, "type", "bridge"});
    run_command({"ip", "-n", hub, "link", "set", bridge, "up"});
    for (int r = 0; r < ranks_; ++r) {
      std::string ns = rank_namespace(r), dev = rank_device(r), port = ifprefix_ + "h" + std::to_string(r);
      run_command({"ip", "netns", "add", ns});
      ++created_;
      run_command({"ip", "-n", ns, "link", "set", "lo", "up"});
      run_command({"ip", "-n", hub, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns});
      run_command({"ip", "-n", hub, "link", "set", port, "master", bridge, "up"});
      run_command({"ip", "-n", ns, "addr", "add", rank_ip(r) + "/24", "dev", dev});
      run_command({"ip", "-n", ns, "link", "set", dev, "up"});
      qdisc(ns, dev);    // what rank r sends
      qdisc(hub, port);  // what rank r receives
    }
  } catch (...) {
    remove();
    throw;
  }
}

LinkNetwork::~LinkNetwork() { remove(); }

void LinkNetwork::remove() noexcept {
  for (; created_ > 0; --created_) delete_namespace(rank_namespace(created_ - 1));
  if (hub_) delete_namespace(hub_namespace());
  hub_ = false;
}

std::string LinkNetwork::hub_namespace() const { return prefix_ + "hub"; }
std::string LinkNetwork::rank_namespace(int rank) const { return prefix_ + std::to_string(rank); }
std::string LinkNetwork::rank_device(int rank) const { return ifprefix_ + "r" + std::to_string(rank); }

std::string LinkNetwork::rank_ip(int rank) const {
  uint32_t a = subnet_ | static_cast<uint32_t>(rank + 1);
  return std::to_string(a >> 24) + "." + std::to_string(a >> 16 & 255) + "." + std::to_string(a >> 8 & 255) + "." +
         std::to_string(a & 255);
}

int LinkNetwork::enter(int rank, const char** step) const {
  std::string path = std::string(kNetnsDir) + "/" + rank_namespace(rank);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return *step = "open", errno;
  if (setns(fd, CLONE_NEWNET) != 0) return *step = "setns", errno;
  close(fd);
  if (unshare(CLONE_NEWNS) != 0) return *step = "unshare(CLONE_NEWNS)", errno;
  // Our mounts must not propagate back to the host's mount namespace.
  if (mount("", "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) return *step = "mount(/, MS_SLAVE)", errno;
  umount2("/sys", MNT_DETACH);  // may not be mounted at all, e.g. in a minimal container
  if (mount(rank_namespace(rank).c_str(), "/sys", "sysfs", 0, nullptr) != 0) return *step = "mount(sysfs)", errno;
  return 0;
}

}  // namespace rdmacoll::run
