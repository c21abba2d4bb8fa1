// MoE routing, grouping and combining around the grouped products of product.cu: the router's
// logits become each token's experts and weights (llama.cpp's build_moe_ffn order, as the CPU
// backend), the (token, choice) slots are grouped by expert into work tiles, and the experts'
// outputs are summed back per token with their weights.
#include "cuda/common.cuh"
#include "cuda/ops.hpp"

namespace archreg::kernels::cuda {
namespace {

constexpr int kMaxGroups = 64;

// softmax in place over n values, the sum accumulated in double as the CPU backend does.
__device__ void softmax(float* x, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) max = fmaxf(max, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = expf(x[i] - max);
    sum += static_cast<double>(x[i]);
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

// One thread per token: routing is a few hundred operations per token, next to products of
// millions.
__global__ void route_kernel(Routing r, float* logits, float* selection, int64_t n_expert, int64_t tokens, int32_t* chosen,
                             float* weights) {
  const int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (t >= tokens) return;
  float* probs = logits + t * n_expert;
  float* sel = selection + t * n_expert;
  if (r.gating == 0) {
    softmax(probs, n_expert);
  } else if (r.gating == 1) {
    for (int64_t e = 0; e < n_expert; ++e) probs[e] = sigmoid_of(probs[e]);
  }  // 2 (softmax over the chosen): raw logits now
  for (int64_t e = 0; e < n_expert; ++e) sel[e] = r.selection_bias != nullptr ? probs[e] + r.selection_bias[e] : probs[e];
  if (r.n_group > 1) {
    // Keep the n_group_used groups whose two best experts score highest (ties: the lower group).
    const int64_t per_group = n_expert / r.n_group;
    float score[kMaxGroups];
    for (int g = 0; g < r.n_group; ++g) {
      float best = -INFINITY;
      float second = -INFINITY;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) {
        if (sel[e] > best) {
          second = best;
          best = sel[e];
        } else if (sel[e] > second) {
          second = sel[e];
        }
      }
      score[g] = per_group > 1 ? best + second : best;
    }
    for (int g = 0; g < r.n_group; ++g) {
      int rank = 0;
      for (int o = 0; o < r.n_group; ++o) rank += score[o] > score[g] || (score[o] == score[g] && o < g);
      if (rank < r.n_group_used) continue;
      for (int64_t e = g * per_group; e < (g + 1) * per_group; ++e) sel[e] = -INFINITY;
    }
  }
  int32_t* c = chosen + t * r.used;
  float* w = weights + t * r.used;
  for (int32_t k = 0; k < r.used; ++k) {  // the best remaining; ties: the lower expert
    int64_t best = -1;
    for (int64_t e = 0; e < n_expert; ++e) {
      bool taken = false;
      for (int32_t j = 0; j < k; ++j) taken |= c[j] == e;
      if (!taken && (best < 0 || sel[e] > sel[best])) best = e;
    }
    c[k] = static_cast<int32_t>(best);
    w[k] = probs[best];
  }
  if (r.gating == 2) softmax(w, r.used);
  if (r.normalize != 0) {
    float sum = 0.0f;
    for (int32_t k = 0; k < r.used; ++k) sum += w[k];
    sum = fmaxf(sum, 6.103515625e-5f);
    for (int32_t k = 0; k < r.used; ++k) w[k] /= sum;
  }
  if (r.weight_scale != 1.0f) {
    for (int32_t k = 0; k < r.used; ++k) w[k] *= r.weight_scale;
  }
}

// One block: counts per expert, offsets, the work tiles (a serial pass over the experts), then
// each slot's place in its expert's range.
__global__ void group_kernel(const int32_t* chosen, int64_t slots, int32_t used, int64_t n_expert, int64_t tile_cols, int32_t* offsets,
                             int32_t* slot_token, int32_t* slot_of, int32_t* tiles, int32_t* n_tiles) {
  __shared__ int32_t counts[kMaxExperts];
  __shared__ int32_t fill[kMaxExperts];
  for (int64_t e = threadIdx.x; e < n_expert; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  for (int64_t s = threadIdx.x; s < slots; s += blockDim.x) atomicAdd(&counts[chosen[s]], 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    int32_t at = 0;
    int32_t n = 0;
    for (int64_t e = 0; e < n_expert; ++e) {
      offsets[e] = at;
      fill[e] = at;
      for (int32_t c0 = 0; c0 < counts[e]; c0 += static_cast<int32_t>(tile_cols)) {
        tiles[3 * n] = static_cast<int32_t>(e);
        tiles[3 * n + 1] = at + c0;
        tiles[3 * n + 2] = min(static_cast<int32_t>(tile_cols), counts[e] - c0);
        ++n;
      }
      at += counts[e];
    }
    offsets[n_expert] = at;
    *n_tiles = n;
  }
  __syncthreads();
  for (int64_t s = threadIdx.x; s < slots; s += blockDim.x) {
    const int32_t slot = atomicAdd(&fill[chosen[s]], 1);
    slot_token[slot] = static_cast<int32_t>(s / used);
    slot_of[s] = slot;
  }
}

__global__ void combine_kernel(const float* y, const int32_t* slot_of, const float* weights, float* out, int64_t n_embd, int32_t used) {
  const int64_t t = blockIdx.x;
  for (int64_t i = threadIdx.x; i < n_embd; i += blockDim.x) {
    float o = 0.0f;
    for (int32_t k = 0; k < used; ++k) {
      const float v = y[static_cast<int64_t>(slot_of[t * used + k]) * n_embd + i] * weights[t * used + k];
      o = k == 0 ? v : o + v;
    }
    out[t * n_embd + i] = o;
  }
}

}  // namespace

void moe_route(const Routing& r, float* logits, float* selection, int64_t n_expert, int64_t tokens, int32_t* chosen, float* weights,
               cudaStream_t stream) {
  route_kernel<<<static_cast<unsigned>((tokens + 63) / 64), 64, 0, stream>>>(r, logits, selection, n_expert, tokens, chosen, weights);
}

void moe_group(const int32_t* chosen, int64_t slots, int32_t used, int64_t n_expert, int64_t tile_cols, int32_t* offsets,
               int32_t* slot_token, int32_t* slot_of, int32_t* tiles, int32_t* n_tiles, cudaStream_t stream) {
  group_kernel<<<1, 1024, 0, stream>>>(chosen, slots, used, n_expert, tile_cols, offsets, slot_token, slot_of, tiles, n_tiles);
}

void moe_combine(const float* y, const int32_t* slot_of, const float* weights, float* out, int64_t n_embd, int64_t tokens, int32_t used,
                 cudaStream_t stream) {
  combine_kernel<<<static_cast<unsigned>(tokens), 256, 0, stream>>>(y, slot_of, weights, out, n_embd, used);
}

}  // namespace archreg::kernels::cuda
