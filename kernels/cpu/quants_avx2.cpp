// AVX2+FMA+F16C kernels (compiled with -mavx2 -mfma -mf16c; quants.cpp calls them only when
// the CPU has those extensions). They follow ggml-cpu/arch/x86/quants.c: the same integer
// technique (maddubs/madd on int8, the K-quant bsums trick for mins) and the same integer sums
// as the scalar references, so results differ from vec_dot_ref only by float summation order
// (several accumulators, FMA). quantize_row for Q8_0/Q8_1 is ggml's AVX2 quantize_row_q8_0/_1,
// bit for bit: id = 127/amax and round-to-nearest-even (_mm256_round_ps), which is not always
// what the scalar reference (roundf, id = 1/d) gives. Dequantization here is bit-identical to
// the references.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "cpu/quants_impl.hpp"

namespace archreg::kernels::cpu::detail {
namespace {

inline __m128i load128(const void* p) {
  return _mm_loadu_si128(static_cast<const __m128i*>(p));
}
inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}
inline float h2f(const uint8_t* p) {
  return _cvtsh_ss(load_u16(p));
}

inline float hsum8(__m256 x) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline int hsum_i32x8(__m256i a) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// 16 bytes of packed nibbles -> 32 bytes: the 16 low nibbles, then the 16 high nibbles.
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i t = load128(p);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// 32 bits -> 32 bytes, 0xFF where the bit is set.
inline __m256i bits_to_bytes(const uint8_t* p) {
  uint32_t x32;
  std::memcpy(&x32, p, 4);
  const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0x0000000000000000);
  __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x32)), shuf);
  bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7FBFDFEFF7FBFDFE));
  return _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1));
}

// Sums of 4 products of int8 x and y in 8 int32 lanes (x may not be -128: the sign trick).
inline __m256i dot_i8(__m256i x, __m256i y) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}
// The same with unsigned x (0..127 here, so no 16-bit saturation).
inline __m256i dot_u8(__m256i ux, __m256i y) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ux, y), _mm256_set1_epi16(1));
}

// Two accumulators over the 32-element blocks (halves the FMA latency chain).
template <typename F>
inline float two_acc(int64_t nb, F&& f) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    acc0 = f(ib, acc0);
    acc1 = f(ib + 1, acc1);
  }
  if (ib < nb) acc0 = f(ib, acc0);
  return hsum8(_mm256_add_ps(acc0, acc1));
}

// ---------------------------------------------------------------------------------------------
// Float rows

float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const uint8_t*>(a);
  auto ld = [](const uint8_t* p, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * i)); };
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(ld(x, i + 8 * k), ld(y, i + 8 * k), acc[k]);
  }
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(ld(x, i), ld(y, i), acc[0]);
  double sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += static_cast<double>(load_f32(x + 4 * i) * load_f32(y + 4 * i));
  return static_cast<float>(sum);
}

template <bool kBf16>
inline __m256 load8_16bit(const uint8_t* p) {
  if constexpr (kBf16) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load128(p)), 16));
  } else {
    return _mm256_cvtph_ps(load128(p));
  }
}

template <bool kBf16>
float dot_16bit(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint8_t*>(w);
  const auto* y = static_cast<const uint8_t*>(a);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      const int64_t o = 2 * (i + 8 * k);
      acc[k] = _mm256_fmadd_ps(load8_16bit<kBf16>(x + o), load8_16bit<kBf16>(y + o), acc[k]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    acc[0] = _mm256_fmadd_ps(load8_16bit<kBf16>(x + 2 * i), load8_16bit<kBf16>(y + 2 * i), acc[0]);
  }
  double sum = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) {
    const float xi = kBf16 ? bf16_to_fp32(load_u16(x + 2 * i)) : h2f(x + 2 * i);
    const float yi = kBf16 ? bf16_to_fp32(load_u16(y + 2 * i)) : h2f(y + 2 * i);
    sum += static_cast<double>(xi * yi);
  }
  return static_cast<float>(sum);
}

// ---------------------------------------------------------------------------------------------
// 32-element blocks x Q8_0 / Q8_1

