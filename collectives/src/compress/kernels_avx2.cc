// The codec kernels for CPUs with AVX2, FMA and F16C. See kernels.h.
//
// Every header is included before the target pragma, so the inline functions they define
// (std::, half.h, the hash) keep the baseline target: the linker may pick any translation
// unit's copy of an inline function, and the portable kernels must never get an AVX2 one.
#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "compress/kernel_table.h"
#include "rdmacoll/collectives/half.h"

// GCC takes a target pragma; clang ignores it (with -Wunknown-pragmas) and takes the same
// features as an attribute applied to every function until the pop.
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif
#define RDMACOLL_CODEC_ISA avx2
#define RDMACOLL_CODEC_AVX2 1
#include "compress/kernels.h"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
