// What the RDMA devices of this host look like, in plain types (no verbs types leak out):
// devices, ports, GID tables, and the pure functions that pick a device, port and GID.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rdmacoll::ib {

enum class GidType { IB, RoCEv1, RoCEv2 };
std::string_view to_string(GidType t);

struct GidEntry {
  int index = 0;
  GidType type = GidType::IB;
  std::array<uint8_t, 16> raw{};
  std::string netdev;  // the Ethernet interface a RoCE GID belongs to ("" for IB)

  // ::ffff:a.b.c.d, the form a RoCEv2 GID takes for an IPv4 address.
  bool ipv4_mapped() const;
  std::string ipv4() const;       // "a.b.c.d" for an IPv4-mapped GID, else ""
  std::string to_string() const;  // "fe80:0000:...:0001"
};

struct PortInfo {
  int port = 1;
  bool active = false;
  std::string state;       // "ACTIVE", "DOWN", ...
  std::string link_layer;  // "Ethernet" or "InfiniBand"
  int active_mtu = 0;      // bytes (256..4096)
  int max_mtu = 0;
  uint16_t lid = 0;
  std::vector<GidEntry> gids;
};

struct DeviceInfo {
  std::string name;  // e.g. "rxe0", "mlx5_0"
  std::string node_guid;
  std::string fw_ver;
  uint32_t vendor_id = 0, vendor_part_id = 0;
  int max_qp_wr = 0, max_sge = 0, max_cqe = 0;
  uint64_t max_mr_size = 0;
  std::vector<PortInfo> ports;
};

// Every RDMA device and its ports, with GID tables. Empty when the host has none (the
// kernel has no RDMA support, or no device is configured). Throws DeviceError when a device
// exists but cannot be queried.
std::vector<DeviceInfo> list_devices();

struct Selection {
  std::string device;
  int port = 1;
  int gid_index = 0;
};

// Picks device and port: `spec` is RDMACOLL_IB_DEVICE's syntax, NAME[:PORT], or empty for
// the first device with an active port. Throws DeviceError listing what exists when nothing fits.
std::pair<const DeviceInfo*, const PortInfo*> select_port(const std::vector<DeviceInfo>& devices,
                                                          std::string_view spec);

// Picks the GID: `override_index` (RDMACOLL_IB_GID_INDEX) if given and present in the table;
// else the RoCEv2 IPv4-mapped GID, else any RoCEv2, else any RoCEv1/IB GID (index 0 on IB).
// Throws DeviceError naming the valid indices when the override is not in the table.
int select_gid(const DeviceInfo& dev, const PortInfo& port, std::optional<int> override_index);

// select_port + select_gid driven by RDMACOLL_IB_DEVICE and RDMACOLL_IB_GID_INDEX.
Selection select_from_settings(const std::vector<DeviceInfo>& devices);

// A human-readable multi-line summary (like ibv_devinfo + show_gids).
std::string describe(const std::vector<DeviceInfo>& devices);

}  // namespace rdmacoll::ib
