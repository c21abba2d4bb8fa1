// Scalar references and the run-time dispatch (see quants.hpp).
//
// Which ggml code each function follows (llama.cpp, ggml/src):
//   dequantize_row_ref  ggml-quants.c dequantize_row_* : the same formulas in the same float
//                       operation order, so results are bit-identical to ggml's.
//   quantize_row_ref    ggml-quants.c quantize_row_q8_0_ref / q8_1_ref (roundf, ties away from
//                       zero; id = 1/d with d = amax/127), quantize_row_q8_K_ref (nearest_int,
//                       ties to even; iscale = -127/max where max is the first element of
//                       largest magnitude, d = 1/iscale), ggml_fp32_to_fp16 / _bf16 for F16/BF16.
//                       On a CPU without AVX2, ggml-cpu uses exactly these (the *_generic
//                       functions call the _ref ones); quantize_row then does too.
//   vec_dot_ref         ggml-cpu/quants.c ggml_vec_dot_*_generic: the same integer sums and
//                       the same float accumulation (per block for 32-blocks; the 8-lane float
//                       sums of the K-quant generics); ggml-cpu/vec.cpp ggml_vec_dot_f32/f16/bf16
//                       without SIMD (float products summed in double).
// The file is compiled with -ffp-contract=off so no FMA changes a rounding.
#include "cpu/quants.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cpu/quants_impl.hpp"

#if defined(ARCHREG_KERNELS_X86)
#include <cpuid.h>
#endif

