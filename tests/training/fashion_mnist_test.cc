// load_fashion_mnist on synthetic files (every error path) and on the real data set from
// Debian's dataset-fashion-mnist package (skipped, with a reason, if it is not installed).
#include "rdmacoll/training/fashion_mnist.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "idx_test_util.h"

namespace rdmacoll::training {
namespace {

using test::expect_data_error;
using test::idx_bytes;
using test::TempDir;
using test::write_gzip;
using test::write_plain;

// Three 2x3 images and their labels, written as a train split.
struct Synthetic {
  std::vector<std::uint8_t> pixels = {0,  255, 51, 102, 153, 204,  // image 0
                                      1,  2,   3,  4,   5,   6,    // image 1
                                      10, 20,  30, 40,  50,  60};  // image 2
  std::vector<std::uint8_t> labels = {9, 0, 4};
};

void write_split(const TempDir& dir, const std::string& prefix,
                 const std::vector<std::uint8_t>& images_file,
                 const std::vector<std::uint8_t>& labels_file, bool gzip = true) {
  const std::string ext = gzip ? ".gz" : "";
  auto write = gzip ? write_gzip : write_plain;
  write(dir / (prefix + "-images-idx3-ubyte" + ext), images_file);
  write(dir / (prefix + "-labels-idx1-ubyte" + ext), labels_file);
}

TEST(FashionMnist, LoadsSyntheticSplitScaledToUnitRange) {
  TempDir dir;
  const Synthetic s;
  write_split(dir, "train", idx_bytes({3, 2, 3}, s.pixels), idx_bytes({3}, s.labels));
  const Dataset ds = load_fashion_mnist(dir.path(), Split::train);
  EXPECT_EQ(ds.count, 3u);
  EXPECT_EQ(ds.rows, 2u);
  EXPECT_EQ(ds.cols, 3u);
  EXPECT_EQ(ds.pixels_per_image(), 6u);
  ASSERT_EQ(ds.images.size(), 18u);
  for (std::size_t i = 0; i < 18; ++i)
    EXPECT_FLOAT_EQ(ds.images[i], static_cast<float>(s.pixels[i]) / 255.0f) << i;
  EXPECT_EQ(ds.images[0], 0.0f);
  EXPECT_EQ(ds.images[1], 1.0f);
  EXPECT_EQ(ds.image(2)[0], 10.0f / 255.0f);
  EXPECT_EQ(ds.labels, s.labels);
}

TEST(FashionMnist, TestSplitUsesT10kFilesAndPlainFilesWork) {
  TempDir dir;
  const Synthetic s;
  write_split(dir, "t10k", idx_bytes({3, 2, 3}, s.pixels), idx_bytes({3}, s.labels),
              /*gzip=*/false);
  EXPECT_EQ(load_fashion_mnist(dir.path(), Split::test).count, 3u);
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {"train-images-idx3-ubyte.gz"});
}

TEST(FashionMnist, MissingFileSaysWhereToGetIt) {
  TempDir dir;
  expect_data_error(
      [&] { load_fashion_mnist(dir.path(), Split::train); },
      {"Fashion-MNIST file not found", (dir / "train-images-idx3-ubyte.gz").string(),
       "dataset-fashion-mnist", "apt-get install dataset-fashion-mnist", "--data DIR"});
  // Images present, labels missing: the message names the labels file.
  const Synthetic s;
  write_gzip(dir / "t10k-images-idx3-ubyte.gz", idx_bytes({3, 2, 3}, s.pixels));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::test); },
                    {(dir / "t10k-labels-idx1-ubyte.gz").string(), "apt-get install"});
}

TEST(FashionMnist, LabelsFileInPlaceOfImagesIsBadMagic) {
  TempDir dir;
  const Synthetic s;
  write_split(dir, "train", idx_bytes({3}, s.labels), idx_bytes({3}, s.labels));
  expect_data_error(
      [&] { load_fashion_mnist(dir.path(), Split::train); },
      {(dir / "train-images-idx3-ubyte.gz").string(),
       "wrong IDX magic number 0x00000801 (a 1-D array)", "expected 0x00000803 (3-D images)"});
  write_split(dir, "train", idx_bytes({3, 2, 3}, s.pixels), idx_bytes({3, 2, 3}, s.pixels));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {(dir / "train-labels-idx1-ubyte.gz").string(), "0x00000803",
                     "expected 0x00000801 (1-D labels)"});
}

