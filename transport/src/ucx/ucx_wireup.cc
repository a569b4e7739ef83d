// Connecting the UCX transport's endpoints: the two wire-up modes, the choice between them,
// and the hello exchange that proves every endpoint works before create() returns.
//
//   address   every rank publishes its worker address in the store and creates one endpoint
//             per rank from it (ucp_ep_create by address; what MPI does). For rc_verbs, UCX
//             then needs UD as an auxiliary transport, which times out on soft-RoCE (rxe).
//
//   sockaddr  every rank listens (ucp_listener on LISTEN_IP:0) and publishes ip:port; for each
//             pair the lower rank connects to the higher rank's listener, and the higher rank
//             creates its endpoint from the connection request (the connecting rank is known
//             from its worker's client id). Each rank also connects to its own listener, so
//             sending to oneself takes the same path. Goes through a UCX connection manager
//             (rdmacm on RDMA devices, tcp elsewhere): what works on rxe.
//
//   rank:          0            1            2
//                  |---------->|            |        lower -> higher: client endpoint
//                  |----------------------->|        higher: endpoint from conn_request
//                               |---------->|
//
// Then each rank sends a hello (its rank and world size) on the internal tag space to every
// rank, itself included, and waits for every rank's hello; a barrier in the store ends it.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "conn_data.h"
#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"
#include "ucx/ucx_transport.h"

namespace rdmacoll::transport {
namespace {

constexpr uint16_t kAddressMsg = conn::kUcxAddress, kListenMsg = conn::kUcxListen;

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    std::string item(s.substr(start, end - start));
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

// "rxe0:1" -> {"rxe0", 1}; "eth0" -> {"eth0", 1}.
std::pair<std::string, int> device_and_port(const std::string& d) {
  auto colon = d.find(':');
  if (colon == std::string::npos) return {d, 1};
  return {d.substr(0, colon), std::atoi(d.c_str() + colon + 1)};
}

constexpr const char* kSysIb = "/sys/class/infiniband";

std::vector<std::string> rdma_devices() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(kSysIb, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// The network interfaces an RDMA device's port runs over (RoCE: the netdev of each GID;
// rxe also names its netdev in "parent").
std::vector<std::string> netdevs_of(const std::string& device, int port) {
  std::vector<std::string> out;
  std::filesystem::path base = std::filesystem::path(kSysIb) / device;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(base / "ports" / std::to_string(port) / "gid_attrs" / "ndevs", ec)) {
    std::string name = read_line(e.path());
    if (!name.empty() && std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  std::string parent = read_line(base / "parent");
  if (!parent.empty() && std::find(out.begin(), out.end(), parent) == out.end()) out.push_back(parent);
  return out;
}

std::optional<std::string> ipv4_of_interface(const std::string& ifname) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (ifaddrs* a = list; a != nullptr && !found; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET || ifname != a->ifa_name) continue;
    char buf[INET_ADDRSTRLEN] = {};
    sockaddr_in sin{};
    std::memcpy(&sin, a->ifa_addr, sizeof sin);
    if (inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf) != nullptr) found = buf;
  }
  freeifaddrs(list);
  return found;
}

// The local address the kernel would send from to reach `host` (no packet is sent).
std::optional<std::string> route_source_to(const std::string& host) {
  if (host.empty()) return std::nullopt;
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(host.c_str(), "9", &hints, &res) != 0 || res == nullptr) return std::nullopt;
  std::optional<std::string> found;
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
    sockaddr_in local{};
    socklen_t len = sizeof local;
    char buf[INET_ADDRSTRLEN] = {};
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
        inet_ntop(AF_INET, &local.sin_addr, buf, sizeof buf) != nullptr)
      found = buf;
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(res);
  return found;
}

// The address this rank's listener binds to (RDMACOLL_UCX_LISTEN_ADDR's documented rule):
//  1. RDMACOLL_UCX_LISTEN_ADDR, if set;
//  2. the IPv4 address of the first device in UCX_NET_DEVICES that has one: an RDMA device
//     stands for its network interface (rxe0:1 -> rd0), anything else is an interface name;
//     with UCX_NET_DEVICES unset, the RDMA devices present, in name order;
//  3. the local address of the route to the rendezvous host (RDMACOLL_ADDR's host);
//  4. 127.0.0.1.
std::string choose_listen_ip(const bootstrap::World& world) {
  if (auto v = settings::raw("RDMACOLL_UCX_LISTEN_ADDR")) return *v;
  auto all = rdma_devices();
  std::vector<std::string> devices;
  if (auto nets = env("UCX_NET_DEVICES"); nets && *nets != "all")
    devices = split(*nets, ',');
  else
    devices = all;
  for (const auto& d : devices) {
    auto [name, port] = device_and_port(d);
    std::vector<std::string> ifs =
        std::find(all.begin(), all.end(), name) != all.end() ? netdevs_of(name, port) : std::vector<std::string>{name};
    for (const auto& i : ifs)
      if (auto ip = ipv4_of_interface(i)) {
        RDMACOLL_DEBUG(kUcx, "listening on %s (%s of %s)", ip->c_str(), i.c_str(), d.c_str());
        return *ip;
      }
  }
  if (auto ip = route_source_to(world.info.host)) return *ip;
  return "127.0.0.1";
}