namespace archreg::kernels::cpu {

using namespace detail;

// ---------------------------------------------------------------------------------------------
// Conversions

float fp16_to_fp32(uint16_t h) {
  return half_to_float(h);
}

// Round to nearest, ties to even (what ggml_compute_fp32_to_fp16 and F16C's vcvtps2ph do);
// NaN becomes the quiet NaN 0x7E00 with the sign kept, as in ggml's software conversion.
uint16_t fp32_to_fp16(float f) {
  const uint32_t bits = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t x = bits & 0x7FFFFFFFu;
  if (x > 0x7F800000u) return static_cast<uint16_t>(sign | 0x7E00u);
  if (x >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // >= 65520: inf
  if (x >= 0x38800000u) {                                              // normal half
    const uint32_t rounded = x + 0xFFFu + ((x >> 13) & 1u);
    return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
  }
  if (x < 0x33000000u) return sign;  // below 2^-25: rounds to zero
  // Subnormal half: round(|f| / 2^-24) to nearest even.
  const uint32_t exp = x >> 23;
  const uint32_t man = (x & 0x7FFFFFu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 14..24
  uint32_t r = man >> shift;
  const uint32_t rem = man & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

float bf16_to_fp32(uint16_t h) {
  return f32_from_bits(static_cast<uint32_t>(h) << 16);
}

// ggml_compute_fp32_to_bf16: NaN keeps its top bits and is forced quiet; otherwise round to
// nearest even.
uint16_t fp32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 64u);
  return static_cast<uint16_t>((u + (0x7FFFu + ((u >> 16) & 1u))) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Type table

bool supported(int32_t type) {
  switch (type) {
    case kF32:
    case kF16:
    case kBF16:
    case kQ4_0:
    case kQ4_1:
    case kQ5_0:
    case kQ5_1:
    case kQ8_0:
    case kQ2_K:
    case kQ3_K:
    case kQ4_K:
    case kQ5_K:
    case kQ6_K:
    case kMXFP4: return true;
    default: return false;
  }
}

int64_t block_size(int32_t type) {
  switch (type) {
    case kF32:
    case kF16:
    case kBF16: return 1;
    case kQ4_0:
    case kQ4_1:
    case kQ5_0:
    case kQ5_1:
    case kQ8_0:
    case kQ8_1:
    case kMXFP4: return kQK;
    case kQ2_K:
    case kQ3_K:
    case kQ4_K:
    case kQ5_K:
    case kQ6_K:
    case kQ8_K: return kQK_K;
    default: return 0;
  }
}

size_t type_size(int32_t type) {
  switch (type) {
    case kF32: return 4;
    case kF16:
    case kBF16: return 2;
    case kQ4_0: return sizeof(BlockQ4_0);
    case kQ4_1: return sizeof(BlockQ4_1);
    case kQ5_0: return sizeof(BlockQ5_0);
    case kQ5_1: return sizeof(BlockQ5_1);
    case kQ8_0: return sizeof(BlockQ8_0);
    case kQ8_1: return sizeof(BlockQ8_1);
    case kMXFP4: return sizeof(BlockMXFP4);
    case kQ2_K: return sizeof(BlockQ2_K);
    case kQ3_K: return sizeof(BlockQ3_K);
    case kQ4_K: return sizeof(BlockQ4_K);
    case kQ5_K: return sizeof(BlockQ5_K);
    case kQ6_K: return sizeof(BlockQ6_K);
    case kQ8_K: return sizeof(BlockQ8_K);
    default: return 0;
  }
}

size_t row_size(int32_t type, int64_t n) {
  const int64_t bs = block_size(type);
  if (bs == 0) return 0;
  return type_size(type) * static_cast<size_t>(n / bs);
}

// ggml-cpu.c type_traits_cpu[].vec_dot_type.
int32_t vec_dot_type(int32_t type) {
  switch (type) {
    case kF32: return kF32;
    case kF16: return kF16;
    case kBF16: return kBF16;
    case kQ4_0:
    case kQ5_0:
    case kQ8_0:
    case kMXFP4: return kQ8_0;
    case kQ4_1:
    case kQ5_1: return kQ8_1;
    case kQ2_K:
    case kQ3_K:
    case kQ4_K:
    case kQ5_K:
    case kQ6_K: return kQ8_K;
    default: return -1;
  }
}

namespace {

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml-quants.c dequantize_row_*)

void dq_f32(const void* src, float* y, int64_t n) {
  std::memcpy(y, src, static_cast<size_t>(n) * 4);
}

void dq_f16(const void* src, float* y, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) y[i] = half_at(p + 2 * i);
}

void dq_bf16(const void* src, float* y, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(load_u16(p + 2 * i));
}

void dq_q4_0(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[j] = static_cast<float>(x0) * d;
      y[j + kQK / 2] = static_cast<float>(x1) * d;
    }
  }
}

void dq_q4_1(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    const float m = half_at(x[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      const int x0 = x[i].qs[j] & 0x0F;
      const int x1 = x[i].qs[j] >> 4;
      y[j] = static_cast<float>(x0) * d + m;
      y[j + kQK / 2] = static_cast<float>(x1) * d + m;
    }
  }
}

void dq_q5_0(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint32_t xh0 = ((qh >> j) << 4) & 0x10u;
      const uint32_t xh1 = (qh >> (j + 12)) & 0x10u;
      const int x0 = static_cast<int>((x[i].qs[j] & 0x0Fu) | xh0) - 16;
      const int x1 = static_cast<int>((x[i].qs[j] >> 4) | xh1) - 16;
      y[j] = static_cast<float>(x0) * d;
      y[j + kQK / 2] = static_cast<float>(x1) * d;
    }
  }
}

void dq_q5_1(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    const float m = half_at(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < kQK / 2; ++j) {
      const uint32_t xh0 = ((qh >> j) << 4) & 0x10u;
      const uint32_t xh1 = (qh >> (j + 12)) & 0x10u;
      const int x0 = static_cast<int>((x[i].qs[j] & 0x0Fu) | xh0);
      const int x1 = static_cast<int>((x[i].qs[j] >> 4) | xh1);
      y[j] = static_cast<float>(x0) * d + m;
      y[j + kQK / 2] = static_cast<float>(x1) * d + m;
    }
  }
}

void dq_q8_0(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void dq_q8_1(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = half_at(x[i].d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(x[i].qs[j]) * d;
  }
}

void dq_mxfp4(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockMXFP4*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const float d = e8m0_to_float_half(x[i].e);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(kValuesMXFP4[x[i].qs[j] & 0x0F]) * d;
      y[j + kQK / 2] = static_cast<float>(kValuesMXFP4[x[i].qs[j] >> 4]) * d;
    }
  }
}

void dq_q2_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(x[i].d);
    const float min = half_at(x[i].dmin);
    const uint8_t* q = x[i].qs;
    int is = 0;
    for (int c = 0; c < kQK_K; c += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const uint8_t sc = x[i].scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF);
          const float ml = min * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) {
            *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
          }
        }
      }
      q += 32;
    }
  }
}

