#include "rdmacoll/settings.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <stdexcept>

#include "rdmacoll/error.h"

extern char** environ;

namespace rdmacoll::settings {
namespace {

// The one place where settings are declared. Keep README.md's settings table in step
// (tests/transport/settings_test.cc checks that every name here appears in README.md).
constexpr Spec kSpecs[] = {
    {"RDMACOLL_LOG_LEVEL", Type::String, "WARN",
     "Log level: NONE, ERROR, WARN, INFO, DEBUG or TRACE."},
    {"RDMACOLL_LOG_SUBSYS", Type::String, "ALL",
     "Subsystems to log, comma-separated: INIT,NET,UCX,BOOT,COLL,TRAIN or ALL; ^ excludes (^UCX)."},
    {"RDMACOLL_RANK", Type::Int, "", "This process's rank (also read: OMPI_COMM_WORLD_RANK, SLURM_PROCID, RANK)."},
    {"RDMACOLL_WORLD_SIZE", Type::Int, "",
     "Number of ranks (also read: OMPI_COMM_WORLD_SIZE, SLURM_NTASKS, WORLD_SIZE)."},
    {"RDMACOLL_ADDR", Type::String, "",
     "Rendezvous address HOST:PORT served by rank 0 (also read: MASTER_ADDR/MASTER_PORT, Slurm's first node)."},
    {"RDMACOLL_JOB_TOKEN", Type::String, "",
     "Secret shared by a job's ranks: every rendezvous message is signed with it (HMAC-SHA256) and the store "
     "refuses processes without it. rdmacoll-run sets a random one per job; unset: unauthenticated, with a warning."},
    {"RDMACOLL_STORE_DIR", Type::String, "/tmp",
     "Open MPI without RDMACOLL_ADDR: where rank 0 publishes its address (must be shared across nodes)."},
    {"RDMACOLL_TIMEOUT", Type::Seconds, "60",
     "Deadline for any wait (rendezvous, connection, completion); the error names the missing ranks."},
    {"RDMACOLL_TRANSPORT", Type::String, "ucx", "Transport backend: verbs or ucx."},
    {"RDMACOLL_PROGRESS", Type::String, "adaptive",
     "How waits get completions: poll (spin), block (sleep on the completion channel / ucp_worker_wait), adaptive."},
    {"RDMACOLL_SPIN_US", Type::Int, "50", "Adaptive progress: microseconds to spin without events before sleeping."},
    {"RDMACOLL_UCX_WIREUP", Type::String, "auto",
     "UCX: connect by worker address (address), through per-rank listeners (sockaddr, works on soft-RoCE), or auto "
     "(sockaddr when UCX would use an rxe device: UCX_NET_DEVICES names rxe*, or it is unset and UCX_TLS allows rc)."},
    {"RDMACOLL_UCX_LISTEN_ADDR", Type::String, "",
     "UCX sockaddr wire-up: IPv4 address to listen on; default: the address of the interface behind UCX_NET_DEVICES "
     "(rxe0:1 -> its netdev), else the source address of the route to RDMACOLL_ADDR's host."},
    {"RDMACOLL_IB_DEVICE", Type::String, "",
     "RDMA device and port as NAME[:PORT] (e.g. mlx5_0:1, rxe0); default: first device with an active port."},
    {"RDMACOLL_IB_GID_INDEX", Type::Int, "",
     "GID index to use; default: the RoCEv2 IPv4-mapped GID, else RoCEv2, else index 0."},
    {"RDMACOLL_IB_TIMEOUT", Type::Int, "14",
     "RC local ACK timeout exponent: 4.096us * 2^N per try (14 = 67 ms)."},
    {"RDMACOLL_IB_RETRY_CNT", Type::Int, "7", "RC transport retry count (0-7) before a retry-exceeded error."},
    {"RDMACOLL_IB_RNR_RETRY", Type::Int, "7",
     "RC receiver-not-ready retries (0-6) before an RNR-retry-exceeded error; 7 (default) retries for ever, the "
     "collective deadline (RDMACOLL_TIMEOUT) bounding the wait for a receiver that posts no buffer."},
    {"RDMACOLL_IB_EAGER", Type::Bytes, "8192",
     "Verbs: tagged messages up to this many bytes are copied through bounce buffers; larger ones use RDMA READ."},
    {"RDMACOLL_IB_CHUNK", Type::Bytes, "262144", "Verbs: largest single work request, in bytes (large transfers are split)."},
    {"RDMACOLL_IB_SEND_SLOTS", Type::Int, "512",
     "Verbs: bounce buffers (RDMACOLL_IB_EAGER bytes each) for outgoing messages, shared by all peers; at most 128 "
     "per peer are used. Bounds the registered send memory at large rank counts; a send waits for a free one."},
    {"RDMACOLL_IB_MAX_INFLIGHT", Type::Bytes, "2097152",
     "Verbs: bytes in flight per queue pair; more waits (soft-RoCE drops packets under deep queues)."},
    {"RDMACOLL_MEMHOOKS", Type::Bool, "1",
     "Watch free/munmap/... to drop stale registration-cache entries; 0 turns the hooks off (read at startup)."},
    {"RDMACOLL_BUFFSIZE", Type::Bytes, "67108864",
     "Collectives: bytes of registered scratch per communicator; larger calls run in segments that fit."},
    {"RDMACOLL_ALGO", Type::String, "auto",
     "Collectives: allreduce algorithm: auto (cost model), ring, tree (double binary tree) or halving_doubling."},
    {"RDMACOLL_DETERMINISTIC", Type::Bool, "0",
     "Collectives: 1 reduces every element in rank order on one rank: bitwise identical across runs and algorithms."},
    {"RDMACOLL_COST_MODEL", Type::String, "measure",
     "Collectives: the cost model behind automatic choices: measure (at communicator creation) or "
     "ALPHA_US,LINK_GBPS,REDUCE_GBPS, e.g. 5,12.5,8 (microseconds per step, 1e9 bytes/s sent and reduced)."},
    {"RDMACOLL_CHECK_ARGS", Type::Bool, "1",
     "Collectives: every call sends a 24-byte digest of its arguments to the next rank, so ranks that disagree "
     "(count, type, op, root, codec, algorithm) fail before any data is used; 0 skips it (must match on all ranks)."},
    {"RDMACOLL_ABORT_ON_ERROR", Type::Bool, "1",
     "Collectives: a rank whose call fails tells every peer, which then fail at once with its reason; 0: each "
     "rank waits for its own deadline."},
    {"RDMACOLL_DATA_PATH", Type::String, "auto",
     "Collectives: how data reaches a peer: write (one-sided, into its pool), send (tagged messages) or auto "
     "(write where the transport writes directly, send where it would emulate writes, as UCX over tcp does; "
     "over UCX, chunks up to 8 KiB always as one message)."},
    {"RDMACOLL_SIMD", Type::String, "auto",
     "Compression codecs' kernels: auto (AVX2 when the CPU has AVX2, FMA and F16C), avx2 or portable; same results."},
    // Read by the scripts (install-deps.sh, tests/guest/rdmacoll-guest), declared here so
    // there is one list and rdmacoll-info does not flag them as typos.
    {"RDMACOLL_KERNEL_DIR", Type::String, "/var/cache/rdmacoll/kernel",
     "Scripts: where install-deps.sh unpacks Debian's kernel for the soft-RoCE guest."},
    {"RDMACOLL_DEMO_EPOCHS", Type::Int, "3", "Scripts: epochs per codec in scripts/demo.sh's training runs."},
    {"RDMACOLL_GUEST_DIR", Type::String, "/var/tmp/rdmacoll-guest",
     "Scripts: the guest harness's cache (initramfs) and job files."},
    {"RDMACOLL_LINK", Type::String, "",
     "Set by rdmacoll-run --link RATE to RATE (e.g. 100mbit): the rate-limited link this rank runs behind, "
     "for programs to report; unset: no such link."},
};

const Spec& find(std::string_view name) {
  for (const Spec& s : kSpecs)
    if (s.name == name) return s;
  throw std::logic_error("rdmacoll: setting " + std::string(name) + " is not declared in settings.cc");
}

std::string_view type_name(Type t) {
  switch (t) {
    case Type::String: return "string";
    case Type::Int: return "int";
    case Type::Bool: return "bool";
    case Type::Seconds: return "seconds";
    case Type::Bytes: return "bytes";
  }
  return "?";
}

std::string effective(const Spec& s) {
  auto v = raw(s.name);
  return v ? *v : std::string(s.default_value);
}

[[noreturn]] void bad(std::string_view name, std::string_view value, std::string_view expected) {
  throw ConfigError(std::string(name) + "='" + std::string(value) + "' is not " + std::string(expected) +
                    "; fix or unset it (rdmacoll-info --settings lists every setting)");
}

}  // namespace

std::span<const Spec> all() { return kSpecs; }

std::optional<std::string> raw(std::string_view name) {
  const Spec& s = find(name);
  // Request::wait() reads RDMACOLL_TIMEOUT on every call: build the C string on the stack, not
  // the heap (every declared name fits).
  char cname[64];
  if (s.name.size() >= sizeof cname) throw std::logic_error("rdmacoll: setting name " + std::string(s.name) + " too long");
  std::memcpy(cname, s.name.data(), s.name.size());
  cname[s.name.size()] = '\0';
  const char* v = std::getenv(cname);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

int64_t parse_int(std::string_view name, std::string_view value) {
  std::string v(value);
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v.c_str(), &end, 0);
  if (v.empty() || errno != 0 || end == nullptr || *end != '\0') bad(name, value, "an integer");
  return x;
}

int64_t parse_bytes(std::string_view name, std::string_view value) {
  constexpr std::string_view kExpected = "a byte count (e.g. 65536, 64K, 256M, 1G: powers of 2)";
  std::string v(value);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || errno != 0 || end == v.c_str() || x < 0) bad(name, value, kExpected);
  std::string unit(end);
  for (char& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (unit.size() > 2 && unit.ends_with("ib")) unit.resize(unit.size() - 2);
  else if (unit.size() > 1 && unit.ends_with("b")) unit.resize(unit.size() - 1);
  else if (unit == "b") unit.clear();
  int shift = -1;
  if (unit.empty()) shift = 0;
  else if (unit == "k") shift = 10;
  else if (unit == "m") shift = 20;
  else if (unit == "g") shift = 30;
  if (shift < 0 || x > (int64_t{1} << (62 - shift))) bad(name, value, kExpected);
  return static_cast<int64_t>(x) << shift;
}

bool parse_bool(std::string_view name, std::string_view value) {
  if (value == "1" || value == "true" || value == "yes" || value == "on") return true;
  if (value == "0" || value == "false" || value == "no" || value == "off") return false;
  bad(name, value, "a boolean (1/0, true/false, yes/no, on/off)");
}

double parse_seconds(std::string_view name, std::string_view value) {
  std::string v(value);
  char* end = nullptr;
  errno = 0;
  double x = std::strtod(v.c_str(), &end);
  if (v.empty() || errno != 0 || end == v.c_str() || !std::isfinite(x) || x < 0)
    bad(name, value, "a duration (e.g. 30, 2.5, 500ms, 2m)");
  std::string_view unit(end);
  if (unit.empty() || unit == "s") return x;
  if (unit == "ms") return x / 1000.0;
  if (unit == "m") return x * 60.0;
  bad(name, value, "a duration (e.g. 30, 2.5, 500ms, 2m)");
}

std::string get_string(std::string_view name) { return effective(find(name)); }

std::optional<int64_t> get_int(std::string_view name) {
  const Spec& s = find(name);
  std::string v = effective(s);
  if (v.empty()) return std::nullopt;
  return s.type == Type::Bytes ? parse_bytes(s.name, v) : parse_int(s.name, v);
}

bool get_bool(std::string_view name) {
  const Spec& s = find(name);
  return parse_bool(s.name, effective(s));
}

double get_seconds(std::string_view name) {
  const Spec& s = find(name);
  return parse_seconds(s.name, effective(s));
}

std::string unknown_in_environment() {
  std::string out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (!kv.starts_with("RDMACOLL_")) continue;
    std::string_view name = kv.substr(0, kv.find('='));
    bool known = false;
    for (const Spec& s : kSpecs) known = known || s.name == name;
    if (!known) out += (out.empty() ? "" : " ") + std::string(name);
  }
  return out;
}

std::string malformed_in_environment() {
  std::string out;
  for (const Spec& s : kSpecs) {
    const auto v = raw(s.name);
    if (!v) continue;
    try {
      switch (s.type) {
        case Type::String: break;
        case Type::Int: parse_int(s.name, *v); break;
        case Type::Bool: parse_bool(s.name, *v); break;
        case Type::Seconds: parse_seconds(s.name, *v); break;
        case Type::Bytes: parse_bytes(s.name, *v); break;
      }
    } catch (const ConfigError& e) {
      out += std::string(e.what()) + "\n";
    }
  }
  return out;
}

void print(std::ostream& out) {
  for (const Spec& s : kSpecs) {
    auto v = raw(s.name);
    std::string shown = v ? *v : (s.default_value.empty() ? "(auto)" : std::string(s.default_value));
    if (v && s.name == "RDMACOLL_JOB_TOKEN") shown = "(set, hidden)";  // a secret: never printed
    out << std::left << std::setw(24) << s.name << ' ' << std::setw(8) << type_name(s.type) << ' '
        << std::setw(16) << shown << ' ' << std::setw(8) << (v ? "env" : "default") << ' ' << s.doc
        << '\n';
  }
}

}  // namespace rdmacoll::settings
