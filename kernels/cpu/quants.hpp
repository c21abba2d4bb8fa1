// CPU kernels for quantized storage: dequantization, activation quantization and dot products,
// for every ggml type the runtime runs. Numerics follow ggml's CPU backend (llama.cpp is the
// reference users compare with): a weight row of type W is multiplied with an activation row
// first converted to vec_dot_type(W) (Q8_0, Q8_1, Q8_K, F16, BF16 or F32), exactly as ggml does.
//
// Each operation has a scalar reference (`*_ref`) that is the oracle of the tests and the
// fallback, and a dispatched version that picks the fastest implementation this CPU runs
// (AVX2+FMA+F16C, chosen once at run time; the scalar code otherwise).
#pragma once

#include <cstddef>
#include <cstdint>

namespace archreg::kernels::cpu {

// ggml type ids (ggml.h numbering) used by the kernels.
enum Type : int32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kBF16 = 30,
  kMXFP4 = 39,
};

// True for the weight types these kernels run (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4).
bool supported(int32_t type);
// Elements per block and bytes per block (F32: 1 and 4).
int64_t block_size(int32_t type);
size_t type_size(int32_t type);
// Bytes of a row of n elements (n a multiple of block_size(type)).
size_t row_size(int32_t type, int64_t n);

// The activation type a weight row of `type` is dotted with (ggml's vec_dot_type).
int32_t vec_dot_type(int32_t type);

// One row of n elements (a multiple of the block size) to float. Also accepts the activation
// types Q8_1 and Q8_K. Unknown types or a partial block throw std::invalid_argument (as do the
// other row functions below).
void dequantize_row_ref(int32_t type, const void* src, float* dst, int64_t n);
void dequantize_row(int32_t type, const void* src, float* dst, int64_t n);

// One activation row of n floats to `type` (one of the vec_dot types; F32 is a copy).
void quantize_row_ref(int32_t type, const float* src, void* dst, int64_t n);
void quantize_row(int32_t type, const float* src, void* dst, int64_t n);

// Dot product of one weight row of `type` with one activation row already in
// vec_dot_type(type), both of n elements.
float vec_dot_ref(int32_t type, int64_t n, const void* weight_row, const void* activation_row);
float vec_dot(int32_t type, int64_t n, const void* weight_row, const void* activation_row);

// Dots of one weight row with nc activation rows (each in vec_dot_type(type)):
// out[c] = vec_dot(type, n, weight_row, activation_rows[c]) for c < nc, bit for bit. Where the
// type has a multi-column kernel, each weight block is decoded once for up to kMaxCols columns,
// which is what makes prefill faster than one dot at a time; nc may be any count.
constexpr int kMaxCols = 4;
void vec_dot_cols(int32_t type, int64_t n, const void* weight_row, const void* const* activation_rows, int64_t nc, float* out);

// Float <-> half/bfloat16, as ggml rounds them.
float fp16_to_fp32(uint16_t h);
uint16_t fp32_to_fp16(float f);
float bf16_to_fp32(uint16_t h);
uint16_t fp32_to_bf16(float f);

// "avx2" or "scalar": what vec_dot/dequantize_row/quantize_row dispatch to on this CPU.
const char* isa();

}  // namespace archreg::kernels::cpu
