// Fashion-MNIST (Zalando): 28x28 grey-scale images of clothing in 10 classes, 60,000 for
// training and 10,000 for testing, as shipped by Debian's dataset-fashion-mnist package.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <vector>

#include "rdmacoll/training/idx.h"

namespace rdmacoll::training {

// Where `apt-get install dataset-fashion-mnist` puts the files.
inline constexpr std::string_view kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

inline constexpr std::size_t kFashionMnistClasses = 10;
inline constexpr std::array<std::string_view, kFashionMnistClasses> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

enum class Split { train, test };
std::string_view to_string(Split split) noexcept;  // "train", "test"

struct Dataset {
  std::size_t count = 0;             // number of images (== labels.size())
  std::size_t rows = 0, cols = 0;    // pixels per image: rows * cols
  std::vector<float> images;         // count x rows*cols, row-major, pixel / 255 in [0, 1]
  std::vector<std::uint8_t> labels;  // count class indices, each < kFashionMnistClasses

  std::size_t pixels_per_image() const noexcept { return rows * cols; }
  const float* image(std::size_t i) const noexcept { return images.data() + i * rows * cols; }
};

// Loads <dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte, gzip'd (.gz, preferred) or plain.
// Checks that the images file is 3-D, the labels file 1-D, that both hold the same number of
// items and every label is below 10. Throws DataError naming the file and the problem; a
// missing file's message says how to install the data set or point --data elsewhere.
Dataset load_fashion_mnist(const std::filesystem::path& dir, Split split);
inline Dataset load_fashion_mnist(Split split) {
  return load_fashion_mnist(std::filesystem::path(kDefaultFashionMnistDir), split);
}

}  // namespace rdmacoll::training
