// A view of a store under a key prefix: a sub-communicator's transport runs its wire-up in
// the parent's store without meeting the parent's keys or a sibling group's.
#pragma once

#include <string>
#include <vector>

#include "rdmacoll/bootstrap/store.h"

namespace rdmacoll::collectives::exec {

class PrefixStore : public bootstrap::Store {
 public:
  // `base` must outlive this store.
  PrefixStore(bootstrap::Store& base, std::string prefix) : base_(base), prefix_(std::move(prefix)) {}
  using bootstrap::Store::set;
  void set(const std::string& key, std::span<const uint8_t> value) override { base_.set(prefix_ + key, value); }
  bootstrap::Bytes get(const std::string& key, bootstrap::Deadline deadline) override {
    return base_.get(prefix_ + key, deadline);
  }
  void wait(const std::vector<std::string>& keys, bootstrap::Deadline deadline) override {
    base_.wait(prefixed(keys), deadline);
  }
  int64_t add(const std::string& key, int64_t delta) override { return base_.add(prefix_ + key, delta); }
  std::vector<std::string> missing(const std::vector<std::string>& keys) override {
    std::vector<std::string> out = base_.missing(prefixed(keys));
    for (auto& k : out) k.erase(0, prefix_.size());
    return out;
  }
  std::string describe() const override { return base_.describe() + " under '" + prefix_ + "'"; }

 private:
  std::vector<std::string> prefixed(const std::vector<std::string>& keys) const {
    std::vector<std::string> out;
    out.reserve(keys.size());
    for (const auto& k : keys) out.push_back(prefix_ + k);
    return out;
  }
  bootstrap::Store& base_;
  std::string prefix_;
};

}  // namespace rdmacoll::collectives::exec
