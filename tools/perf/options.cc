#include "options.h"

#include <algorithm>
#include <charconv>
#include <sstream>

#include "rdmacoll/settings.h"

namespace rdmacoll::perf {

std::string_view tool_name(Tool t) { return t == Tool::Bw ? "rdmacoll-bw" : "rdmacoll-lat"; }

std::string_view to_string(Op op) {
  switch (op) {
    case Op::Write: return "write";
    case Op::WriteImm: return "write_imm";
    case Op::Send: return "send";
    case Op::Read: return "read";
  }
  return "?";
}

Op parse_op(std::string_view s) {
  for (Op op : {Op::Write, Op::WriteImm, Op::Send, Op::Read})
    if (s == to_string(op)) return op;
  throw UsageError("--op '" + std::string(s) + "' is not one of write, write_imm, send, read");
}

std::string usage(Tool tool) {
  const bool bw = tool == Tool::Bw;
  std::string name(tool_name(tool));
  std::ostringstream o;
  o << "usage: " << name << " [options]            server: waits for one client\n"
    << "       " << name << " [options] HOST       client: measures against the server on HOST\n"
    << "       rdmacoll-run -n 2 " << name << " [options]   (or mpirun / srun): ranks paired automatically\n"
    << (bw ? "Measures one-way bandwidth and message rate, with --tx-depth operations in flight.\n"
           : "Measures latency: half the round trip for write, write_imm and send (ping-pong), the whole\n"
             "operation for read.\n")
    << "Launched with N ranks (N even), rank r is paired with rank r+N/2 and measures against it;\n"
       "all pairs run at once and rank 0 prints the sum (bw) or all pairs' samples together (lat).\n"
       "\n"
       "  -o, --op OP             write | write_imm | send | read (default write)\n"
       "      --transport T       verbs | ucx (default RDMACOLL_TRANSPORT, else ucx)\n"
       "      --progress M        poll | block | adaptive (default poll, as perftest)\n"
       "  -d, --ib-dev DEV        RDMA device (verbs: RDMACOLL_IB_DEVICE; ucx: UCX_NET_DEVICES=DEV:PORT)\n"
       "  -i, --ib-port N         device port (default: the first active one)\n"
       "  -x, --gid-index N       GID index (default: RoCEv2 IPv4-mapped, RDMACOLL_IB_GID_INDEX)\n"
       "  -p, --port N            TCP port of the server's rendezvous (default 18515)\n"
       "      --bind ADDR         server: address to listen on (default 0.0.0.0)\n"
       "  -s, --size BYTES        one message size; K, M, G suffixes (default "
    << (bw ? "65536" : "2") << ")\n"
    << "  -a, --all               sweep 2 B to 8 MiB in powers of two\n"
       "  -b, --minbytes BYTES    sweep from BYTES ...\n"
       "  -e, --maxbytes BYTES    ... to BYTES ...\n"
       "  -f, --stepfactor F      ... multiplying by F (default 2)\n"
       "  -n, --iters N           measured iterations per size (default "
    << (bw ? "5000" : "1000") << ")\n"
    << "  -w, --warmup N          unmeasured iterations first (default " << (bw ? "2 x tx-depth" : "100") << ")\n"
    << (bw ? "  -t, --tx-depth N        operations in flight (default 128)\n"
             "      --report-gbits      bandwidth in Gb/s (10^9 bits) instead of MiB/s\n"
           : "")
    << "  -c, --check             verify the data received at the end of each size (exit 1 if wrong)\n"
       "  -J, --json              print JSON instead of the table\n"
       "      --timeout SEC       deadline for every wait (default RDMACOLL_TIMEOUT)\n"
       "  -h, --help              this text\n"
       "Exit status: 0 success, 1 error (timeout, transport failure, wrong data), 2 bad usage.\n";
  return o.str();
}

std::optional<FlagValue> read_flag(std::span<const Flag> flags, const std::vector<std::string>& args, size_t& i) {
  std::string_view a = args[i];
  if (a.size() < 2 || a[0] != '-') return std::nullopt;
  const Flag* f = nullptr;
  std::optional<std::string> inline_value;
  if (a.starts_with("--")) {
    std::string_view name = a.substr(2);
    if (auto eq = name.find('='); eq != std::string_view::npos) {
      inline_value = std::string(name.substr(eq + 1));
      name = name.substr(0, eq);
    }
    for (const Flag& c : flags)
      if (c.long_name == name) f = &c;
  } else if (a.size() == 2) {
    for (const Flag& c : flags)
      if (c.short_name == a[1]) f = &c;
  }
  if (f == nullptr) throw UsageError("unknown option '" + std::string(a) + "'");
  const std::string flag = "--" + std::string(f->long_name);
  FlagValue out{f, {}};
  if (f->takes_value) {
    if (inline_value) out.value = *inline_value;
    else if (i + 1 < args.size()) out.value = args[++i];
    else throw UsageError(flag + " needs a value");
  } else if (inline_value) {
    throw UsageError(flag + " takes no value");
  }
  return out;
}

size_t parse_size(std::string_view flag, std::string_view value) {
  int64_t n = 0;
  try {
    n = settings::parse_bytes(flag, value);
  } catch (const ConfigError&) {
    throw UsageError(std::string(flag) + " '" + std::string(value) + "' is not a size in bytes (e.g. 4096, 64K, 1M, 1G)");
  }
  if (n > (int64_t{1} << 40)) throw UsageError(std::string(flag) + " '" + std::string(value) + "' is too large");
  return static_cast<size_t>(n);
}

std::vector<size_t> size_sweep(size_t begin, size_t end, size_t factor) {
  std::vector<size_t> out;
  for (size_t s = begin; s <= end; s *= factor) {
    out.push_back(s);
    if (s > end / factor) break;
  }
  return out;
}

int64_t parse_count(std::string_view flag, std::string_view value, int64_t lo, int64_t hi) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size())
    throw UsageError(std::string(flag) + " '" + std::string(value) + "' is not an integer");
  if (v < lo || v > hi)
    throw UsageError(std::string(flag) + " " + std::string(value) + " is out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return v;
}

