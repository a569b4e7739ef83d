// Device, port and GID choice on synthetic GID tables (no device needed).
#include <gtest/gtest.h>

#include "rdmacoll/error.h"
#include "rdmacoll/transport/ib_info.h"

namespace rdmacoll::ib {
namespace {

GidEntry gid(int index, GidType type, std::array<uint8_t, 16> raw) {
  GidEntry g;
  g.index = index;
  g.type = type;
  g.raw = raw;
  return g;
}

const std::array<uint8_t, 16> kLinkLocal = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0, 0, 1};
const std::array<uint8_t, 16> kV4 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 77, 1};

// The table rxe shows: link-local v1/v2 first, then the IPv4-mapped v1/v2 pair.
std::vector<DeviceInfo> rxe_like() {
  DeviceInfo d;
  d.name = "rxe0";
  PortInfo p;
  p.port = 1;
  p.active = true;
  p.state = "ACTIVE";
  p.link_layer = "Ethernet";
  p.gids = {gid(0, GidType::RoCEv1, kLinkLocal), gid(1, GidType::RoCEv2, kLinkLocal), gid(2, GidType::RoCEv1, kV4),
            gid(3, GidType::RoCEv2, kV4)};
  d.ports.push_back(p);
  return {d};
}

TEST(GidSelect, PrefersRoCEv2Ipv4Mapped) {
  auto devs = rxe_like();
  EXPECT_EQ(select_gid(devs[0], devs[0].ports[0], std::nullopt), 3);
  EXPECT_EQ(devs[0].ports[0].gids[3].ipv4(), "192.168.77.1");
  EXPECT_TRUE(devs[0].ports[0].gids[3].ipv4_mapped());
  EXPECT_FALSE(devs[0].ports[0].gids[1].ipv4_mapped());
}

TEST(GidSelect, FallsBackToRoCEv2ThenAnything) {
  auto devs = rxe_like();
  auto& gids = devs[0].ports[0].gids;
  gids.pop_back();  // no v2 IPv4 left
  EXPECT_EQ(select_gid(devs[0], devs[0].ports[0], std::nullopt), 1);
  gids = {gid(5, GidType::IB, kLinkLocal)};
  EXPECT_EQ(select_gid(devs[0], devs[0].ports[0], std::nullopt), 5);
  gids.clear();
  EXPECT_THROW(select_gid(devs[0], devs[0].ports[0], std::nullopt), DeviceError);
}

TEST(GidSelect, OverrideMustBeInTheTable) {
  auto devs = rxe_like();
  EXPECT_EQ(select_gid(devs[0], devs[0].ports[0], 0), 0);
  try {
    select_gid(devs[0], devs[0].ports[0], 9);
    FAIL();
  } catch (const DeviceError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("RDMACOLL_IB_GID_INDEX=9"), std::string::npos) << m;
    EXPECT_NE(m.find("3 (RoCEv2 192.168.77.1)"), std::string::npos) << m;
  }
}

TEST(PortSelect, ByNameAndPortAndActivity) {
  auto devs = rxe_like();
  DeviceInfo down = devs[0];
  down.name = "mlx5_0";
  down.ports[0].active = false;
  down.ports[0].state = "DOWN";
  devs.insert(devs.begin(), down);
  EXPECT_EQ(select_port(devs, "").first->name, "rxe0");  // skips the down port
  EXPECT_EQ(select_port(devs, "rxe0:1").second->port, 1);
  try {
    select_port(devs, "mlx5_0:1");
    FAIL();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("DOWN"), std::string::npos) << e.what();
  }
  try {
    select_port(devs, "bogus");
    FAIL();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("rxe0:1 (ACTIVE)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(select_port({}, ""), DeviceError);
}

TEST(GidFormat, ToString) {
  EXPECT_EQ(gid(0, GidType::RoCEv2, kV4).to_string(), "0000:0000:0000:0000:0000:ffff:c0a8:4d01");
}

}  // namespace
}  // namespace rdmacoll::ib
