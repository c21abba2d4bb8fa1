// Products of quantized weights with F32 activations: one kernel family for dense matmuls, the
// per-head matrices of MLA, an FFN's gate|up and down, and every expert of a MoE layer at once
// (grouped: the work tiles moe_group lists). Two kernels:
// - vector (at most kVectorColumns columns per matrix: decode): a warp per output row, each lane
//   decoding 32-weight chunks into registers and dotting them with every column; memory-bound,
//   the weights are read once;
// - tiled (prefill): a block per 64 rows x 64 columns, weights decoded chunk by chunk into shared
//   memory and multiplied on the tensor cores (TF32 WMMA, F32 accumulation).
// The epilogue finishes each value where it is computed: per-matrix scale and bias, and for a
// gated FFN the GLU of the gate row with its up row — gate and up are two row pointers, into one
// fused storage or into two tensors, so fused and unfused files run the same kernel.
#include <mma.h>

#include <algorithm>

#include "cuda/common.cuh"
#include "cuda/decode.cuh"
#include "cuda/ops.hpp"

namespace archreg::kernels::cuda {
namespace {

// One work tile: matrix m, columns [c0, c0 + count).
struct Tile {
  int64_t m;
  int64_t c0;
  int64_t count;
};

__device__ __forceinline__ bool tile_of(const Product& p, int64_t wi, int64_t width, Tile& t) {
  if (p.tiles != nullptr) {
    if (wi >= *p.n_tiles) return false;
    t.m = p.tiles[3 * wi];
    t.c0 = p.tiles[3 * wi + 1];
    t.count = p.tiles[3 * wi + 2];
    return true;
  }
  const int64_t per_mat = (p.cols + width - 1) / width;
  t.m = wi / per_mat;
  t.c0 = wi % per_mat * width;
  t.count = min(width, p.cols - t.c0);
  return t.m < p.n_mat;
}

__device__ __forceinline__ const float* column(const Product& p, int64_t m, int64_t c) {
  return p.x + m * p.x_mat + (p.gather != nullptr ? static_cast<int64_t>(p.gather[c]) : c) * p.x_col;
}

__device__ __forceinline__ float finish(const Weight& w, int64_t rows, int64_t m, int64_t r, float v, bool scale_first) {
  const float s = w.scale != nullptr ? w.scale[m] : 1.0f;
  const float b = w.bias != nullptr ? w.bias[m * rows + r] : 0.0f;
  return scale_first ? v * s + b : (v + b) * s;
}

template <Epilogue E>
__device__ __forceinline__ float epilogue(const Product& p, int64_t m, int64_t r, float v, float u) {
  const float g = finish(p.w, p.rows, m, r, v, p.scale_first);
  if constexpr (E == Epilogue::kGlu) {
    return glu_of(p.activation, g, finish(p.up, p.rows, m, r, u, p.scale_first), p.alpha, p.limit);
  } else {  // kLinear and kActivation: one kernel, the branch costs nothing next to the dot
    return p.epilogue == Epilogue::kActivation ? activate(p.activation, g) : g;
  }
}

__device__ __forceinline__ const uint8_t* row_of(const Weight& w, int64_t m, int64_t r) {
  return w.data + m * w.mat_bytes + r * w.row_bytes;
}

// ---- vector kernel -------------------------------------------------------------------------

constexpr int kVectorWarps = 4;

template <typename F, Epilogue E>
__global__ void __launch_bounds__(kVectorWarps* kWarp) vector_kernel(Product p, int64_t tile_base) {
  constexpr int kCols = static_cast<int>(kVectorColumns);
  constexpr bool kGlu = E == Epilogue::kGlu;
  Tile tile;
  if (!tile_of(p, tile_base + blockIdx.y, kVectorColumns, tile)) return;
  const int lane = threadIdx.x % kWarp;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kVectorWarps + threadIdx.x / kWarp;
  if (r >= p.rows) return;
  const uint8_t* wrow = row_of(p.w, tile.m, r);
  const uint8_t* urow = kGlu ? row_of(p.up, tile.m, r) : nullptr;
  const float* xs[kCols];
#pragma unroll
  for (int j = 0; j < kCols; ++j) xs[j] = j < tile.count ? column(p, tile.m, tile.c0 + j) : nullptr;
  float acc[kCols] = {};
  float acc_up[kGlu ? kCols : 1] = {};
  const int64_t chunks = (p.k + 31) / 32;
  for (int64_t ch = lane; ch < chunks; ch += kWarp) {
    const int64_t at = 32 * ch;
    const int n = static_cast<int>(min(int64_t{32}, p.k - at));
    float wv[32];
    float uv[kGlu ? 32 : 1];
    if (n == 32) {
      F::decode32(wrow, ch, wv);
      if constexpr (kGlu) F::decode32(urow, ch, uv);
    } else if constexpr (F::block == 1) {  // the tail of a float row: element by element
#pragma unroll
      for (int i = 0; i < 32; ++i) wv[i] = i < n ? F::element(wrow, at + i) : 0.0f;
      if constexpr (kGlu) {
#pragma unroll
        for (int i = 0; i < 32; ++i) uv[i] = i < n ? F::element(urow, at + i) : 0.0f;
      }
    }
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      if (j >= tile.count) break;
      const float* xv = xs[j] + at;
      float s = 0.0f;
      float su = 0.0f;
      // Constant indices only, so that wv and uv stay in registers; the bound matters for the
      // tail of a float row alone (quantized rows are whole chunks).
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        if (F::block == 1 && i >= n) break;
        const float xi = xv[i];
        s += wv[i] * xi;
        if constexpr (kGlu) su += uv[i] * xi;
      }
      acc[j] += s;
      if constexpr (kGlu) acc_up[j] += su;
    }
  }
#pragma unroll
  for (int j = 0; j < kCols; ++j) {
    if (j >= tile.count) break;
    const float v = warp_sum(acc[j]);
    const float u = kGlu ? warp_sum(acc_up[kGlu ? j : 0]) : 0.0f;
    if (lane == 0) p.y[tile.m * p.y_mat + (tile.c0 + j) * p.y_col + r] = epilogue<E>(p, tile.m, r, v, u);
  }
}

