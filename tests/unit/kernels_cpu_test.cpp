// CPU kernels (kernels/cpu/quants.hpp): ggml's block formats, conversions, activation
// quantization and dot products.
//
// The oracles here are independent of the kernels' code: dequantization is checked element by
// element against a decoder written from the format description (bit positions, in double);
// fp16/bf16 rounding against a nearest-value search; dot products against the double-precision
// dot of the dequantized weight and activation rows.
//
// Tolerances (S = sum over i of |w_i| * |a_i|, where |w_i| sums the magnitudes of the terms
// that make up weight i, e.g. |d*sc*q| + |dmin*m|, so cancellation cannot hide an error):
//   dequantize_row_ref vs the decoder     2^-21 * |terms| per element (a few float roundings)
//   dequantize_row vs dequantize_row_ref  bit-identical
//   vec_dot_ref vs double reference       1e-5 * S (float scale products and block sums), plus
//                                         for Q4_1/Q5_1 2^-9 * |m| * |s| per block: ggml stores
//                                         s = d*sum(q) as fp16, so the min term is rounded
//   vec_dot vs vec_dot_ref                1e-5 * S (same integer sums, other summation order)
//   quantize_row_ref(Q8_0/Q8_1)           exactly ggml's: d = fp16(amax/127), q = roundf(x/d)
//   quantize_row_ref(Q8_K)                exactly ggml's nearest_int(-127/max * x)
#include <cpuid.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/quants.hpp"

namespace kc = archreg::kernels::cpu;

