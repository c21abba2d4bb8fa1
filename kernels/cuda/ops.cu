// The small operations: embedding lookup, norms, RoPE and the elementwise blocks. Formulas as
// the CPU backend's (kernels/cpu/ops.cpp); reductions run in F32 over a block.
#include "cuda/common.cuh"
#include "cuda/decode.cuh"
#include "cuda/ops.hpp"

namespace archreg::kernels::cuda {
namespace {

constexpr int kThreads = 256;

#define ARCHREG_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); i += static_cast<int64_t>(gridDim.x) * blockDim.x)

template <typename F>
__global__ void embed_kernel(const uint8_t* table, int64_t row_bytes, int64_t n_embd, const int32_t* tokens, float* out) {
  const int64_t t = blockIdx.x;
  const uint8_t* row = table + static_cast<int64_t>(tokens[t]) * row_bytes;
  float* o = out + t * n_embd;
  const int64_t chunks = (n_embd + 31) / 32;
  for (int64_t ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
    const int64_t at = 32 * ch;
    if (at + 32 <= n_embd) {
      F::decode32(row, ch, o + at);
    } else if constexpr (F::block == 1) {
      for (int64_t i = at; i < n_embd; ++i) o[i] = F::element(row, i);
    }
  }
}

// Sum of v over the block (every thread gets it).
__device__ float block_sum(float v) {
  __shared__ float partial[kThreads / kWarp];
  __shared__ float total;
  v = warp_sum(v);
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = v;
  __syncthreads();
  if (threadIdx.x < kWarp) {
    float s = threadIdx.x < blockDim.x / kWarp ? partial[threadIdx.x] : 0.0f;
    s = warp_sum(s);
    if (threadIdx.x == 0) total = s;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // partial and total are reused by the next call
  return result;
}

__global__ void norm_kernel(const float* x, float* y, int64_t len, bool rms, float eps, const float* w, const float* b) {
  const float* xr = x + blockIdx.x * len;
  float* yr = y + blockIdx.x * len;
  float scale;
  float mean = 0.0f;
  if (rms) {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += xr[i] * xr[i];
    scale = rsqrtf(block_sum(s) / static_cast<float>(len) + eps);
  } else {
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += xr[i];
    mean = block_sum(s) / static_cast<float>(len);
    float v = 0.0f;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) v += (xr[i] - mean) * (xr[i] - mean);
    scale = rsqrtf(block_sum(v) / static_cast<float>(len) + eps);
  }
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    float o = (xr[i] - mean) * scale;
    if (w != nullptr) o *= w[i];
    if (b != nullptr) o += b[i];
    yr[i] = o;
  }
}

__global__ void binary_kernel(const float* a, const float* b, float* y, int64_t len, int64_t n, bool b_one_row, bool b_per_row_scalar,
                              bool add) {
  ARCHREG_GRID_STRIDE(i, n) {
    const int64_t r = i / len;
    const float bv = b_per_row_scalar ? b[r] : b_one_row ? b[i % len] : b[i];
    y[i] = add ? a[i] + bv : a[i] * bv;
  }
}

__global__ void scale_kernel(const float* x, float* y, int64_t n, float factor) {
  ARCHREG_GRID_STRIDE(i, n) y[i] = x[i] * factor;
}

__global__ void sigmoid_kernel(const float* x, float* y, int64_t n) {
  ARCHREG_GRID_STRIDE(i, n) y[i] = sigmoid_of(x[i]);
}

__global__ void slice_kernel(const float* x, float* y, int64_t x_len, int64_t begin, int64_t len, int64_t n) {
  ARCHREG_GRID_STRIDE(i, n) y[i] = x[i / len * x_len + begin + i % len];
}

__global__ void concat_kernel(const float* a, const float* b, float* y, int64_t a_len, int64_t b_len, int64_t b_repeat, int64_t n) {
  const int64_t len = a_len + b_len;
  ARCHREG_GRID_STRIDE(i, n) {
    const int64_t r = i / len;
    const int64_t j = i % len;
    y[i] = j < a_len ? a[r * a_len + j] : b[(b_repeat > 1 ? r / b_repeat : r) * b_len + j - a_len];
  }
}

__global__ void copy_kernel(const float* x, float* y, int64_t n) {
  ARCHREG_GRID_STRIDE(i, n) y[i] = x[i];
}

// YaRN: the dimension below which positions are extrapolated and above which interpolated.
__device__ float yarn_corr_dim(int32_t n_dims, int32_t n_ctx_orig, float n_rot, float base) {
  return static_cast<float>(n_dims) * logf(static_cast<float>(n_ctx_orig) / (n_rot * 2.0f * 3.14159265358979323846f)) / (2.0f * logf(base));
}

// A block per token: the angles of its position once (as rope_cache: theta multiplied up pair by
// pair), then every head's rotated pairs, the unrotated tail copied.
__global__ void rope_kernel(Rope p, const float* x, float* y, int64_t head, int64_t heads, const int64_t* n_past) {
  extern __shared__ float cos_sin[];
  const int64_t t = blockIdx.x;
  const int32_t half = p.n_rot / 2;
  for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
    const float theta_scale = powf(p.freq_base, -2.0f / static_cast<float>(p.n_rot));
    float theta_extrap = static_cast<float>(*n_past + t);
    for (int32_t j = 0; j < i; ++j) theta_extrap *= theta_scale;
    const float factor = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
    const float theta_base = theta_extrap / factor;
    const float theta_interp = p.freq_scale * theta_base;
    float theta = theta_interp;
    float mscale = p.attn_factor;
    if (p.ext_factor != 0.0f) {
      const float low = fmaxf(0.0f, floorf(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_fast, p.freq_base)));
      const float high = fminf(static_cast<float>(p.n_rot - 1), ceilf(yarn_corr_dim(p.n_rot, p.n_ctx_orig, p.beta_slow, p.freq_base)));
      const float ramp = 1.0f - fminf(1.0f, fmaxf(0.0f, (static_cast<float>(i) - low) / fmaxf(0.001f, high - low)));
      const float mix = ramp * p.ext_factor;
      theta = theta_interp * (1 - mix) + theta_base * mix;
      mscale *= 1.0f + 0.1f * logf(1.0f / p.freq_scale);
    }
    cos_sin[2 * i] = cosf(theta) * mscale;
    cos_sin[2 * i + 1] = sinf(theta) * mscale;
  }
  __syncthreads();
  const float* xt = x + t * heads * head;
  float* yt = y + t * heads * head;
  const int64_t rest = head - p.n_rot;  // unrotated values per head
  const int64_t per_head = half + rest;
  for (int64_t i = threadIdx.x; i < heads * per_head; i += blockDim.x) {
    const int64_t h = i / per_head;
    const int64_t j = i % per_head;
    const float* xh = xt + h * head;
    float* yh = yt + h * head;
    if (j >= half) {
      const int64_t d = p.n_rot + (j - half);
      yh[d] = xh[d];
      continue;
    }
    const int64_t a = p.neox ? j : 2 * j;
    const int64_t b = p.neox ? j + half : 2 * j + 1;
    const float c = cos_sin[2 * j];
    const float s = cos_sin[2 * j + 1];
    const float x0 = xh[a];
    const float x1 = xh[b];
    yh[a] = x0 * c - x1 * s;
    yh[b] = x0 * s + x1 * c;
  }
}

}  // namespace