// Every rank must wire up the same way; the message type published says how a rank does.
void check_same_wireup(uint16_t type, uint16_t expected, int peer) {
  if (type == expected) return;
  if (type == kAddressMsg || type == kListenMsg) {
    auto mode = [](uint16_t t) { return t == kAddressMsg ? "address" : "sockaddr"; };
    throw ConfigError("rank " + std::to_string(peer) + " wires UCX up by " + mode(type) + ", this rank by " +
                      mode(expected) +
                      ": set the same RDMACOLL_UCX_WIREUP on every rank (auto follows UCX_TLS and UCX_NET_DEVICES, "
                      "which must agree too)");
  }
  throw ProtocolError("rank " + std::to_string(peer) + " published no UCX connection data (message type " +
                      std::to_string(type) + ")");
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s;
  for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
  return s;
}

// What the endpoint's lanes say UCX uses: transports and devices as UCX names them, and for an
// RDMA device ("rxe0:1") its port and link layer from sysfs. UCX picks GID and MTU itself and
// does not report them, so those stay unknown. Without lanes (UCX printed something the parser
// does not understand), what was configured, marked as such.
TransportInfo ucx_info(const std::vector<ucx::Lane>& lanes, const std::optional<std::string>& tls,
                       const std::optional<std::string>& nets) {
  TransportInfo info;
  info.backend = Backend::Ucx;
  auto add = [](std::string& list, const std::string& item) {
    if (item.empty()) return;
    for (const auto& have : split(list, ','))
      if (have == item) return;
    list += (list.empty() ? "" : ",") + item;
  };
  const auto ib = rdma_devices();
  for (const auto& l : lanes) {
    if (l.transport == "cm") continue;  // how the endpoint was connected, not what carries data
    add(info.qp_type, l.transport);
    add(info.device, l.device);
    auto [dev, port] = device_and_port(l.device);
    if (info.port == 0 && std::find(ib.begin(), ib.end(), dev) != ib.end()) {
      info.port = port;
      info.link_layer = read_line(std::filesystem::path(kSysIb) / dev / "ports" / std::to_string(port) / "link_layer");
    }
  }
  if (info.qp_type.empty()) {
    info.qp_type = "configured: UCX_TLS=" + tls.value_or("all");
    info.device = "configured: UCX_NET_DEVICES=" + nets.value_or("all");
  }
  return info;
}

}  // namespace

std::string_view to_string(UcxWireup w) { return w == UcxWireup::Address ? "address" : "sockaddr"; }

UcxWireup choose_ucx_wireup(std::string_view setting, const std::optional<std::string>& ucx_tls,
                            const std::optional<std::string>& ucx_net_devices,
                            const std::vector<std::string>& rdma_devices) {
  if (setting == "address") return UcxWireup::Address;
  if (setting == "sockaddr") return UcxWireup::Sockaddr;
  if (setting != "auto")
    throw ConfigError("RDMACOLL_UCX_WIREUP='" + std::string(setting) + "' is not address, sockaddr or auto");
  auto is_rxe = [](const std::string& d) { return d.rfind("rxe", 0) == 0; };
  if (ucx_net_devices && *ucx_net_devices != "all") {
    for (const auto& d : split(*ucx_net_devices, ','))
      if (is_rxe(device_and_port(d).first)) return UcxWireup::Sockaddr;
    return UcxWireup::Address;
  }
  bool rc_allowed = !ucx_tls || ucx_tls->front() == '^';
  if (ucx_tls)
    for (const auto& t : split(*ucx_tls, ','))
      rc_allowed = rc_allowed || t == "all" || t == "rc" || t == "rc_v" || t == "rc_verbs" || t == "rc_x" ||
                   t == "rc_mlx5" || t == "ib";
  if (rc_allowed && std::any_of(rdma_devices.begin(), rdma_devices.end(), is_rxe)) return UcxWireup::Sockaddr;
  return UcxWireup::Address;
}

