// rdmacoll-run: starts N ranks of a program on this host, in the spirit of `torchrun --standalone`.
// Each rank gets RDMACOLL_RANK/RDMACOLL_WORLD_SIZE/RDMACOLL_ADDR (what detect_launch() reads), a
// job token (RDMACOLL_JOB_TOKEN: random per job unless the caller set one) that authenticates it
// to the rendezvous store, and its output comes back line by line with a "[rank i] " prefix. The first rank to fail brings the
// whole job down, and no rank outlives the launcher.
//
// One thread, one poll() loop over every rank's stdout/stderr pipe plus a signalfd, so SIGCHLD,
// Ctrl-C and the deadlines are handled in the same place as the output, with no signal handlers.
// With --link, each rank runs in its own network namespace behind a rate-limited link (run/link.h).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/bootstrap/launch.h"
#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "run/link.h"

namespace {

using Clock = rdmacoll::bootstrap::Clock;
constexpr auto kGrace = std::chrono::seconds(3);  // between SIGTERM and SIGKILL
constexpr size_t kMaxLine = 64 * 1024;            // a longer "line" is forwarded in pieces

int usage(std::ostream& out, int code) {
  out << "usage: rdmacoll-run -n N [--addr HOST:PORT] [--timeout SEC] [--no-prefix] [--] PROGRAM [ARGS...]\n"
         "       rdmacoll-run -n N --link RATE [--link-subnet NET] [--link-burst BYTES] [--timeout SEC]\n"
         "                    [--no-prefix] [--] PROGRAM [ARGS...]\n"
         "Starts N ranks of PROGRAM on this host with RDMACOLL_RANK, RDMACOLL_WORLD_SIZE, RDMACOLL_ADDR,\n"
         "LOCAL_RANK and LOCAL_WORLD_SIZE set, and prefixes their output lines with \"[rank i] \".\n"
         "RDMACOLL_JOB_TOKEN, the secret the ranks' rendezvous is authenticated with, is kept when set\n"
         "(to join ranks started elsewhere) and otherwise made afresh for the job from 32 random bytes.\n"
         "  -n N            number of ranks (at least 1)\n"
         "  --addr H:P      rendezvous address for rank 0's store (default: 127.0.0.1 and a free port)\n"
         "  --timeout SEC   stop the job after SEC (\"90\", \"2.5\", \"500ms\", \"5m\"); default: no limit\n"
         "  --no-prefix     forward the ranks' output unchanged\n"
         "  --link RATE     run each rank in its own network namespace, joined to the others through a bridge\n"
         "                  by a link limited to RATE in each direction (tc syntax: 100mbit, 1gbit, 500kbit);\n"
         "                  sets UCX_TLS=tcp,self, UCX_NET_DEVICES, RDMACOLL_TRANSPORT=ucx unless set, and\n"
         "                  RDMACOLL_LINK=RATE. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)\n"
         "  --link-subnet NET  the ranks' /24 network with --link (default 10.77.0.0/24; rank r gets .r+1)\n"
         "  --link-burst BYTES tbf's burst with --link (default: 3028, two frames, up to 250mbit; 128 KiB above)\n"
         "When a rank fails, or on SIGINT/SIGTERM/SIGHUP, the other ranks get SIGTERM (the signal itself\n"
         "when forwarding one), then SIGKILL 3 s later; a second Ctrl-C kills at once. Each rank runs in its\n"
         "own process group, which is what gets signalled, and reads stdin from /dev/null.\n"
         "Exit status: 0 all ranks exited 0; 1 a rank failed (exit status or signal in the message);\n"
         "2 bad usage (also: --link without the privileges it needs); 124 --timeout expired; 127 PROGRAM cannot\n"
         "be executed; 128+S the launcher got signal S.\n";
  return code;
}

// One of a rank's output pipes, and the bytes after its last newline.
struct Stream {
  int fd = -1;
  int to = 1;  // our stdout or stderr
  std::string partial;
};

struct Rank {
  int index = 0;
  pid_t pid = -1;
  bool running = false;
  Stream out[2];
};

bool g_prefix = true;

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    ssize_t n = write(fd, s.data(), s.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;  // our own stdout is gone; nothing useful left to do with the output
    s.remove_prefix(static_cast<size_t>(n));
  }
}