TEST(FashionMnist, CorruptFilesAreReportedByName) {
  TempDir dir;
  const Synthetic s;
  std::vector<std::uint8_t> images = idx_bytes({3, 2, 3}, s.pixels);
  images.resize(images.size() - 1);
  write_split(dir, "train", images, idx_bytes({3}, s.labels));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {(dir / "train-images-idx3-ubyte.gz").string(), "truncated data",
                     "18 bytes of data, but the file ends after 17"});
  write_split(dir, "train", idx_bytes({3, 2, 3}, s.pixels, 0x0C), idx_bytes({3}, s.labels));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {"element type 0x0C (int32) is not supported"});
}

TEST(FashionMnist, ImageAndLabelCountsMustMatch) {
  TempDir dir;
  const Synthetic s;
  write_split(dir, "train", idx_bytes({3, 2, 3}, s.pixels), idx_bytes({2}, {1, 2}));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {"train split", "holds 3 images but", "holds 2 labels",
                     (dir / "train-labels-idx1-ubyte.gz").string()});
}

TEST(FashionMnist, LabelsMustBeBelowTen) {
  TempDir dir;
  const Synthetic s;
  write_split(dir, "train", idx_bytes({3, 2, 3}, s.pixels), idx_bytes({3}, {0, 9, 10}));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {(dir / "train-labels-idx1-ubyte.gz").string(),
                     "label 10 at index 2 is out of range", "10 classes"});
}

TEST(FashionMnist, EmptyImagesAreRejected) {
  TempDir dir;
  write_split(dir, "train", idx_bytes({3, 0, 28}, {}), idx_bytes({3}, {0, 1, 2}));
  expect_data_error([&] { load_fashion_mnist(dir.path(), Split::train); },
                    {"images are 0x28 pixels"});
}

// ---- the real data set ----------------------------------------------------------------------

class RealFashionMnist : public ::testing::Test {
 protected:
  void SetUp() override {
    std::error_code ec;
    if (!std::filesystem::exists(std::filesystem::path(kDefaultFashionMnistDir), ec))
      GTEST_SKIP() << kDefaultFashionMnistDir
                   << " not found; install Debian's dataset-fashion-mnist package";
  }

  static void check(const Dataset& ds, std::size_t count, std::size_t per_class,
                    const std::array<std::uint8_t, 10>& first_labels) {
    EXPECT_EQ(ds.count, count);
    EXPECT_EQ(ds.rows, 28u);
    EXPECT_EQ(ds.cols, 28u);
    ASSERT_EQ(ds.images.size(), count * 28 * 28);
    ASSERT_EQ(ds.labels.size(), count);

    std::array<std::size_t, kFashionMnistClasses> histogram{};
    for (std::uint8_t label : ds.labels) ++histogram[label];
    for (std::size_t c = 0; c < kFashionMnistClasses; ++c)
      EXPECT_EQ(histogram[c], per_class)
          << "class " << c << " (" << kFashionMnistClassNames[c] << ")";
    EXPECT_TRUE(std::equal(first_labels.begin(), first_labels.end(), ds.labels.begin()));

    const auto [lo, hi] = std::minmax_element(ds.images.begin(), ds.images.end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);  // some pixel is 255
    // Clothing on a black background: mostly dark, never blank.
    const double mean = std::accumulate(ds.images.begin(), ds.images.end(), 0.0) /
                        static_cast<double>(ds.images.size());
    EXPECT_GT(mean, 0.2);
    EXPECT_LT(mean, 0.4);
  }
};

TEST_F(RealFashionMnist, TrainSplit) {
  const Dataset ds = load_fashion_mnist(Split::train);
  // Published order of the first labels: ankle boot, T-shirt, T-shirt, dress, ...
  check(ds, 60000, 6000, {9, 0, 0, 3, 0, 2, 7, 2, 5, 5});
  // Fingerprint of the first image (sum of its bytes, computed with Python's gzip module):
  // catches an off-by-some header offset.
  double sum = 0;
  for (std::size_t i = 0; i < ds.pixels_per_image(); ++i) sum += ds.image(0)[i] * 255.0;
  EXPECT_NEAR(sum, 76247.0, 0.5);
}

TEST_F(RealFashionMnist, TestSplit) {
  const Dataset ds =
      load_fashion_mnist(std::filesystem::path(kDefaultFashionMnistDir), Split::test);
  check(ds, 10000, 1000, {9, 2, 1, 1, 6, 1, 4, 6, 5, 7});
  double sum = 0;
  for (std::size_t i = 0; i < ds.pixels_per_image(); ++i) sum += ds.image(0)[i] * 255.0;
  EXPECT_NEAR(sum, 33456.0, 0.5);
}

}  // namespace
}  // namespace rdmacoll::training
