/* hip_bf16.h for scripts/check-hip only: the names of ROCm 6's header that the CUDA backend
 * uses, for a ROCm (5.2, Debian's) that lacks the header. Not for builds that run. */
#pragma once
#include <hip/hip_runtime.h>
struct __hip_bfloat16 { unsigned short data; };
static __host__ __device__ inline __hip_bfloat16 __float2bfloat16(float f)
{
    union { float f; unsigned u; } v = {f};
    v.u += 0x7fffu + ((v.u >> 16) & 1u);
    return __hip_bfloat16{(unsigned short)(v.u >> 16)};
}
static __host__ __device__ inline float __bfloat162float(__hip_bfloat16 b)
{
    union { unsigned u; float f; } v = {(unsigned)b.data << 16};
    return v.f;
}
