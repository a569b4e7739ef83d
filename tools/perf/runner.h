// The main() both tools share: parse the flags, set up the session, measure each size, let the
// printer report, and turn failures into exit codes (0 ok, 1 error or wrong data, 2 usage).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "options.h"
#include "session.h"
#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::perf {

// Measures one size on this rank and returns its record: the count of wrong bytes it saw
// (--check), then the tool's data (empty on a passive rank).
using Measure = std::function<std::vector<double>(Session&, size_t bytes)>;

int run(Tool tool, int argc, char** argv, const Measure& measure);

// Completes a request: spins on test() in poll mode (as perftest does), otherwise wait() lets
// the progress mode decide.
void complete(Session& s, transport::Request& r, Deadline deadline, const char* what);

// With --json, stdout carries the document and nothing else: whatever else would go there (UCX
// prints its warnings on stdout) goes to stderr from now on. Returns a descriptor of the real
// stdout for write_json, or -1 with errno set.
int stdout_for_json();
// Writes the whole document to `fd`; throws Error if it cannot.
void write_json(int fd, std::string_view doc);

// Launched tools: every rank must run with the same flags, or their calls do not match up.
// Gathers each rank's `args` through the store under `key`; throws ConfigError naming the first
// rank whose flags differ from rank 0's, and both command lines.
void require_same_args(bootstrap::Store& store, const std::string& key, int rank, int world_size,
                       const std::vector<std::string>& args, Deadline deadline);

// This process's peak resident set size in bytes (getrusage).
int64_t peak_rss_bytes();

inline double seconds(Clock::time_point t) { return std::chrono::duration<double>(t.time_since_epoch()).count(); }

// Seeds of the data patterns: one per size and direction (active to passive, and back).
inline uint64_t seed_forward(size_t bytes) { return 2 * bytes + 1; }
inline uint64_t seed_backward(size_t bytes) { return 2 * bytes + 2; }

}  // namespace rdmacoll::perf
