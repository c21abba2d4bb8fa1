// archreg-example-model OUT.gguf: writes a tiny, deterministic qwen3moe model with our writer.
//
// Every hyperparameter key and per-layer tensor of a real Qwen3-MoE GGUF is present, at toy
// sizes (64-wide embeddings, 2 layers, 4 experts, a 32-token BPE vocabulary), so the demo and
// the tests exercise the real layout in well under a megabyte. Weights are small random values
// stored as valid F32, F16 and Q8_0 encodings; the same bytes come out on every run. The parts
// of each fusable group (attn_q/k/v, ffn_gate/up_exps) share one type, so that the demo can
// fuse them losslessly.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gguf/error.hpp"
#include "gguf/value.hpp"
#include "gguf/writer.hpp"
#include "splitmix64.hpp"

namespace {

namespace gguf = archreg::gguf;

constexpr uint32_t kEmbd = 64;
constexpr uint32_t kLayers = 2;
constexpr uint32_t kHeads = 4;
constexpr uint32_t kHeadsKv = 2;
constexpr uint32_t kHeadDim = 16;
constexpr uint32_t kExperts = 4;
constexpr uint32_t kExpertsUsed = 2;
constexpr uint32_t kExpertFf = 32;
constexpr uint32_t kDenseFf = 128;  // present in real files although MoE layers do not use it
constexpr uint32_t kContext = 4096;

// ggml type ids (ggml.h).
constexpr int32_t kF32 = 0;
constexpr int32_t kF16 = 1;
constexpr int32_t kQ8_0 = 8;
constexpr uint32_t kQ8_0Block = 32;
constexpr uint32_t kFileTypeMostlyQ8_0 = 7;  // llama_ftype LLAMA_FTYPE_MOSTLY_Q8_0

// IEEE 754 binary16 from binary32, rounding to nearest even (as ggml's F16 conversion does).
uint16_t to_f16(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) {
    return static_cast<uint16_t>(sign | 0x7E00u);  // NaN
  }
  if (magnitude >= 0x477FF000u) {
    return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to infinity (or is infinite)
  }
  if (magnitude < 0x38800000u) {
    // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even.
    const float scaled = std::bit_cast<float>(magnitude) * 16777216.0f;
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::nearbyint(scaled)));
  }
  // Normal: rebias the exponent (127 -> 15), drop 13 mantissa bits with round-to-nearest-even;
  // a carry out of the mantissa correctly bumps the exponent.
  const uint32_t rebased = magnitude - 0x38000000u;
  const uint32_t rounded = rebased + 0x0FFFu + ((rebased >> 13) & 1u);
  return static_cast<uint16_t>(sign | static_cast<uint16_t>(rounded >> 13));
}

