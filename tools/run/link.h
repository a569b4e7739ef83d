// rdmacoll-run --link: every rank in its own network namespace, joined to the others through a
// bridge by a veth pair whose two directions are rate-limited with tbf, like a NIC at RATE.
//
//   namespace rdmacoll-<pid>-hub                 namespace rdmacoll-<pid>-<r>
//   +--------------------------------+           +----------------------------------+
//   | bridge rc<pid>br               |           |  lo (up)                         |
//   |   +- rc<pid>h0  tbf: to rank 0 |<--veth--> |  rc<pid>r0  10.77.0.1/24         |
//   |   +- rc<pid>h1  tbf: to rank 1 |<--veth--> |  tbf: from rank 0 (egress)       |
//   |   ...                          |           +----------------------------------+
//   +--------------------------------+
//
// Every interface lives inside one of the job's namespaces, so removing the namespaces removes
// everything, and the addresses cannot collide with the host's networks or another job's.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rdmacoll::run {

// A rate in tc's syntax ("100mbit", "1gbit", "500kbit", "12.5mbps", "1gibit") in bits per second.
// Throws ConfigError naming the accepted units on anything else.
uint64_t parse_rate(std::string_view text);

// "A.B.C.0/24" (or "A.B.C.0", "A.B.C"): the first three octets, host order, shifted left by 8.
uint32_t parse_subnet(std::string_view text);

// tbf's token bucket and queue for a rate: the burst is two full-size Ethernet frames (3028
// bytes) up to 250 Mbit/s, and 128 KiB (or 100 us at the rate, if more) above; a packet may
// wait 50 ms in the queue before it is dropped. A message that fits in the burst crosses an
// idle link at memory speed, so a large burst makes small (e.g. compressed) messages look
// faster than the link; but below 64 KB (TCP's GSO packets on a veth) it costs CPU that fast
// links on this machine do not have (see tbf_params). One TCP stream gets 91-96% of the rate.
// `burst_bytes` overrides the burst (rdmacoll-run --link-burst).
struct TbfParams {
  uint64_t burst_bytes;
  int latency_ms;
};
TbfParams tbf_params(uint64_t rate_bps, std::optional<uint64_t> burst_bytes = std::nullopt);

// --link-burst: bytes, at least one full-size frame (1514) and at most 64 MiB.
uint64_t parse_burst(std::string_view text);

// Throws ConfigError unless this process has CAP_NET_ADMIN and CAP_SYS_ADMIN, naming the
// missing ones.
void require_privileges();

// Removes rdmacoll-<pid>-* namespaces left by launchers that are no longer running (killed with
// SIGKILL, or crashed). Prints what it removed to stderr.
void remove_stale_namespaces();

class LinkNetwork {
 public:
  // Builds the namespaces, bridge and links for `ranks` ranks on subnet `subnet` (see
  // parse_subnet), each direction of each link limited to `rate_bps` by tbf with `tbf`. Throws Error naming the command that failed; what was built is removed.
  LinkNetwork(int ranks, uint64_t rate_bps, uint32_t subnet, const TbfParams& tbf);
  ~LinkNetwork();  // removes every namespace; never throws
  LinkNetwork(const LinkNetwork&) = delete;
  LinkNetwork& operator=(const LinkNetwork&) = delete;

  std::string rank_namespace(int rank) const;
  std::string rank_device(int rank) const;
  std::string rank_ip(int rank) const;

  // In a forked child: joins rank's namespace and mounts a sysfs of it on a private /sys (as
  // `ip netns exec` does), so the program sees its own interfaces under /sys/class/net, which
  // is where UCX looks for tcp devices. Returns 0, or the errno of the step that failed, with
  // `step` naming it. Async-signal-safe enough for a child of a single-threaded parent.
  int enter(int rank, const char** step) const;

 private:
  std::string hub_namespace() const;
  void remove() noexcept;

  std::string prefix_;  // "rdmacoll-<pid>-"
  std::string ifprefix_;  // "rc<pid>"
  int ranks_;
  int created_ = 0;  // rank namespaces created so far
  bool hub_ = false;
  uint32_t subnet_;
};

}  // namespace rdmacoll::run