bool ucx_uses_rdma(const std::optional<std::string>& ucx_tls, const std::optional<std::string>& ucx_net_devices,
                   const std::vector<std::string>& rdma_devices) {
  if (ucx_net_devices && *ucx_net_devices != "all") {
    for (const auto& d : split(*ucx_net_devices, ','))
      if (std::find(rdma_devices.begin(), rdma_devices.end(), device_and_port(d).first) != rdma_devices.end())
        return true;
    return false;
  }
  if (rdma_devices.empty()) return false;
  if (!ucx_tls || ucx_tls->front() == '^') return true;
  for (const auto& t : split(*ucx_tls, ','))
    if (t == "all" || t == "ib" || t.rfind("rc", 0) == 0 || t.rfind("ud", 0) == 0 || t.rfind("dc", 0) == 0) return true;
  return false;
}

void UcxTransport::check_memlock() const {
  if (!ucx_uses_rdma(env("UCX_TLS"), env("UCX_NET_DEVICES"), rdma_devices())) return;
  rlimit lim{};
  if (getrlimit(RLIMIT_MEMLOCK, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= kUcxMinMemlock) return;
  // CAP_IPC_LOCK (bit 14 of the effective set) lifts the limit, as it does for root.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("CapEff:", 0) == 0 && (std::stoull(line.substr(7), nullptr, 16) >> 14 & 1)) return;
  throw ConfigError("rank " + std::to_string(rank()) + ": the locked-memory limit is " +
                    std::to_string(lim.rlim_cur >> 10) + " KiB (`ulimit -l`), but UCX's RDMA transports pin about " +
                    std::to_string(kUcxMinMemlock >> 20) +
                    " MiB of their own buffers per process and retry forever when they cannot; raise it: `ulimit -l "
                    "unlimited`, memlock in /etc/security/limits.conf, LimitMEMLOCK= under systemd, --ulimit "
                    "memlock=-1 for docker");
}

ucp_ep_params_t UcxTransport::ep_params(int peer) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.err_handler.cb = &on_ep_error;
  params.err_handler.arg = &peers_[static_cast<size_t>(peer)];
  return params;
}

void UcxTransport::connect(bootstrap::World& world) {
  const int me = rank(), n = size();
  wireup_ = choose_ucx_wireup(settings::get_string("RDMACOLL_UCX_WIREUP"), env("UCX_TLS"), env("UCX_NET_DEVICES"),
                              rdma_devices());
  auto deadline = bootstrap::default_deadline();
  // Every transport made on this store gets its own keys (a process may make several).
  int64_t generation = world.store->add("ucx/transports/" + std::to_string(me), 1);
  std::string prefix = "ucx/" + std::to_string(generation);
  // Every rank's hellos are signed with the job token over both ends' nonces (conn_data.h).
  key_ = bootstrap::auth::key_of(bootstrap::job_token());
  nonces_.assign(static_cast<size_t>(n), {});
  nonces_[static_cast<size_t>(me)] = bootstrap::auth::random_nonce();
  if (wireup_ == UcxWireup::Address)
    connect_by_address(world, prefix, deadline);
  else
    connect_by_sockaddr(world, prefix, deadline);
  bootstrap::barrier(*world.store, prefix + "/connected", me, n, deadline);
  for (auto& p : peers_) p.counters = {};  // count the caller's traffic only

  for (auto& p : peers_) p.direct_writes = p.rank == me || ucx::puts_directly(ucx::endpoint_lanes(p.ep->get()));
  const Peer& probe = peers_[static_cast<size_t>(n > 1 ? (me + 1) % n : me)];
  auto lanes = ucx::endpoint_lanes(probe.ep->get());
  auto tls = env("UCX_TLS"), nets = env("UCX_NET_DEVICES");
  info_ = ucx_info(lanes, tls, nets);
  describe_ = "ucx " + (lanes.empty() ? std::string("(transports unknown)") : ucx::to_string(lanes)) + "; wireup " +
              std::string(to_string(wireup_)) + (listener_ ? " via " + listener_->ip() : std::string()) +
              ", UCX_TLS=" + tls.value_or("(default)") + (nets ? ", UCX_NET_DEVICES=" + *nets : std::string()) +
              (probe.ep->handles_peer_failure() ? "" : ", no peer failure detection") + ", " +
              std::string(to_string(options().progress)) + " progress";
  RDMACOLL_INFO(kUcx, "rank %d connected to %d ranks: %s", me, n, describe_.c_str());
}

