// Private: how the UCX backend lays out its 64-bit UCP tags. A UCP tag receive matches on
// the tag alone, not on the sending endpoint, so the sender's rank goes into the tag and
// recv(peer, tag) asks for exactly that (full mask): it can never match another peer's message.
//
//    63 62                                      24 23                  0
//   +--+------------------------------------------+---------------------+
//   |I |  user tag (39 bits)  | internal kind     |  source rank (24)   |
//   +--+------------------------------------------+---------------------+
//
//   I = 0: a user message; bits 24..62 are the caller's tag (0 .. 2^39-1).
//   I = 1: rdmacoll's own traffic; bits 24..62 say which (write notification, wire-up hello).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace rdmacoll::ucx::tags {

constexpr int kRankBits = 24;
constexpr int kUserBits = 39;
constexpr uint64_t kInternal = uint64_t{1} << 63;
constexpr uint64_t kMaxUserTag = (uint64_t{1} << kUserBits) - 1;
constexpr int kMaxRanks = 1 << kRankBits;
constexpr uint64_t kFullMask = ~uint64_t{0};

enum class Internal : uint64_t { Notification = 1, Hello = 2, Goodbye = 3 };

inline uint64_t user(uint64_t tag, int source_rank) {
  if (tag > kMaxUserTag)
    throw std::invalid_argument("tag " + std::to_string(tag) + " does not fit the UCX backend's " +
                                std::to_string(kUserBits) + "-bit tag field (the maximum is " +
                                std::to_string(kMaxUserTag) + ")");
  return (tag << kRankBits) | static_cast<uint64_t>(source_rank);
}

inline uint64_t internal(Internal kind, int source_rank) {
  return kInternal | (static_cast<uint64_t>(kind) << kRankBits) | static_cast<uint64_t>(source_rank);
}

inline int source_of(uint64_t ucp_tag) { return static_cast<int>(ucp_tag & ((uint64_t{1} << kRankBits) - 1)); }

}  // namespace rdmacoll::ucx::tags