// Writes complete lines with the rank prefix as one write() each batch, so lines of different
// ranks interleave but never mix. At EOF a partial last line is flushed with a newline added.
void emit(int rank, Stream& s, std::string_view data, bool eof) {
  if (!g_prefix) return write_all(s.to, data);
  s.partial.append(data);
  std::string prefix = "[rank " + std::to_string(rank) + "] ", text;
  size_t start = 0, nl;
  while ((nl = s.partial.find('\n', start)) != std::string::npos) {
    text += prefix + s.partial.substr(start, nl + 1 - start);
    start = nl + 1;
  }
  s.partial.erase(0, start);
  if (!s.partial.empty() && (eof || s.partial.size() >= kMaxLine)) {
    text += prefix + s.partial + "\n";
    s.partial.clear();
  }
  write_all(s.to, text);
}

void close_stream(int rank, Stream& s) {
  close(s.fd);
  s.fd = -1;
  emit(rank, s, {}, true);
}

// Reads what is available: one read, or until the pipe is empty when `drain`. Closes at EOF.
void forward(int rank, Stream& s, bool drain) {
  char buf[16384];
  while (s.fd >= 0) {
    ssize_t n = read(s.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) return close_stream(rank, s);
    emit(rank, s, std::string_view(buf, static_cast<size_t>(n)), false);
    if (!drain) return;
  }
}

std::string describe(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  const char* abbrev = sigabbrev_np(WTERMSIG(status));
  return "killed by signal " + (abbrev ? "SIG" + std::string(abbrev) : std::to_string(WTERMSIG(status)));
}

// poll()'s timeout until `t`; -1 (no limit) without one.
int poll_ms(std::optional<Clock::time_point> t) {
  if (!t) return -1;
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(*t - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, INT32_MAX));
}

// Binding port 0 and closing again leaves a small window before rank 0 binds it; torchrun
// --standalone takes the same risk, and --addr is there when it matters.
uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    throw rdmacoll::Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  close(fd);
  return ntohs(a.sin_port);
}

// 32 bytes from the kernel's CSPRNG as 64 hex digits: the job's RDMACOLL_JOB_TOKEN.
std::string random_token() {
  uint8_t b[32];
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t n = getrandom(b + got, sizeof b - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw rdmacoll::Error(std::string("getrandom failed: ") + std::strerror(errno));
    got += static_cast<size_t>(n);
  }
  static const char hex[] = "0123456789abcdef";
  std::string s;
  for (uint8_t x : b) s += hex[x >> 4], s += hex[x & 15];
  return s;
}

// What keeps a rank from starting, sent by the child through a close-on-exec pipe (which reads
// EOF when exec succeeds).
struct SpawnFailure {
  int err = 0;         // errno; 0: the rank started
  char step[40] = "";  // empty: execvp; else the step of entering the network namespace
};

// Only with --link: where rank r runs and what it is told about the link.
struct LinkEnv {
  const rdmacoll::run::LinkNetwork* net;
  std::string rate;
};

void setenv_default(const char* name, const std::string& value) { setenv(name, value.c_str(), 0); }