double parse_timeout(std::string_view value) {
  double t = 0;
  try {
    t = settings::parse_seconds("--timeout", value);
  } catch (const ConfigError& e) {
    throw UsageError(e.what());
  }
  if (t <= 0) throw UsageError("--timeout must be positive");
  return t;
}

namespace {

constexpr Flag kFlags[] = {
    {'o', "op", true},          {0, "transport", true},    {0, "progress", true},  {'d', "ib-dev", true},
    {'i', "ib-port", true},     {'x', "gid-index", true},  {'p', "port", true},    {0, "bind", true},
    {'s', "size", true},        {'a', "all", false},       {'b', "minbytes", true}, {'e', "maxbytes", true},
    {'f', "stepfactor", true},  {'n', "iters", true},      {'w', "warmup", true},  {'t', "tx-depth", true},
    {0, "report-gbits", false}, {'c', "check", false},     {'J', "json", false},   {0, "timeout", true},
    {'h', "help", false},
};

}  // namespace

Options parse(Tool tool, const std::vector<std::string>& args) {
  Options o;
  o.tool = tool;
  o.backend = transport::Options::from_settings().backend;
  std::optional<size_t> size, minb, maxb, factor;
  bool all = false;
  std::optional<size_t> warmup;
  std::vector<std::string> positional;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::optional<FlagValue> fv = read_flag(kFlags, args, i);
    if (!fv) {
      positional.emplace_back(args[i]);
      continue;
    }
    const Flag* f = fv->flag;
    if (tool == Tool::Lat && (f->long_name == "tx-depth" || f->long_name == "report-gbits"))
      throw UsageError("--" + std::string(f->long_name) + " applies to rdmacoll-bw only");
    const std::string flag = "--" + std::string(f->long_name);
    const std::string& value = fv->value;
    std::string_view n = f->long_name;
    if (n == "op") o.op = parse_op(value);
    else if (n == "transport") {
      try {
        o.backend = transport::parse_backend(value);
      } catch (const ConfigError&) {
        throw UsageError("--transport '" + value + "' is not one of verbs, ucx");
      }
    } else if (n == "progress") {
      try {
        o.progress = transport::parse_progress_mode(value);
        o.progress_given = true;
      } catch (const ConfigError&) {
        throw UsageError("--progress '" + value + "' is not one of poll, block, adaptive");
      }
    } else if (n == "ib-dev") {
      if (value.empty()) throw UsageError("--ib-dev needs a device name");
      o.device = value;
    } else if (n == "ib-port") o.ib_port = static_cast<int>(parse_count(flag, value, 1, 255));
    else if (n == "gid-index") o.gid_index = static_cast<int>(parse_count(flag, value, 0, 65535));
    else if (n == "port") o.port = static_cast<uint16_t>(parse_count(flag, value, 1, 65535));
    else if (n == "bind") o.bind = value;
    else if (n == "size") size = parse_size(flag, value);
    else if (n == "all") all = true;
    else if (n == "minbytes") minb = parse_size(flag, value);
    else if (n == "maxbytes") maxb = parse_size(flag, value);
    else if (n == "stepfactor") factor = static_cast<size_t>(parse_count(flag, value, 2, 1024));
    else if (n == "iters") o.iters = static_cast<size_t>(parse_count(flag, value, 1, int64_t{1} << 32));
    else if (n == "warmup") warmup = static_cast<size_t>(parse_count(flag, value, 0, int64_t{1} << 32));
    else if (n == "tx-depth") o.tx_depth = static_cast<size_t>(parse_count(flag, value, 1, 8192));
    else if (n == "report-gbits") o.gbits = true;
    else if (n == "check") o.check = true;
    else if (n == "json") o.json = true;
    else if (n == "timeout") o.timeout = parse_timeout(value);
    else if (n == "help") o.help = true;
    for (std::string_view m : {"op", "transport", "iters", "warmup", "tx-depth", "check"})
      if (n == m) o.explicit_flags.insert(std::string(m));
    if (n == "size" || n == "all" || n == "minbytes" || n == "maxbytes" || n == "stepfactor")
      o.explicit_flags.insert("sizes");
  }
  if (o.help) return o;

  if (positional.size() > 1) throw UsageError("one server host at most, got '" + positional[1] + "' as well");
  if (!positional.empty()) o.server = positional[0];

  int sources = (size ? 1 : 0) + (all ? 1 : 0) + ((minb || maxb || factor) ? 1 : 0);
  if (sources > 1) throw UsageError("give one of -s, -a, or -b/-e/-f");
  const size_t kAllMax = size_t{8} << 20;
  if (all) o.sizes = size_sweep(2, kAllMax, 2);
  else if (minb || maxb || factor) {
    size_t b = minb.value_or(2), e = maxb.value_or(std::max(b, kAllMax));
    if (b == 0) throw UsageError("--minbytes must be at least 1");
    if (e < b) throw UsageError("--maxbytes " + std::to_string(e) + " is below --minbytes " + std::to_string(b));
    o.sizes = size_sweep(b, e, factor.value_or(2));
  } else {
    o.sizes = {size.value_or(tool == Tool::Bw ? 65536 : 2)};
  }
  if (o.sizes.front() == 0) throw UsageError("--size must be at least 1 byte");
  if (o.sizes.back() > (size_t{1} << 30)) throw UsageError("sizes above 1 GiB are not supported");

  if (o.iters == 0) o.iters = tool == Tool::Bw ? 5000 : 1000;
  if (o.tx_depth == 0) o.tx_depth = tool == Tool::Bw ? 128 : 1;
  o.warmup = warmup.value_or(tool == Tool::Bw ? 2 * o.tx_depth : 100);
  return o;
}