// Multi-column kernels: one weight row against NC activation rows. Each weight block is decoded
// once for all NC columns; each column's float arithmetic is, operation for operation, that of
// the one-column case (NC = 1 is vec_dot), so the results are bit-identical to NC separate dots.
// The 32-element kinds keep two_acc's alternation: even blocks into acc0, odd into acc1.
template <int NC, typename Weight, typename Column>
inline void two_acc_cols(int64_t nb, float* out, Weight&& weight, Column&& column) {
  __m256 acc0[NC], acc1[NC];
  for (int c = 0; c < NC; ++c) acc0[c] = acc1[c] = _mm256_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const auto w0 = weight(ib);
    for (int c = 0; c < NC; ++c) acc0[c] = column(ib, c, w0, acc0[c]);
    const auto w1 = weight(ib + 1);
    for (int c = 0; c < NC; ++c) acc1[c] = column(ib + 1, c, w1, acc1[c]);
  }
  if (ib < nb) {
    const auto w0 = weight(ib);
    for (int c = 0; c < NC; ++c) acc0[c] = column(ib, c, w0, acc0[c]);
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum8(_mm256_add_ps(acc0[c], acc1[c]));
}

template <int NC>
void dot_q4_0_cols(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ4_0*>(w);
  const BlockQ8_0* y[NC];
  for (int c = 0; c < NC; ++c) y[c] = static_cast<const BlockQ8_0*>(a[c]);
  const __m256i off = _mm256_set1_epi8(8);
  two_acc_cols<NC>(
      n / kQK, out, [&](int64_t ib) { return _mm256_sub_epi8(nibbles32(x[ib].qs), off); },
      [&](int64_t ib, int c, __m256i qx, __m256 acc) {
        const __m256 d = _mm256_set1_ps(h2f(x[ib].d) * h2f(y[c][ib].d));
        return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, load256(y[c][ib].qs))), acc);
      });
}

template <int NC>
void dot_q4_1_cols(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ4_1*>(w);
  const BlockQ8_1* y[NC];
  float summs[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_1*>(a[c]);
    summs[c] = 0.0f;
  }
  two_acc_cols<NC>(
      n / kQK, out, [&](int64_t ib) { return nibbles32(x[ib].qs); },
      [&](int64_t ib, int c, __m256i qx, __m256 acc) {
        summs[c] += h2f(x[ib].m) * h2f(y[c][ib].s);
        const __m256 d = _mm256_set1_ps(h2f(x[ib].d) * h2f(y[c][ib].d));
        return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8(qx, load256(y[c][ib].qs))), acc);
      });
  for (int c = 0; c < NC; ++c) out[c] += summs[c];
}

template <VecDotColsFn F>
float one_col(int64_t n, const void* w, const void* a) {
  float out;
  F(n, w, &a, &out);
  return out;
}

float dot_q5_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_0*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const __m256i f0 = _mm256_set1_epi8(static_cast<char>(0xF0));
  return two_acc(n / kQK, [&](int64_t ib, __m256 acc) {
    const __m256 d = _mm256_set1_ps(h2f(x[ib].d) * h2f(y[ib].d));
    // Where the 5th bit is clear, OR-ing 0xF0 into the nibble makes it nibble - 16 as int8.
    const __m256i qx = _mm256_or_si256(nibbles32(x[ib].qs), _mm256_andnot_si256(bits_to_bytes(x[ib].qh), f0));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, load256(y[ib].qs))), acc);
  });
}

float dot_q5_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ5_1*>(w);
  const auto* y = static_cast<const BlockQ8_1*>(a);
  const __m256i b4 = _mm256_set1_epi8(0x10);
  float summs = 0.0f;
  const float sum = two_acc(n / kQK, [&](int64_t ib, __m256 acc) {
    summs += h2f(x[ib].m) * h2f(y[ib].s);
    const __m256 d = _mm256_set1_ps(h2f(x[ib].d) * h2f(y[ib].d));
    const __m256i qx = _mm256_or_si256(nibbles32(x[ib].qs), _mm256_and_si256(bits_to_bytes(x[ib].qh), b4));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_u8(qx, load256(y[ib].qs))), acc);
  });
  return sum + summs;
}

