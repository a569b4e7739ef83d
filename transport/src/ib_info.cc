#include "rdmacoll/transport/ib_info.h"

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <net/if.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "verbs/verbs.h"

namespace rdmacoll::ib {
namespace {

const char* port_state_name(ibv_port_state s) {
  switch (s) {
    case IBV_PORT_NOP: return "NOP";
    case IBV_PORT_DOWN: return "DOWN";
    case IBV_PORT_INIT: return "INIT";
    case IBV_PORT_ARMED: return "ARMED";
    case IBV_PORT_ACTIVE: return "ACTIVE";
    case IBV_PORT_ACTIVE_DEFER: return "ACTIVE_DEFER";
  }
  return "UNKNOWN";
}

std::string guid_string(uint64_t be_guid) {
  uint64_t g = be64toh(be_guid);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%04x:%04x:%04x", static_cast<unsigned>(g >> 48) & 0xffff,
                static_cast<unsigned>(g >> 32) & 0xffff, static_cast<unsigned>(g >> 16) & 0xffff,
                static_cast<unsigned>(g) & 0xffff);
  return buf;
}

GidEntry to_gid(const ibv_gid_entry& e) {
  GidEntry g;
  g.index = static_cast<int>(e.gid_index);
  g.type = e.gid_type == IBV_GID_TYPE_ROCE_V2   ? GidType::RoCEv2
           : e.gid_type == IBV_GID_TYPE_ROCE_V1 ? GidType::RoCEv1
                                                : GidType::IB;
  std::memcpy(g.raw.data(), e.gid.raw, 16);
  char ifname[IF_NAMESIZE] = {};
  if (e.ndev_ifindex != 0 && if_indextoname(e.ndev_ifindex, ifname) != nullptr) g.netdev = ifname;
  return g;
}

// Fills every port's GID list. One ibv_query_gid_table call, sized to exactly the sum of the
// ports' table lengths: the 6.1 kernel refuses (EINVAL) a larger array. Should the table call
// fail anyway, fall back to one ibv_query_gid_ex per index (ENODATA marks an empty entry).
void query_gids(ibv_context* ctx, std::vector<PortInfo>& ports, const std::vector<int>& table_lens) {
  size_t total = 0;
  for (int len : table_lens) total += static_cast<size_t>(len);
  std::vector<ibv_gid_entry> entries(std::max<size_t>(total, 1));
  ssize_t n = ibv_query_gid_table(ctx, entries.data(), entries.size(), 0);
  if (n >= 0) {
    for (ssize_t i = 0; i < n; ++i) {
      const ibv_gid_entry& e = entries[static_cast<size_t>(i)];
      for (PortInfo& p : ports)
        if (p.port == static_cast<int>(e.port_num)) p.gids.push_back(to_gid(e));
    }
    return;
  }
  for (size_t k = 0; k < ports.size(); ++k) {
    for (int i = 0; i < table_lens[k]; ++i) {
      ibv_gid_entry e{};
      int rc = ibv_query_gid_ex(ctx, static_cast<uint32_t>(ports[k].port), static_cast<uint32_t>(i), &e, 0);
      if (rc == ENODATA || (rc < 0 && errno == ENODATA)) continue;
      verbs::check_rc(rc, std::string("ibv_query_gid_ex(") + ctx->device->name + ", port " +
                              std::to_string(ports[k].port) + ", index " + std::to_string(i) + ")");
      ports[k].gids.push_back(to_gid(e));
    }
  }
}

std::string list_names(const std::vector<DeviceInfo>& devices) {
  if (devices.empty()) return "none (this host has no RDMA device; is the kernel built with RDMA support?)";
  std::string s;
  for (const DeviceInfo& d : devices)
    for (const PortInfo& p : d.ports)
      s += (s.empty() ? "" : ", ") + d.name + ":" + std::to_string(p.port) + " (" + p.state + ")";
  return s;
}

}  // namespace

std::string_view to_string(GidType t) {
  switch (t) {
    case GidType::IB: return "IB";
    case GidType::RoCEv1: return "RoCEv1";
    case GidType::RoCEv2: return "RoCEv2";
  }
  return "?";
}

bool GidEntry::ipv4_mapped() const {
  static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(raw.data(), prefix, 12) == 0;
}

std::string GidEntry::ipv4() const {
  if (!ipv4_mapped()) return "";
  char buf[INET_ADDRSTRLEN];
  return inet_ntop(AF_INET, raw.data() + 12, buf, sizeof buf) ? buf : "";
}

std::string GidEntry::to_string() const {
  char buf[48];
  char* p = buf;
  for (int i = 0; i < 16; i += 2)
    p += std::snprintf(p, sizeof buf - static_cast<size_t>(p - buf), "%s%02x%02x", i ? ":" : "", raw[i], raw[i + 1]);
  return buf;
}

