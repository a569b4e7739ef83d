// Counts heap allocations made through operator new in this process: the library's C++ code.
// UCX and the verbs provider are C and use malloc, which this does not see. (The replacement
// lives in its own file so that the compiler does not pair it with the callers' deletes.)
#pragma once

#include <cstdint>

namespace rdmacoll::testing {

uint64_t heap_allocations();

}  // namespace rdmacoll::testing
