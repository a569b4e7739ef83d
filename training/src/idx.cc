#include "rdmacoll/training/idx.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

namespace rdmacoll::training {
namespace {

// Reading in bounded chunks keeps gzread's `unsigned` length in range and lets memory grow
// with the bytes actually present, not with what a possibly corrupt header claims.
constexpr std::size_t kChunk = std::size_t{1} << 20;

std::string hex32(std::uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
  return buf;
}

std::string hex8(unsigned v) {
  char buf[5];
  std::snprintf(buf, sizeof buf, "0x%02X", v & 0xFFu);
  return buf;
}

const char* idx_type_name(unsigned code) {
  switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "not an IDX type";
  }
}

std::string shape(const std::vector<std::uint32_t>& dims) {
  std::string s;
  for (std::size_t i = 0; i < dims.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(dims[i]);
  }
  return s;
}

// A gzFile opened for reading, closed on scope exit. Reads plain files too.
class GzReader {
 public:
  explicit GzReader(const std::filesystem::path& file) : file_(file) {
    errno = 0;
    gz_.reset(gzopen(file.c_str(), "rb"));
    if (!gz_) {
      const int err = errno;
      throw DataError(file_.string() +
                      ": cannot open: " + (err ? std::strerror(err) : "out of memory in zlib"));
    }
    gzbuffer(gz_.get(), 128 * 1024);  // fewer read(2) calls than the 8 KiB default
  }

  // Reads until n bytes or the end of the file; returns how many were read. Throws DataError
  // on a read or decompression error, including a gzip stream that stops mid-way.
  std::size_t read(void* out, std::size_t n) {
    auto* p = static_cast<unsigned char*>(out);
    std::size_t done = 0;
    while (done < n) {
      const auto want = static_cast<unsigned>(std::min(n - done, kChunk));
      const int got = gzread(gz_.get(), p + done, want);
      if (got < 0) fail();
      if (got == 0) {
        // gzread reports a truncated gzip stream as end of file and leaves the error
        // (Z_BUF_ERROR, "unexpected end of file") for gzerror to tell.
        int errnum = Z_OK;
        gzerror(gz_.get(), &errnum);
        if (errnum != Z_OK) fail();
        break;
      }
      done += static_cast<std::size_t>(got);
    }
    return done;
  }

 private:
  [[noreturn]] void fail() {
    int errnum = Z_OK;
    const char* msg = gzerror(gz_.get(), &errnum);
    std::string what = errnum == Z_ERRNO ? std::strerror(errno) : (msg ? msg : "unknown error");
    // zlib prefixes its messages with the path, which ours already starts with.
    const std::string prefix = file_.string() + ": ";
    if (what.compare(0, prefix.size(), prefix) == 0) what.erase(0, prefix.size());
    if (errnum == Z_DATA_ERROR || errnum == Z_BUF_ERROR)
      what = "corrupt or truncated gzip data (" + what + ")";
    throw DataError(file_.string() + ": read error: " + what);
  }

  struct Close {
    void operator()(gzFile f) const noexcept { gzclose(f); }  // read-only: nothing to lose
  };
  std::filesystem::path file_;
  std::unique_ptr<gzFile_s, Close> gz_;
};

std::uint32_t big_endian32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

}  // namespace

IdxArray read_idx(const std::filesystem::path& file, std::size_t max_bytes) {
  const std::string name = file.string();
  GzReader in(file);

  std::array<unsigned char, 4> magic{};
  const std::size_t got_magic = in.read(magic.data(), magic.size());
  if (got_magic < magic.size())
    throw DataError(name + ": truncated header: file ends after " + std::to_string(got_magic) +
                    " bytes, an IDX file starts with a 4-byte magic number");
  const std::uint32_t magic_value = big_endian32(magic.data());
  if (magic[0] != 0 || magic[1] != 0)
    throw DataError(name + ": not an IDX file: magic number " + hex32(magic_value) +
                    " does not start with two zero bytes");
  if (magic[2] != 0x08)
    throw DataError(name + ": IDX element type " + hex8(magic[2]) + " (" + idx_type_name(magic[2]) +
                    ") is not supported, expected 0x08 (unsigned byte)");
  const std::size_t ndims = magic[3];
  if (ndims == 0 || ndims > kMaxIdxDims)
    throw DataError(name + ": IDX header declares " + std::to_string(ndims) +
                    " dimensions, expected 1 to " + std::to_string(kMaxIdxDims));

  std::vector<unsigned char> raw(4 * ndims);
  const std::size_t got_dims = in.read(raw.data(), raw.size());
  if (got_dims < raw.size())
    throw DataError(name + ": truncated header: file ends after " + std::to_string(4 + got_dims) +
                    " bytes, the header of a " + std::to_string(ndims) +
                    "-dimensional IDX file is " + std::to_string(4 + raw.size()) + " bytes");

  IdxArray out;
  out.dims.resize(ndims);
  std::size_t total = 1;
  bool too_big = false;
  for (std::size_t i = 0; i < ndims; ++i) {
    out.dims[i] = big_endian32(raw.data() + 4 * i);
    // Compare by division so the product cannot overflow before it is checked.
    if (out.dims[i] != 0 && total > max_bytes / out.dims[i]) too_big = true;
    total *= out.dims[i];  // only used when !too_big
  }
  if (too_big)
    throw DataError(name + ": IDX header declares " + shape(out.dims) + " elements, more than " +
                    "the " + std::to_string(max_bytes) + "-byte limit (corrupt header?)");

  while (out.data.size() < total) {
    const std::size_t have = out.data.size();
    out.data.resize(std::min(total, have + kChunk));
    const std::size_t got = in.read(out.data.data() + have, out.data.size() - have);
    if (have + got < out.data.size())
      throw DataError(name + ": truncated data: the header declares " + shape(out.dims) + " = " +
                      std::to_string(total) + " bytes of data, but the file ends after " +
                      std::to_string(have + got) + " of them");
  }

  unsigned char extra = 0;
  if (in.read(&extra, 1) != 0)
    throw DataError(name + ": size mismatch: more bytes follow the " + std::to_string(total) +
                    " bytes of data the header declares (dimensions " + shape(out.dims) +
                    "); corrupt header or not an IDX file");
  return out;
}

}  // namespace rdmacoll::training