// Weight quants of -128 (which ggml's quantizers never write) would break the sign trick, as
// in ggml.
template <int NC>
void dot_q8_0_cols(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ8_0*>(w);
  const BlockQ8_0* y[NC];
  for (int c = 0; c < NC; ++c) y[c] = static_cast<const BlockQ8_0*>(a[c]);
  two_acc_cols<NC>(
      n / kQK, out, [&](int64_t ib) { return load256(x[ib].qs); },
      [&](int64_t ib, int c, __m256i qx, __m256 acc) {
        const __m256 d = _mm256_set1_ps(h2f(x[ib].d) * h2f(y[c][ib].d));
        return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, load256(y[c][ib].qs))), acc);
      });
}

float dot_mxfp4(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockMXFP4*>(w);
  const auto* y = static_cast<const BlockQ8_0*>(a);
  const __m128i values = load128(kValuesMXFP4);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  return two_acc(n / kQK, [&](int64_t ib, __m256 acc) {
    const __m128i bits = load128(x[ib].qs);
    const __m256i qx = _mm256_set_m128i(_mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(bits, 4), m4)),
                                        _mm_shuffle_epi8(values, _mm_and_si128(bits, m4)));
    const __m256 d = _mm256_set1_ps(h2f(y[ib].d) * e8m0_to_float_half(x[ib].e));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(qx, load256(y[ib].qs))), acc);
  });
}

// ---------------------------------------------------------------------------------------------
// K-quants x Q8_K

// Byte shuffle of a vector holding the same 8 int16 scales in both 128-bit lanes: lane 0 gets
// scale #2g and lane 1 scale #2g+1, broadcast (the two 16-element halves of 32-element group g
// have their own scales).
inline __m256i pair_scale_shuffle(int g) {
  const short lo = static_cast<short>((4 * g) | ((4 * g + 1) << 8));
  const short hi = static_cast<short>((4 * g + 2) | ((4 * g + 3) << 8));
  return _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo));
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ2_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0xF);
  const __m256i sh[4] = {pair_scale_shuffle(0), pair_scale_shuffle(1), pair_scale_shuffle(2), pair_scale_shuffle(3)};
  __m256 acc = _mm256_setzero_ps();
  __m256 acc_m = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float yd = load_f32(y[i].d);
    const float d = yd * h2f(x[i].d);
    const float dmin = -yd * h2f(x[i].dmin);
    const uint8_t* q2 = x[i].qs;
    const int8_t* q8 = y[i].qs;

    const __m128i mins_and_scales = load128(x[i].scales);
    const __m128i scales8 = _mm_and_si128(mins_and_scales, m4);
    const __m128i mins8 = _mm_and_si128(_mm_srli_epi16(mins_and_scales, 4), m4);
    const __m256i prod = _mm256_madd_epi16(_mm256_cvtepi8_epi16(mins8), load256(y[i].bsums));
    acc_m = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc_m);

    const __m256i all_scales = _mm256_cvtepi8_epi16(scales8);
    const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
    const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
    const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};

    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 2; ++j, q2 += 32) {
      const __m256i q2bits = load256(q2);
      for (int k = 0; k < 4; ++k, q8 += 32) {
        const __m256i q2k = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2 * k), m3);
        const __m256i p = _mm256_maddubs_epi16(q2k, load256(q8));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], sh[k]), p));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8(_mm256_add_ps(acc, acc_m));
}