class TensorBytes {
 public:
  void put_u8(uint8_t v) { bytes_.push_back(static_cast<std::byte>(v)); }
  void put_u16(uint16_t v) {
    put_u8(static_cast<uint8_t>(v));
    put_u8(static_cast<uint8_t>(v >> 8));
  }
  void put_f32(float v) {
    const auto bits = std::bit_cast<uint32_t>(v);
    for (int shift = 0; shift < 32; shift += 8) {
      put_u8(static_cast<uint8_t>(bits >> shift));
    }
  }
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// Values drawn uniformly from [center - spread, center + spread].
std::vector<float> random_values(archreg::testing::SplitMix64& rng, uint64_t count, float center, float spread) {
  std::vector<float> values(count);
  for (float& v : values) {
    v = center + spread * static_cast<float>(2.0 * rng.uniform() - 1.0);
  }
  return values;
}

// Q8_0 as ggml's reference quantizer builds it: per block of 32, an f16 scale d = max|x| / 127
// followed by 32 int8 values round(x / d).
void encode_q8_0(const std::vector<float>& values, TensorBytes& out) {
  for (size_t block = 0; block < values.size(); block += kQ8_0Block) {
    const auto first = values.begin() + static_cast<std::ptrdiff_t>(block);
    const auto last = first + kQ8_0Block;
    float amax = 0.0f;
    std::for_each(first, last, [&](float v) { amax = std::max(amax, std::fabs(v)); });
    const float scale = amax / 127.0f;
    const float inverse = scale != 0.0f ? 1.0f / scale : 0.0f;
    out.put_u16(to_f16(scale));
    std::for_each(first, last, [&](float v) { out.put_u8(static_cast<uint8_t>(static_cast<int8_t>(std::lround(v * inverse)))); });
  }
}

struct Tensor {
  std::string name;
  int32_t type;
  std::vector<uint64_t> shape;  // ggml order
  float center;                 // norms hover around 1, weights around 0
};

std::vector<Tensor> model_tensors(uint64_t vocab_size) {
  constexpr float kWeight = 0.0f;
  constexpr float kNorm = 1.0f;
  std::vector<Tensor> tensors = {
      {"token_embd.weight", kF16, {kEmbd, vocab_size}, kWeight},
      {"output_norm.weight", kF32, {kEmbd}, kNorm},
      {"output.weight", kQ8_0, {kEmbd, vocab_size}, kWeight},
  };
  for (uint32_t layer = 0; layer < kLayers; ++layer) {
    const std::string prefix = "blk." + std::to_string(layer) + ".";
    const std::vector<Tensor> layer_tensors = {
        {"attn_norm.weight", kF32, {kEmbd}, kNorm},
        {"attn_q.weight", kQ8_0, {kEmbd, kHeads * kHeadDim}, kWeight},
        {"attn_k.weight", kQ8_0, {kEmbd, kHeadsKv * kHeadDim}, kWeight},
        {"attn_v.weight", kQ8_0, {kEmbd, kHeadsKv * kHeadDim}, kWeight},
        {"attn_q_norm.weight", kF32, {kHeadDim}, kNorm},
        {"attn_k_norm.weight", kF32, {kHeadDim}, kNorm},
        {"attn_output.weight", kQ8_0, {kHeads * kHeadDim, kEmbd}, kWeight},
        {"ffn_norm.weight", kF32, {kEmbd}, kNorm},
        {"ffn_gate_inp.weight", kF32, {kEmbd, kExperts}, kWeight},
        {"ffn_gate_exps.weight", kQ8_0, {kEmbd, kExpertFf, kExperts}, kWeight},
        {"ffn_up_exps.weight", kQ8_0, {kEmbd, kExpertFf, kExperts}, kWeight},
        {"ffn_down_exps.weight", kQ8_0, {kExpertFf, kEmbd, kExperts}, kWeight},
    };
    for (const Tensor& t : layer_tensors) {
      tensors.push_back({prefix + t.name, t.type, t.shape, t.center});
    }
  }
  return tensors;
}

std::vector<std::byte> tensor_bytes(const Tensor& tensor, archreg::testing::SplitMix64& rng) {
  uint64_t count = 1;
  for (uint64_t extent : tensor.shape) {
    count *= extent;
  }
  const std::vector<float> values = random_values(rng, count, tensor.center, 0.05f);
  TensorBytes out;
  switch (tensor.type) {
    case kF32: std::for_each(values.begin(), values.end(), [&](float v) { out.put_f32(v); }); break;
    case kF16: std::for_each(values.begin(), values.end(), [&](float v) { out.put_u16(to_f16(v)); }); break;
    default: encode_q8_0(values, out); break;
  }
  return out.bytes();
}

// A byte-level BPE vocabulary in the GPT-2 style Qwen uses ("Ġ" marks a leading space): single
// characters, then one token per merge, then Qwen's control tokens last. Every merge's parts
// and result are tokens, as a BPE tokenizer requires.
struct Vocabulary {
  std::vector<std::string> tokens;
  std::vector<gguf::MetaValue> token_types;
  std::vector<std::string> merges;
  uint32_t end_of_text_id = 0;
  uint32_t im_end_id = 0;
};

Vocabulary vocabulary() {
  constexpr int32_t kNormal = 1;
  constexpr int32_t kControl = 3;
  const std::vector<std::string> characters = {"Ġ", "!", ",", ".", "a", "d", "e", "h", "i", "l", "n", "o", "r", "s", "t", "w"};
  const std::vector<std::pair<std::string, std::string>> merge_pairs = {
      {"h", "e"},   {"l", "l"},   {"Ġ", "t"},    {"Ġ", "w"},   {"o", "r"},     {"l", "d"}, {"t", "he"},
      {"Ġt", "he"}, {"he", "ll"}, {"hell", "o"}, {"Ġw", "or"}, {"Ġwor", "ld"}, {"i", "s"}};
  Vocabulary vocab;
  vocab.tokens = characters;
  for (const auto& [left, right] : merge_pairs) {
    vocab.merges.push_back(left + " " + right);
    vocab.tokens.push_back(left + right);
  }
  vocab.token_types.assign(vocab.tokens.size(), kNormal);
  vocab.end_of_text_id = static_cast<uint32_t>(vocab.tokens.size());
  for (const char* control : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    vocab.tokens.emplace_back(control);
    vocab.token_types.emplace_back(kControl);
  }
  vocab.im_end_id = static_cast<uint32_t>(vocab.tokens.size() - 1);
  return vocab;
}

void write_model(const std::string& path) {
  const Vocabulary vocab = vocabulary();
  gguf::Writer writer(path, {.overwrite = true});

  const std::string arch = "qwen3moe";
  writer.add("general.architecture", arch);
  writer.add("general.type", "model");
  writer.add("general.name", "archreg tiny qwen3moe");
  writer.add("general.file_type", kFileTypeMostlyQ8_0);
  writer.add("general.quantization_version", uint32_t{2});
  writer.add(arch + ".context_length", kContext);
  writer.add(arch + ".embedding_length", kEmbd);
  writer.add(arch + ".block_count", kLayers);
  writer.add(arch + ".feed_forward_length", kDenseFf);
  writer.add(arch + ".attention.head_count", kHeads);
  writer.add(arch + ".attention.head_count_kv", kHeadsKv);
  writer.add(arch + ".attention.key_length", kHeadDim);
  writer.add(arch + ".attention.value_length", kHeadDim);
  writer.add(arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  writer.add(arch + ".rope.freq_base", 1000000.0f);
  writer.add(arch + ".expert_count", kExperts);
  writer.add(arch + ".expert_used_count", kExpertsUsed);
  writer.add(arch + ".expert_feed_forward_length", kExpertFf);
  writer.add("tokenizer.ggml.model", "gpt2");
  writer.add("tokenizer.ggml.pre", "qwen2");
  writer.add("tokenizer.ggml.tokens", gguf::make_string_array(vocab.tokens));
  writer.add("tokenizer.ggml.token_type", gguf::make_array(gguf::ValueType::kInt32, vocab.token_types));
  writer.add("tokenizer.ggml.merges", gguf::make_string_array(vocab.merges));
  writer.add("tokenizer.ggml.eos_token_id", vocab.im_end_id);
  writer.add("tokenizer.ggml.padding_token_id", vocab.end_of_text_id);
  writer.add("tokenizer.ggml.bos_token_id", vocab.end_of_text_id);
  writer.add("tokenizer.ggml.add_bos_token", false);

  const std::vector<Tensor> tensors = model_tensors(vocab.tokens.size());
  for (const Tensor& tensor : tensors) {
    writer.add_tensor(tensor.name, tensor.type, tensor.shape);
  }
  archreg::testing::SplitMix64 rng(0x51e3);
  for (const Tensor& tensor : tensors) {
    writer.write(tensor_bytes(tensor, rng));
  }
  writer.commit();
}

}  // namespace

int main(int argc, char** argv) {
  constexpr const char* kUsage = "usage: archreg-example-model OUT.gguf\n";
  if (argc == 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  if (argc != 2 || argv[1][0] == '-' || argv[1][0] == '\0') {  // an option is never an output name
    std::cerr << kUsage;
    return 1;
  }
  try {
    write_model(argv[1]);
  } catch (const gguf::Error& e) {
    std::cerr << "archreg-example-model: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