// Forks rank `i`.
SpawnFailure spawn(Rank& r, int n, const std::string& addr, char** argv, const sigset_t& old_mask,
                   const std::optional<LinkEnv>& link) {
  int out[2], err[2], status[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status, O_CLOEXEC) || (r.pid = fork()) < 0)
    throw rdmacoll::Error("cannot start rank " + std::to_string(r.index) + ": " + std::strerror(errno));
  if (r.pid == 0) {
    pid_t launcher = getppid();
    // Own process group: teardown signals reach what the rank started too (a shell's children),
    // and Ctrl-C reaches the ranks once, through us. PDEATHSIG: killed if we die, even by SIGKILL;
    // the getppid check covers a launcher that died before prctl ran.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != launcher) _exit(1);
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);  // the mask survives exec; give back the original
    int null = open("/dev/null", O_RDONLY);
    dup2(null, 0), dup2(out[1], 1), dup2(err[1], 2);
    std::string rank = std::to_string(r.index), size = std::to_string(n);
    setenv("RDMACOLL_RANK", rank.c_str(), 1);
    setenv("RDMACOLL_WORLD_SIZE", size.c_str(), 1);
    setenv("RDMACOLL_ADDR", addr.c_str(), 1);
    setenv("LOCAL_RANK", rank.c_str(), 1);
    setenv("LOCAL_WORLD_SIZE", size.c_str(), 1);
    SpawnFailure f;
    if (link) {
      const char* step = "";
      if ((f.err = link->net->enter(r.index, &step)) != 0) {
        std::strncpy(f.step, step, sizeof f.step - 1);
        (void)!write(status[1], &f, sizeof f);
        _exit(126);
      }
      // UCX's shared-memory transports are not namespaced and would bypass the link.
      setenv_default("UCX_TLS", "tcp,self");
      setenv_default("UCX_NET_DEVICES", link->net->rank_device(r.index));
      setenv_default("RDMACOLL_TRANSPORT", "ucx");
      setenv("RDMACOLL_LINK", link->rate.c_str(), 1);
    }
    execvp(argv[0], argv);
    f.err = errno;
    (void)!write(status[1], &f, sizeof f);
    _exit(127);
  }
  setpgid(r.pid, r.pid);  // also here, so the group exists before we might signal it
  close(out[1]), close(err[1]), close(status[1]);
  r.running = true;
  r.out[0] = {out[0], 1, {}};
  r.out[1] = {err[0], 2, {}};
  for (Stream& s : r.out) fcntl(s.fd, F_SETFL, O_NONBLOCK);
  SpawnFailure f;
  ssize_t got;
  while ((got = read(status[0], &f, sizeof f)) < 0 && errno == EINTR) {
  }
  close(status[0]);
  return got == sizeof f ? f : SpawnFailure{};
}

// With --link, UCX must send over the rank's link: warn about settings that would not.
void check_ucx_env() {
  if (const char* tls = getenv("UCX_TLS")) {
    std::string other, list = tls;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = std::min(list.find(',', start), list.size());
      std::string t = list.substr(start, comma - start);
      if (t != "tcp" && t != "self") other += (other.empty() ? "" : ",") + t;
      start = comma + 1;
    }
    if (!other.empty())
      std::cerr << "rdmacoll-run: warning: UCX_TLS=" << tls << " is kept, but '" << other
                << "' may carry traffic past the --link limit (shared memory is not namespaced); unset it or use "
                   "UCX_TLS=tcp,self\n";
  }
  if (const char* dev = getenv("UCX_NET_DEVICES"))
    std::cerr << "rdmacoll-run: warning: UCX_NET_DEVICES=" << dev
              << " is kept; the ranks' link devices are rc<launcher pid>r<rank>\n";
}

}  // namespace