// ---- tiled kernel --------------------------------------------------------------------------

constexpr int kTileRows = 64;  // weight rows per block (kGlu: 32 gate rows and their 32 up rows)
constexpr int kTileK = 32;
constexpr int kTileThreads = 256;
constexpr int kLd = kTileK + 4;  // shared-memory row pitch (floats): a multiple of 4, as WMMA asks
constexpr int kLdC = kTileRows + 4;

template <typename F, Epilogue E>
__global__ void __launch_bounds__(kTileThreads) tiled_kernel(Product p, int64_t tile_base) {
  using namespace nvcuda;
  constexpr int kCols = static_cast<int>(kTileColumns);
  constexpr bool kGlu = E == Epilogue::kGlu;
  constexpr int kOutRows = kGlu ? kTileRows / 2 : kTileRows;
  __shared__ __align__(32) float ws[kTileRows][kLd];
  __shared__ __align__(32) float xs[kCols][kLd];
  __shared__ __align__(32) float cs[kCols][kLdC];

  Tile tile;
  if (!tile_of(p, tile_base + blockIdx.y, kTileColumns, tile)) return;  // the same for the whole block
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * kOutRows;
  const int t = threadIdx.x;
  const int warp = t / kWarp;

  // Threads below kTileRows decode one weight row each; every thread loads 8 activations.
  const uint8_t* wrow = nullptr;
  if (t < kTileRows) {
    const bool up_half = kGlu && t >= kOutRows;
    const int64_t r = r0 + (kGlu ? t % kOutRows : t);
    if (r < p.rows) wrow = row_of(up_half ? p.up : p.w, tile.m, r);
  }
  const int xc = t / 4;
  const int xo = (t % 4) * 8;
  const float* xcol = xc < tile.count ? column(p, tile.m, tile.c0 + xc) : nullptr;

  // Warp w computes rows [16 * (w % 4), +16) for columns [32 * (w / 4), +32): two 16x16 tiles.
  const int wr = 16 * (warp % 4);
  const int wc = 32 * (warp / 4);
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2];
  wmma::fill_fragment(acc[0], 0.0f);
  wmma::fill_fragment(acc[1], 0.0f);

  const int64_t chunks = (p.k + kTileK - 1) / kTileK;
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const int64_t at = ch * kTileK;
    if (t < kTileRows) {
      float v[32];
      if (wrow == nullptr) {
#pragma unroll
        for (int i = 0; i < 32; ++i) v[i] = 0.0f;
      } else if (at + 32 <= p.k) {
        F::decode32(wrow, ch, v);
      } else if constexpr (F::block == 1) {  // the tail of a float row
#pragma unroll
        for (int i = 0; i < 32; ++i) v[i] = at + i < p.k ? F::element(wrow, at + i) : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < 32; ++i) ws[t][i] = v[i];
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int64_t kk = at + xo + i;
      xs[xc][xo + i] = xcol != nullptr && kk < p.k ? xcol[kk] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
      wmma::load_matrix_sync(a, &ws[wr][kk], kLd);
#pragma unroll
      for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        // B[k][c] = xs[c][k]: column-major with pitch kLd.
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
        wmma::load_matrix_sync(b, &xs[wc + 16 * j][kk], kLd);
#pragma unroll
        for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
        wmma::mma_sync(acc[j], a, b, acc[j]);
      }
    }
    __syncthreads();
  }
  // cs[c][r]: the result column-major, so that the epilogue writes rows contiguously.
  wmma::store_matrix_sync(&cs[wc][wr], acc[0], kLdC, wmma::mem_col_major);
  wmma::store_matrix_sync(&cs[wc + 16][wr], acc[1], kLdC, wmma::mem_col_major);
  __syncthreads();
  for (int i = t; i < kOutRows * kCols; i += kTileThreads) {
    const int c = i / kOutRows;
    const int rr = i % kOutRows;
    const int64_t r = r0 + rr;
    if (c >= tile.count || r >= p.rows) continue;
    const float u = kGlu ? cs[c][rr + kOutRows] : 0.0f;
    p.y[tile.m * p.y_mat + (tile.c0 + c) * p.y_col + r] = epilogue<E>(p, tile.m, r, cs[c][rr], u);
  }
}