float dot_q3_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const BlockQ3_K*>(w);
  const auto* y = static_cast<const BlockQ8_K*>(a);
  constexpr uint32_t kmask1 = 0x03030303u, kmask2 = 0x0F0F0F0Fu;
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i four = _mm256_set1_epi8(4);
  const __m128i m32 = _mm_set1_epi8(32);
  const __m256i sh[4] = {pair_scale_shuffle(0), pair_scale_shuffle(1), pair_scale_shuffle(2), pair_scale_shuffle(3)};
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = load_f32(y[i].d) * h2f(x[i].d);
    const uint8_t* q3 = x[i].qs;
    const int8_t* q8 = y[i].qs;

    uint32_t aux[3];
    std::memcpy(aux, x[i].scales, 12);
    __m128i scales128 = _mm_set_epi32(static_cast<int>(((aux[1] >> 4) & kmask2) | (((aux[2] >> 6) & kmask1) << 4)),
                                      static_cast<int>(((aux[0] >> 4) & kmask2) | (((aux[2] >> 4) & kmask1) << 4)),
                                      static_cast<int>((aux[1] & kmask2) | (((aux[2] >> 2) & kmask1) << 4)),
                                      static_cast<int>((aux[0] & kmask2) | (((aux[2] >> 0) & kmask1) << 4)));
    scales128 = _mm_sub_epi8(scales128, m32);
    const __m256i all_scales = _mm256_cvtepi8_epi16(scales128);
    const __m128i l_scales = _mm256_extracti128_si256(all_scales, 0);
    const __m128i h_scales = _mm256_extracti128_si256(all_scales, 1);
    const __m256i scales[2] = {_mm256_set_m128i(l_scales, l_scales), _mm256_set_m128i(h_scales, h_scales)};

    const __m256i hbits = load256(x[i].hmask);
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 2; ++j, q3 += 32) {
      const __m256i q3bits = load256(q3);
      for (int k = 0; k < 4; ++k, q8 += 32) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * j + k)));
        const __m256i q3l = _mm256_and_si256(_mm256_srli_epi16(q3bits, 2 * k), m3);
        // 4 where the high bit is clear: the quant is q3l - 4 there.
        const __m256i q3h = _mm256_andnot_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), bit), four);
        const __m256i q8k = load256(q8);
        const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q3l, q8k), _mm256_maddubs_epi16(q3h, q8k));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(scales[j], sh[k]), p));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum8(acc);
}

// Q4_K and Q5_K share the scale/min packing and the bsums trick for the mins.
template <bool kFive, int NC>
void dot_q45_k_cols(int64_t n, const void* w, const void* const* a, float* out) {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  const auto* x = static_cast<const Block*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  __m256 acc_m[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
    acc_m[c] = _mm256_setzero_ps();
  }
  constexpr uint32_t kmask1 = 0x3F3F3F3Fu, kmask2 = 0x0F0F0F0Fu, kmask3 = 0x03030303u;
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i b16 = _mm256_set1_epi8(16);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float xd = h2f(x[i].d), xdmin = h2f(x[i].dmin);
    uint32_t utmp[4];
    std::memcpy(utmp, x[i].scales, 12);
    utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = utmp[1] & kmask1;
    utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
    utmp[2] = uaux;
    utmp[0] &= kmask1;
    // utmp bytes 0..7: the 8 scales, bytes 8..15: the 8 mins. Each min is needed twice, for the
    // two 16-element sums of Q8_K's bsums in its 32 elements.
    const __m128i sc128 = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, static_cast<int>(utmp[1]), static_cast<int>(utmp[0])));
    const __m256i scales = _mm256_set_m128i(sc128, sc128);
    const __m128i min_bytes = _mm_set_epi32(0, 0, static_cast<int>(utmp[3]), static_cast<int>(utmp[2]));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(min_bytes, min_bytes));
    float d[NC];
    for (int c = 0; c < NC; ++c) {
      const float yd = load_f32(y[c][i].d);
      d[c] = yd * xd;
      const __m256i min_sums = _mm256_madd_epi16(mins, load256(y[c][i].bsums));
      acc_m[c] = _mm256_fmadd_ps(_mm256_set1_ps(-yd * xdmin), _mm256_cvtepi32_ps(min_sums), acc_m[c]);
    }

    const uint8_t* q4 = x[i].qs;
    __m256i hbits = _mm256_setzero_si256();
    if constexpr (kFive) hbits = load256(x[i].qh);
    __m256i sumi[NC];
    for (auto& v : sumi) v = _mm256_setzero_si256();
    for (int j = 0; j < kQK_K / 64; ++j, q4 += 32) {
      const __m256i scale_l = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>((4 * j) | ((4 * j + 1) << 8))));
      const __m256i scale_h = _mm256_shuffle_epi8(scales, _mm256_set1_epi16(static_cast<short>((4 * j + 2) | ((4 * j + 3) << 8))));
      const __m256i q4bits = load256(q4);
      __m256i q4l = _mm256_and_si256(q4bits, m4);
      __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
      if constexpr (kFive) {
        const __m256i bit_l = _mm256_set1_epi8(static_cast<char>(1 << (2 * j)));
        const __m256i bit_h = _mm256_set1_epi8(static_cast<char>(1 << (2 * j + 1)));
        q4l = _mm256_or_si256(q4l, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_l), bit_l), b16));
        q4h = _mm256_or_si256(q4h, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit_h), bit_h), b16));
      }
      for (int c = 0; c < NC; ++c) {
        const int8_t* q8 = y[c][i].qs + 64 * j;
        const __m256i p_l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load256(q8)));
        const __m256i p_h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, load256(q8 + 32)));
        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(p_l, p_h));
      }
    }
    for (int c = 0; c < NC; ++c) acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d[c]), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum8(acc[c]) + hsum8(acc_m[c]);
}