int main(int argc, char** argv) {
  int n = 0;
  std::string addr;
  std::optional<double> timeout;
  std::optional<std::string> link_rate;
  uint64_t link_bps = 0;
  uint32_t link_subnet = rdmacoll::run::parse_subnet("10.77.0.0/24");
  std::optional<uint64_t> link_burst;
  bool subnet_given = false;
  int first = 1;
  try {
    for (; first < argc; ++first) {
      std::string_view a = argv[first];
      auto value = [&]() -> std::string_view {
        if (first + 1 >= argc) throw rdmacoll::ConfigError(std::string(a) + " needs a value");
        return argv[++first];
      };
      if (a == "--") { ++first; break; }
      if (a.empty() || a[0] != '-') break;  // the program; its own flags follow
      if (a == "-h" || a == "--help") return usage(std::cout, 0);
      if (a == "-n") {
        int64_t v = rdmacoll::settings::parse_int("-n", value());
        if (v < 1 || v > 65536) throw rdmacoll::ConfigError("-n must be between 1 and 65536");
        n = static_cast<int>(v);
      } else if (a == "--addr") {
        addr = value();
        rdmacoll::bootstrap::parse_host_port(addr, "--addr");  // only to reject a bad one early
      } else if (a == "--timeout") {
        timeout = rdmacoll::settings::parse_seconds("--timeout", value());
      } else if (a == "--link") {
        link_rate = value();
        link_bps = rdmacoll::run::parse_rate(*link_rate);
      } else if (a == "--link-subnet") {
        link_subnet = rdmacoll::run::parse_subnet(value());
        subnet_given = true;
      } else if (a == "--link-burst") {
        link_burst = rdmacoll::run::parse_burst(value());
      } else if (a == "--no-prefix") {
        g_prefix = false;
      } else {
        throw rdmacoll::ConfigError("unknown option '" + std::string(a) + "'");
      }
    }
    if (n == 0) throw rdmacoll::ConfigError("-n N is required");
    if (first >= argc) throw rdmacoll::ConfigError("no program given");
    if (timeout && *timeout <= 0) throw rdmacoll::ConfigError("--timeout must be positive");
    if (link_rate) {
      if (!addr.empty())
        throw rdmacoll::ConfigError("--addr and --link do not go together: with --link the rendezvous is rank 0's "
                                    "address on the link");
      if (n > 254) throw rdmacoll::ConfigError("--link supports at most 254 ranks (one /24 network)");
      rdmacoll::run::require_privileges();
      check_ucx_env();
    } else if (subnet_given || link_burst) {
      throw rdmacoll::ConfigError(std::string(subnet_given ? "--link-subnet" : "--link-burst") + " needs --link");
    }
    if (addr.empty() && !link_rate) addr = "127.0.0.1:" + std::to_string(free_port());
    // Inherited by every rank; never printed. A caller's own token is kept, so ranks started
    // by another launcher with the same token can join.
    if (!rdmacoll::settings::raw("RDMACOLL_JOB_TOKEN")) setenv("RDMACOLL_JOB_TOKEN", random_token().c_str(), 1);
  } catch (const rdmacoll::ConfigError& e) {
    std::cerr << "rdmacoll-run: " << e.what() << "\n";
    return usage(std::cerr, 2);
  } catch (const rdmacoll::Error& e) {
    std::cerr << "rdmacoll-run: " << e.what() << "\n";
    return 1;
  }

  // Signals arrive through a signalfd in the poll loop; they stay blocked, never handled async.
  sigset_t mask, old_mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, &old_mask);
  int sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  // Built with the signals blocked, so a Ctrl-C meanwhile waits in the signalfd and the network
  // is removed on the way out (the destructor). A launcher killed outright leaves namespaces
  // named after its pid, which the next --link run removes.
  std::optional<rdmacoll::run::LinkNetwork> net;
  std::optional<LinkEnv> link;
  if (link_rate) {
    try {
      rdmacoll::run::remove_stale_namespaces();
      net.emplace(n, link_bps, link_subnet, rdmacoll::run::tbf_params(link_bps, link_burst));
    } catch (const rdmacoll::Error& e) {
      std::cerr << "rdmacoll-run: cannot build the --link network: " << e.what() << "\n";
      return 1;
    }
    link = LinkEnv{&*net, *link_rate};
    // Each namespace is fresh: nothing else listens on rank 0's address.
    addr = net->rank_ip(0) + ":29500";
  }

  std::vector<Rank> ranks(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) ranks[static_cast<size_t>(i)].index = i;
  int code = 0;  // the first cause of failure decides the exit status
  bool stopping = false, killed = false;
  int stop_signal = 0;  // what the teardown sent first, for the SIGKILL message
  Clock::time_point kill_at;
  auto stop = [&](int sig) {
    for (Rank& r : ranks)
      if (r.running) kill(-r.pid, sig);
    if (!stopping) kill_at = Clock::now() + kGrace, stop_signal = sig;
    stopping = true;
    killed = killed || sig == SIGKILL;
  };
  auto still_running = [&] {
    std::string list;
    for (const Rank& r : ranks)
      if (r.running) list += (list.empty() ? "" : ", ") + std::to_string(r.index);
    return list;
  };

  // A signal that came during the network's setup: start nothing.
  for (signalfd_siginfo si; read(sigfd, &si, sizeof si) == sizeof si;) {
    if (si.ssi_signo == SIGCHLD) continue;
    std::cerr << "rdmacoll-run: got SIG" << sigabbrev_np(static_cast<int>(si.ssi_signo)) << " before starting the ranks\n";
    return 128 + static_cast<int>(si.ssi_signo);
  }
  try {
    for (size_t i = 0; i < ranks.size() && !stopping; ++i) {
      SpawnFailure f = spawn(ranks[i], n, addr, argv + first, old_mask, link);
      if (f.err && f.step[0]) {
        std::cerr << "rdmacoll-run: rank " << i << " cannot enter network namespace "
                  << net->rank_namespace(static_cast<int>(i)) << ": " << f.step << ": " << std::strerror(f.err) << "\n";
        code = 1;
        stop(SIGKILL);
      } else if (f.err) {
        std::cerr << "rdmacoll-run: cannot execute '" << argv[first] << "': " << std::strerror(f.err) << "\n";
        code = 127;
        stop(SIGKILL);
      }
    }
  } catch (const rdmacoll::Error& e) {
    std::cerr << "rdmacoll-run: " << e.what() << "\n";
    code = 1;
    stop(SIGKILL);
  }
  std::optional<Clock::time_point> deadline;
  if (timeout) deadline = rdmacoll::bootstrap::deadline_in(*timeout);

  while (!still_running().empty()) {
    std::vector<pollfd> fds{{sigfd, POLLIN, 0}};
    std::vector<std::pair<int, Stream*>> streams;  // parallel to fds[1...]
    for (Rank& r : ranks)
      for (Stream& s : r.out)
        if (s.fd >= 0) fds.push_back({s.fd, POLLIN, 0}), streams.push_back({r.index, &s});
    std::optional<Clock::time_point> wake = deadline;
    if (stopping) wake = killed ? std::nullopt : std::optional(kill_at);
    if (poll(fds.data(), fds.size(), poll_ms(wake)) < 0 && errno != EINTR) break;
    for (size_t k = 1; k < fds.size(); ++k)
      if (fds[k].revents) forward(streams[k - 1].first, *streams[k - 1].second, false);

    signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == sizeof si) {
      int sig = static_cast<int>(si.ssi_signo);
      if (sig == SIGCHLD) continue;  // reaped below
      if (stopping) {
        stop(SIGKILL);  // a second Ctrl-C: the user does not want to wait for the grace period
      } else {
        std::cerr << "rdmacoll-run: got SIG" << sigabbrev_np(sig) << "; forwarding it to the ranks\n";
        code = 128 + sig;
        stop(sig);
      }
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (Rank& r : ranks) {
        if (r.pid != pid) continue;
        r.running = false;
        for (Stream& s : r.out) forward(r.index, s, true);  // its last words come before our verdict
        if (!stopping && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
          std::cerr << "rdmacoll-run: rank " << r.index << " failed first: " << describe(status) << "\n";
          code = 1;
          stop(SIGTERM);
        }
      }
    }
    if (deadline && !stopping && Clock::now() >= *deadline) {
      std::cerr << "rdmacoll-run: timed out after " << *timeout << " s; ranks still running: " << still_running()
                << "\n";
      code = 124;
      stop(SIGTERM);
    }
    if (stopping && !killed && Clock::now() >= kill_at && !still_running().empty()) {
      std::cerr << "rdmacoll-run: rank(s) " << still_running() << " still running 3 s after SIG"
                << sigabbrev_np(stop_signal) << "; sending SIGKILL\n";
      stop(SIGKILL);
    }
  }
  // Everyone has exited. Take what is left in the pipes without waiting for an EOF that a
  // background grandchild could hold off forever; after a failure, clear out such stragglers.
  for (Rank& r : ranks) {
    for (Stream& s : r.out) {
      forward(r.index, s, true);
      if (s.fd >= 0) close_stream(r.index, s);
    }
    if (stopping && r.pid > 0) kill(-r.pid, SIGKILL);
  }
  return code;
}