void dq_q3_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d_all = half_at(x[i].d);
    int8_t scales[16];
    unpack_q3k_scales(x[i].scales, scales);
    const uint8_t* q = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    unsigned m = 1;
    int is = 0;
    for (int c = 0; c < kQK_K; c += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half = 0; half < 2; ++half) {
          const float dl = d_all * static_cast<float>(scales[is++]);
          for (int l = 16 * half; l < 16 * half + 16; ++l) {
            const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
            *y++ = dl * static_cast<float>(v);
          }
        }
        m <<= 1;
      }
      q += 32;
    }
  }
}

void dq_q4_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(x[i].d);
    const float min = half_at(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int is = 0; is < 8; is += 2, q += 32) {
      uint8_t sc, m;
      scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = min * static_cast<float>(m);
      scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void dq_q5_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(x[i].d);
    const float min = half_at(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    unsigned u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
      uint8_t sc, m;
      scale_min_k4(is, x[i].scales, sc, m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = min * static_cast<float>(m);
      scale_min_k4(is + 1, x[i].scales, sc, m);
      const float d2 = d * static_cast<float>(sc);
      const float m2 = min * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) {
        *y++ = d1 * static_cast<float>((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        *y++ = d2 * static_cast<float>((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
      }
    }
  }
}

void dq_q6_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = half_at(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int c = 0; c < kQK_K; c += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void dq_q8_k(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = load_f32(x[i].d);
    for (int j = 0; j < kQK_K; ++j) *y++ = d * static_cast<float>(x[i].qs[j]);
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization (ggml-quants.c quantize_row_q8_*_ref)

void q_f32(const float* x, void* dst, int64_t n) {
  std::memcpy(dst, x, static_cast<size_t>(n) * 4);
}

void q_f16(const float* x, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_u16(p + 2 * i, fp32_to_fp16(x[i]));
}

void q_bf16(const float* x, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_u16(p + 2 * i, fp32_to_bf16(x[i]));
}

void q_q8_0(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(y[i].d, fp32_to_fp16(d));
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void q_q8_1(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = amax > std::fabs(x[j]) ? amax : std::fabs(x[j]);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(y[i].d, fp32_to_fp16(d));
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += y[i].qs[j];
    }
    store_u16(y[i].s, fp32_to_fp16(static_cast<float>(sum) * d));
  }
}

// ggml's nearest_int: round to nearest, ties to even, for |f| <= 2^22 (always here).
inline int nearest_int(float f) {
  const float v = f + 12582912.0f;  // 1.5 * 2^23
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007FFFFF) - 0x00400000;
}

void q_q8_k(const float* x, void* dst, int64_t n) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {  // ggml: d = 0, qs = 0 and bsums left as they were; we zero them too
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int j = 0; j < kQK_K / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * j + l];
      store_i16(y[i].bsums + 2 * j, static_cast<int16_t>(sum));
    }
    store_f32(y[i].d, 1.0f / iscale);
  }
}

// ---------------------------------------------------------------------------------------------
// Dot products (ggml-cpu/quants.c ggml_vec_dot_*_generic, ggml-cpu/vec.cpp)

float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const uint8_t*>(a);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(load_f32(x + 4 * i) * load_f32(y + 4 * i));
  return static_cast<float>(sum);
}

float dot_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const uint8_t*>(a);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(half_at(x + 2 * i) * half_at(y + 2 * i));
  return static_cast<float>(sum);
}

float dot_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const uint8_t*>(a);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(bf16_to_fp32(load_u16(x + 2 * i)) * bf16_to_fp32(load_u16(y + 2 * i)));
  }
  return static_cast<float>(sum);
}

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
      sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + kQK / 2];
    }
    sumf += static_cast<float>(sumi0 + sumi1) * half_at(x[ib].d) * half_at(y[ib].d);
  }
  return sumf;
}

float dot_q4_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
      sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + kQK / 2];
    }
    sumf += (half_at(x[ib].d) * half_at(y[ib].d)) * static_cast<float>(sumi0 + sumi1) + half_at(x[ib].m) * half_at(y[ib].s);
  }
  return sumf;
}