std::string measurement_key(const Options& o) {
  std::ostringstream k;
  k << "transport=" << transport::to_string(o.backend) << " op=" << to_string(o.op) << " sizes=";
  for (size_t i = 0; i < o.sizes.size(); ++i) k << (i ? "," : "") << o.sizes[i];
  k << " iters=" << o.iters << " warmup=" << o.warmup << " tx-depth=" << o.tx_depth << " check=" << (o.check ? 1 : 0);
  return k.str();
}

void apply_measurement_key(Options& o, std::string_view key) {
  std::istringstream in{std::string(key)};
  std::string item;
  while (in >> item) {
    auto eq = item.find('=');
    if (eq == std::string::npos) throw ProtocolError("bad measurement key item '" + item + "'");
    std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    if (name == "transport") o.backend = transport::parse_backend(value);
    else if (name == "op") o.op = parse_op(value);
    else if (name == "iters") o.iters = std::stoull(value);
    else if (name == "warmup") o.warmup = std::stoull(value);
    else if (name == "tx-depth") o.tx_depth = std::stoull(value);
    else if (name == "check") o.check = value == "1";
    else if (name == "sizes") {
      o.sizes.clear();
      std::istringstream s(value);
      std::string v;
      while (std::getline(s, v, ',')) o.sizes.push_back(std::stoull(v));
    } else {
      throw ProtocolError("unknown measurement key item '" + item + "'");
    }
  }
}

}  // namespace rdmacoll::perf