// Q6_K: q in 0..63 stands for q - 32. Per column, sum(scale * q * q8) is taken from the quants
// and 32 * sum(scale * bsum) from Q8_K's per-16 sums (Q6_K's scales are per 16 too), which is
// the same integer as ggml's q * q8 - 32 * q8 per element, with one maddubs less per column.
template <int NC>
void dot_q6_k_cols(int64_t n, const void* w, const void* const* a, float* out) {
  const auto* x = static_cast<const BlockQ6_K*>(w);
  const BlockQ8_K* y[NC];
  __m256 acc[NC];
  for (int c = 0; c < NC; ++c) {
    y[c] = static_cast<const BlockQ8_K*>(a[c]);
    acc[c] = _mm256_setzero_ps();
  }
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float xd = h2f(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const __m128i scales = load128(x[i].scales);
    const __m256i scales16 = _mm256_cvtepi8_epi16(scales);
    __m256i sumi[NC];
    for (int c = 0; c < NC; ++c) {
      // -32 * sum over the 16 groups of scale * bsum (int16 x int16 -> int32 pairs)
      sumi[c] = _mm256_mullo_epi32(_mm256_madd_epi16(scales16, load256(y[c][i].bsums)), _mm256_set1_epi32(-32));
    }
    for (int j = 0; j < 2; ++j, ql += 64, qh += 32) {
      const __m256i bits1 = load256(ql);
      const __m256i bits2 = load256(ql + 32);
      const __m256i bitsh = load256(qh);
      const __m256i q[4] = {
          _mm256_or_si256(_mm256_and_si256(bits1, m4), _mm256_slli_epi16(_mm256_and_si256(bitsh, m3), 4)),
          _mm256_or_si256(_mm256_and_si256(bits2, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 2), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits1, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 4), m3), 4)),
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits2, 4), m4),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bitsh, 6), m3), 4)),
      };
      for (int k = 0; k < 4; ++k) {
        const int is = 8 * j + 2 * k;  // the scales of elements 0..15 and 16..31 of this group
        const char s0 = static_cast<char>(is), s1 = static_cast<char>(is + 1);
        const __m128i pick = _mm_set_epi8(s1, s1, s1, s1, s1, s1, s1, s1, s0, s0, s0, s0, s0, s0, s0, s0);
        const __m256i scale = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
        for (int c = 0; c < NC; ++c) {
          const __m256i p = _mm256_maddubs_epi16(q[k], load256(y[c][i].qs + 128 * j + 32 * k));
          sumi[c] = _mm256_add_epi32(sumi[c], _mm256_madd_epi16(scale, p));
        }
      }
    }
    for (int c = 0; c < NC; ++c) {
      const float d = load_f32(y[c][i].d) * xd;
      acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
    }
  }
  for (int c = 0; c < NC; ++c) out[c] = hsum8(acc[c]);
}

// ---------------------------------------------------------------------------------------------
// Activation quantization: ggml-cpu/arch/x86/quants.c quantize_row_q8_0 / quantize_row_q8_1.