template <typename F, Epilogue E>
void launch(const Product& p, cudaStream_t stream) {
  // Experts: tiles of the width moe_group listed them with; dense: by the column count.
  const int64_t width = p.tiles != nullptr ? p.tile_cols : p.fp32 ? kVectorColumns : tile_columns(p.cols);
  const int64_t work = p.tiles != nullptr ? p.max_tiles : p.n_mat * ((p.cols + width - 1) / width);
  constexpr int64_t kMaxGridY = 65535;
  for (int64_t base = 0; base < work; base += kMaxGridY) {
    const unsigned gy = static_cast<unsigned>(std::min(kMaxGridY, work - base));
    if (width == kVectorColumns) {
      const dim3 grid(static_cast<unsigned>((p.rows + kVectorWarps - 1) / kVectorWarps), gy);
      vector_kernel<F, E><<<grid, kVectorWarps * kWarp, 0, stream>>>(p, base);
    } else {
      constexpr int64_t kOutRows = E == Epilogue::kGlu ? kTileRows / 2 : kTileRows;
      const dim3 grid(static_cast<unsigned>((p.rows + kOutRows - 1) / kOutRows), gy);
      tiled_kernel<F, E><<<grid, kTileThreads, 0, stream>>>(p, base);
    }
  }
}

template <typename F>
void launch_type(const Product& p, cudaStream_t stream) {
  if (p.epilogue == Epilogue::kGlu) return launch<F, Epilogue::kGlu>(p, stream);
  launch<F, Epilogue::kLinear>(p, stream);
}

__global__ void glu_kernel(const float* h, float* out, int64_t n_ff, int64_t rows, Activation activation, float alpha, float limit) {
  const int64_t n = n_ff * rows;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / n_ff;
    const int64_t j = i % n_ff;
    out[i] = glu_of(activation, h[r * 2 * n_ff + j], h[r * 2 * n_ff + n_ff + j], alpha, limit);
  }
}

}  // namespace

bool weight_type_supported(int32_t type) {
  return supported(type);
}

void product(const Product& p, cudaStream_t stream) {
  visit_format(p.w.type, [&](auto format) { launch_type<decltype(format)>(p, stream); });
}

void glu(const float* h, float* out, int64_t n_ff, int64_t rows, Activation activation, float alpha, float limit, cudaStream_t stream) {
  glu_kernel<<<blocks_for(n_ff * rows, 256), 256, 0, stream>>>(h, out, n_ff, rows, activation, alpha, limit);
}

}  // namespace archreg::kernels::cuda
