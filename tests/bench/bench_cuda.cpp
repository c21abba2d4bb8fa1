// The CUDA kernels on one MoE layer, measured against the GPU's own limits in the same run
// (docs/performance.md): prints a markdown table.
//
// - The layer, shaped like Qwen3-30B-A3B's (n_embd 2048, 128 experts, 8 used, n_ff 768) and like
//   GLM-4.7-Flash's (deepseek2: n_embd 2048, 64 experts, 4 used, n_ff 1536), experts in Q4_K
//   (down Q6_K, as Q4_K_M stores them) and in MXFP4, at 1, 512 and 2048 tokens, three ways:
//   "fused": gate|up one storage, one grouped product with the GLU on the way out (what archreg
//   runs); "two tensors": gate and up stored apart, the same kernel over both (an unfused file);
//   "no fusion": two grouped products and a separate GLU (the layout fusion replaces).
// - Decode (1 token): bytes of the active weights (the router and the chosen experts) read per
//   second, against the device-to-device copy bandwidth (bytes read + written) of this run.
// - Prefill: the experts' TFLOP/s against cuBLAS's BF16 GEMMs of the same shapes as if every slot
//   went to one expert (loaded at run time from libcublas; skipped, saying so, without it).
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "../tools/random_weights.hpp"
#include "cpu/quants.hpp"
#include "cuda/ops.hpp"