template <bool kWithSum>
void quantize_q8(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  const size_t block_bytes = kWithSum ? sizeof(BlockQ8_1) : sizeof(BlockQ8_0);
  const size_t qs_offset = kWithSum ? 4 : 2;
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n / kQK; ++i, x += kQK, out += block_bytes) {
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 max_abs = _mm256_andnot_ps(sign_bit, v0);
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v1));
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v2));
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v3));
    __m128 max4 = _mm_max_ps(_mm256_extractf128_ps(max_abs, 1), _mm256_castps256_ps128(max_abs));
    max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
    max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
    const float amax = _mm_cvtss_f32(max4);

    const float d = amax / 127.0f;
    store_u16(out, fp32_to_fp16(d));
    const __m256 mul = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), kRound));
    const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), kRound));
    const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), kRound));
    const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), kRound));
    if constexpr (kWithSum) {
      const int sum = hsum_i32x8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
      store_u16(out + 2, fp32_to_fp16(d * static_cast<float>(sum)));
    }
    // int32 -> int16 -> int8, then undo the lane interleaving of the packs.
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    const __m256i q = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + qs_offset), q);
  }
}

// F16C conversion, round to nearest even (what ggml-cpu uses on x86).
void quantize_f16(const float* x, void* dst, int64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) store_u16(out + 2 * i, fp32_to_fp16(x[i]));
}

// ---------------------------------------------------------------------------------------------
// Dequantization (bit-identical to the references: one rounding, a product, per element)

void dequantize_f16(const void* src, float* y, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(load128(p + 2 * i)));
  for (; i < n; ++i) y[i] = h2f(p + 2 * i);
}

void dequantize_bf16(const void* src, float* y, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load8_16bit<true>(p + 2 * i));
  for (; i < n; ++i) y[i] = bf16_to_fp32(load_u16(p + 2 * i));
}

void dequantize_q4_0(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const __m256 d = _mm256_set1_ps(h2f(x[i].d));
    const __m256i q = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    _mm256_storeu_ps(y + 0, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), d));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), d));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), d));
  }
}

void dequantize_q8_0(const void* src, float* y, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK; ++i, y += kQK) {
    const __m256 d = _mm256_set1_ps(h2f(x[i].d));
    for (int k = 0; k < 4; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].qs + 8 * k));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
    }
  }
}

}  // namespace

VecDotFn avx2_vec_dot(int32_t type) {
  switch (type) {
    case kF32: return dot_f32;
    case kF16: return dot_16bit<false>;
    case kBF16: return dot_16bit<true>;
    case kQ4_0: return one_col<dot_q4_0_cols<1>>;
    case kQ4_1: return one_col<dot_q4_1_cols<1>>;
    case kQ5_0: return dot_q5_0;
    case kQ5_1: return dot_q5_1;
    case kQ8_0: return one_col<dot_q8_0_cols<1>>;
    case kMXFP4: return dot_mxfp4;
    case kQ2_K: return dot_q2_k;
    case kQ3_K: return dot_q3_k;
    case kQ4_K: return one_col<dot_q45_k_cols<false, 1>>;
    case kQ5_K: return one_col<dot_q45_k_cols<true, 1>>;
    case kQ6_K: return one_col<dot_q6_k_cols<1>>;
    default: return nullptr;
  }
}

VecDotColsFn avx2_vec_dot_cols(int32_t type) {
  static_assert(kMaxCols == 4);
  switch (type) {
    case kQ4_0: return dot_q4_0_cols<kMaxCols>;
    case kQ4_1: return dot_q4_1_cols<kMaxCols>;
    case kQ8_0: return dot_q8_0_cols<kMaxCols>;
    case kQ4_K: return dot_q45_k_cols<false, kMaxCols>;
    case kQ5_K: return dot_q45_k_cols<true, kMaxCols>;
    case kQ6_K: return dot_q6_k_cols<kMaxCols>;
    default: return nullptr;
  }
}

// Q8_K stays the scalar reference: ggml-cpu's x86 quantize_row_q8_K is quantize_row_q8_K_ref.
QuantizeFn avx2_quantize(int32_t type) {
  switch (type) {
    case kQ8_0: return quantize_q8<false>;
    case kQ8_1: return quantize_q8<true>;
    case kF16: return quantize_f16;
    default: return nullptr;
  }
}

DequantizeFn avx2_dequantize(int32_t type) {
  switch (type) {
    case kF16: return dequantize_f16;
    case kBF16: return dequantize_bf16;
    case kQ4_0: return dequantize_q4_0;
    case kQ8_0: return dequantize_q8_0;
    default: return nullptr;
  }
}

}  // namespace archreg::kernels::cpu::detail
