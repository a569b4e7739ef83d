#include "rdmacoll/training/fashion_mnist.h"

#include <cstdio>
#include <string>
#include <system_error>

namespace rdmacoll::training {
namespace {

// Debian ships the files gzip'd; an unpacked copy (e.g. from another source) works too.
std::filesystem::path find_file(const std::filesystem::path& dir, const std::string& base) {
  std::error_code ec;
  const std::filesystem::path gz = dir / (base + ".gz");
  if (std::filesystem::exists(gz, ec)) return gz;
  const std::filesystem::path plain = dir / base;
  if (std::filesystem::exists(plain, ec)) return plain;
  throw DataError("Fashion-MNIST file not found: " + gz.string() + " (nor uncompressed " +
                  plain.filename().string() +
                  "). The data set comes from Debian's dataset-fashion-mnist package: install "
                  "it with `apt-get install dataset-fashion-mnist`, or pass --data DIR naming a "
                  "directory that holds {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]");
}

// Fashion-MNIST images are 3-D (count x rows x cols), labels 1-D; with unsigned-byte
// elements that is magic number 0x00000803 or 0x00000801.
void check_rank(const IdxArray& a, std::size_t ndims, const std::filesystem::path& file) {
  if (a.dims.size() == ndims) return;
  char found[16];
  std::snprintf(found, sizeof found, "0x%08X", 0x800u | static_cast<unsigned>(a.dims.size()));
  throw DataError(file.string() + ": wrong IDX magic number " + found + " (a " +
                  std::to_string(a.dims.size()) + "-D array), expected " +
                  (ndims == 3 ? "0x00000803 (3-D images)" : "0x00000801 (1-D labels)"));
}

}  // namespace

std::string_view to_string(Split split) noexcept {
  return split == Split::train ? "train" : "test";
}

Dataset load_fashion_mnist(const std::filesystem::path& dir, Split split) {
  const std::string prefix = split == Split::train ? "train" : "t10k";
  const std::filesystem::path images_file = find_file(dir, prefix + "-images-idx3-ubyte");
  const std::filesystem::path labels_file = find_file(dir, prefix + "-labels-idx1-ubyte");

  const IdxArray images = read_idx(images_file);
  check_rank(images, 3, images_file);
  const IdxArray labels = read_idx(labels_file);
  check_rank(labels, 1, labels_file);

  if (images.dims[0] != labels.dims[0])
    throw DataError("Fashion-MNIST " + std::string(to_string(split)) +
                    " split: " + images_file.string() + " holds " + std::to_string(images.dims[0]) +
                    " images but " + labels_file.string() + " holds " +
                    std::to_string(labels.dims[0]) + " labels");
  if (images.dims[1] == 0 || images.dims[2] == 0)
    throw DataError(images_file.string() + ": images are " + std::to_string(images.dims[1]) + "x" +
                    std::to_string(images.dims[2]) + " pixels; expected non-empty images");
  for (std::size_t i = 0; i < labels.data.size(); ++i)
    if (labels.data[i] >= kFashionMnistClasses)
      throw DataError(labels_file.string() + ": label " + std::to_string(labels.data[i]) +
                      " at index " + std::to_string(i) + " is out of range; Fashion-MNIST has " +
                      std::to_string(kFashionMnistClasses) + " classes, 0 to 9");

  Dataset ds;
  ds.count = images.dims[0];
  ds.rows = images.dims[1];
  ds.cols = images.dims[2];
  ds.images.resize(images.data.size());
  for (std::size_t i = 0; i < images.data.size(); ++i)
    ds.images[i] = static_cast<float>(images.data[i]) / 255.0f;
  ds.labels = labels.data;
  return ds;
}

}  // namespace rdmacoll::training
