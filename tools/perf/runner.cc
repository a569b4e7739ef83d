#include "runner.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>

#include "report.h"

namespace rdmacoll::perf {

int stdout_for_json() {
  std::cout.flush();
  int fd = dup(STDOUT_FILENO);
  if (fd < 0) return -1;
  if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

void write_json(int fd, std::string_view doc) {
  for (size_t off = 0; off < doc.size();) {
    ssize_t n = write(fd, doc.data() + off, doc.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(std::string("cannot write the JSON output: ") + std::strerror(errno));
    off += static_cast<size_t>(n);
  }
}

void complete(Session& s, transport::Request& r, Deadline deadline, const char* what) {
  if (s.options().progress != transport::ProgressMode::Poll) {
    r.wait(deadline);
    return;
  }
  spin(s.transport(), [&] { return r.test(); }, deadline, what, s.partner());
}

namespace {

// Turns the records of all ranks for one size into the row the printer shows.
void report_size(Report& report, const Options& o, size_t bytes, const std::vector<std::vector<double>>& records,
                 uint64_t& wrong) {
  std::vector<BwResult> pairs;
  std::vector<double> samples;
  uint64_t size_wrong = 0;
  for (const std::vector<double>& r : records) {
    if (r.empty()) continue;
    size_wrong += static_cast<uint64_t>(r[0]);
    if (r.size() == 1) continue;  // a passive rank
    if (o.tool == Tool::Bw) {
      BwResult b;
      b.bytes = static_cast<size_t>(r[1]);
      b.iters = static_cast<size_t>(r[2]);
      b.peak_Bps = r[3];
      b.avg_Bps = r[4];
      b.msg_rate = r[5];
      pairs.push_back(b);
    } else {
      samples.insert(samples.end(), r.begin() + 1, r.end());
    }
  }
  wrong += size_wrong;
  if (o.tool == Tool::Bw) {
    BwResult total = sum(pairs);
    total.bytes = bytes;
    total.wrong = size_wrong;
    report.row(total);
  } else {
    LatStats st = lat_stats(bytes, std::move(samples));
    st.wrong = size_wrong;
    report.row(st);
  }
}

}  // namespace

int run(Tool tool, int argc, char** argv, const Measure& measure) {
  const std::string name(tool_name(tool));
  Options o;
  try {
    o = parse(tool, std::vector<std::string>(argv + 1, argv + argc));
  } catch (const UsageError& e) {
    std::cerr << name << ": " << e.what() << "\n\n" << usage(tool);
    return 2;
  } catch (const ConfigError& e) {  // a bad RDMACOLL_* default (e.g. RDMACOLL_TRANSPORT)
    std::cerr << name << ": " << e.what() << "\n";
    return 2;
  }
  if (o.help) {
    std::cout << usage(tool);
    return 0;
  }
  // With --json, stdout carries the document and nothing else: whatever else would go there
  // (UCX prints its warnings on stdout) goes to stderr, and the document to the real stdout.
  int json_fd = -1;
  std::ostringstream json;
  if (o.json) {
    json_fd = stdout_for_json();
    if (json_fd < 0) {
      std::cerr << name << ": cannot set up stdout for --json: " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  int rank = -1;
  try {
    Session s(o);
    rank = s.rank();
    const Options& agreed = s.options();
    RunInfo info{agreed, s.transport().info(), s.mode(), s.pairs(), s.world_size(), s.timer().source()};
    Report report(o.json ? static_cast<std::ostream&>(json) : std::cout, info);
    if (s.printer()) report.begin();
    uint64_t wrong = 0, own_wrong = 0;
    for (size_t i = 0; i < agreed.sizes.size(); ++i) {
      std::vector<double> record = measure(s, agreed.sizes[i]);
      own_wrong += static_cast<uint64_t>(record.at(0));
      auto all = s.exchange(i, record);
      if (s.printer()) report_size(report, agreed, agreed.sizes[i], all, wrong);
    }
    if (s.printer()) report.end();
    if (json_fd >= 0) write_json(json_fd, json.str());
    s.finish();
    if (wrong + own_wrong > 0) {
      std::cerr << name << ": rank " << rank << ": the data check found "
                << (s.printer() ? wrong : own_wrong) << " wrong byte(s)\n";
      return 1;
    }
  } catch (const Error& e) {
    std::string who = rank >= 0 ? "rank " + std::to_string(rank) + ": " : "";
    if (std::string_view(e.what()).starts_with("rank ")) who.clear();
    std::cerr << name << ": " << who << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {  // invalid_argument/out_of_range from the transport's checks
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
  return 0;
}

void require_same_args(bootstrap::Store& store, const std::string& key, int rank, int world_size,
                       const std::vector<std::string>& args, Deadline deadline) {
  std::string mine;
  for (const std::string& a : args) mine += (mine.empty() ? "" : "\x1f") + a;
  const std::vector<bootstrap::Bytes> all =
      bootstrap::all_gather(store, key, rank, world_size, bootstrap::Bytes(mine.begin(), mine.end()), deadline);
  // Every rank may stop below; rank 0, which serves the store, must not exit while another rank
  // still reads the arguments (it would see "connection closed" instead of the difference).
  bootstrap::barrier_rank0_last(store, key + "/read", rank, world_size, deadline);
  auto shown = [&](int r) {
    std::string s(all[static_cast<size_t>(r)].begin(), all[static_cast<size_t>(r)].end());
    std::replace(s.begin(), s.end(), '\x1f', ' ');
    return "'" + s + "'";
  };
  for (int r = 1; r < world_size; ++r)
    if (all[static_cast<size_t>(r)] != all[0])
      throw ConfigError("rank " + std::to_string(r) + " was started with " + shown(r) + " but rank 0 with " +
                        shown(0) + "; start every rank with the same flags");
}

int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux: KiB
}

}  // namespace rdmacoll::perf
