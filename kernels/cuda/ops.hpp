// The CUDA kernels of the runtime's operations, behind plain launch functions: every pointer is
// device memory, every launch goes to `stream` and returns at once (errors surface through
// cudaGetLastError, which the backend checks). Numerics follow the CPU backend (the reference);
// activations stay F32 (the CPU backend quantizes them to ggml's vec_dot types), so results
// agree within the tolerances of docs/numerics.md, not bit for bit.
//
// Nothing here reads host memory or synchronises, and no launch's shape depends on data only the
// device knows (the batch's position, MoE routing): work beyond the data's extent returns early.
// That keeps a whole forward pass capturable as one CUDA graph.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace archreg::kernels::cuda {

// True for the weight types the product kernels decode (the CPU backend's list: F32, F16, BF16,
// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4).
bool weight_type_supported(int32_t type);

// A stack of matrices of one type: matrix m, row r starts at data + m * mat_bytes + r * row_bytes.
struct Weight {
  const uint8_t* data = nullptr;
  int32_t type = 0;
  int64_t row_bytes = 0;
  int64_t mat_bytes = 0;
  const float* scale = nullptr;  // one per matrix (a .scale sidecar), or null
  const float* bias = nullptr;   // [rows] per matrix, or null
};

// How a product's result is finished, per output value v of matrix m and row r.
enum class Epilogue : int32_t {
  // y = v * scale[m] + bias[m][r] when scale_first, else (v + bias[m][r]) * scale[m]
  kLinear = 0,
  // y = act(gate) * up, with gate and up each finished as kLinear (the SwiGLU / GeGLU /
  // clamped-SwiGLU of a gated FFN, applied on the way out of the gate|up product)
  kGlu = 1,
  // y = act(v finished as kLinear): an FFN without a gate
  kActivation = 2,
};

// Activation of a GLU epilogue (archreg_activation's numbering).
enum class Activation : int32_t { kSilu = 0, kGelu = 1, kSwigluOai = 2 };

// y[m][c][r] = finish(dot(w matrix m row r, x column c)) for the columns c of every matrix m.
// Dense: every matrix has the columns [0, cols). Experts: the work tiles (matrix, first column,
// count) that moe_group listed, columns being the slots routed to the matrix's expert. Column c
// reads the activation row x + m * x_mat + (gather ? gather[c] : c) * x_col (k floats) and
// writes y + m * y_mat + c * y_col + r.
struct Product {
  Weight w;          // the matrix (kGlu: the gate)
  Weight up;         // kGlu: the up matrix, row r paired with the gate's row r (the parts of one fused
                     // gate_up storage, or two tensors stored apart: the same kernel either way)
  int64_t k = 0;     // elements per row
  int64_t rows = 0;  // output rows (kGlu: n_ff)
  int64_t n_mat = 1;
  int64_t cols = 0;  // dense: columns of every matrix
  const int32_t* gather = nullptr;
  // Experts: the (matrix, first column, count) work tiles moe_group listed, and their number;
  // null for dense products (tiles follow from cols).
  const int32_t* tiles = nullptr;
  const int32_t* n_tiles = nullptr;
  int64_t max_tiles = 0;  // upper bound of *n_tiles (the launch size)
  int64_t tile_cols = 0;  // the width moe_group listed the tiles with
  const float* x = nullptr;
  int64_t x_col = 0;
  int64_t x_mat = 0;
  float* y = nullptr;
  int64_t y_col = 0;
  int64_t y_mat = 0;
  Epilogue epilogue = Epilogue::kLinear;
  bool scale_first = true;  // experts: v * scale + bias; a dense FFN: (v + bias) * scale
  // F32 arithmetic at any column count (the vector kernel in tiles of kVectorColumns), not TF32:
  // for a MoE router, whose near ties decide which experts run.
  bool fp32 = false;
  Activation activation = Activation::kSilu;
  float alpha = 1.702f;  // kSwigluOai
  float limit = 7.0f;
};

// Columns per work tile of product(), for the column counts a launch will see: moe_group must
// list tiles of this width. Products over at most kVectorColumns columns per matrix run the
// matrix-vector kernel (decode), larger ones the tiled tensor-core kernel (prefill).
constexpr int64_t kVectorColumns = 8;
constexpr int64_t kTileColumns = 64;
inline int64_t tile_columns(int64_t max_cols_per_mat) {
  return max_cols_per_mat <= kVectorColumns ? kVectorColumns : kTileColumns;
}
void product(const Product& p, cudaStream_t stream);

// The GLU of rows of h = [gate n_ff | up n_ff] into out [rows, n_ff]: the unfused path, after two
// products with kLinear epilogues (gate and up of different types, and the benchmark's baseline).
void glu(const float* h, float* out, int64_t n_ff, int64_t rows, Activation activation, float alpha, float limit, cudaStream_t stream);

// Embedding lookup: out[t] = row tokens[t] of the table (dequantized), t < n_tokens.
void embed(const uint8_t* table, int32_t type, int64_t row_bytes, int64_t n_embd, const int32_t* tokens, int64_t n_tokens, float* out,
           cudaStream_t stream);

