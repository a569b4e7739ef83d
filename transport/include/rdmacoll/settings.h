// The single registry of RDMACOLL_* settings. Each setting is declared once (name, type,
// default, one line of documentation) in settings.cc; everything else reads it from here, and
// tools print the effective configuration with print_settings().
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace rdmacoll::settings {

enum class Type { String, Int, Bool, Seconds, Bytes };

struct Spec {
  std::string_view name;           // e.g. "RDMACOLL_IB_GID_INDEX"
  Type type;
  std::string_view default_value;  // "" means unset / auto
  std::string_view doc;            // one line
};

// Every declared setting, in documentation order.
std::span<const Spec> all();

// The raw value from the environment, if the variable is set and non-empty.
// Throws std::logic_error if `name` is not declared (a programming error).
std::optional<std::string> raw(std::string_view name);

// Typed accessors: the environment value if set, else the declared default.
// A malformed value throws ConfigError naming the variable, the value and the expected type.
std::string get_string(std::string_view name);
std::optional<int64_t> get_int(std::string_view name);  // nullopt when unset and no default
                                                        // (a Bytes setting: as parse_bytes)
bool get_bool(std::string_view name);                   // 1/0, true/false, yes/no, on/off
double get_seconds(std::string_view name);              // "30", "2.5", "500ms", "2m"

// Parsers, exposed for tests and for flags that take the same syntax.
int64_t parse_int(std::string_view name, std::string_view value);
bool parse_bool(std::string_view name, std::string_view value);
double parse_seconds(std::string_view name, std::string_view value);
// A byte count: an integer, optionally followed by K, M or G (powers of 2, any case, with or
// without "iB"/"B": "256M", "4KiB", "1g"); not negative, and at most 2^62.
int64_t parse_bytes(std::string_view name, std::string_view value);

// Names of RDMACOLL_* variables in the environment that are not declared (likely typos).
std::string unknown_in_environment();

// One line per declared setting whose value in the environment does not parse as its type, each
// the ConfigError a program reading it would throw (naming the variable, the value and what it
// takes); empty when every set value parses.
std::string malformed_in_environment();

// Prints "NAME  TYPE  VALUE  (default|env)  doc" for every setting.
void print(std::ostream& out);

}  // namespace rdmacoll::settings
