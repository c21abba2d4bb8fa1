// CPU kernel throughput: vec_dot (the decode hot path: one weight row times one quantized
// activation row) per weight type, reported as GB/s of weight bytes read. The rows of a
// 16-row x 4096 "matrix" (sizes per type from row_size) are dotted in turn, so the working set
// stays in L2 and the figure is the kernel's compute rate, not DRAM bandwidth.
//
//   bench_kernels [--benchmark_filter=Q4_K]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cpu/quants.hpp"

namespace kc = archreg::kernels::cpu;

namespace {

constexpr int64_t kCols = 4096;
constexpr int64_t kRows = 16;

// Weight bytes from a real quantization would need quantizers the kernels do not have; random
// blocks with finite scales exercise the same instructions.
std::vector<uint8_t> random_weights(int32_t type, std::mt19937_64& rng) {
  const size_t row = kc::row_size(type, kCols);
  std::vector<uint8_t> w(row * kRows);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  if (type == kc::kF32 || type == kc::kF16 || type == kc::kBF16) {
    std::vector<float> x(static_cast<size_t>(kCols));
    std::normal_distribution<float> normal;
    for (int64_t r = 0; r < kRows; ++r) {
      for (auto& v : x) v = normal(rng);
      kc::quantize_row_ref(type, x.data(), w.data() + row * static_cast<size_t>(r), kCols);
    }
    return w;
  }
  // Random bytes except the fp16 scale fields (and MXFP4's exponent), set to finite values.
  const size_t ts = kc::type_size(type);
  const uint16_t scale = kc::fp32_to_fp16(0.01f);
  auto put = [&](uint8_t* p) {
    p[0] = static_cast<uint8_t>(scale);
    p[1] = static_cast<uint8_t>(scale >> 8);
  };
  for (size_t off = 0; off < w.size(); off += ts) {
    uint8_t* b = w.data() + off;
    switch (type) {
      case kc::kQ4_0:
      case kc::kQ5_0:
      case kc::kQ8_0: put(b); break;
      case kc::kQ4_1:
      case kc::kQ5_1:
      case kc::kQ4_K:
      case kc::kQ5_K:
        put(b);
        put(b + 2);
        break;
      case kc::kQ2_K:
        put(b + 80);
        put(b + 82);
        break;
      case kc::kQ3_K: put(b + 108); break;
      case kc::kQ6_K: put(b + 208); break;
      case kc::kMXFP4: b[0] = 120; break;
      default: break;
    }
  }
  return w;
}

void BM_VecDot(benchmark::State& state, int32_t type, bool reference) {
  std::mt19937_64 rng(42);
  const auto w = random_weights(type, rng);
  std::vector<float> x(static_cast<size_t>(kCols));
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  const int32_t at = kc::vec_dot_type(type);
  std::vector<uint8_t> a(kc::row_size(at, kCols));
  kc::quantize_row(at, x.data(), a.data(), kCols);
  const size_t row = kc::row_size(type, kCols);
  for (auto _ : state) {
    for (int64_t r = 0; r < kRows; ++r) {
      const void* wr = w.data() + row * static_cast<size_t>(r);
      float s = reference ? kc::vec_dot_ref(type, kCols, wr, a.data()) : kc::vec_dot(type, kCols, wr, a.data());
      benchmark::DoNotOptimize(s);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row) * kRows);
  state.SetLabel(reference ? "scalar reference" : kc::isa());
}

// Prefill's inner loop: every weight row of the matrix times 16 activation rows through
// vec_dot_cols, reported as multiply-adds per second (items) besides weight bytes.
void BM_VecDotCols(benchmark::State& state, int32_t type) {
  std::mt19937_64 rng(43);
  const auto w = random_weights(type, rng);
  constexpr int kTokens = 16;
  const int32_t at = kc::vec_dot_type(type);
  const size_t arow = kc::row_size(at, kCols);
  std::vector<uint8_t> a(arow * kTokens);
  std::vector<float> x(static_cast<size_t>(kCols));
  std::normal_distribution<float> normal;
  const void* cols[kTokens];
  for (int c = 0; c < kTokens; ++c) {
    for (auto& v : x) v = normal(rng);
    kc::quantize_row(at, x.data(), a.data() + arow * c, kCols);
    cols[c] = a.data() + arow * c;
  }
  const size_t row = kc::row_size(type, kCols);
  float out[kTokens];
  for (auto _ : state) {
    for (int64_t r = 0; r < kRows; ++r) {
      kc::vec_dot_cols(type, kCols, w.data() + row * static_cast<size_t>(r), cols, kTokens, out);
      benchmark::DoNotOptimize(out);
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(row) * kRows * kTokens);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kCols * kRows * kTokens);
  state.SetLabel(kc::isa());
}

void BM_QuantizeActivation(benchmark::State& state, int32_t type) {
  std::vector<float> x(static_cast<size_t>(kCols));
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  for (auto& v : x) v = normal(rng);
  std::vector<uint8_t> a(kc::row_size(type, kCols));
  for (auto _ : state) {
    kc::quantize_row(type, x.data(), a.data(), kCols);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * kCols * 4);
}

struct Named {
  const char* name;
  int32_t type;
};
constexpr Named kTypes[] = {{"F32", kc::kF32},   {"F16", kc::kF16},   {"BF16", kc::kBF16}, {"Q4_0", kc::kQ4_0},   {"Q4_1", kc::kQ4_1},
                            {"Q5_0", kc::kQ5_0}, {"Q5_1", kc::kQ5_1}, {"Q8_0", kc::kQ8_0}, {"MXFP4", kc::kMXFP4}, {"Q2_K", kc::kQ2_K},
                            {"Q3_K", kc::kQ3_K}, {"Q4_K", kc::kQ4_K}, {"Q5_K", kc::kQ5_K}, {"Q6_K", kc::kQ6_K}};

const int registered = [] {
  for (const Named& t : kTypes) {
    benchmark::RegisterBenchmark((std::string("vec_dot/") + t.name).c_str(), BM_VecDot, t.type, false);
    benchmark::RegisterBenchmark((std::string("vec_dot_ref/") + t.name).c_str(), BM_VecDot, t.type, true);
    benchmark::RegisterBenchmark((std::string("vec_dot_cols16/") + t.name).c_str(), BM_VecDotCols, t.type);
  }
  benchmark::RegisterBenchmark("quantize_row/Q8_0", BM_QuantizeActivation, kc::kQ8_0);
  benchmark::RegisterBenchmark("quantize_row/Q8_1", BM_QuantizeActivation, kc::kQ8_1);
  benchmark::RegisterBenchmark("quantize_row/Q8_K", BM_QuantizeActivation, kc::kQ8_K);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
