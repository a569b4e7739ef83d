// A multilayer perceptron for Fashion-MNIST-sized problems: fully connected layers, ReLU
// between them, softmax cross-entropy on the last. Single-process; the data-parallel trainer
// exchanges the gradient buffer through the public collectives API.
//
// All parameters live in ONE contiguous float buffer and all gradients in another of the same
// layout, so a trainer can allreduce the whole buffer or one layer's slice at a time:
//
//   params: | W0 (rows0 x cols0) | b0 (rows0) | W1 (rows1 x cols1) | b1 (rows1) | ... |
//             ^ layers()[0].weight_offset       ^ layers()[1].weight_offset
//
// Layer l maps sizes[l] inputs to sizes[l+1] outputs: its weight is rows = sizes[l+1] by
// cols = sizes[l], row-major (PyTorch's nn.Linear layout: y = W x + b), followed by its bias.
// A weight matrix is therefore directly a rows x cols matrix for PowerSGD.
//
// Eigen does the arithmetic (GEMM over the batch) but stays out of this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <vector>

namespace rdmacoll::training {

struct Dataset;

// One layer's place in the parameter and gradient buffers (offsets and sizes in floats).
struct LayerView {
  std::size_t rows = 0;  // output features
  std::size_t cols = 0;  // input features
  std::size_t weight_offset = 0;
  std::size_t bias_offset = 0;  // weight_offset + rows * cols

  std::size_t weight_count() const noexcept { return rows * cols; }
  std::size_t bias_count() const noexcept { return rows; }
  // The layer's whole slice [offset(), offset() + count()): weight then bias.
  std::size_t offset() const noexcept { return weight_offset; }
  std::size_t count() const noexcept { return rows * cols + rows; }
};

// A minibatch: count = labels.size() examples, inputs count x input_size row-major.
struct Batch {
  std::span<const float> inputs;
  std::span<const std::uint8_t> labels;
};

struct ForwardResult {
  double loss = 0;                        // mean softmax cross-entropy over the batch
  std::vector<std::uint8_t> predictions;  // argmax class per example
  std::size_t correct = 0;                // predictions equal to the labels
};

inline constexpr std::size_t kDefaultMlpSizes[] = {784, 256, 128, 10};

// Copies are deep (parameters, gradients and the state kept for backward()); a moved-from
// Mlp may only be assigned to or destroyed.
class Mlp {
 public:
  // sizes: input, hidden..., classes (at least 2 entries, all > 0; classes <= 256 because labels
  // are bytes). Weights get He (Kaiming) initialisation from `seed`, biases zero; see init().
  explicit Mlp(std::vector<std::size_t> sizes = {std::begin(kDefaultMlpSizes),
                                                 std::end(kDefaultMlpSizes)},
               std::uint64_t seed = 0);
  ~Mlp();
  Mlp(const Mlp& other);
  Mlp& operator=(const Mlp& other);
  Mlp(Mlp&&) noexcept;
  Mlp& operator=(Mlp&&) noexcept;

  // Kaiming-uniform weights, U(-b, b) with b = sqrt(6 / cols) (variance 2 / fan_in, as for
  // torch.nn.init.kaiming_uniform_ with ReLU gain), biases 0. The draws come from splitmix64
  // and integer-to-float scaling only, so the same seed gives bitwise the same weights on any
  // machine and standard library. Gradients are zeroed.
  void init(std::uint64_t seed);

  const std::vector<std::size_t>& sizes() const noexcept;
  std::size_t input_size() const noexcept { return sizes().front(); }
  std::size_t num_classes() const noexcept { return sizes().back(); }
  std::span<const LayerView> layers() const noexcept;

  std::span<float> params() noexcept;
  std::span<const float> params() const noexcept;
  std::span<float> grads() noexcept;
  std::span<const float> grads() const noexcept;
  // Views into params() / grads() for layer l.
  std::span<float> weights(std::size_t l) noexcept;
  std::span<const float> weights(std::size_t l) const noexcept;
  std::span<float> bias(std::size_t l) noexcept;
  std::span<const float> bias(std::size_t l) const noexcept;

  // Runs the batch through the net and keeps the activations for backward(). Throws
  // std::invalid_argument if the batch is empty, inputs.size() != count * input_size() or a
  // label is >= num_classes().
  ForwardResult forward(const Batch& batch);

  // Gradients of the mean loss of the last forward() batch, written over grads() (not
  // accumulated). Throws std::logic_error without a preceding forward().
  void backward();
  // The same, layer by layer from the last to the first; after layer l's weight and bias
  // gradients are complete, calls on_layer_ready(l), which may start sending that slice of
  // grads() (or reduce it in place) while the earlier layers are computed. It must not change
  // params() (layer l's weights are still needed for the layers before it) nor grads()
  // outside layer l's slice.
  void backward(const std::function<void(std::size_t layer)>& on_layer_ready);

  // Argmax class for `count` inputs (count x input_size()), in chunks, without touching the
  // state kept for backward().
  std::vector<std::uint8_t> predict(std::span<const float> inputs) const;
  // Fraction of the first `limit` examples (all by default) that predict() gets right.
  double accuracy(const Dataset& data, std::size_t limit = SIZE_MAX) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Copies the examples at `indices` into x (indices.size() x pixels) and y, resizing them: the
// minibatch the trainer feeds to forward(). Throws std::out_of_range for an index >= count.
Batch gather_batch(const Dataset& data, std::span<const std::uint32_t> indices,
                   std::vector<float>& x, std::vector<std::uint8_t>& y);

}  // namespace rdmacoll::training
