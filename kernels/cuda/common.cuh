// Device helpers shared by the CUDA kernel families: warp reductions and the activations, with
// the CPU backend's formulas (kernels/cpu/ops.cpp).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/ops.hpp"

namespace archreg::kernels::cuda {

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float silu(float x) {
  return x / (1.0f + expf(-x));
}

__device__ __forceinline__ float sigmoid_of(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// GELU (tanh approximation) through f16, as ggml's CPU backend computes it: f16(gelu(f16(x))).
__device__ __forceinline__ float gelu(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  const float h = __half2float(__float2half_rn(x));
  return __half2float(__float2half_rn(0.5f * h * (1.0f + tanhf(kSqrt2OverPi * h * (1.0f + kCoef * h * h)))));
}

// gpt-oss's clamped SwiGLU of one gate/up pair.
__device__ __forceinline__ float swiglu_oai(float gate, float up, float alpha, float limit) {
  const float x = fminf(gate, limit);
  const float y = fminf(fmaxf(up, -limit), limit);
  return x / (1.0f + expf(alpha * -x)) * (y + 1.0f);
}

// The activation of an ungated FFN (act(up)) or of the gate of a gated one.
__device__ __forceinline__ float activate(Activation a, float x) {
  return a == Activation::kGelu ? gelu(x) : silu(x);
}

__device__ __forceinline__ float glu_of(Activation a, float gate, float up, float alpha, float limit) {
  return a == Activation::kSwigluOai ? swiglu_oai(gate, up, alpha, limit) : activate(a, gate) * up;
}

// Grid-stride loop bounds for elementwise kernels.
inline unsigned blocks_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

}  // namespace archreg::kernels::cuda