namespace {

constexpr int32_t kWeightTypes[] = {kc::kF32,  kc::kF16,  kc::kBF16, kc::kQ4_0, kc::kQ4_1, kc::kQ5_0, kc::kQ5_1,
                                    kc::kQ8_0, kc::kQ2_K, kc::kQ3_K, kc::kQ4_K, kc::kQ5_K, kc::kQ6_K, kc::kMXFP4};

std::string type_name(int32_t t) {
  switch (t) {
    case kc::kF32: return "F32";
    case kc::kF16: return "F16";
    case kc::kBF16: return "BF16";
    case kc::kQ4_0: return "Q4_0";
    case kc::kQ4_1: return "Q4_1";
    case kc::kQ5_0: return "Q5_0";
    case kc::kQ5_1: return "Q5_1";
    case kc::kQ8_0: return "Q8_0";
    case kc::kQ8_1: return "Q8_1";
    case kc::kQ2_K: return "Q2_K";
    case kc::kQ3_K: return "Q3_K";
    case kc::kQ4_K: return "Q4_K";
    case kc::kQ5_K: return "Q5_K";
    case kc::kQ6_K: return "Q6_K";
    case kc::kQ8_K: return "Q8_K";
    case kc::kMXFP4: return "MXFP4";
    default: return std::to_string(t);
  }
}

uint16_t u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
uint32_t u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
double half(const uint8_t* p) {
  return kc::fp16_to_fp32(u16(p));
}
void put_half(uint8_t* p, float f) {
  const uint16_t h = kc::fp32_to_fp16(f);
  p[0] = static_cast<uint8_t>(h);
  p[1] = static_cast<uint8_t>(h >> 8);
}

// One element of a weight row, decoded from the format description in double precision;
// `mag` gets the sum of the magnitudes of the terms (for error bounds).
double decode(int32_t type, const uint8_t* row, int64_t index, double& mag) {
  const int64_t bs = kc::block_size(type);
  const uint8_t* b = row + static_cast<size_t>(index / bs) * kc::type_size(type);
  const int i = static_cast<int>(index % bs);
  double v = 0.0;
  mag = 0.0;
  auto nibble32 = [&](const uint8_t* qs) { return i < 16 ? (qs[i] & 15) : (qs[i - 16] >> 4); };
  switch (type) {
    case kc::kF32: {
      float f;
      std::memcpy(&f, b, 4);
      v = f;
      break;
    }
    case kc::kF16: v = half(b); break;
    case kc::kBF16: v = static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(u16(b)) << 16)); break;
    case kc::kQ4_0: v = (nibble32(b + 2) - 8) * half(b); break;
    case kc::kQ4_1: {
      const double t = nibble32(b + 4) * half(b);
      v = t + half(b + 2);
      mag = std::fabs(t) + std::fabs(half(b + 2));
      break;
    }
    case kc::kQ5_0: v = ((nibble32(b + 6) | static_cast<int>(((u32(b + 2) >> i) & 1) << 4)) - 16) * half(b); break;
    case kc::kQ5_1: {
      const double t = (nibble32(b + 8) | static_cast<int>(((u32(b + 4) >> i) & 1) << 4)) * half(b);
      v = t + half(b + 2);
      mag = std::fabs(t) + std::fabs(half(b + 2));
      break;
    }
    case kc::kQ8_0: v = static_cast<int8_t>(b[2 + i]) * half(b); break;
    case kc::kMXFP4: {
      // E2M1: sign, 2 exponent bits (bias 1), 1 mantissa bit; scale E8M0 = 2^(e-127).
      const int code = nibble32(b + 1);
      const int e = (code >> 1) & 3, m = code & 1;
      const double mag2 = e == 0 ? 0.5 * m : (1.0 + 0.5 * m) * std::ldexp(1.0, e - 1);
      v = (code & 8 ? -mag2 : mag2) * std::ldexp(1.0, b[0] - 127);
      break;
    }
    case kc::kQ2_K: {  // scales[16] qs[64] d dmin
      const int c = i / 128, g = (i % 128) / 32, l = i % 32;
      const int q = (b[16 + 32 * c + l] >> (2 * g)) & 3;
      const int s = b[i / 16];
      const double t1 = half(b + 80) * (s & 15) * q, t2 = half(b + 82) * (s >> 4);
      v = t1 - t2;
      mag = std::fabs(t1) + std::fabs(t2);
      break;
    }
    case kc::kQ3_K: {  // hmask[32] qs[64] scales[12] d
      const int c = i / 128, g = (i % 128) / 32, l = i % 32;
      int q = (b[32 + 32 * c + l] >> (2 * g)) & 3;
      if (((b[l] >> (4 * c + g)) & 1) == 0) q -= 4;
      const int s = i / 16;
      const uint8_t* sc = b + 96;
      const int low = s < 8 ? (sc[s] & 15) : (sc[s - 8] >> 4);
      const int high = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
      v = half(b + 108) * ((low | (high << 4)) - 32) * q;
      break;
    }
    case kc::kQ4_K:
    case kc::kQ5_K: {  // d dmin scales[12] (qh[32]) qs[128]
      const bool five = type == kc::kQ5_K;
      const uint8_t* s = b + 4;
      const uint8_t* qs = b + (five ? 48 : 16);
      const int sub = i / 32, c = i / 64, l = i % 32;
      int q = (i % 64) < 32 ? (qs[32 * c + l] & 15) : (qs[32 * c + l] >> 4);
      if (five) q += ((b[16 + l] >> sub) & 1) << 4;
      int sc, mn;
      if (sub < 4) {
        sc = s[sub] & 63;
        mn = s[sub + 4] & 63;
      } else {
        sc = (s[sub + 4] & 15) | ((s[sub - 4] >> 6) << 4);
        mn = (s[sub + 4] >> 4) | ((s[sub] >> 6) << 4);
      }
      const double t1 = half(b) * sc * q, t2 = half(b + 2) * mn;
      v = t1 - t2;
      mag = std::fabs(t1) + std::fabs(t2);
      break;
    }
    case kc::kQ6_K: {  // ql[128] qh[64] scales[16] d
      const int c = i / 128, g = (i % 128) / 32, l = i % 32;
      const int low = (b[64 * c + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 15;
      const int high = (b[128 + 32 * c + l] >> (2 * g)) & 3;
      v = half(b + 208) * static_cast<int8_t>(b[192 + i / 16]) * ((low | (high << 4)) - 32);
      break;
    }
    default: throw std::logic_error("decode: type");
  }
  if (mag == 0.0) mag = std::fabs(v);
  return v;
}

// A random weight row: random bytes with sane scales (no inf/NaN halves), random-sign d.
std::vector<uint8_t> random_row(int32_t type, int64_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> row(kc::row_size(type, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& x : row) x = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  auto scale = [&](bool sign) {
    const float s = std::ldexp(1.0f + std::fabs(unit(rng)), -6 - static_cast<int>(byte(rng) % 4));
    return sign && unit(rng) < 0 ? -s : s;
  };
  const size_t ts = kc::type_size(type);
  const int64_t nb = n / kc::block_size(type);
  for (int64_t k = 0; k < nb; ++k) {
    uint8_t* b = row.data() + static_cast<size_t>(k) * ts;
    switch (type) {
      case kc::kF32: {
        const float f = 2.0f * unit(rng);
        std::memcpy(b, &f, 4);
        break;
      }
      case kc::kF16: put_half(b, 2.0f * unit(rng)); break;
      case kc::kBF16: {
        const uint16_t h = kc::fp32_to_bf16(2.0f * unit(rng));
        b[0] = static_cast<uint8_t>(h);
        b[1] = static_cast<uint8_t>(h >> 8);
        break;
      }
      case kc::kQ4_0:
      case kc::kQ5_0: put_half(b, scale(true)); break;
      case kc::kQ4_1:
      case kc::kQ5_1:
        put_half(b, scale(false));
        put_half(b + 2, 8.0f * scale(true));
        break;
      case kc::kQ8_0:
        put_half(b, scale(true));
        for (int j = 2; j < 34; ++j)
          if (b[j] == 0x80) b[j] = 0x81;  // ggml never writes -128
        break;
      case kc::kMXFP4: b[0] = static_cast<uint8_t>(118 + byte(rng) % 16); break;
      case kc::kQ2_K:
        put_half(b + 80, scale(true));
        put_half(b + 82, scale(false));
        break;
      case kc::kQ3_K: put_half(b + 108, scale(true)); break;
      case kc::kQ4_K:
      case kc::kQ5_K:
        put_half(b, scale(true));
        put_half(b + 2, scale(false));
        break;
      case kc::kQ6_K: put_half(b + 208, scale(true)); break;
      default: throw std::logic_error("random_row: type");
    }
  }
  return row;
}

std::vector<float> random_activations(int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 49);
  std::vector<float> x(static_cast<size_t>(n));
  for (auto& v : x) v = normal(rng) * (pick(rng) == 0 ? 20.0f : 1.0f);
  return x;
}

// A copy of `bytes` at an odd address (rows of 17- or 22-byte blocks start anywhere).
struct Misaligned {
  std::vector<uint8_t> storage;
  explicit Misaligned(const std::vector<uint8_t>& bytes) : storage(bytes.size() + 1) {
    std::copy(bytes.begin(), bytes.end(), storage.begin() + 1);
  }
  const void* data() const { return storage.data() + 1; }
};

// The nearest code among the ordered non-negative codes [0, max_code] by value; ties go to the
// even code. value(max_code + 1) is what the next exponent step would be, so that rounding to
// infinity happens exactly where IEEE rounding puts it.
template <typename ValueOf>
uint32_t nearest_code(double x, uint32_t max_code, ValueOf value) {
  uint32_t lo = 0, hi = max_code + 1;  // value(lo) <= x < value(hi)
  while (hi - lo > 1) {
    const uint32_t mid = (lo + hi) / 2;
    (value(mid) <= x ? lo : hi) = mid;
  }
  const double dl = x - value(lo), dh = value(hi) - x;
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1) ? hi : lo;
}