// RMS or layer norm of each row, times w and plus b (either may be null).
void norm(const float* x, float* y, int64_t len, int64_t rows, bool rms, float eps, const float* w, const float* b, cudaStream_t stream);

// Elementwise: y = a + b or a * b, b broadcast per row (b_rows == 1), per value of a row
// (b_len == 1: one scalar per row), or full.
void binary(const float* a, const float* b, float* y, int64_t len, int64_t rows, bool b_one_row, bool b_per_row_scalar, bool add,
            cudaStream_t stream);
void scale(const float* x, float* y, int64_t n, float factor, cudaStream_t stream);
void sigmoid(const float* x, float* y, int64_t n, cudaStream_t stream);
// y row r = x row r, columns [begin, begin + len) of x_len.
void slice(const float* x, float* y, int64_t x_len, int64_t begin, int64_t len, int64_t rows, cudaStream_t stream);
// y row r = a row r | b row (b_repeat > 1 ? r / b_repeat : r).
void concat(const float* a, const float* b, float* y, int64_t a_len, int64_t b_len, int64_t rows, int64_t b_repeat, cudaStream_t stream);
void copy(const float* x, float* y, int64_t n, cudaStream_t stream);

// Rotary embedding of x [head, heads, tokens] at positions *n_past + t (as the CPU backend's
// rope_cache/rope_apply), into y.
struct Rope {
  int32_t n_rot = 0;
  bool neox = false;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  float ext_factor = 0.0f;
  float attn_factor = 1.0f;
  float beta_fast = 32.0f;
  float beta_slow = 1.0f;
  int32_t n_ctx_orig = 0;
  const float* freq_factors = nullptr;
};
void rope(const Rope& r, const float* x, float* y, int64_t head, int64_t heads, int64_t tokens, const int64_t* n_past, cudaStream_t stream);

// Causal attention of q [dk, heads, tokens] over the layer's cache after storing this batch's
// k [kw per token] and v [vw per token] at positions *n_past + t. Grouped heads (heads / kv_heads
// queries per cache head), optional sinks [heads], softcap, sliding window. Online softmax over
// tiles of cached positions, each tile loaded once for every query of a block.
struct Attention {
  const float* q = nullptr;
  const float* k = nullptr;
  const float* v = nullptr;
  float* k_cache = nullptr;  // [n_ctx, kw]
  float* v_cache = nullptr;  // [n_ctx, vw]
  float* out = nullptr;      // [dv, heads, tokens]
  const float* sinks = nullptr;
  int64_t dk = 0, dv = 0, heads = 0, kv_heads = 0, tokens = 0, kw = 0, vw = 0;
  float scale = 1.0f;
  float softcap = 0.0f;
  int64_t window = 0;
  const int64_t* n_past = nullptr;
};
// The largest head sizes attention() runs.
constexpr int64_t kMaxHeadK = 1024;
constexpr int64_t kMaxHeadV = 512;
void attention(const Attention& a, cudaStream_t stream);

// MoE routing of every token (llama.cpp's build_moe_ffn order): logits [tokens, n_expert]
// (router product, bias added) -> chosen experts and their weights [tokens, used].
struct Routing {
  int32_t gating = 0;  // archreg_gating
  int32_t used = 0;
  int32_t normalize = 0;
  float weight_scale = 1.0f;
  int32_t n_group = 0;
  int32_t n_group_used = 0;
  const float* selection_bias = nullptr;  // [n_expert] or null
};
// `selection` is scratch [tokens, n_expert].
void moe_route(const Routing& r, float* logits, float* selection, int64_t n_expert, int64_t tokens, int32_t* chosen, float* weights,
               cudaStream_t stream);
// Groups the (token, choice) slots by expert: offsets [n_expert + 1], slot_token [slots] (the
// token each grouped slot reads), slot_of [slots] (where choice s went), and the work tiles of
// `tile_cols` columns for product(): tiles [max_tiles * 3], n_tiles [1].
void moe_group(const int32_t* chosen, int64_t slots, int32_t used, int64_t n_expert, int64_t tile_cols, int32_t* offsets,
               int32_t* slot_token, int32_t* slot_of, int32_t* tiles, int32_t* n_tiles, cudaStream_t stream);
// Upper bound of the tiles moe_group lists.
inline int64_t moe_max_tiles(int64_t slots, int64_t n_expert, int64_t tile_cols) {
  return (slots + tile_cols - 1) / tile_cols + (n_expert < slots ? n_expert : slots);
}
// out[t] = sum over choices k of weights[t][k] * y[slot_of[t * used + k]].
void moe_combine(const float* y, const int32_t* slot_of, const float* weights, float* out, int64_t n_embd, int64_t tokens, int32_t used,
                 cudaStream_t stream);
// The most experts moe_group counts in shared memory (the backend refuses more).
constexpr int64_t kMaxExperts = 4096;

}  // namespace archreg::kernels::cuda