void UcxTransport::connect_by_address(bootstrap::World& world, const std::string& prefix,
                                      bootstrap::Deadline deadline) {
  const int me = rank(), n = size();
  conn::UcxAddress mine{static_cast<uint32_t>(me), static_cast<uint32_t>(n), nonces_[static_cast<size_t>(me)], {}};
  auto worker_address = ucx::worker_address(worker_);
  mine.address.assign(worker_address.begin(), worker_address.end());
  auto all = bootstrap::all_gather(*world.store, prefix, me, n, conn::encode(mine), deadline);
  std::vector<std::string> where(static_cast<size_t>(n), "its worker address");
  bool peer_errors = true;  // until an endpoint finds the transports lack it
  for (int p = 0; p < n; ++p) {
    const auto& published = all[static_cast<size_t>(p)];
    check_same_wireup(conn::peek_type(published, "UCX connection data of rank " + std::to_string(p)), kAddressMsg, p);
    conn::UcxAddress theirs = conn::decode_ucx_address(published, p, n);
    nonces_[static_cast<size_t>(p)] = theirs.nonce;
    std::vector<uint8_t>& address = theirs.address;
    ucp_ep_params_t params = ep_params(p);
    params.field_mask |= UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    params.address = reinterpret_cast<const ucp_address_t*>(address.data());
    peers_[static_cast<size_t>(p)].ep = std::make_unique<ucx::Endpoint>(
        worker_, params, p,
        "check that UCX_TLS/UCX_NET_DEVICES leave a transport both ranks have (`ucx_info -d`); on soft-RoCE "
        "use RDMACOLL_UCX_WIREUP=sockaddr (address wire-up needs UD, which times out on rxe)",
        peer_errors);
    peer_errors = peers_[static_cast<size_t>(p)].ep->handles_peer_failure();
  }
  exchange_hellos(deadline, where);
}

void UcxTransport::connect_by_sockaddr(bootstrap::World& world, const std::string& prefix,
                                       bootstrap::Deadline deadline) {
  const int me = rank(), n = size();
  const std::string ip = choose_listen_ip(world);
  accepting_ = true;
  listener_ = std::make_unique<ucx::Listener>(worker_, ip, 0, &on_conn_request, this);
  RDMACOLL_DEBUG(kUcx, "rank %d listens on %s:%u", me, ip.c_str(), listener_->port());
  conn::UcxListen mine{static_cast<uint32_t>(me), static_cast<uint32_t>(n), nonces_[static_cast<size_t>(me)], ip,
                       listener_->port()};
  auto all = bootstrap::all_gather(*world.store, prefix, me, n, conn::encode(mine), deadline);
  std::vector<std::string> where(static_cast<size_t>(n));
  std::vector<sockaddr_in> addrs(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) {
    const auto& published = all[static_cast<size_t>(p)];
    check_same_wireup(conn::peek_type(published, "UCX connection data of rank " + std::to_string(p)), kListenMsg, p);
    conn::UcxListen theirs = conn::decode_ucx_listen(published, p, n);
    nonces_[static_cast<size_t>(p)] = theirs.nonce;
    const std::string& peer_ip = theirs.ip;
    const uint16_t port = theirs.port;
    where[static_cast<size_t>(p)] = "listener " + peer_ip + ":" + std::to_string(port);
    sockaddr_in& sa = addrs[static_cast<size_t>(p)];
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, peer_ip.c_str(), &sa.sin_addr) != 1)
      throw ProtocolError("rank " + std::to_string(p) + " published a bad listener address '" + peer_ip + "'");
  }
  // The lower rank of each pair connects; a rank also connects to itself.
  for (int p = me; p < n; ++p) {
    ucp_ep_params_t params = ep_params(p);
    params.field_mask |= UCP_EP_PARAM_FIELD_SOCK_ADDR | UCP_EP_PARAM_FIELD_FLAGS;
    params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER | UCP_EP_PARAMS_FLAGS_SEND_CLIENT_ID;
    params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&addrs[static_cast<size_t>(p)]);
    params.sockaddr.addrlen = sizeof(sockaddr_in);
    peers_[static_cast<size_t>(p)].ep = std::make_unique<ucx::Endpoint>(
        worker_, params, p,
        "connecting to rank " + std::to_string(p) + "'s " + where[static_cast<size_t>(p)] +
            " needs a UCX connection manager for it (`ucx_info -d` lists them: rdmacm needs `modprobe "
            "rdma_ucm`)");
  }
  exchange_hellos(deadline, where);
  accepting_ = false;
}

void UcxTransport::on_conn_request(ucp_conn_request_h request, void* arg) {
  auto* t = static_cast<UcxTransport*>(arg);
  t->conn_requests_.push_back(request);
  ++t->events_;
}