float dot_q5_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, 4);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint32_t xh0 = ((qh >> j) << 4) & 0x10u;
      const uint32_t xh1 = (qh >> (j + 12)) & 0x10u;
      const int x0 = static_cast<int>((x[ib].qs[j] & 0x0Fu) | xh0) - 16;
      const int x1 = static_cast<int>((x[ib].qs[j] >> 4) | xh1) - 16;
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + kQK / 2];
    }
    sumf += (half_at(x[ib].d) * half_at(y[ib].d)) * static_cast<float>(sumi0 + sumi1);
  }
  return sumf;
}

float dot_q5_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    uint32_t qh;
    std::memcpy(&qh, x[ib].qh, 4);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const uint32_t xh0 = ((qh >> j) << 4) & 0x10u;
      const uint32_t xh1 = (qh >> (j + 12)) & 0x10u;
      const int x0 = static_cast<int>((x[ib].qs[j] & 0x0Fu) | xh0);
      const int x1 = static_cast<int>((x[ib].qs[j] >> 4) | xh1);
      sumi0 += x0 * y[ib].qs[j];
      sumi1 += x1 * y[ib].qs[j + kQK / 2];
    }
    sumf += (half_at(x[ib].d) * half_at(y[ib].d)) * static_cast<float>(sumi0 + sumi1) + half_at(x[ib].m) * half_at(y[ib].s);
  }
  return sumf;
}

float dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += x[ib].qs[j] * y[ib].qs[j];
    sumf += static_cast<float>(sumi) * (half_at(x[ib].d) * half_at(y[ib].d));
  }
  return sumf;
}

float dot_mxfp4(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockMXFP4*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const float d = half_at(y[ib].d) * e8m0_to_float_half(x[ib].e);
    int sumi1 = 0, sumi2 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi1 += y[ib].qs[j] * kValuesMXFP4[x[ib].qs[j] & 0xF];
      sumi2 += y[ib].qs[j + kQK / 2] * kValuesMXFP4[x[ib].qs[j] >> 4];
    }
    sumf += d * static_cast<float>(sumi1 + sumi2);
  }
  return sumf;
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  float sumf = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const uint8_t* q2 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    const uint8_t* sc = x[i].scales;
    int summs = 0;
    for (int j = 0; j < 16; ++j) summs += load_i16(y[i].bsums + 2 * j) * (sc[j] >> 4);
    const float yd = load_f32(y[i].d);
    const float dall = yd * half_at(x[i].d);
    const float dmin = yd * half_at(x[i].dmin);
    int isum = 0, is = 0;
    for (int c = 0; c < kQK_K / 128; ++c, q2 += 32) {
      for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
        int d = sc[is++] & 0xF;
        int isuml = 0;
        for (int l = 0; l < 16; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
        d = sc[is++] & 0xF;
        isuml = 0;
        for (int l = 16; l < 32; ++l) isuml += q8[l] * ((q2[l] >> shift) & 3);
        isum += d * isuml;
      }
    }
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}