bool cpu_has_avx2_fma_f16c() {
  __builtin_cpu_init();
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & (1u << 29)) != 0;
  return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST(KernelCpuTypes, SizesMatchGgml) {
  struct Row {
    int32_t type;
    int64_t block;
    size_t bytes;
  };
  const Row rows[] = {{kc::kF32, 1, 4},      {kc::kF16, 1, 2},      {kc::kBF16, 1, 2},     {kc::kQ4_0, 32, 18},
                      {kc::kQ4_1, 32, 20},   {kc::kQ5_0, 32, 22},   {kc::kQ5_1, 32, 24},   {kc::kQ8_0, 32, 34},
                      {kc::kQ8_1, 32, 36},   {kc::kQ2_K, 256, 84},  {kc::kQ3_K, 256, 110}, {kc::kQ4_K, 256, 144},
                      {kc::kQ5_K, 256, 176}, {kc::kQ6_K, 256, 210}, {kc::kQ8_K, 256, 292}, {kc::kMXFP4, 32, 17}};
  for (const Row& r : rows) {
    EXPECT_EQ(kc::block_size(r.type), r.block) << type_name(r.type);
    EXPECT_EQ(kc::type_size(r.type), r.bytes) << type_name(r.type);
  }
  EXPECT_EQ(kc::row_size(kc::kQ4_K, 4096), 16u * 144u);
  EXPECT_EQ(kc::row_size(kc::kF16, 7), 14u);
  EXPECT_EQ(kc::block_size(4), 0);  // Q4_2: removed from ggml
  for (int32_t t : kWeightTypes) EXPECT_TRUE(kc::supported(t)) << type_name(t);
  EXPECT_FALSE(kc::supported(kc::kQ8_1));
  EXPECT_FALSE(kc::supported(kc::kQ8_K));
  EXPECT_FALSE(kc::supported(16));  // IQ2_XXS
}

TEST(KernelCpuTypes, VecDotTypeIsGgmlCpus) {
  EXPECT_EQ(kc::vec_dot_type(kc::kF32), kc::kF32);
  EXPECT_EQ(kc::vec_dot_type(kc::kF16), kc::kF16);
  EXPECT_EQ(kc::vec_dot_type(kc::kBF16), kc::kBF16);
  for (int32_t t : {kc::kQ4_0, kc::kQ5_0, kc::kQ8_0, kc::kMXFP4}) EXPECT_EQ(kc::vec_dot_type(t), kc::kQ8_0);
  for (int32_t t : {kc::kQ4_1, kc::kQ5_1}) EXPECT_EQ(kc::vec_dot_type(t), kc::kQ8_1);
  for (int32_t t : {kc::kQ2_K, kc::kQ3_K, kc::kQ4_K, kc::kQ5_K, kc::kQ6_K}) {
    EXPECT_EQ(kc::vec_dot_type(t), kc::kQ8_K);
  }
}

TEST(KernelCpuTypes, IsaMatchesTheCpu) {
  EXPECT_STREQ(kc::isa(), cpu_has_avx2_fma_f16c() ? "avx2" : "scalar");
}

