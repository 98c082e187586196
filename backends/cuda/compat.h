/* compat.h - the one vendor header of the CUDA backend. The sources use CUDA's names;
 * a ROCm build (LLM_HIP defined, compiled by hipcc) maps them onto HIP's here, so the
 * ROCm backend is this backend compiled again rather than a copy. Nothing else in
 * backends/cuda/ includes a vendor header, and no kernel uses inline PTX. The warp width
 * is LLM_WARP_SIZE, never a literal 32 (CDNA has 64 lanes). */
#ifndef LLM_CUDA_COMPAT_H
#define LLM_CUDA_COMPAT_H

#ifdef LLM_HIP
/* hipBLAS's GemmEx with hipDataType and hipblasComputeType_t (ROCm 6: opt-in) */
#define HIPBLAS_V2
#include <hip/hip_bf16.h>
#include <hip/hip_fp16.h>
#include <hip/hip_runtime.h>
#include <hipblas/hipblas.h>

#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaGetErrorString hipGetErrorString
#define cudaGetLastError hipGetLastError
#define cudaGetDeviceCount hipGetDeviceCount
#define cudaGetDeviceProperties hipGetDeviceProperties
#define cudaDeviceProp hipDeviceProp_t
#define cudaSetDevice hipSetDevice
#define cudaMalloc hipMalloc
#define cudaFree hipFree
#define cudaMemcpy hipMemcpy
#define cudaMemset hipMemset
#define cudaErrorMemoryAllocation hipErrorOutOfMemory
#define cudaMemcpyAsync hipMemcpyAsync
#define cudaMemGetInfo hipMemGetInfo
#define cudaMemsetAsync hipMemsetAsync
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define cudaMallocHost hipHostMalloc
#define cudaFreeHost hipHostFree
#define cudaStream_t hipStream_t
#define cudaStreamCreateWithFlags hipStreamCreateWithFlags
#define cudaStreamNonBlocking hipStreamNonBlocking
#define cudaStreamDestroy hipStreamDestroy
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaStreamBeginCapture hipStreamBeginCapture
#define cudaStreamEndCapture hipStreamEndCapture
#define cudaStreamCaptureModeThreadLocal hipStreamCaptureModeThreadLocal
#define cudaStreamCaptureModeRelaxed hipStreamCaptureModeRelaxed
#define cudaGraph_t hipGraph_t
#define cudaGraphExec_t hipGraphExec_t
#define cudaGraphInstantiate(e, g, f) hipGraphInstantiate(e, g, NULL, NULL, 0)
#define cudaGraphLaunch hipGraphLaunch
#define cudaGraphDestroy hipGraphDestroy
#define cudaGraphExecDestroy hipGraphExecDestroy
#define cudaDriverGetVersion hipDriverGetVersion
#define cudaRuntimeGetVersion hipRuntimeGetVersion
#define cudaFuncSetAttribute hipFuncSetAttribute
#define cudaFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define cudaEvent_t hipEvent_t
#define cudaEventCreate hipEventCreate
#define cudaEventDestroy hipEventDestroy
#define cudaEventRecord hipEventRecord
#define cudaEventElapsedTime hipEventElapsedTime
/* hip_bf16.h's type; it has no _rn spelling, its __float2bfloat16 rounds to nearest even */
#define __nv_bfloat16 __hip_bfloat16
#define __float2bfloat16_rn __float2bfloat16

#define cublasHandle_t hipblasHandle_t
#define cublasStatus_t hipblasStatus_t
#define CUBLAS_STATUS_SUCCESS HIPBLAS_STATUS_SUCCESS
#define cublasCreate hipblasCreate
#define cublasDestroy hipblasDestroy
#define cublasSetStream hipblasSetStream
#define cublasGemmEx hipblasGemmEx
#define cublasGemmStridedBatchedEx hipblasGemmStridedBatchedEx
#define cudaDataType_t hipDataType
#define cublasSgemm hipblasSgemm
#define CUBLAS_OP_N HIPBLAS_OP_N
#define CUBLAS_OP_T HIPBLAS_OP_T
#define CUDA_R_16F HIP_R_16F
#define CUDA_R_16BF HIP_R_16BF
#define CUDA_R_32F HIP_R_32F
#define CUBLAS_COMPUTE_32F HIPBLAS_COMPUTE_32F
#define CUBLAS_GEMM_DEFAULT HIPBLAS_GEMM_DEFAULT

#define LLM_WARP_SIZE 64
#else
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define LLM_WARP_SIZE 32
#endif

/* Updates an instantiated graph in place from a graph of the same shape; false when the
 * shapes differ (or the update fails otherwise). */
#ifdef LLM_HIP
static inline bool llm_graph_update(hipGraphExec_t e, hipGraph_t g)
{
    hipGraphNode_t node;
    hipGraphExecUpdateResult r;
    return hipGraphExecUpdate(e, g, &node, &r) == hipSuccess;
}
#else
static inline bool llm_graph_update(cudaGraphExec_t e, cudaGraph_t g)
{
    cudaGraphExecUpdateResultInfo info;
    return cudaGraphExecUpdate(e, g, &info) == cudaSuccess;
}
#endif

/* Full-warp shuffle, with the lane mask spelled for each vendor. */
#ifdef LLM_HIP
#define LLM_SHFL_XOR(v, m) __shfl_xor((v), (m))
#define LLM_SHFL(v, l, w) __shfl((v), (l), (w))
#else
#define LLM_SHFL_XOR(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#define LLM_SHFL(v, l, w) __shfl_sync(0xffffffffu, (v), (l), (w))
#endif

/* A load through the L2 cache only, of data another block of the same kernel wrote (and
 * published with a fence): never from a stale L1 line. */
#ifdef LLM_HIP
#define LLM_LDCG(p) __builtin_nontemporal_load(p)
#else
#define LLM_LDCG(p) __ldcg(p)
#endif

/* Programmatic dependent launch (compute 9.0 and later; nothing elsewhere): a kernel that
 * cu_launch (common.cuh) started early calls LLM_PDL_WAIT() before it reads or writes any
 * memory the kernels before it use (it returns once they have finished and their writes
 * are visible), then LLM_PDL_TRIGGER() to let the kernel after it be started early in
 * turn. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(LLM_HIP)
#define LLM_PDL_WAIT() cudaGridDependencySynchronize()
#define LLM_PDL_TRIGGER() cudaTriggerProgrammaticLaunchCompletion()
#else
#define LLM_PDL_WAIT() ((void)0)
#define LLM_PDL_TRIGGER() ((void)0)
#endif

/* dp4a: c + the dot product of the four signed bytes of a and of b. */
#ifdef LLM_HIP
static __device__ __forceinline__ int llm_dp4a(int a, int b, int c)
{
#pragma unroll
    for (int i = 0; i < 4; i++)
        c += (int)(signed char)(a >> (8 * i)) * (int)(signed char)(b >> (8 * i));
    return c;
}
#else
#define llm_dp4a(a, b, c) __dp4a((a), (b), (c))
#endif

#endif