// The K-quant generics expand a block to int8 `aux8`, multiply-accumulate into 8 int32 lanes
// (aux32) per 16-element group with its scale, and keep 8 float partial sums.
float dot_q3_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ3_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t aux8[kQK_K];
  float sums[8] = {};
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const uint8_t* q3 = x[i].qs;
    const uint8_t* hm = x[i].hmask;
    const int8_t* q8 = y[i].qs;
    int8_t* p = aux8;
    unsigned m = 1;
    for (int c = 0; c < kQK_K; c += 128, q3 += 32) {
      for (int shift = 0; shift < 8; shift += 2, p += 32, m <<= 1) {
        for (int l = 0; l < 32; ++l) {
          p[l] = static_cast<int8_t>(((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
        }
      }
    }
    int8_t scales[16];
    unpack_q3k_scales(x[i].scales, scales);
    int32_t aux32[8] = {};
    p = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      for (int half = 0; half < 2; ++half, q8 += 8, p += 8) {
        for (int l = 0; l < 8; ++l) aux32[l] += scales[j] * (q8[l] * p[l]);
      }
    }
    const float d = half_at(x[i].d) * load_f32(y[i].d);
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float sumf = 0.0f;
  for (float s : sums) sumf += s;
  return sumf;
}

template <bool kFive>
float dot_q45_k(int64_t n, const void* w, const void* a) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t aux8[kQK_K];
  float sums[8] = {};
  float sumf = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const uint8_t* q4 = x[i].qs;
    const int8_t* q8 = y[i].qs;
    int8_t* p = aux8;
    unsigned m = 1;
    for (int j = 0; j < kQK_K / 64; ++j, q4 += 32) {
      for (int l = 0; l < 32; ++l) p[l] = static_cast<int8_t>(q4[l] & 0xF);
      if constexpr (kFive) {
        for (int l = 0; l < 32; ++l) p[l] = static_cast<int8_t>(p[l] + ((x[i].qh[l] & m) ? 16 : 0));
      }
      p += 32;
      m <<= 1;
      for (int l = 0; l < 32; ++l) p[l] = static_cast<int8_t>(q4[l] >> 4);
      if constexpr (kFive) {
        for (int l = 0; l < 32; ++l) p[l] = static_cast<int8_t>(p[l] + ((x[i].qh[l] & m) ? 16 : 0));
      }
      p += 32;
      m <<= 1;
    }
    uint8_t scales[8], mins[8];
    unpack_k4_scales(x[i].scales, scales, mins);
    int sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) sumi += load_i16(y[i].bsums + 2 * j) * mins[j / 2];
    int32_t aux32[8] = {};
    p = aux8;
    for (int j = 0; j < kQK_K / 32; ++j) {
      const int32_t scale = scales[j];
      for (int quarter = 0; quarter < 4; ++quarter, q8 += 8, p += 8) {
        for (int l = 0; l < 8; ++l) aux32[l] += scale * (q8[l] * p[l]);
      }
    }
    const float yd = load_f32(y[i].d);
    const float d = half_at(x[i].d) * yd;
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
    const float dmin = half_at(x[i].dmin) * yd;
    sumf -= dmin * static_cast<float>(sumi);
  }
  for (float s : sums) sumf += s;
  return sumf;
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  int8_t aux8[kQK_K];
  float sums[8] = {};
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* q8 = y[i].qs;
    int8_t* p = aux8;
    for (int c = 0; c < kQK_K; c += 128, p += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        p[l + 0] = static_cast<int8_t>(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
        p[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
        p[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        p[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    int32_t aux32[8] = {};
    p = aux8;
    for (int j = 0; j < kQK_K / 16; ++j) {
      const int scale = x[i].scales[j];
      for (int half = 0; half < 2; ++half, q8 += 8, p += 8) {
        for (int l = 0; l < 8; ++l) aux32[l] += scale * (q8[l] * p[l]);
      }
    }
    const float d = half_at(x[i].d) * load_f32(y[i].d);
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float sumf = 0.0f;
  for (float s : sums) sumf += s;
  return sumf;
}

// ---------------------------------------------------------------------------------------------
// Dispatch

constexpr int kMaxType = 40;

struct Table {
  VecDotFn dot[kMaxType] = {};
  VecDotColsFn dot_cols[kMaxType] = {};  // kMaxCols columns at once; nullptr: one dot per column
  QuantizeFn quantize[kMaxType] = {};
  DequantizeFn dequantize[kMaxType] = {};
};

Table make_ref_table() {
  Table t;
  t.dot[kF32] = dot_f32;
  t.dot[kF16] = dot_f16;
  t.dot[kBF16] = dot_bf16;
  t.dot[kQ4_0] = dot_q4_0;
  t.dot[kQ4_1] = dot_q4_1;
  t.dot[kQ5_0] = dot_q5_0;
  t.dot[kQ5_1] = dot_q5_1;
  t.dot[kQ8_0] = dot_q8_0;
  t.dot[kMXFP4] = dot_mxfp4;
  t.dot[kQ2_K] = dot_q2_k;
  t.dot[kQ3_K] = dot_q3_k;
  t.dot[kQ4_K] = dot_q45_k<false>;
  t.dot[kQ5_K] = dot_q45_k<true>;
  t.dot[kQ6_K] = dot_q6_k;

  t.quantize[kF32] = q_f32;
  t.quantize[kF16] = q_f16;
  t.quantize[kBF16] = q_bf16;
  t.quantize[kQ8_0] = q_q8_0;
  t.quantize[kQ8_1] = q_q8_1;
  t.quantize[kQ8_K] = q_q8_k;

  t.dequantize[kF32] = dq_f32;
  t.dequantize[kF16] = dq_f16;
  t.dequantize[kBF16] = dq_bf16;
  t.dequantize[kQ4_0] = dq_q4_0;
  t.dequantize[kQ4_1] = dq_q4_1;
  t.dequantize[kQ5_0] = dq_q5_0;
  t.dequantize[kQ5_1] = dq_q5_1;
  t.dequantize[kQ8_0] = dq_q8_0;
  t.dequantize[kQ8_1] = dq_q8_1;
  t.dequantize[kMXFP4] = dq_mxfp4;
  t.dequantize[kQ2_K] = dq_q2_k;
  t.dequantize[kQ3_K] = dq_q3_k;
  t.dequantize[kQ4_K] = dq_q4_k;
  t.dequantize[kQ5_K] = dq_q5_k;
  t.dequantize[kQ6_K] = dq_q6_k;
  t.dequantize[kQ8_K] = dq_q8_k;
  return t;
}

#if defined(ARCHREG_KERNELS_X86)
bool cpu_has_avx2() {
  __builtin_cpu_init();
  // clang 14's __builtin_cpu_supports knows no "f16c": CPUID leaf 1, ECX bit 29.
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

struct Tables {
  Table ref = make_ref_table();
  Table best = ref;
  bool avx2 = false;

  Tables() {
#if defined(ARCHREG_KERNELS_X86)
    avx2 = cpu_has_avx2();
    if (!avx2) return;
    for (int32_t t = 0; t < kMaxType; ++t) {
      if (VecDotFn f = avx2_vec_dot(t)) best.dot[t] = f;
      if (VecDotColsFn f = avx2_vec_dot_cols(t)) best.dot_cols[t] = f;
      if (QuantizeFn f = avx2_quantize(t)) best.quantize[t] = f;
      if (DequantizeFn f = avx2_dequantize(t)) best.dequantize[t] = f;
    }
#endif
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

[[noreturn]] void bad_call(const char* what, int32_t type, int64_t n) {
  throw std::invalid_argument(std::string("archreg::kernels::cpu::") + what + ": type " + std::to_string(type) + " with " +
                              std::to_string(n) +
                              " elements is not supported (unknown type or n not a multiple of "
                              "its block size)");
}

// The function for `type` in `fns`, after checking n is a whole number of blocks.
template <typename Fn>
Fn pick(const Fn (&fns)[kMaxType], int32_t type, int64_t n, const char* what) {
  if (type < 0 || type >= kMaxType || fns[type] == nullptr || n < 0) bad_call(what, type, n);
  const int64_t bs = block_size(type);
  if ((n & (bs - 1)) != 0) bad_call(what, type, n);  // block sizes are powers of two
  return fns[type];
}

}  // namespace

void dequantize_row_ref(int32_t type, const void* src, float* dst, int64_t n) {
  pick(tables().ref.dequantize, type, n, "dequantize_row_ref")(src, dst, n);
}
void dequantize_row(int32_t type, const void* src, float* dst, int64_t n) {
  pick(tables().best.dequantize, type, n, "dequantize_row")(src, dst, n);
}
void quantize_row_ref(int32_t type, const float* src, void* dst, int64_t n) {
  pick(tables().ref.quantize, type, n, "quantize_row_ref")(src, dst, n);
}
void quantize_row(int32_t type, const float* src, void* dst, int64_t n) {
  pick(tables().best.quantize, type, n, "quantize_row")(src, dst, n);
}
float vec_dot_ref(int32_t type, int64_t n, const void* weight_row, const void* activation_row) {
  return pick(tables().ref.dot, type, n, "vec_dot_ref")(n, weight_row, activation_row);
}
float vec_dot(int32_t type, int64_t n, const void* weight_row, const void* activation_row) {
  return pick(tables().best.dot, type, n, "vec_dot")(n, weight_row, activation_row);
}

void vec_dot_cols(int32_t type, int64_t n, const void* weight_row, const void* const* activation_rows, int64_t nc, float* out) {
  const Table& t = tables().best;
  const VecDotFn one = pick(t.dot, type, n, "vec_dot_cols");
  int64_t c = 0;
  if (const VecDotColsFn many = t.dot_cols[type]) {
    for (; c + kMaxCols <= nc; c += kMaxCols) many(n, weight_row, activation_rows + c, out + c);
  }
  for (; c < nc; ++c) out[c] = one(n, weight_row, activation_rows[c]);
}

const char* isa() {
  return tables().avx2 ? "avx2" : "scalar";
}

}  // namespace archreg::kernels::cpu