void embed(const uint8_t* table, int32_t type, int64_t row_bytes, int64_t n_embd, const int32_t* tokens, int64_t n_tokens, float* out,
           cudaStream_t stream) {
  visit_format(type, [&](auto format) {
    embed_kernel<decltype(format)><<<static_cast<unsigned>(n_tokens), 128, 0, stream>>>(table, row_bytes, n_embd, tokens, out);
  });
}

void norm(const float* x, float* y, int64_t len, int64_t rows, bool rms, float eps, const float* w, const float* b, cudaStream_t stream) {
  norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, y, len, rms, eps, w, b);
}

void binary(const float* a, const float* b, float* y, int64_t len, int64_t rows, bool b_one_row, bool b_per_row_scalar, bool add,
            cudaStream_t stream) {
  binary_kernel<<<blocks_for(len * rows, kThreads), kThreads, 0, stream>>>(a, b, y, len, len * rows, b_one_row, b_per_row_scalar, add);
}

void scale(const float* x, float* y, int64_t n, float factor, cudaStream_t stream) {
  scale_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(x, y, n, factor);
}

void sigmoid(const float* x, float* y, int64_t n, cudaStream_t stream) {
  sigmoid_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
}

void slice(const float* x, float* y, int64_t x_len, int64_t begin, int64_t len, int64_t rows, cudaStream_t stream) {
  slice_kernel<<<blocks_for(len * rows, kThreads), kThreads, 0, stream>>>(x, y, x_len, begin, len, len * rows);
}

void concat(const float* a, const float* b, float* y, int64_t a_len, int64_t b_len, int64_t rows, int64_t b_repeat, cudaStream_t stream) {
  concat_kernel<<<blocks_for((a_len + b_len) * rows, kThreads), kThreads, 0, stream>>>(a, b, y, a_len, b_len, b_repeat,
                                                                                       (a_len + b_len) * rows);
}

void copy(const float* x, float* y, int64_t n, cudaStream_t stream) {
  copy_kernel<<<blocks_for(n, kThreads), kThreads, 0, stream>>>(x, y, n);
}

void rope(const Rope& r, const float* x, float* y, int64_t head, int64_t heads, int64_t tokens, const int64_t* n_past,
          cudaStream_t stream) {
  const size_t bytes = static_cast<size_t>(r.n_rot) * sizeof(float);
  rope_kernel<<<static_cast<unsigned>(tokens), kThreads, bytes, stream>>>(r, x, y, head, heads, n_past);
}

}  // namespace archreg::kernels::cuda
