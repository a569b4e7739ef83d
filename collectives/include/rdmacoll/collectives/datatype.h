// Element types and reduction operators of the collectives, with the names tools accept.
#pragma once

#include <cstddef>
#include <string_view>

namespace rdmacoll::collectives {

// Element type of a collective's buffer. f16 and bf16 are stored as 16-bit patterns
// (see half.h); everything else is the native C++ type of the same width.
enum class DataType { f32, f64, f16, bf16, i8, u8, i32, i64 };

// sum and prod on integers wrap around (two's complement); avg is a sum followed by
// finalize_avg() once all contributions are in (see reduce.h).
enum class ReduceOp { sum, prod, min, max, avg };

// Every value of the enums, in declaration order, for tests and --help texts.
inline constexpr DataType kAllDataTypes[] = {DataType::f32,  DataType::f64, DataType::f16,
                                             DataType::bf16, DataType::i8,  DataType::u8,
                                             DataType::i32,  DataType::i64};
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::sum, ReduceOp::prod, ReduceOp::min,
                                             ReduceOp::max, ReduceOp::avg};

// Size of one element in bytes. Throws std::invalid_argument for a value outside the enum.
std::size_t dtype_size(DataType type);

// Canonical short name: "f32", "bf16", "i64", ...; "sum", "avg", ... Parsing it gives the
// value back. Returns "unknown" for a value outside the enum (never throws: used in messages).
std::string_view to_string(DataType type) noexcept;
std::string_view to_string(ReduceOp op) noexcept;

// Case-insensitive. Accepts the canonical names, the names nccl-tests uses (float, double,
// half, bfloat16, int8, uint8, int32, int64) and common aliases (fp32, float32, fp16, ...).
// Throws std::invalid_argument naming the bad value and listing the accepted names.
DataType parse_datatype(std::string_view name);
ReduceOp parse_reduce_op(std::string_view name);

}  // namespace rdmacoll::collectives
