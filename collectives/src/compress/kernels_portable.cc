// The codec kernels for any CPU (baseline x86-64: SSE2). See kernels.h.
#define RDMACOLL_CODEC_ISA portable
#define RDMACOLL_CODEC_AVX2 0
#include "compress/kernels.h"
