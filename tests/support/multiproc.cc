#include "support/multiproc.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "rdmacoll/error.h"
#include "rdmacoll/settings.h"

extern char** environ;

namespace rdmacoll::testing {

std::string current_test_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return info ? std::string(info->test_suite_name()) + "." + info->name() : "unknown";
}

bool require_rdma_device() {
  const char* v = std::getenv("REQUIRE_RDMA_DEVICE");
  return v != nullptr && std::string(v) == "1";
}

namespace {

// The failure messages in a GoogleTest XML report (each <failure message="...">), unescaped,
// at most `limit` characters in all.
std::string failures_in_report(const std::string& path, size_t limit = 3000) {
  std::ifstream in(path);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string xml = ss.str();
  std::string out;
  for (size_t at = 0; (at = xml.find("<failure message=\"", at)) != std::string::npos;) {
    at += 18;
    const size_t end = xml.find('"', at);
    if (end == std::string::npos) break;
    std::string msg;
    for (size_t i = at; i < end; ++i) {
      if (xml[i] != '&') {
        msg += xml[i];
        continue;
      }
      const size_t semi = xml.find(';', i);
      if (semi == std::string::npos || semi > end) {
        msg += xml[i];
        continue;
      }
      const std::string ent = xml.substr(i + 1, semi - i - 1);
      if (ent == "lt") msg += '<';
      else if (ent == "gt") msg += '>';
      else if (ent == "amp") msg += '&';
      else if (ent == "quot") msg += '"';
      else if (ent == "apos") msg += '\'';
      else if (ent.size() > 2 && ent[0] == '#' && (ent[1] == 'x' || ent[1] == 'X'))
        msg += static_cast<char>(std::strtol(ent.c_str() + 2, nullptr, 16));
      else if (ent.size() > 1 && ent[0] == '#') msg += static_cast<char>(std::strtol(ent.c_str() + 1, nullptr, 10));
      else msg += xml.substr(i, semi - i + 1);
      i = semi;
    }
    out += (out.empty() ? "" : "\n") + msg;
    at = end;
  }
  if (out.size() > limit) out = out.substr(0, limit) + " ...";
  return out;
}

}  // namespace

bootstrap::Deadline RankGroup::deadline() const { return bootstrap::default_deadline(); }

RankGroup::RankGroup(int world_size) {
  if (auto info = bootstrap::detect_launch()) {
    external_ = true;
    if (info->world_size != world_size)
      throw ConfigError("this test needs " + std::to_string(world_size) + " ranks, but the launcher says " +
                        std::to_string(info->world_size));
    // Each test gets its own store port so that back-to-back tests cannot cross; ranks this
    // class spawned itself were already given the exact port.
    spawned_ = std::getenv("RANKGROUP_EXACT_PORT") != nullptr;
    if (!spawned_)
      info->port = static_cast<uint16_t>(info->port + std::hash<std::string>{}(current_test_name()) % 2000);
    world_ = bootstrap::connect_world(*info, bootstrap::default_deadline());
    return;
  }
  // Like rdmacoll-run: a random job token unless one is set, inherited by the ranks below.
  if (!settings::raw("RDMACOLL_JOB_TOKEN")) {
    std::random_device rd;
    std::string token;
    for (int i = 0; i < 8; ++i) token += std::to_string(rd()) + "-";
    setenv("RDMACOLL_JOB_TOKEN", token.c_str(), 1);
  }
  bootstrap::LaunchInfo info;
  info.rank = 0;
  info.world_size = world_size;
  info.host = "127.0.0.1";
  info.source = "test RankGroup";
  world_.info = info;
  world_.server = std::make_unique<bootstrap::TcpStoreServer>("127.0.0.1", 0);
  uint16_t port = world_.server->port();
  std::string exe = "/proc/self/exe";
  std::string filter = "--gtest_filter=" + current_test_name();
  for (int r = 1; r < world_size; ++r) {
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) env_s.emplace_back(*e);
    env_s.push_back("RDMACOLL_RANK=" + std::to_string(r));
    env_s.push_back("RDMACOLL_WORLD_SIZE=" + std::to_string(world_size));
    env_s.push_back("RDMACOLL_ADDR=127.0.0.1:" + std::to_string(port));
    env_s.push_back("RANKGROUP_EXACT_PORT=1");
    std::vector<char*> envp;
    for (auto& s : env_s) envp.push_back(s.data());
    envp.push_back(nullptr);
    // Each child writes its own report, from which join() copies a failed rank's messages into
    // this rank's failure: the result file (and CI's summary of it) then says what failed on
    // which rank, not only that a rank exited 1.
    std::string report = (std::filesystem::temp_directory_path() /
                          ("rankgroup-" + std::to_string(getpid()) + "-" + std::to_string(r) + ".xml"))
                             .string();
    std::filesystem::remove(report);
    reports_.push_back(report);
    std::string output = "--gtest_output=xml:" + report;
    char* argv[] = {exe.data(), filter.data(), output.data(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, envp.data());
    if (rc != 0) throw Error("posix_spawn of rank " + std::to_string(r) + " failed: " + std::strerror(rc));
    children_.push_back(pid);
  }
  world_.store = std::make_unique<bootstrap::TcpStore>("127.0.0.1", port, bootstrap::default_deadline());
}

void RankGroup::join() {
  // Rank 0 serves the store: it must outlive every other rank's last use of it.
  bootstrap::finalize(world_, deadline());
  auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (size_t i = 0; i < children_.size(); ++i) {
    int status = 0;
    pid_t got = 0;
    while ((got = waitpid(children_[i], &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < limit)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (got == 0) {
      kill(children_[i], SIGKILL);
      waitpid(children_[i], &status, 0);
      ADD_FAILURE() << "rank " << i + 1 << " did not exit within 30 s after the final barrier; killed it";
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      const std::string theirs = failures_in_report(reports_[i]);
      ADD_FAILURE() << "rank " << i + 1 << " failed: "
                    << (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                          : "killed by signal " + std::to_string(WTERMSIG(status)))
                    << (theirs.empty() ? " (its output is above)" : "; its failures:\n" + theirs);
    }
    children_[i] = -1;
  }
  children_.clear();
  remove_reports();
}

void RankGroup::remove_reports() {
  std::error_code ec;
  for (const auto& r : reports_) std::filesystem::remove(r, ec);
  reports_.clear();
}

RankGroup::~RankGroup() {
  // A test that failed before join(): do not leave ranks behind.
  for (pid_t pid : children_) {
    if (pid <= 0) continue;
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
  }
  remove_reports();
}

}  // namespace rdmacoll::testing
