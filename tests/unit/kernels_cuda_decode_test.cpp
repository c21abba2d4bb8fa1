// The CUDA kernels' row decoder (kernels/cuda/decode.cuh), compiled here for the host: every
// chunk of every format must equal the CPU reference dequantize_row_ref bit for bit, and the
// fp16/bf16 conversions must equal the CPU ones for every bit pattern. The device build of the
// same code rounds each float operation on its own (__fmul_rn and friends), as this one does.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "../tools/random_weights.hpp"
#include "../tools/splitmix64.hpp"
#include "cpu/quants.hpp"
#include "cuda/decode.cuh"

namespace ac = archreg::kernels::cuda;
namespace kc = archreg::kernels::cpu;

namespace {

using FormatTypes = std::integer_sequence<int32_t, ac::ggml::kF32, ac::ggml::kF16, ac::ggml::kBF16, ac::ggml::kQ4_0, ac::ggml::kQ4_1,
                                          ac::ggml::kQ5_0, ac::ggml::kQ5_1, ac::ggml::kQ8_0, ac::ggml::kQ2_K, ac::ggml::kQ3_K,
                                          ac::ggml::kQ4_K, ac::ggml::kQ5_K, ac::ggml::kQ6_K, ac::ggml::kMXFP4>;

constexpr int64_t kRowElems = 512;  // 2 K-quant blocks, 16 blocks of 32

static_assert(ac::block_elems(ac::ggml::kQ6_K) == 256 && ac::block_bytes(ac::ggml::kQ4_0) == 18 && !ac::supported(99),
              "the type table is usable at compile time");

std::vector<uint8_t> random_row(int32_t type, archreg::testing::SplitMix64& rng) {
  return archreg::testing::random_weight_rows(type, kRowElems, 1, rng);
}

// Every chunk of `row`, decoded by Format<T> and by the run-time dispatcher, against the CPU
// reference. The row is also read from an odd address, as rows of 17-byte blocks may be.
template <int32_t T>
void expect_row_matches(const std::vector<uint8_t>& row, const std::string& what) {
  std::vector<float> ref(kRowElems);
  kc::dequantize_row_ref(T, row.data(), ref.data(), kRowElems);
  std::vector<uint8_t> shifted(row.size() + 1);
  std::memcpy(shifted.data() + 1, row.data(), row.size());
  for (const uint8_t* data : {row.data(), static_cast<const uint8_t*>(shifted.data() + 1)}) {
    for (int64_t chunk = 0; chunk < kRowElems / 32; ++chunk) {
      float by_template[32], by_type[32];
      ac::Format<T>::decode32(data, chunk, by_template);
      ASSERT_TRUE(ac::decode32(T, data, chunk, by_type));
      for (int i = 0; i < 32; ++i) {
        const float expected = ref[static_cast<size_t>(32 * chunk + i)];
        ASSERT_EQ(std::bit_cast<uint32_t>(by_template[i]), std::bit_cast<uint32_t>(expected))
            << what << " Format<" << T << ">::decode32 chunk " << chunk << " index " << i << ": " << by_template[i] << " vs " << expected;
        ASSERT_EQ(std::bit_cast<uint32_t>(by_type[i]), std::bit_cast<uint32_t>(expected))
            << what << " decode32(" << T << ") chunk " << chunk << " index " << i << ": " << by_type[i] << " vs " << expected;
      }
    }
  }
}

template <int32_t T>
void expect_format_matches_cpu() {
  static_assert(ac::Format<T>::block == ac::block_elems(T) && ac::Format<T>::bytes == ac::block_bytes(T));
  archreg::testing::SplitMix64 rng(0xDEC0DE00u + static_cast<uint64_t>(T));
  for (int trial = 0; trial < 8; ++trial) {
    expect_row_matches<T>(random_row(T, rng), "random row " + std::to_string(trial));
  }
}

template <int32_t... Ts>
void expect_formats_match_cpu(std::integer_sequence<int32_t, Ts...>) {
  (expect_format_matches_cpu<Ts>(), ...);
}

TEST(CudaDecode, EveryChunkOfEveryFormatEqualsCpuReference) {
  expect_formats_match_cpu(FormatTypes{});
}

// Every E8M0 exponent, the subnormal scales 2^-128 and 2^-127 and the overflow to inf included.
TEST(CudaDecode, Mxfp4EveryExponent) {
  archreg::testing::SplitMix64 rng(39);
  std::vector<uint8_t> row = random_row(kc::kMXFP4, rng);
  for (int first = 0; first < 256; first += 16) {
    for (int k = 0; k < 16; ++k) row[static_cast<size_t>(17 * k)] = static_cast<uint8_t>(first + k);
    expect_row_matches<ac::ggml::kMXFP4>(row, "exponents from " + std::to_string(first));
  }
}

TEST(CudaDecode, HalfConversionsEqualCpuForEveryBitPattern) {
  for (uint32_t bits = 0; bits <= 0xFFFFu; ++bits) {
    const auto h = static_cast<uint16_t>(bits);
    ASSERT_EQ(std::bit_cast<uint32_t>(ac::fp16_to_fp32(h)), std::bit_cast<uint32_t>(kc::fp16_to_fp32(h))) << "fp16 " << bits;
    ASSERT_EQ(std::bit_cast<uint32_t>(ac::bf16_to_fp32(h)), std::bit_cast<uint32_t>(kc::bf16_to_fp32(h))) << "bf16 " << bits;
  }
}

TEST(CudaDecode, TypeTableAgreesWithCpu) {
  for (int32_t type = -1; type < 64; ++type) {
    EXPECT_EQ(ac::supported(type), kc::supported(type)) << "type " << type;
    if (kc::supported(type)) {
      EXPECT_EQ(ac::block_elems(type), kc::block_size(type)) << "type " << type;
      EXPECT_EQ(static_cast<size_t>(ac::block_bytes(type)), kc::type_size(type)) << "type " << type;
    } else {
      EXPECT_EQ(ac::block_elems(type), 0) << "type " << type;
      EXPECT_EQ(ac::block_bytes(type), 0) << "type " << type;
    }
  }
}

TEST(CudaDecode, UnknownTypeIsRefusedAndLeavesOutputAlone) {
  const std::vector<uint8_t> row(1024, 0x55);
  float out[32];
  for (float& x : out) x = 7.0f;
  EXPECT_FALSE(ac::decode32(99, row.data(), 0, out));
  EXPECT_FALSE(ac::decode32(kc::kQ8_1, row.data(), 0, out));
  for (float x : out) EXPECT_EQ(x, 7.0f);
}

}  // namespace