namespace {

namespace kg = archreg::kernels::cuda;
namespace kc = archreg::kernels::cpu;

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "bench_cuda: %s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

template <typename T>
T* device_alloc(size_t count) {
  void* p = nullptr;
  check(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc");
  return static_cast<T*>(p);
}

template <typename T>
T* upload(const std::vector<T>& host) {
  T* p = device_alloc<T>(host.size());
  check(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return p;
}

// Median milliseconds of `body` over `reps` runs after 3 warm-ups, timed with events.
template <typename Body>
double median_ms(cudaStream_t stream, int reps, Body&& body) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int i = 0; i < 3; ++i) body();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(start, stream);
    body();
    cudaEventRecord(stop, stream);
    check(cudaEventSynchronize(stop), "running the benchmark");
    float t = 0;
    cudaEventElapsedTime(&t, start, stop);
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Shape {
  const char* name;
  int64_t n_embd, n_ff, n_expert;
  int32_t used;
};

struct Experts {
  int32_t type, down_type;
  uint8_t* gate_up;  // fused: [n_expert][2 n_ff rows]
  uint8_t* gate;     // apart
  uint8_t* up;
  uint8_t* down;
  int64_t row_bytes, down_row_bytes;
};

Experts make_experts(const Shape& s, int32_t type, int32_t down_type, archreg::testing::SplitMix64& rng) {
  Experts e{type, down_type, nullptr, nullptr, nullptr, nullptr, 0, 0};
  e.row_bytes = static_cast<int64_t>(kc::row_size(type, s.n_embd));
  e.down_row_bytes = static_cast<int64_t>(kc::row_size(down_type, s.n_ff));
  const auto gate = archreg::testing::random_weight_rows(type, s.n_embd, s.n_ff * s.n_expert, rng);
  const auto up = archreg::testing::random_weight_rows(type, s.n_embd, s.n_ff * s.n_expert, rng);
  std::vector<uint8_t> fused(gate.size() + up.size());
  const size_t part = static_cast<size_t>(s.n_ff * e.row_bytes);
  for (int64_t x = 0; x < s.n_expert; ++x) {
    std::copy_n(gate.begin() + static_cast<std::ptrdiff_t>(x * part), part, fused.begin() + static_cast<std::ptrdiff_t>(2 * x * part));
    std::copy_n(up.begin() + static_cast<std::ptrdiff_t>(x * part), part, fused.begin() + static_cast<std::ptrdiff_t>((2 * x + 1) * part));
  }
  e.gate_up = upload(fused);
  e.gate = upload(gate);
  e.up = upload(up);
  e.down = upload(archreg::testing::random_weight_rows(down_type, s.n_ff, s.n_embd * s.n_expert, rng));
  return e;
}

enum class Layout { kFused, kTwoTensors, kNoFusion };

// One MoE layer over `tokens` inputs: router, routing, grouping, gate|up, down, combine.
struct Layer {
  Shape s;
  int64_t tokens;
  float* x;
  float* router;  // F32 [n_expert, n_embd]
  float* logits;
  float* selection;
  int32_t* chosen;
  float* weights;
  int32_t *offsets, *slot_token, *slot_of, *tiles, *n_tiles;
  float *h, *h_pair, *y, *out;
  int64_t tile_cols, max_tiles;

  Layer(const Shape& shape, int64_t t, archreg::testing::SplitMix64& rng) : s(shape), tokens(t) {
    const int64_t slots = tokens * s.used;
    std::vector<float> xs(static_cast<size_t>(tokens * s.n_embd));
    for (float& v : xs) v = static_cast<float>(2.0 * rng.uniform() - 1.0);
    x = upload(xs);
    std::vector<float> r(static_cast<size_t>(s.n_expert * s.n_embd));
    for (float& v : r) v = static_cast<float>(0.1 * (2.0 * rng.uniform() - 1.0));
    router = upload(r);
    logits = device_alloc<float>(static_cast<size_t>(tokens * s.n_expert));
    selection = device_alloc<float>(static_cast<size_t>(tokens * s.n_expert));
    chosen = device_alloc<int32_t>(static_cast<size_t>(slots));
    weights = device_alloc<float>(static_cast<size_t>(slots));
    tile_cols = kg::tile_columns(tokens);
    max_tiles = kg::moe_max_tiles(slots, s.n_expert, tile_cols);
    offsets = device_alloc<int32_t>(static_cast<size_t>(s.n_expert + 1));
    slot_token = device_alloc<int32_t>(static_cast<size_t>(slots));
    slot_of = device_alloc<int32_t>(static_cast<size_t>(slots));
    tiles = device_alloc<int32_t>(static_cast<size_t>(3 * max_tiles));
    n_tiles = device_alloc<int32_t>(1);
    h = device_alloc<float>(static_cast<size_t>(slots * s.n_ff));
    h_pair = device_alloc<float>(static_cast<size_t>(slots * 2 * s.n_ff));
    y = device_alloc<float>(static_cast<size_t>(slots * s.n_embd));
    out = device_alloc<float>(static_cast<size_t>(tokens * s.n_embd));
  }

  ~Layer() {
    for (void* p : std::initializer_list<void*>{x, router, logits, selection, chosen, weights, offsets, slot_token, slot_of, tiles, n_tiles,
                                                h, h_pair, y, out})
      cudaFree(p);
  }
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  void run(const Experts& e, Layout layout, cudaStream_t stream) const {
    const int64_t slots = tokens * s.used;
    kg::Product r;
    r.w = kg::Weight{reinterpret_cast<const uint8_t*>(router), kc::kF32, s.n_embd * 4, 0, nullptr, nullptr};
    r.k = s.n_embd;
    r.rows = s.n_expert;
    r.cols = tokens;
    r.x = x;
    r.x_col = s.n_embd;
    r.y = logits;
    r.y_col = s.n_expert;
    r.fp32 = true;
    kg::product(r, stream);
    kg::Routing routing;
    routing.gating = 0;
    routing.used = s.used;
    routing.normalize = 1;
    kg::moe_route(routing, logits, selection, s.n_expert, tokens, chosen, weights, stream);
    kg::moe_group(chosen, slots, s.used, s.n_expert, tile_cols, offsets, slot_token, slot_of, tiles, n_tiles, stream);

    kg::Product p;
    p.n_mat = s.n_expert;
    p.tiles = tiles;
    p.n_tiles = n_tiles;
    p.max_tiles = max_tiles;
    p.tile_cols = tile_cols;
    p.k = s.n_embd;
    p.rows = s.n_ff;
    p.x = x;
    p.x_col = s.n_embd;
    p.gather = slot_token;
    const int64_t part = s.n_ff * e.row_bytes;
    const kg::Weight fused_gate{e.gate_up, e.type, e.row_bytes, 2 * part, nullptr, nullptr};
    const kg::Weight fused_up{e.gate_up + part, e.type, e.row_bytes, 2 * part, nullptr, nullptr};
    const kg::Weight gate{e.gate, e.type, e.row_bytes, part, nullptr, nullptr};
    const kg::Weight up{e.up, e.type, e.row_bytes, part, nullptr, nullptr};
    if (layout == Layout::kNoFusion) {
      p.y = h_pair;
      p.y_col = 2 * s.n_ff;
      p.w = gate;
      kg::product(p, stream);
      p.w = up;
      p.y = h_pair + s.n_ff;
      kg::product(p, stream);
      kg::glu(h_pair, h, s.n_ff, slots, kg::Activation::kSilu, 1.702f, 7.0f, stream);
    } else {
      p.w = layout == Layout::kFused ? fused_gate : gate;
      p.up = layout == Layout::kFused ? fused_up : up;
      p.epilogue = kg::Epilogue::kGlu;
      p.y = h;
      p.y_col = s.n_ff;
      kg::product(p, stream);
    }
    kg::Product d = p;
    d.epilogue = kg::Epilogue::kLinear;
    d.w = kg::Weight{e.down, e.down_type, e.down_row_bytes, s.n_embd * e.down_row_bytes, nullptr, nullptr};
    d.k = s.n_ff;
    d.rows = s.n_embd;
    d.x = h;
    d.x_col = s.n_ff;
    d.gather = nullptr;
    d.y = y;
    d.y_col = s.n_embd;
    kg::product(d, stream);
    kg::moe_combine(y, slot_of, weights, out, s.n_embd, tokens, s.used, stream);
  }
};

// cuBLAS, loaded at run time: the benchmark runs (without its reference column) where it is absent.
struct Cublas {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  // cublasGemmEx as exported (the C++ header also declares overloads of it).
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*, const void*,
                                    cudaDataType, int, const void*, cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
  GemmEx gemm = nullptr;
  cublasHandle_t handle = nullptr;
  std::string from;

  bool load(cudaStream_t stream) {
    std::vector<std::string> names;
    if (const char* path = std::getenv("ARCHREG_CUBLAS")) names.emplace_back(path);
    for (const char* n : {"libcublas.so.13", "libcublas.so.12", "libcublas.so"}) names.emplace_back(n);
    for (const std::string& name : names) {
      void* lib = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib == nullptr) continue;
      create = reinterpret_cast<decltype(create)>(dlsym(lib, "cublasCreate_v2"));
      set_stream = reinterpret_cast<decltype(set_stream)>(dlsym(lib, "cublasSetStream_v2"));
      gemm = reinterpret_cast<GemmEx>(dlsym(lib, "cublasGemmEx"));
      if (create != nullptr && set_stream != nullptr && gemm != nullptr && create(&handle) == CUBLAS_STATUS_SUCCESS) {
        set_stream(handle, stream);
        from = name;
        return true;
      }
    }
    return false;
  }

  // C [m, n] = A [m, k] B [k, n], BF16 in, F32 out and accumulation (column-major, A transposed).
  void bf16_gemm(int m, int n, int k, const void* a, const void* b, float* c) const {
    const float one = 1.0f;
    const float zero = 0.0f;
    gemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, CUDA_R_16BF, k, b, CUDA_R_16BF, k, &zero, c, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
         CUBLAS_GEMM_DEFAULT);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    std::fprintf(stderr, "bench_cuda: no CUDA device\n");
    return 1;
  }
  cudaDeviceProp props{};
  check(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "cudaStreamCreate");

