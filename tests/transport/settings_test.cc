#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "rdmacoll/error.h"
#include "rdmacoll/log.h"
#include "rdmacoll/settings.h"
#include "support/env.h"

namespace rdmacoll {
namespace {
using testing::ScopedEnv;

TEST(Settings, DefaultsAndEnvironment) {
  ScopedEnv unset("RDMACOLL_TIMEOUT", nullptr);
  EXPECT_DOUBLE_EQ(settings::get_seconds("RDMACOLL_TIMEOUT"), 60.0);
  ScopedEnv env("RDMACOLL_TIMEOUT", "2.5");
  EXPECT_DOUBLE_EQ(settings::get_seconds("RDMACOLL_TIMEOUT"), 2.5);
}

TEST(Settings, ParsesDurationsIntegersAndBooleans) {
  EXPECT_DOUBLE_EQ(settings::parse_seconds("X", "500ms"), 0.5);
  EXPECT_DOUBLE_EQ(settings::parse_seconds("X", "2m"), 120.0);
  EXPECT_DOUBLE_EQ(settings::parse_seconds("X", "7s"), 7.0);
  EXPECT_EQ(settings::parse_int("X", "0x10"), 16);
  EXPECT_EQ(settings::parse_int("X", "-3"), -3);
  EXPECT_TRUE(settings::parse_bool("X", "on"));
  EXPECT_FALSE(settings::parse_bool("X", "0"));
}

TEST(Settings, ByteCountsTakePowerOfTwoSuffixes) {
  EXPECT_EQ(settings::parse_bytes("X", "65536"), 65536);
  EXPECT_EQ(settings::parse_bytes("X", "64K"), 65536);
  EXPECT_EQ(settings::parse_bytes("X", "256m"), int64_t{256} << 20);
  EXPECT_EQ(settings::parse_bytes("X", "4KiB"), 4096);
  EXPECT_EQ(settings::parse_bytes("X", "1GB"), int64_t{1} << 30);
  EXPECT_EQ(settings::parse_bytes("X", "7b"), 7);
  for (const char* bad : {"", "M", "-1K", "1.5M", "12 M", "3T", "5ib", "0x10", "8589934592G"}) {
    EXPECT_THROW(settings::parse_bytes("X", bad), ConfigError) << bad;
  }
  // The byte-size settings read through get_int take the same syntax, and say what they expect.
  ScopedEnv e("RDMACOLL_BUFFSIZE", "256M");
  EXPECT_EQ(settings::get_int("RDMACOLL_BUFFSIZE"), int64_t{256} << 20);
  ScopedEnv bad("RDMACOLL_IB_CHUNK", "64Q");
  try {
    settings::get_int("RDMACOLL_IB_CHUNK");
    FAIL() << "RDMACOLL_IB_CHUNK=64Q was accepted";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("RDMACOLL_IB_CHUNK='64Q' is not a byte count (e.g. 65536, 64K, 256M"),
              std::string::npos)
        << err.what();
  }
}

TEST(Settings, MalformedValueNamesVariableAndValue) {
  ScopedEnv env("RDMACOLL_IB_GID_INDEX", "three");
  try {
    settings::get_int("RDMACOLL_IB_GID_INDEX");
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("RDMACOLL_IB_GID_INDEX"), std::string::npos) << m;
    EXPECT_NE(m.find("'three'"), std::string::npos) << m;
    EXPECT_NE(m.find("integer"), std::string::npos) << m;
  }
  EXPECT_THROW(settings::parse_seconds("X", "5 minutes"), ConfigError);
  EXPECT_THROW(settings::parse_seconds("X", "-1"), ConfigError);
  EXPECT_THROW(settings::parse_bool("X", "maybe"), ConfigError);
}

TEST(Settings, UndeclaredNameIsAProgrammingError) {
  EXPECT_THROW(settings::get_string("RDMACOLL_NOT_A_SETTING"), std::logic_error);
}

TEST(Settings, UnknownVariablesInEnvironmentAreReported) {
  ScopedEnv env("RDMACOLL_TIMEOTU", "5");
  EXPECT_NE(settings::unknown_in_environment().find("RDMACOLL_TIMEOTU"), std::string::npos);
}

TEST(Settings, PrintListsEverySettingWithItsDoc) {
  std::ostringstream out;
  settings::print(out);
  for (const auto& s : settings::all()) {
    EXPECT_NE(out.str().find(std::string(s.name)), std::string::npos) << s.name;
    EXPECT_FALSE(s.doc.empty()) << s.name;
  }
}

TEST(Settings, MalformedValuesInTheEnvironmentAreNamed) {
  ScopedEnv timeout("RDMACOLL_TIMEOUT", "5min");
  ScopedEnv buffsize("RDMACOLL_BUFFSIZE", "64Q");
  ScopedEnv fine("RDMACOLL_IB_CHUNK", "64K");
  ScopedEnv text("RDMACOLL_ALGO", "anything: strings are checked where they are read");
  const std::string m = settings::malformed_in_environment();
  EXPECT_NE(m.find("RDMACOLL_TIMEOUT='5min' is not a duration"), std::string::npos) << m;
  EXPECT_NE(m.find("RDMACOLL_BUFFSIZE='64Q' is not a byte count"), std::string::npos) << m;
  EXPECT_EQ(m.find("RDMACOLL_IB_CHUNK"), std::string::npos) << m;
  EXPECT_EQ(m.find("RDMACOLL_ALGO"), std::string::npos) << m;
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 2) << m;
}

TEST(Settings, PrintNeverShowsTheJobToken) {
  ScopedEnv env("RDMACOLL_JOB_TOKEN", "s3cret-token-value");
  std::ostringstream out;
  settings::print(out);
  EXPECT_EQ(out.str().find("s3cret-token-value"), std::string::npos);
  EXPECT_NE(out.str().find("(set, hidden)"), std::string::npos);
}

// The README documents every setting (the brief promises a newcomer a complete table).
TEST(Settings, ReadmeDocumentsEverySetting) {
  std::ifstream in(std::string(RDMACOLL_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  std::stringstream readme;
  readme << in.rdbuf();
  for (const auto& s : settings::all())
    EXPECT_NE(readme.str().find("`" + std::string(s.name) + "`"), std::string::npos)
        << s.name << " is declared in transport/src/settings.cc but missing from README.md";
}

TEST(Log, LevelAndSubsystemAreCheckedBeforeFormatting) {
  {
    ScopedEnv lvl("RDMACOLL_LOG_LEVEL", "INFO");
    ScopedEnv sub("RDMACOLL_LOG_SUBSYS", "^UCX");
    log::reload();
    EXPECT_TRUE(log::enabled(log::Level::Info, log::kNet));
    EXPECT_FALSE(log::enabled(log::Level::Info, log::kUcx));
    EXPECT_FALSE(log::enabled(log::Level::Debug, log::kNet));
    // A disabled line must not evaluate its arguments.
    int evaluated = 0;
    RDMACOLL_DEBUG(kNet, "%d", ++evaluated);
    EXPECT_EQ(evaluated, 0);
  }
  {
    ScopedEnv lvl("RDMACOLL_LOG_LEVEL", "debug");
    ScopedEnv sub("RDMACOLL_LOG_SUBSYS", "BOOT,COLL");
    log::reload();
    EXPECT_TRUE(log::enabled(log::Level::Debug, log::kBoot));
    EXPECT_FALSE(log::enabled(log::Level::Error, log::kNet));
  }
  log::reload();
}

}  // namespace
}  // namespace rdmacoll
