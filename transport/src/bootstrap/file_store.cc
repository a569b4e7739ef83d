// File store: one file per key in a directory all ranks share. Writes go to a temporary file
// that is renamed into place, so a reader sees a whole value or nothing.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <thread>

#include "bootstrap/socket.h"
#include "rdmacoll/bootstrap/store.h"
#include "rdmacoll/error.h"

namespace rdmacoll::bootstrap {
namespace fs = std::filesystem;

FileStore::FileStore(fs::path dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw TransportError("cannot create file store directory " + dir_.string() + ": " + ec.message());
}

std::string FileStore::describe() const { return "file://" + dir_.string(); }

fs::path FileStore::path_of(const std::string& key) const {
  // Keys may contain '/', which would otherwise create directories; escape it.
  std::string name;
  for (char c : key) name += c == '/' ? std::string("%2F") : c == '%' ? std::string("%25") : std::string(1, c);
  return dir_ / name;
}

void FileStore::set(const std::string& key, std::span<const uint8_t> value) {
  fs::path final = path_of(key);
  fs::path tmp = final;
  tmp += ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(value.data()), static_cast<std::streamsize>(value.size()));
    if (!out) throw TransportError("cannot write " + tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, final, ec);
  if (ec) throw TransportError("cannot rename " + tmp.string() + " to " + final.string() + ": " + ec.message());
}

std::vector<std::string> FileStore::missing(const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  for (const auto& k : keys)
    if (!fs::exists(path_of(k))) out.push_back(k);
  return out;
}

void FileStore::wait(const std::vector<std::string>& keys, Deadline deadline) {
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    std::vector<std::string> left = missing(keys);
    if (left.empty()) return;
    if (Clock::now() >= deadline) {
      std::string names;
      for (const auto& k : left) names += (names.empty() ? "" : ", ") + k;
      throw TimeoutError("timed out waiting for key(s) " + names + " in " + describe());
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(50));
  }
}

Bytes FileStore::get(const std::string& key, Deadline deadline) {
  wait({key}, deadline);
  std::ifstream in(path_of(key), std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

int64_t FileStore::add(const std::string& key, int64_t delta) {
  // An flock'ed lock file makes read-modify-write atomic across processes.
  fs::path lock_path = path_of(key);
  lock_path += ".lock";
  net::Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock || flock(lock.get(), LOCK_EX) != 0)
    throw TransportError("cannot lock " + lock_path.string() + ": " + net::errno_string(errno));
  int64_t v = 0;
  if (fs::exists(path_of(key))) {
    std::ifstream in(path_of(key), std::ios::binary);
    Bytes b((std::istreambuf_iterator<char>(in)), {});
    for (size_t i = 0; i < b.size() && i < 8; ++i) v |= static_cast<int64_t>(b[i]) << (8 * i);
  }
  v += delta;
  Bytes out(8);
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(static_cast<uint64_t>(v) >> (8 * i));
  set(key, out);
  return v;
}

}  // namespace rdmacoll::bootstrap