  // The copy bandwidth: 1 GiB device to device, bytes read + written per second.
  const size_t copy_bytes = size_t{1} << 30;
  void* a = device_alloc<uint8_t>(copy_bytes);
  void* b = device_alloc<uint8_t>(copy_bytes);
  const double copy_ms = median_ms(stream, reps, [&] { cudaMemcpyAsync(b, a, copy_bytes, cudaMemcpyDeviceToDevice, stream); });
  const double copy_bw = 2.0 * static_cast<double>(copy_bytes) / (copy_ms * 1e-3);
  cudaFree(a);
  cudaFree(b);

  Cublas cublas;
  const bool have_cublas = cublas.load(stream);
  std::printf("# archreg CUDA kernels: one MoE layer on %s (sm_%d%d), %d repetitions, median\n\n", props.name, props.major, props.minor,
              reps);
  std::printf("Device-to-device copy: %.0f GB/s (bytes read + written). cuBLAS: %s.\n\n", copy_bw / 1e9,
              have_cublas ? cublas.from.c_str() : "not found (no reference column)");
  std::printf("| layer | experts | tokens | fused ms | two tensors ms | no fusion ms | fused / no fusion | measure |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");

  archreg::testing::SplitMix64 rng(2026);
  const Shape shapes[] = {{"Qwen3-30B-A3B", 2048, 768, 128, 8}, {"GLM-4.7-Flash (deepseek2)", 2048, 1536, 64, 4}};
  struct Types {
    const char* name;
    int32_t type, down;
  };
  const Types types[] = {{"Q4_K (down Q6_K)", kc::kQ4_K, kc::kQ6_K}, {"MXFP4", kc::kMXFP4, kc::kMXFP4}};
  for (const Shape& s : shapes) {
    for (const Types& t : types) {
      const Experts e = make_experts(s, t.type, t.down, rng);
      for (int64_t tokens : {int64_t{1}, int64_t{512}, int64_t{2048}}) {
        const Layer layer(s, tokens, rng);
        double ms[3];
        for (Layout l : {Layout::kFused, Layout::kTwoTensors, Layout::kNoFusion}) {
          ms[static_cast<int>(l)] = median_ms(stream, reps, [&] { layer.run(e, l, stream); });
        }
        std::string measure;
        if (tokens == 1) {
          const double active = static_cast<double>(s.n_expert * s.n_embd * 4) +
                                s.used * static_cast<double>(2 * s.n_ff * e.row_bytes + s.n_embd * e.down_row_bytes);
          const double bw = active / (ms[0] * 1e-3);
          char text[160];
          std::snprintf(text, sizeof text, "decode: %.0f GB/s of active weights, %.0f%% of copy bandwidth", bw / 1e9, 100.0 * bw / copy_bw);
          measure = text;
        } else {
          const double slots = static_cast<double>(tokens * s.used);
          const double n_embd = static_cast<double>(s.n_embd);
          const double n_ff = static_cast<double>(s.n_ff);
          const double flops = 2.0 * slots * (n_embd * 2.0 * n_ff + n_ff * n_embd);
          const double tflops = flops / (ms[0] * 1e-3) / 1e12;
          char text[200];
          if (have_cublas) {
            const int n = static_cast<int>(slots);
            auto* wa = device_alloc<uint16_t>(static_cast<size_t>(2 * s.n_ff * s.n_embd));
            auto* wb = device_alloc<uint16_t>(static_cast<size_t>(s.n_embd * s.n_ff));
            auto* xa = device_alloc<uint16_t>(static_cast<size_t>(std::max(s.n_embd, s.n_ff)) * static_cast<size_t>(n));
            auto* c = device_alloc<float>(static_cast<size_t>(std::max(2 * s.n_ff, s.n_embd)) * static_cast<size_t>(n));
            cudaMemsetAsync(wa, 0x3c, static_cast<size_t>(2 * s.n_ff * s.n_embd) * 2, stream);
            cudaMemsetAsync(wb, 0x3c, static_cast<size_t>(s.n_embd * s.n_ff) * 2, stream);
            cudaMemsetAsync(xa, 0x3c, static_cast<size_t>(std::max(s.n_embd, s.n_ff)) * static_cast<size_t>(n) * 2, stream);
            const double ref_ms = median_ms(stream, reps, [&] {
              cublas.bf16_gemm(static_cast<int>(2 * s.n_ff), n, static_cast<int>(s.n_embd), wa, xa, c);
              cublas.bf16_gemm(static_cast<int>(s.n_embd), n, static_cast<int>(s.n_ff), wb, xa, c);
            });
            const double ref = flops / (ref_ms * 1e-3) / 1e12;
            std::snprintf(text, sizeof text, "prefill: %.1f TFLOP/s; cuBLAS BF16 same size %.1f TFLOP/s (%.1f%%)", tflops, ref,
                          100.0 * tflops / ref);
            cudaFree(wa);
            cudaFree(wb);
            cudaFree(xa);
            cudaFree(c);
          } else {
            std::snprintf(text, sizeof text, "prefill: %.1f TFLOP/s", tflops);
          }
          measure = text;
        }
        std::printf("| %s | %s | %lld | %.3f | %.3f | %.3f | %.2fx | %s |\n", s.name, t.name, static_cast<long long>(tokens), ms[0], ms[1],
                    ms[2], ms[2] / ms[0], measure.c_str());
        std::fflush(stdout);
      }
    }
  }
  check(cudaGetLastError(), "the kernels");
  return 0;
}