std::vector<DeviceInfo> list_devices() {
  int num = 0;
  ibv_device** list = ibv_get_device_list(&num);
  if (list == nullptr) {
    // ENOSYS: no kernel support at all; that is "no devices", not an error.
    if (errno == ENOSYS) return {};
    verbs::fail("ibv_get_device_list()", errno);
  }
  std::unique_ptr<ibv_device*, void (*)(ibv_device**)> guard(list, ibv_free_device_list);
  std::vector<DeviceInfo> out;
  for (int i = 0; i < num; ++i) {
    DeviceInfo d;
    d.name = ibv_get_device_name(list[i]);
    verbs::ContextPtr ctx = verbs::open_device(d.name);
    ibv_device_attr attr{};
    verbs::check_rc(ibv_query_device(ctx.get(), &attr), "ibv_query_device(" + d.name + ")");
    d.node_guid = guid_string(attr.node_guid);
    d.fw_ver = attr.fw_ver;
    d.vendor_id = attr.vendor_id;
    d.vendor_part_id = attr.vendor_part_id;
    d.max_qp_wr = attr.max_qp_wr;
    d.max_sge = attr.max_sge;
    d.max_cqe = attr.max_cqe;
    d.max_mr_size = attr.max_mr_size;
    std::vector<int> table_lens;
    for (int port = 1; port <= attr.phys_port_cnt; ++port) {
      ibv_port_attr pa{};
      verbs::check_rc(ibv_query_port(ctx.get(), static_cast<uint8_t>(port), &pa),
                      "ibv_query_port(" + d.name + ", port " + std::to_string(port) + ")");
      PortInfo p;
      p.port = port;
      p.active = pa.state == IBV_PORT_ACTIVE;
      p.state = port_state_name(pa.state);
      p.link_layer = pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet" : "InfiniBand";
      p.active_mtu = verbs::mtu_bytes(pa.active_mtu);
      p.max_mtu = verbs::mtu_bytes(pa.max_mtu);
      p.lid = pa.lid;
      d.ports.push_back(std::move(p));
      table_lens.push_back(pa.gid_tbl_len);
    }
    query_gids(ctx.get(), d.ports, table_lens);
    out.push_back(std::move(d));
  }
  return out;
}

std::pair<const DeviceInfo*, const PortInfo*> select_port(const std::vector<DeviceInfo>& devices,
                                                          std::string_view spec) {
  std::string name(spec.substr(0, spec.find(':')));
  int want_port = 0;
  if (spec.find(':') != std::string_view::npos) {
    std::string_view ps = spec.substr(spec.find(':') + 1);
    want_port = static_cast<int>(settings::parse_int("RDMACOLL_IB_DEVICE port", ps));
  }
  for (const DeviceInfo& d : devices) {
    if (!name.empty() && d.name != name) continue;
    for (const PortInfo& p : d.ports) {
      if (want_port != 0 && p.port != want_port) continue;
      if (!p.active && (name.empty() || want_port == 0)) continue;
      if (!p.active)
        throw DeviceError("RDMA port " + d.name + ":" + std::to_string(p.port) + " is " + p.state +
                          ", not ACTIVE; check the link (for rxe: `rdma link` and the netdev's state)");
      return {&d, &p};
    }
  }
  if (spec.empty()) throw DeviceError("no RDMA device with an ACTIVE port; ports present: " + list_names(devices));
  throw DeviceError("RDMACOLL_IB_DEVICE='" + std::string(spec) + "' matches no active port; ports present: " +
                    list_names(devices));
}

int select_gid(const DeviceInfo& dev, const PortInfo& port, std::optional<int> override_index) {
  std::string where = dev.name + ":" + std::to_string(port.port);
  if (override_index) {
    std::string valid;
    for (const GidEntry& g : port.gids) {
      if (g.index == *override_index) return g.index;
      valid += (valid.empty() ? "" : ", ") + std::to_string(g.index) + " (" + std::string(to_string(g.type)) +
               (g.ipv4_mapped() ? " " + g.ipv4() : "") + ")";
    }
    throw DeviceError("RDMACOLL_IB_GID_INDEX=" + std::to_string(*override_index) + " is not a valid GID on " +
                      where + "; valid indices: " + (valid.empty() ? "none" : valid));
  }
  const GidEntry* best = nullptr;
  auto rank = [](const GidEntry& g) {
    if (g.type == GidType::RoCEv2) return g.ipv4_mapped() ? 4 : 3;
    return g.type == GidType::RoCEv1 ? 2 : 1;
  };
  for (const GidEntry& g : port.gids)
    if (best == nullptr || rank(g) > rank(*best)) best = &g;
  if (best == nullptr)
    throw DeviceError("the GID table of " + where +
                      " is empty; on RoCE, give the netdev an IP address (for rxe: `ip addr add` on its netdev)");
  return best->index;
}

Selection select_from_settings(const std::vector<DeviceInfo>& devices) {
  auto [dev, port] = select_port(devices, settings::get_string("RDMACOLL_IB_DEVICE"));
  std::optional<int64_t> gid = settings::get_int("RDMACOLL_IB_GID_INDEX");
  std::optional<int> gid_index;
  if (gid) gid_index = static_cast<int>(*gid);
  return {dev->name, port->port, select_gid(*dev, *port, gid_index)};
}

std::string describe(const std::vector<DeviceInfo>& devices) {
  std::ostringstream o;
  if (devices.empty()) o << "no RDMA devices found\n";
  for (const DeviceInfo& d : devices) {
    o << d.name << ": node_guid " << d.node_guid << ", fw " << (d.fw_ver.empty() ? "-" : d.fw_ver)
      << ", max_qp_wr " << d.max_qp_wr << ", max_cqe " << d.max_cqe << "\n";
    for (const PortInfo& p : d.ports) {
      o << "  port " << p.port << ": " << p.state << ", " << p.link_layer << ", active_mtu " << p.active_mtu
        << ", max_mtu " << p.max_mtu;
      if (p.link_layer == "InfiniBand") o << ", lid " << p.lid;
      o << "\n";
      for (const GidEntry& g : p.gids) {
        o << "    gid[" << g.index << "] " << g.to_string() << "  " << to_string(g.type);
        if (g.ipv4_mapped()) o << "  " << g.ipv4();
        if (!g.netdev.empty()) o << "  " << g.netdev;
        o << "\n";
      }
    }
  }
  return o.str();
}

}  // namespace rdmacoll::ib
