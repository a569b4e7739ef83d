#include "rdmacoll/collectives/datatype.h"

#include <stdexcept>
#include <string>

namespace rdmacoll::collectives {
namespace {

// One row per accepted spelling; the first row of each value is its canonical name, which
// is what to_string() returns. nccl-tests spells types as int8 ... bfloat16.
template <class E>
struct Name {
  std::string_view name;
  E value;
};

constexpr Name<DataType> kTypeNames[] = {
    {"f32", DataType::f32},     {"float", DataType::f32},     {"fp32", DataType::f32},
    {"float32", DataType::f32}, {"f64", DataType::f64},       {"double", DataType::f64},
    {"fp64", DataType::f64},    {"float64", DataType::f64},   {"f16", DataType::f16},
    {"half", DataType::f16},    {"fp16", DataType::f16},      {"float16", DataType::f16},
    {"bf16", DataType::bf16},   {"bfloat16", DataType::bf16}, {"i8", DataType::i8},
    {"int8", DataType::i8},     {"u8", DataType::u8},         {"uint8", DataType::u8},
    {"i32", DataType::i32},     {"int32", DataType::i32},     {"int", DataType::i32},
    {"i64", DataType::i64},     {"int64", DataType::i64},
};

constexpr Name<ReduceOp> kOpNames[] = {
    {"sum", ReduceOp::sum}, {"prod", ReduceOp::prod}, {"min", ReduceOp::min},
    {"max", ReduceOp::max}, {"avg", ReduceOp::avg},   {"mean", ReduceOp::avg},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

template <class E, std::size_t N>
std::string_view canonical(const Name<E> (&table)[N], E value) noexcept {
  for (const auto& row : table)
    if (row.value == value) return row.name;
  return "unknown";
}

// "f32 (float, fp32, float32), f64 (double, ...), ...": groups aliases under their value so
// the user sees at a glance which spellings mean the same thing.
template <class E, std::size_t N>
std::string accepted_names(const Name<E> (&table)[N]) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    bool first_of_value = i == 0 || table[i - 1].value != table[i].value;
    bool last_of_value = i + 1 == N || table[i + 1].value != table[i].value;
    if (first_of_value) {
      if (i != 0) out += ", ";
      out += table[i].name;
      if (!last_of_value) out += " (";
    } else {
      out += table[i].name;
      out += last_of_value ? ")" : ", ";
    }
  }
  return out;
}

template <class E, std::size_t N>
E parse(const Name<E> (&table)[N], std::string_view name, std::string_view what) {
  for (const auto& row : table)
    if (iequals(name, row.name)) return row.value;
  throw std::invalid_argument("unknown " + std::string(what) + " '" + std::string(name) +
                              "'; accepted: " + accepted_names(table));
}

}  // namespace

std::size_t dtype_size(DataType type) {
  switch (type) {
    case DataType::f32: return 4;
    case DataType::f64: return 8;
    case DataType::f16: return 2;
    case DataType::bf16: return 2;
    case DataType::i8: return 1;
    case DataType::u8: return 1;
    case DataType::i32: return 4;
    case DataType::i64: return 8;
  }
  throw std::invalid_argument("dtype_size: invalid DataType value " +
                              std::to_string(static_cast<int>(type)));
}

std::string_view to_string(DataType type) noexcept { return canonical(kTypeNames, type); }
std::string_view to_string(ReduceOp op) noexcept { return canonical(kOpNames, op); }

DataType parse_datatype(std::string_view name) { return parse(kTypeNames, name, "data type"); }
ReduceOp parse_reduce_op(std::string_view name) { return parse(kOpNames, name, "reduction op"); }

}  // namespace rdmacoll::collectives
