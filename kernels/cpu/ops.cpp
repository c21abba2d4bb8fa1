#include "cpu/ops.hpp"

#include <algorithm>
#include <cmath>

#include "cpu/quants.hpp"

namespace archreg::kernels::cpu {

void rms_norm_row(const float* x, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * scale;
}

void layer_norm_row(const float* x, float* y, int64_t n, float eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  double variance = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - mean;
    y[i] = d;
    variance += static_cast<double>(d) * static_cast<double>(d);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(variance / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] *= scale;
}

namespace {

float gelu_tanh(float x) {
  constexpr float kSqrt2OverPi = 0.79788456080286535587989211986876f;
  constexpr float kCoef = 0.044715f;
  return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * (1.0f + kCoef * x * x)));
}

}  // namespace

// As ggml's CPU backend computes GELU (GGML_GELU_FP16, its default): 0 below -10, identity above
// 10, otherwise a lookup in a table of f16 results indexed by x rounded to f16, i.e.
// f16(gelu(f16(x))). The table costs up to ~1e-3 relative per value against the exact formula,
// enough to move a tiny model's logits beyond the F32 tolerance of docs/numerics.md.
float gelu(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return fp16_to_fp32(fp32_to_fp16(gelu_tanh(fp16_to_fp32(fp32_to_fp16(x)))));
}

float swiglu_oai(float gate, float up, float alpha, float limit) {
  const float x = std::min(gate, limit);
  const float y = std::clamp(up, -limit, limit);
  const float glu = x / (1.0f + std::exp(alpha * -x));
  return glu * (y + 1.0f);
}

void softmax_row(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = std::max(max, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += static_cast<double>(x[i]);
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

namespace {

// YaRN: the dimensions below which positions are extrapolated and above which interpolated.
float yarn_corr_dim(int32_t n_dims, int32_t n_ctx_orig, float n_rot, float base) {
  return static_cast<float>(n_dims) * std::log(static_cast<float>(n_ctx_orig) / (n_rot * 2.0f * static_cast<float>(M_PI))) /
         (2.0f * std::log(base));
}

float yarn_ramp(float low, float high, int64_t i0) {
  const float y = (static_cast<float>(i0) / 2.0f - low) / std::max(0.001f, high - low);
  return 1.0f - std::min(1.0f, std::max(0.0f, y));
}

}  // namespace

void rope_cache(const RopeParams& p, int64_t position, float* cos_sin) {
  const float theta_scale = std::pow(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
  float corr_low = 0.0f;
  float corr_high = 0.0f;
  if (p.ext_factor != 0.0f) {
    corr_low = std::max(0.0f, std::floor(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
    corr_high = std::min(static_cast<float>(p.n_rot - 1), std::ceil(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
  }
  float theta_extrap = static_cast<float>(position);
  for (int32_t i = 0; i < p.n_rot / 2; ++i) {
    const float factor = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
    const float theta_base = theta_extrap / factor;
    const float theta_interp = p.freq_scale * theta_base;
    float theta = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float ramp_mix = yarn_ramp(corr_low, corr_high, 2 * i) * p.ext_factor;
      theta = theta_interp * (1 - ramp_mix) + theta_base * ramp_mix;
      mscale *= 1.0f + 0.1f * std::log(1.0f / p.freq_scale);
    }
    cos_sin[2 * i] = std::cos(theta) * mscale;
    cos_sin[2 * i + 1] = std::sin(theta) * mscale;
    theta_extrap *= theta_scale;
  }
}

void rope_apply(const RopeParams& p, const float* cos_sin, float* head) {
  const int32_t half = p.n_rot / 2;
  for (int32_t i = 0; i < half; ++i) {
    const float c = cos_sin[2 * i];
    const float s = cos_sin[2 * i + 1];
    float* a = p.neox ? head + i : head + 2 * i;
    float* b = p.neox ? head + i + half : head + 2 * i + 1;
    const float x0 = *a;
    const float x1 = *b;
    *a = x0 * c - x1 * s;
    *b = x0 * s + x1 * c;
  }
}

}  // namespace archreg::kernels::cpu