void UcxTransport::accept_connections() {
  std::vector<ucp_conn_request_h> requests;
  requests.swap(conn_requests_);
  const int me = rank(), n = size();
  for (ucp_conn_request_h req : requests) {
    ucp_conn_request_attr_t attr{};
    attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ID;
    ucs_status_t st = ucp_conn_request_query(req, &attr);
    // Only lower ranks (and this rank itself) connect here, once each, during wire-up.
    int from = st == UCS_OK && attr.client_id < static_cast<uint64_t>(n) ? static_cast<int>(attr.client_id) : -1;
    bool expected = accepting_ && from >= 0 && from <= me &&
                    (from == me ? self_accepted_ == nullptr : peers_[static_cast<size_t>(from)].ep == nullptr);
    if (!expected) {
      RDMACOLL_WARN(kUcx, "rank %d: rejecting an unexpected UCX connection request (client id %lld%s)", me,
                    st == UCS_OK ? static_cast<long long>(attr.client_id) : -1LL, accepting_ ? "" : ", after wire-up");
      listener_->reject(req);
      continue;
    }
    ucp_ep_params_t params = ep_params(from);
    params.field_mask |= UCP_EP_PARAM_FIELD_CONN_REQUEST;
    params.conn_request = req;
    auto ep = std::make_unique<ucx::Endpoint>(worker_, params, from,
                                              "accepting rank " + std::to_string(from) + "'s connection");
    if (from == me)
      self_accepted_ = std::move(ep);
    else
      peers_[static_cast<size_t>(from)].ep = std::move(ep);
  }
}

void UcxTransport::exchange_hellos(bootstrap::Deadline deadline, const std::vector<std::string>& where) {
  const int n = size();
  std::vector<std::shared_ptr<Request::State>> in(static_cast<size_t>(n)), out(static_cast<size_t>(n));
  for (int p = 0; p < n; ++p) in[static_cast<size_t>(p)] = post_hello_recv(p);
  for (;;) {
    for (int p = 0; p < n; ++p)  // endpoints accepted since the last round get their hello too
      if (!out[static_cast<size_t>(p)] && peers_[static_cast<size_t>(p)].ep)
        out[static_cast<size_t>(p)] = post_hello_send(p);
    bool done = true;
    for (int p = 0; p < n; ++p) {
      for (const auto* s : {&in[static_cast<size_t>(p)], &out[static_cast<size_t>(p)]}) {
        if (*s && (*s)->status == Request::State::Status::Failed) {
          try {
            std::rethrow_exception((*s)->error);
          } catch (const Error& e) {
            throw TransportError("UCX wire-up (" + std::string(to_string(wireup_)) + ") with rank " +
                                 std::to_string(p) + " through " + where[static_cast<size_t>(p)] +
                                 " failed: " + e.what());
          }
        }
        done = done && *s && !(*s)->pending();
      }
    }
    if (done) return;
    auto now = bootstrap::Clock::now();
    if (now >= deadline) {
      std::vector<int> no_conn, no_hello, undelivered;
      for (int p = 0; p < n; ++p) {
        if (!peers_[static_cast<size_t>(p)].ep) no_conn.push_back(p);
        if (in[static_cast<size_t>(p)]->pending()) no_hello.push_back(p);
        if (out[static_cast<size_t>(p)] && out[static_cast<size_t>(p)]->pending()) undelivered.push_back(p);
      }
      std::string msg = "rank " + std::to_string(rank()) + ": UCX wire-up (" + std::string(to_string(wireup_)) +
                        ") did not finish before the deadline (RDMACOLL_TIMEOUT):";
      if (!no_conn.empty()) msg += " ranks " + rank_list(no_conn) + " never connected to this rank's listener;";
      if (!no_hello.empty()) msg += " no hello from ranks " + rank_list(no_hello) + ";";
      if (!undelivered.empty()) msg += " hello to ranks " + rank_list(undelivered) + " not delivered;";
      msg += wireup_ == UcxWireup::Address
                 ? " on soft-RoCE, address wire-up hangs (UD times out on rxe): use RDMACOLL_UCX_WIREUP=sockaddr"
                 : " check that the listener addresses are reachable (RDMACOLL_UCX_LISTEN_ADDR)";
      throw TimeoutError(msg);
    }
    if (!progress()) {
      if (efd_ >= 0)
        wait_for_event(std::min(deadline, now + std::chrono::milliseconds(10)));
      else
        std::this_thread::yield();
    }
  }
}

}  // namespace rdmacoll::transport
