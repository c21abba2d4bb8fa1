// Row-level float kernels of the CPU backend: norms, activations, RoPE, softmax. Each works on
// one row (or one token's heads), so the runtime can split a node's rows between threads.
// Formulas follow ggml's CPU backend (llama.cpp is the reference users compare with).
#pragma once

#include <cstdint>

namespace archreg::kernels::cpu {

// y = x / sqrt(mean(x^2) + eps)   (sum of squares accumulated in double, as ggml does)
void rms_norm_row(const float* x, float* y, int64_t n, float eps);
// y = (x - mean) / sqrt(var + eps)
void layer_norm_row(const float* x, float* y, int64_t n, float eps);

inline float silu(float x) {
  return x / (1.0f + __builtin_expf(-x));
}
inline float sigmoid(float x) {
  return 1.0f / (1.0f + __builtin_expf(-x));
}
// GELU, tanh approximation, through f16 as ggml's CPU backend computes it (see ops.cpp).
float gelu(float x);
// gpt-oss's clamped SwiGLU of one gate/up pair.
float swiglu_oai(float gate, float up, float alpha, float limit);

// In place: x = softmax(x), sum accumulated in double. Returns the sum of exp before division.
void softmax_row(float* x, int64_t n);

// Rotary embedding tables for one position: cos/sin of n_rot/2 angles (YaRN-corrected).
struct RopeParams {
  int32_t n_rot = 0;
  bool neox = false;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  float ext_factor = 0.0f;
  float attn_factor = 1.0f;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int32_t n_ctx_orig = 0;
  const float* freq_factors = nullptr;  // n_rot/2 divisors, or nullptr
};
void rope_cache(const RopeParams& p, int64_t position, float* cos_sin /* 2 * n_rot/2 */);
// Rotates the first n_rot values of one head of head_dim values in place.
void rope_apply(const RopeParams& p, const float* cos_sin, float* head);

}  // namespace archreg::kernels::cpu
