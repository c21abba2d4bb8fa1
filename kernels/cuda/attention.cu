// Attention over the F32 KV cache, flash-attention style: a block takes kQueries queries that
// share one cache head (grouped heads of consecutive tokens), walks the cached positions in
// tiles of kTile loaded once into shared memory for all of them, and keeps an online softmax per
// query (running max, running sum, output accumulator in registers). A warp owns a query: lane j
// scores position j of the tile, then every lane accumulates its share of the head's values.
#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/ops.hpp"

namespace archreg::kernels::cuda {
namespace {

constexpr int kQueries = 8;  // warps per block, one query each
constexpr int kTile = 32;    // cached positions per tile: one per lane
constexpr int kValuesPerLane = static_cast<int>(kMaxHeadV / kWarp);

__global__ void store_kv_kernel(Attention a) {
  const int64_t t = blockIdx.x;
  const int64_t pos = *a.n_past + t;
  for (int64_t i = threadIdx.x; i < a.kw; i += blockDim.x) a.k_cache[pos * a.kw + i] = a.k[t * a.kw + i];
  for (int64_t i = threadIdx.x; i < a.vw; i += blockDim.x) a.v_cache[pos * a.vw + i] = a.v[t * a.vw + i];
}

// Shared memory: K tile [kTile][dk + 1] (the pitch dodges bank conflicts when lane j reads row
// j), V tile [kTile][dv], the block's queries [kQueries][dk].
__host__ __device__ inline int64_t shared_floats(int64_t dk, int64_t dv) {
  return kTile * (dk + 1) + kTile * dv + kQueries * dk;
}

__global__ void __launch_bounds__(kQueries* kWarp) attention_kernel(Attention a) {
  extern __shared__ float smem[];
  const int64_t dk = a.dk;
  const int64_t dv = a.dv;
  float* ks = smem;
  float* vs = ks + kTile * (dk + 1);
  float* qs = vs + kTile * dv;

  const int64_t group = a.heads / a.kv_heads;
  const int64_t kvh = blockIdx.y;
  const int64_t queries = group * a.tokens;  // of this cache head: query i is token i / group, head kvh * group + i % group
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kQueries;
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int64_t n_past = *a.n_past;

  const int64_t qi = q0 + warp;
  const bool active = qi < queries;
  const int64_t t = active ? qi / group : 0;
  const int64_t h = kvh * group + (active ? qi % group : 0);
  const int64_t pos = n_past + t;
  const int64_t first = a.window > 0 ? max(int64_t{0}, pos - a.window + 1) : 0;
  if (active) {
    for (int64_t d = lane; d < dk; d += kWarp) qs[warp * dk + d] = a.q[(t * a.heads + h) * dk + d];
  }

  // Positions the block's queries need: from the first query's window start to the last's.
  const int64_t t_first = q0 / group;
  const int64_t t_last = min(queries - 1, q0 + kQueries - 1) / group;
  const int64_t begin = a.window > 0 ? max(int64_t{0}, n_past + t_first - a.window + 1) : 0;
  const int64_t end = n_past + t_last + 1;

  float m = -INFINITY;
  float l = 0.0f;
  float o[kValuesPerLane];
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) o[i] = 0.0f;

  for (int64_t p0 = begin - begin % kTile; p0 < end; p0 += kTile) {
    __syncthreads();  // the previous tile (and the queries, the first time) are done with
    for (int64_t i = threadIdx.x; i < kTile * dk; i += blockDim.x) {
      const int64_t j = i / dk;
      const int64_t d = i % dk;
      ks[j * (dk + 1) + d] = p0 + j < end ? a.k_cache[(p0 + j) * a.kw + kvh * dk + d] : 0.0f;
    }
    for (int64_t i = threadIdx.x; i < kTile * dv; i += blockDim.x) {
      const int64_t j = i / dv;
      const int64_t d = i % dv;
      vs[j * dv + d] = p0 + j < end ? a.v_cache[(p0 + j) * a.vw + kvh * dv + d] : 0.0f;
    }
    __syncthreads();
    if (!active) continue;
    const int64_t p = p0 + lane;
    float s = -INFINITY;
    if (p >= first && p <= pos) {
      const float* kr = ks + lane * (dk + 1);
      const float* qv = qs + warp * dk;
      float dot = 0.0f;
      for (int64_t d = 0; d < dk; ++d) dot += qv[d] * kr[d];
      s = dot * a.scale;
      if (a.softcap != 0.0f) s = a.softcap * tanhf(s / a.softcap);
    }
    const float tile_max = warp_max(s);
    if (tile_max == -INFINITY) continue;  // nothing of this tile is visible to this query
    const float m_new = fmaxf(m, tile_max);
    const float correction = expf(m - m_new);  // 0 the first time (m = -inf)
    const float e = s == -INFINITY ? 0.0f : expf(s - m_new);
    l = l * correction + warp_sum(e);
    m = m_new;
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) o[i] *= correction;
    for (int j = 0; j < kTile; ++j) {
      const float pj = __shfl_sync(0xffffffffu, e, j);
      if (pj == 0.0f) continue;
      const float* vr = vs + j * dv;
#pragma unroll
      for (int i = 0; i < kValuesPerLane; ++i) {
        const int64_t d = lane + static_cast<int64_t>(i) * kWarp;
        if (d < dv) o[i] += pj * vr[d];
      }
    }
  }
  if (!active) return;
  if (a.sinks != nullptr) {  // a learned logit that takes probability and contributes no value
    const float sink = a.sinks[h];
    const float m_new = fmaxf(m, sink);
    const float correction = expf(m - m_new);
    l = l * correction + expf(sink - m_new);
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) o[i] *= correction;
  }
  const float inverse = 1.0f / l;
  float* out = a.out + (t * a.heads + h) * dv;
#pragma unroll
  for (int i = 0; i < kValuesPerLane; ++i) {
    const int64_t d = lane + static_cast<int64_t>(i) * kWarp;
    if (d < dv) out[d] = o[i] * inverse;
  }
}

}  // namespace

void attention(const Attention& a, cudaStream_t stream) {
  store_kv_kernel<<<static_cast<unsigned>(a.tokens), 256, 0, stream>>>(a);
  const int64_t queries = a.heads / a.kv_heads * a.tokens;
  const size_t bytes = static_cast<size_t>(shared_floats(a.dk, a.dv)) * sizeof(float);
  // Above the default 48 KiB a kernel must opt in; the attribute is per function, set once
  // for the largest head seen (cheap, and allowed while a stream is being captured).
  static size_t opted_in = 48 * 1024;
  if (bytes > opted_in) {
    cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    opted_in = bytes;
  }
  const dim3 grid(static_cast<unsigned>((queries + kQueries - 1) / kQueries), static_cast<unsigned>(a.kv_heads));
  attention_kernel<<<grid, kQueries * kWarp, bytes, stream>>>(a);
}

}  // namespace archreg::kernels::cuda
