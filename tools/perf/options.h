// Command line of rdmacoll-bw and rdmacoll-lat: perftest's flags where perftest has one
// (-d -i -x -p -s -a -n -t -F), nccl-tests' size sweep (-b -e -f), and our own long options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rdmacoll/error.h"
#include "rdmacoll/transport/transport.h"

namespace rdmacoll::perf {

enum class Tool { Bw, Lat };
std::string_view tool_name(Tool t);  // "rdmacoll-bw" | "rdmacoll-lat"

// The operation measured. Write polls the last byte of the destination (as ib_write_lat);
// WriteImm waits for the write-with-immediate notification; Send is tagged send/recv; Read is
// a one-sided read of the partner's window.
enum class Op { Write, WriteImm, Send, Read };
std::string_view to_string(Op op);
Op parse_op(std::string_view s);  // ConfigError listing the choices

// Bad command line: the tool prints the message and its usage, and exits 2.
class UsageError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

struct Options {
  Tool tool = Tool::Bw;
  Op op = Op::Write;
  transport::Backend backend = transport::Backend::Ucx;
  transport::ProgressMode progress = transport::ProgressMode::Poll;
  bool progress_given = false;  // --progress on the command line (else the tools choose)
  std::string server;         // client mode: the server's host ("" = server or launched mode)
  std::string bind = "0.0.0.0";  // server mode: where to listen
  uint16_t port = 18515;         // perftest's default port
  std::string device;            // -d: RDMA device (verbs) or UCX net device
  int ib_port = 0;               // -i: 0 = first active port
  std::optional<int> gid_index;  // -x
  std::vector<size_t> sizes;     // message sizes in bytes, ascending
  size_t iters = 0;
  size_t warmup = 0;
  size_t tx_depth = 0;  // bw: operations in flight
  bool check = false;
  bool json = false;
  bool gbits = false;  // bw: Gb/s instead of MiB/s
  double timeout = 0;  // seconds; 0 = RDMACOLL_TIMEOUT
  bool help = false;
  // Long names of the measurement flags given explicitly (a server checks them against the
  // client's: "iters", "sizes", "op", "tx-depth", "warmup", "check", "transport").
  std::set<std::string> explicit_flags;
};

// Parses argv (without argv[0]). Defaults follow perftest: bw 65536 B x 5000 iterations with
// 128 in flight, lat 2 B x 1000 iterations. Throws UsageError naming the flag.
Options parse(Tool tool, const std::vector<std::string>& args);
std::string usage(Tool tool);

// "4096", "64K", "1M", "1G" (binary multiples). Throws UsageError naming `flag`.
size_t parse_size(std::string_view flag, std::string_view value);
// An integer in [lo, hi]. Throws UsageError naming `flag`.
int64_t parse_count(std::string_view flag, std::string_view value, int64_t lo, int64_t hi);
// --timeout SEC as settings::parse_seconds reads it ("30", "2.5", "500ms", "2m"), positive.
// Throws UsageError.
double parse_timeout(std::string_view value);

// One command-line flag of a tool: -x and/or --long-name, with or without a value.
struct Flag {
  char short_name;  // 0 if none
  std::string_view long_name;
  bool takes_value;
};
struct FlagValue {
  const Flag* flag;
  std::string value;  // empty for flags without one
};
// Reads the flag args[i] names ("-x V", "--name V", "--name=V"; a value is the next argument,
// and i moves past it). nullopt: args[i] is not a flag (a positional argument). Throws
// UsageError for an unknown flag, a missing value, or a value given to a flag without one.
std::optional<FlagValue> read_flag(std::span<const Flag> flags, const std::vector<std::string>& args, size_t& i);
// begin, begin*factor, ... up to end (inclusive), as nccl-tests' -b/-e/-f.
std::vector<size_t> size_sweep(size_t begin, size_t end, size_t factor);

// The measurement parameters both sides of a pair must agree on, as one comparable line
// ("op=write sizes=8,4096 iters=1000 ..."), and back.
std::string measurement_key(const Options& o);
void apply_measurement_key(Options& o, std::string_view key);

}  // namespace rdmacoll::perf