TEST(KernelCpuTypes, BadCallsThrow) {
  std::vector<uint8_t> w(1024), a(1024);
  std::vector<float> f(256);
  EXPECT_THROW(kc::vec_dot(kc::kQ4_0, 33, w.data(), a.data()), std::invalid_argument);
  EXPECT_THROW(kc::vec_dot(kc::kQ8_K, 256, w.data(), a.data()), std::invalid_argument);
  EXPECT_THROW(kc::vec_dot_ref(99, 32, w.data(), a.data()), std::invalid_argument);
  EXPECT_THROW(kc::quantize_row(kc::kQ4_0, f.data(), w.data(), 32), std::invalid_argument);
  EXPECT_THROW(kc::quantize_row_ref(kc::kQ8_K, f.data(), w.data(), 128), std::invalid_argument);
  EXPECT_THROW(kc::dequantize_row(-1, w.data(), f.data(), 32), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Conversions

TEST(KernelCpuConvert, HalfRoundTripsEveryCode) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = kc::fp16_to_fp32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_EQ(h & 0x7C00u, 0x7C00u);
      EXPECT_NE(h & 0x3FFu, 0u);
      const uint16_t back = kc::fp32_to_fp16(f);
      EXPECT_EQ(back & 0x7C00u, 0x7C00u);
      EXPECT_NE(back & 0x3FFu, 0u);
    } else {
      ASSERT_EQ(kc::fp32_to_fp16(f), h) << std::hex << h;
    }
  }
  EXPECT_EQ(kc::fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(kc::fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(kc::fp16_to_fp32(0x0001), 0x1p-24f);
  EXPECT_EQ(kc::fp16_to_fp32(0xC000), -2.0f);
  EXPECT_TRUE(std::isinf(kc::fp16_to_fp32(0x7C00)));
}

TEST(KernelCpuConvert, FloatToHalfRoundsToNearestEven) {
  auto half_value = [](uint32_t code) {
    return code >= 0x7C00u ? 65536.0 : static_cast<double>(kc::fp16_to_fp32(static_cast<uint16_t>(code)));
  };
  auto expected = [&](float f) {
    const uint32_t code = nearest_code(std::fabs(static_cast<double>(f)), 0x7BFFu, half_value);
    return static_cast<uint16_t>((std::signbit(f) ? 0x8000u : 0u) | std::min(code, 0x7C00u));
  };
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  for (int k = 0; k < 200000; ++k) {
    // exponents around the half range, including subnormal halves and overflow
    uint32_t u = bits(rng);
    u = (u & 0x807FFFFFu) | ((96u + (u >> 23) % 50u) << 23);
    const float f = std::bit_cast<float>(u);
    ASSERT_EQ(kc::fp32_to_fp16(f), expected(f)) << f;
  }
  const float specials[] = {
      0.0f,     -0.0f,         65504.0f, 65519.99f,       65520.0f,        1e9f,     1.0f + 0x1p-11f, 1.0f + 3 * 0x1p-11f,
      0x1p-25f, 0x1.0002p-25f, 0x1p-24f, 1.5f * 0x1p-24f, 2.5f * 0x1p-24f, 0x1p-14f, 0x1.ffcp-15f,    1e-30f};
  for (float f : specials) EXPECT_EQ(kc::fp32_to_fp16(f), expected(f)) << f;
  EXPECT_EQ(kc::fp32_to_fp16(65520.0f), 0x7C00);
  EXPECT_EQ(kc::fp32_to_fp16(1.0f + 0x1p-11f), 0x3C00);  // tie -> even
  EXPECT_EQ(kc::fp32_to_fp16(0x1p-25f), 0x0000);         // tie -> even (zero)
  EXPECT_EQ(kc::fp32_to_fp16(-INFINITY), 0xFC00);
  EXPECT_EQ(kc::fp32_to_fp16(std::nanf("")) & 0x7E00, 0x7E00);
}

TEST(KernelCpuConvert, Bf16RoundsToNearestEvenAndQuietsNaN) {
  auto bf_value = [](uint32_t code) { return code >= 0x7F80u ? 0x1p128 : static_cast<double>(std::bit_cast<float>(code << 16)); };
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<uint32_t> bits(0, 0xFFFFFFFFu);
  for (int k = 0; k < 200000; ++k) {
    const float f = std::bit_cast<float>(bits(rng));
    const uint16_t got = kc::fp32_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_EQ(got, static_cast<uint16_t>((std::bit_cast<uint32_t>(f) >> 16) | 0x40u));
      continue;
    }
    const uint32_t code = nearest_code(std::fabs(static_cast<double>(f)), 0x7F7Fu, bf_value);
    ASSERT_EQ(got, static_cast<uint16_t>((std::signbit(f) ? 0x8000u : 0u) | code)) << f;
    if (!std::isinf(f)) {
      ASSERT_EQ(kc::bf16_to_fp32(got), static_cast<float>(bf_value(code)) * (std::signbit(f) ? -1.0f : 1.0f));
    }
  }
  EXPECT_EQ(kc::fp32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(kc::fp32_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(kc::fp32_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even
  EXPECT_EQ(kc::fp32_to_bf16(std::bit_cast<float>(0x7F800001u)), 0x7FC0);  // signalling -> quiet
  EXPECT_EQ(kc::fp32_to_bf16(std::bit_cast<float>(0x7F7FFFFFu)), 0x7F80);  // FLT_MAX -> inf
  EXPECT_EQ(kc::bf16_to_fp32(0xC040), -3.0f);
}

// ---------------------------------------------------------------------------------------------
// Dequantization

TEST(KernelCpuDequantize, HandBuiltBlocks) {
  std::vector<float> y(32);
  {  // Q4_0: d = 1, first byte 0x1F -> element 0 = 15 - 8, element 16 = 1 - 8
    std::vector<uint8_t> b(18, 0x88);
    put_half(b.data(), 1.0f);
    b[2] = 0x1F;
    kc::dequantize_row_ref(kc::kQ4_0, b.data(), y.data(), 32);
    EXPECT_EQ(y[0], 7.0f);
    EXPECT_EQ(y[16], -7.0f);
    EXPECT_EQ(y[1], 0.0f);
  }
  {  // MXFP4: e = 127 is scale 1: the nibbles are E2M1 codes
    std::vector<uint8_t> b(17, 0);
    b[0] = 127;
    b[1] = 0x71;  // element 0: code 1 = 0.5, element 16: code 7 = 6
    b[2] = 0xF9;  // element 1: code 9 = -0.5, element 17: code 15 = -6
    b[3] = 0x5C;  // element 2: code 12 = -2, element 18: code 5 = 3
    kc::dequantize_row_ref(kc::kMXFP4, b.data(), y.data(), 32);
    EXPECT_EQ(y[0], 0.5f);
    EXPECT_EQ(y[16], 6.0f);
    EXPECT_EQ(y[1], -0.5f);
    EXPECT_EQ(y[17], -6.0f);
    EXPECT_EQ(y[2], -2.0f);
    EXPECT_EQ(y[18], 3.0f);
    b[0] = 0;  // 2^-127 * 0.5 * 2: the subnormal half-scale 2^-128 times the doubled code 2
    kc::dequantize_row_ref(kc::kMXFP4, b.data(), y.data(), 32);
    EXPECT_EQ(y[0], 0x1p-128f);
    EXPECT_EQ(y[16], 6.0f * 0x1p-127f);
    b[0] = 255;
    kc::dequantize_row_ref(kc::kMXFP4, b.data(), y.data(), 32);
    EXPECT_EQ(y[0], 0x1p127f);
  }
  {  // Q8_0
    std::vector<uint8_t> b(34, 0);
    put_half(b.data(), 0.5f);
    b[2] = 0x81;  // -127
    b[33] = 3;
    kc::dequantize_row_ref(kc::kQ8_0, b.data(), y.data(), 32);
    EXPECT_EQ(y[0], -63.5f);
    EXPECT_EQ(y[31], 1.5f);
  }
}

TEST(KernelCpuDequantize, MatchesIndependentDecoderForEveryType) {
  std::mt19937_64 rng(3);
  for (int32_t type : kWeightTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t n = 3 * kc::block_size(type) * (kc::block_size(type) == 1 ? 37 : 1);
    const auto row = random_row(type, n, rng);
    const Misaligned mrow(row);
    std::vector<float> ref(static_cast<size_t>(n)), fast(static_cast<size_t>(n));
    kc::dequantize_row_ref(type, mrow.data(), ref.data(), n);
    kc::dequantize_row(type, mrow.data(), fast.data(), n);
    EXPECT_EQ(std::memcmp(ref.data(), fast.data(), ref.size() * 4), 0) << "dispatched != reference";
    for (int64_t i = 0; i < n; ++i) {
      double mag = 0;
      const double want = decode(type, row.data(), i, mag);
      ASSERT_NEAR(ref[static_cast<size_t>(i)], want, 0x1p-21 * mag) << "element " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Activation quantization

TEST(KernelCpuQuantize, Q8_0AndQ8_1FollowGgmlsReference) {
  std::mt19937_64 rng(4);
  const int64_t n = 32 * 9;
  auto x = random_activations(n, rng);
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  std::vector<uint8_t> q0(kc::row_size(kc::kQ8_0, n)), q1(kc::row_size(kc::kQ8_1, n));
  kc::quantize_row_ref(kc::kQ8_0, x.data(), q0.data(), n);
  kc::quantize_row_ref(kc::kQ8_1, x.data(), q1.data(), n);
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x.data() + 32 * ib;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint8_t* b0 = q0.data() + 34 * ib;
    const uint8_t* b1 = q1.data() + 36 * ib;
    EXPECT_EQ(u16(b0), kc::fp32_to_fp16(d));
    EXPECT_EQ(u16(b1), kc::fp32_to_fp16(d));
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::round(xb[j] * id));
      EXPECT_EQ(static_cast<int8_t>(b0[2 + j]), q);
      EXPECT_EQ(static_cast<int8_t>(b1[4 + j]), q);
      sum += q;
      // |x - q * fp16(d)| <= d/2 + 127 * |d - fp16(d)|
      EXPECT_LE(std::fabs(xb[j] - q * half(b0)), amax / 127.0 * (0.5 + 127 * 0x1p-11) + 1e-30);
    }
    EXPECT_EQ(u16(b1 + 2), kc::fp32_to_fp16(static_cast<float>(sum) * d));
  }
}

TEST(KernelCpuQuantize, RoundingTiesRefVersusAvx2) {
  // amax = 127 -> d = 1: 2.5 and -2.5 are ties. The reference rounds them away from zero
  // (roundf, ggml quantize_row_q8_0_ref); ggml's AVX2 quantize_row_q8_0 rounds to even.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  std::vector<uint8_t> ref(34), fast(34);
  kc::quantize_row_ref(kc::kQ8_0, x.data(), ref.data(), 32);
  kc::quantize_row(kc::kQ8_0, x.data(), fast.data(), 32);
  EXPECT_EQ(static_cast<int8_t>(ref[3]), 3);
  EXPECT_EQ(static_cast<int8_t>(ref[4]), -3);
  EXPECT_EQ(static_cast<int8_t>(ref[5]), 4);
  const bool avx2 = std::string(kc::isa()) == "avx2";
  EXPECT_EQ(static_cast<int8_t>(fast[3]), avx2 ? 2 : 3);
  EXPECT_EQ(static_cast<int8_t>(fast[4]), avx2 ? -2 : -3);
  EXPECT_EQ(static_cast<int8_t>(fast[5]), 4);
  EXPECT_EQ(u16(fast.data()), u16(ref.data()));
}

TEST(KernelCpuQuantize, DispatchedQ8MatchesGgmlAvx2Formula) {
  // ggml's AVX2 path: id = 127/amax, q = round-half-even(x * id).
  std::mt19937_64 rng(5);
  const int64_t n = 32 * 16;
  const auto x = random_activations(n, rng);
  std::vector<uint8_t> q0(kc::row_size(kc::kQ8_0, n)), q1(kc::row_size(kc::kQ8_1, n));
  kc::quantize_row(kc::kQ8_0, x.data(), q0.data(), n);
  kc::quantize_row(kc::kQ8_1, x.data(), q1.data(), n);
  const bool avx2 = std::string(kc::isa()) == "avx2";
  for (int64_t ib = 0; ib < n / 32; ++ib) {
    const float* xb = x.data() + 32 * ib;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float id = avx2 ? 127.0f / amax : 1.0f / (amax / 127.0f);
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      const float v = xb[j] * id;
      const int q = static_cast<int>(avx2 ? std::nearbyint(v) : std::round(v));
      EXPECT_EQ(static_cast<int8_t>(q0[34 * ib + 2 + j]), q);
      EXPECT_EQ(static_cast<int8_t>(q1[36 * ib + 4 + j]), q);
      sum += q;
    }
    EXPECT_EQ(u16(q1.data() + 36 * ib + 2), kc::fp32_to_fp16(amax / 127.0f * static_cast<float>(sum)));
  }
}

TEST(KernelCpuQuantize, Q8_KFollowsGgmlsReference) {
  std::vector<float> x(512, 0.0f);
  x[0] = 127.0f;    // max is positive: iscale = -1, d = -1
  x[1] = 2.5f;      // nearest_int(-2.5) = -2 (ties to even)
  x[2] = 3.5f;      // -4
  x[3] = -127.0f;   // same magnitude later: the first one sets the sign
  x[256] = -50.0f;  // second block: max negative -> iscale = 2.54, d > 0
  x[257] = 25.0f;   // 63.5: a tie, to even (64)
  std::vector<uint8_t> q(2 * 292);
  kc::quantize_row_ref(kc::kQ8_K, x.data(), q.data(), 512);
  kc::quantize_row(kc::kQ8_K, x.data(), q.data(), 512);  // the same code in ggml on x86
  float d0, d1;
  std::memcpy(&d0, q.data(), 4);
  std::memcpy(&d1, q.data() + 292, 4);
  EXPECT_EQ(d0, -1.0f);
  EXPECT_EQ(static_cast<int8_t>(q[4]), -127);
  EXPECT_EQ(static_cast<int8_t>(q[5]), -2);
  EXPECT_EQ(static_cast<int8_t>(q[6]), -4);
  EXPECT_EQ(static_cast<int8_t>(q[7]), 127);
  EXPECT_EQ(d1, 1.0f / (127.0f / 50.0f));
  EXPECT_EQ(static_cast<int8_t>(q[292 + 4]), -127);
  EXPECT_EQ(static_cast<int8_t>(q[292 + 5]), static_cast<int>(std::nearbyint(-127.0f / -50.0f * 25.0f)));

  std::mt19937_64 rng(6);
  const auto r = random_activations(1024, rng);
  std::vector<uint8_t> qr(4 * 292);
  kc::quantize_row_ref(kc::kQ8_K, r.data(), qr.data(), 1024);
  for (int ib = 0; ib < 4; ++ib) {
    const uint8_t* b = qr.data() + 292 * ib;
    float d;
    std::memcpy(&d, b, 4);
    for (int g = 0; g < 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += static_cast<int8_t>(b[4 + 16 * g + l]);
      EXPECT_EQ(static_cast<int16_t>(u16(b + 260 + 2 * g)), sum);
    }
    for (int j = 0; j < 256; ++j) {
      EXPECT_LE(std::fabs(r[static_cast<size_t>(256 * ib + j)] - d * static_cast<int8_t>(b[4 + j])), 0.5 * std::fabs(d) * (1 + 1e-6));
    }
  }
}

TEST(KernelCpuQuantize, FloatActivationTypes) {
  std::mt19937_64 rng(7);
  const auto x = random_activations(77, rng);
  std::vector<uint8_t> h(154), hf(154), bf(154), bff(154), f(308);
  kc::quantize_row_ref(kc::kF16, x.data(), h.data(), 77);
  kc::quantize_row(kc::kF16, x.data(), hf.data(), 77);
  kc::quantize_row_ref(kc::kBF16, x.data(), bf.data(), 77);
  kc::quantize_row(kc::kBF16, x.data(), bff.data(), 77);
  kc::quantize_row(kc::kF32, x.data(), f.data(), 77);
  EXPECT_EQ(h, hf);
  EXPECT_EQ(bf, bff);
  EXPECT_EQ(std::memcmp(f.data(), x.data(), 308), 0);
  for (size_t i = 0; i < 77; ++i) {
    EXPECT_EQ(u16(h.data() + 2 * i), kc::fp32_to_fp16(x[i]));
    EXPECT_EQ(u16(bf.data() + 2 * i), kc::fp32_to_bf16(x[i]));
  }
}

// ---------------------------------------------------------------------------------------------
// Dot products

namespace {

struct DotCheck {
  double reference = 0;  // double dot of the dequantized rows
  double scale = 0;      // S: sum of |w_i| * |a_i| (|w_i| as magnitudes of its terms)
  double extra = 0;      // the fp16 rounding of Q8_1's s
};

DotCheck reference_dot(int32_t type, int64_t n, const std::vector<uint8_t>& w, const std::vector<uint8_t>& a) {
  const int32_t at = kc::vec_dot_type(type);
  std::vector<float> af(static_cast<size_t>(n));
  kc::dequantize_row_ref(at, a.data(), af.data(), n);
  DotCheck c;
  for (int64_t i = 0; i < n; ++i) {
    double mag = 0;
    const double wi = decode(type, w.data(), i, mag);
    c.reference += wi * af[static_cast<size_t>(i)];
    c.scale += mag * std::fabs(af[static_cast<size_t>(i)]);
  }
  if (at == kc::kQ8_1) {
    for (int64_t ib = 0; ib < n / 32; ++ib) {
      c.extra += 0x1p-9 * std::fabs(half(w.data() + kc::type_size(type) * ib + 2)) * std::fabs(half(a.data() + 36 * ib + 2));
    }
  }
  return c;
}

void check_dots(int32_t type, int64_t n, std::mt19937_64& rng) {
  SCOPED_TRACE(type_name(type) + " n=" + std::to_string(n));
  const int32_t at = kc::vec_dot_type(type);
  const auto w = random_row(type, n, rng);
  const auto x = random_activations(n, rng);
  std::vector<uint8_t> a_ref(kc::row_size(at, n)), a_fast(kc::row_size(at, n));
  kc::quantize_row_ref(at, x.data(), a_ref.data(), n);
  kc::quantize_row(at, x.data(), a_fast.data(), n);
  const Misaligned mw(w), ma_ref(a_ref), ma_fast(a_fast);

  const DotCheck c = reference_dot(type, n, w, a_ref);
  const double tol = 1e-5 * c.scale + c.extra + 1e-30;
  const float ref = kc::vec_dot_ref(type, n, mw.data(), ma_ref.data());
  const float fast = kc::vec_dot(type, n, mw.data(), ma_ref.data());
  EXPECT_NEAR(ref, c.reference, tol) << "vec_dot_ref vs double reference";
  EXPECT_NEAR(fast, ref, 1e-5 * c.scale + 1e-30) << "vec_dot vs vec_dot_ref";

  // The dispatched activation quantizer feeding the dispatched dot.
  const DotCheck c2 = reference_dot(type, n, w, a_fast);
  EXPECT_NEAR(kc::vec_dot(type, n, mw.data(), ma_fast.data()), c2.reference, 1e-5 * c2.scale + c2.extra + 1e-30);
}

}  // namespace

TEST(KernelCpuVecDot, QuantizedTypesAgainstReferences) {
  std::mt19937_64 rng(8);
  for (int32_t type : kWeightTypes) {
    const int64_t bs = kc::block_size(type);
    if (bs == 1) continue;
    const int max_blocks = bs == 256 ? 5 : 9;
    for (int nb = 1; nb <= max_blocks; ++nb) check_dots(type, nb * bs, rng);
    check_dots(type, bs == 256 ? 4096 : 4096 + 32, rng);
  }
}

TEST(KernelCpuVecDot, FloatTypesAnyLength) {
  std::mt19937_64 rng(9);
  for (int32_t type : {kc::kF32, kc::kF16, kc::kBF16}) {
    for (int64_t n : {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 39, 63, 64, 65, 100, 257, 1000, 4097}) {
      check_dots(type, n, rng);
    }
  }
}

TEST(KernelCpuVecDot, ManyColumnsEqualOneDotEach) {
  // vec_dot_cols must give, bit for bit, what one vec_dot per column gives, for every type and
  // any column count (whole groups of kMaxCols, a remainder, none), columns anywhere in memory.
  std::mt19937_64 rng(11);
  for (int32_t type : kWeightTypes) {
    const int32_t at = kc::vec_dot_type(type);
    const int64_t bs = kc::block_size(type);
    for (int64_t n : {bs == 1 ? int64_t{33} : bs, bs == 256 ? int64_t{1024} : bs * 7}) {
      SCOPED_TRACE(type_name(type) + " n=" + std::to_string(n));
      const auto w = random_row(type, n, rng);
      const Misaligned mw(w);
      constexpr int kCols = 2 * kc::kMaxCols + 3;
      std::vector<std::vector<uint8_t>> acts;
      std::vector<const void*> ptrs;
      for (int c = 0; c < kCols; ++c) {
        const auto x = random_activations(n, rng);
        acts.emplace_back(kc::row_size(at, n));
        kc::quantize_row(at, x.data(), acts.back().data(), n);
      }
      for (int c = 0; c < kCols; ++c) ptrs.push_back(acts[static_cast<size_t>((c * 5) % kCols)].data());  // not in order
      for (int64_t nc : {int64_t{0}, int64_t{1}, int64_t{kc::kMaxCols}, int64_t{kCols}}) {
        std::vector<float> out(static_cast<size_t>(nc) + 1, -7.0f);
        kc::vec_dot_cols(type, n, mw.data(), ptrs.data(), nc, out.data());
        for (int64_t c = 0; c < nc; ++c) {
          const float one = kc::vec_dot(type, n, mw.data(), ptrs[static_cast<size_t>(c)]);
          EXPECT_EQ(std::bit_cast<uint32_t>(out[static_cast<size_t>(c)]), std::bit_cast<uint32_t>(one)) << "column " << c << " of " << nc;
        }
        EXPECT_EQ(out[static_cast<size_t>(nc)], -7.0f) << "wrote past column " << nc;
      }
    }
  }
  const void* none = nullptr;
  float out = 0;
  EXPECT_THROW(kc::vec_dot_cols(kc::kQ4_K, 100, nullptr, &none, 1, &out), std::invalid_argument);
}

TEST(KernelCpuVecDot, ExactSmallCases) {
  // Q4_0 x Q8_0 with d = 1 everywhere: the integer dot itself.
  std::vector<uint8_t> w(18), a(34);
  put_half(w.data(), 1.0f);
  put_half(a.data(), 1.0f);
  int expect = 0;
  for (int j = 0; j < 16; ++j) {
    w[2 + j] = static_cast<uint8_t>((j % 16) | ((15 - j) << 4));
    a[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 8));
    a[18 + j] = static_cast<uint8_t>(static_cast<int8_t>(3 * j - 20));
    expect += (j - 8) * (j - 8) + (15 - j - 8) * (3 * j - 20);
  }
  EXPECT_EQ(kc::vec_dot_ref(kc::kQ4_0, 32, w.data(), a.data()), static_cast<float>(expect));
  EXPECT_EQ(kc::vec_dot(kc::kQ4_0, 32, w.data(), a.data()), static_cast<float>(expect));
}

TEST(KernelCpuVecDot, QuantizedDotApproximatesFloatDot) {
  // End to end: the quantized dot of a quantized activation is close to the f32 dot with the
  // dequantized weights (activation quantization error only: 8-bit, relative ~1%).
  std::mt19937_64 rng(10);
  for (int32_t type : kWeightTypes) {
    SCOPED_TRACE(type_name(type));
    const int64_t n = 1024;
    const auto w = random_row(type, n, rng);
    std::vector<float> x(static_cast<size_t>(n)), wf(static_cast<size_t>(n));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (auto& v : x) v = normal(rng);
    kc::dequantize_row(type, w.data(), wf.data(), n);
    double exact = 0, s = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      exact += static_cast<double>(wf[i]) * x[i];
      s += std::fabs(static_cast<double>(wf[i]) * x[i]);
    }
    std::vector<uint8_t> a(kc::row_size(kc::vec_dot_type(type), n));
    kc::quantize_row(kc::vec_dot_type(type), x.data(), a.data(), n);
    EXPECT_NEAR(kc::vec_dot(type, n, w.data(), a.data()), exact, 0.02 * s);
  }
}
