// rdmacoll-info: what rdmacoll sees on this host: RDMA devices, ports, GID tables, the device,
// port and GID it would pick, and the effective value of every RDMACOLL_* setting.
#include <cstring>
#include <iostream>
#include <string_view>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"
#include "rdmacoll/transport/ib_info.h"

namespace {

int usage(std::ostream& out, int code) {
  out << "usage: rdmacoll-info [--devices] [--settings] [--select]\n"
         "  --devices   list RDMA devices, ports and GID tables (default)\n"
         "  --select    print the device:port and GID index rdmacoll would use (RDMACOLL_IB_DEVICE,\n"
         "              RDMACOLL_IB_GID_INDEX); exits 1 when there is no usable port\n"
         "  --settings  print every RDMACOLL_* setting with its effective value and documentation\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  bool devices = false, show_settings = false, select = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--devices") devices = true;
    else if (a == "--settings") show_settings = true;
    else if (a == "--select") select = true;
    else if (a == "-h" || a == "--help") return usage(std::cout, 0);
    else {
      std::cerr << "rdmacoll-info: unknown argument '" << a << "'\n";
      return usage(std::cerr, 2);
    }
  }
  if (!devices && !show_settings && !select) devices = true;
  try {
    if (show_settings) {
      rdmacoll::settings::print(std::cout);
      std::string unknown = rdmacoll::settings::unknown_in_environment();
      if (!unknown.empty()) std::cout << "warning: unknown settings in the environment (typo?): " << unknown << "\n";
      // A value that does not parse fails every program that reads it: say so here, and exit 1.
      const std::string malformed = rdmacoll::settings::malformed_in_environment();
      if (!malformed.empty()) {
        std::cerr << malformed;
        return 1;
      }
    }
    if (devices || select) {
      auto list = rdmacoll::ib::list_devices();
      if (devices) std::cout << rdmacoll::ib::describe(list);
      if (select) {
        auto s = rdmacoll::ib::select_from_settings(list);
        std::cout << "selected: " << s.device << ":" << s.port << " gid_index " << s.gid_index << "\n";
      }
    }
  } catch (const rdmacoll::Error& e) {
    std::cerr << "rdmacoll-info: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
