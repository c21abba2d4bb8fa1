#include "text/tokenizer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>
#include <optional>
#include <queue>
#include <string>
#include <unordered_map>

#include "gguf/error.hpp"
#include "gguf/reader.hpp"
#include "text/pretokenizer.hpp"
#include "text/unicode.hpp"

namespace archreg::text {
namespace {

using gguf::Value;
using gguf::ValueType;

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581, SentencePiece's space

// Token texts llama.cpp recognises as end-of-turn, end-of-message and end-of-generation
// (its vocabulary loader), and marks as control tokens when the file did not.
constexpr std::string_view kEotTexts[] = {"<|eot_id|>",        "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                          "<|end_of_text|>",   "<EOT>",      "_<EOT>",  "[EOT]",         "<｜end▁of▁sentence｜>",
                                          "<end_of_utterance>"};
constexpr std::string_view kEomTexts[] = {"<|eom_id|>"};
constexpr std::string_view kFimPreTexts[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",    "<｜fim▁begin｜>",
                                             "<PRE>",          "▁<PRE>",       "<|code_prefix|>", "<|prefix|>"};
constexpr std::string_view kFimSufTexts[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",    "<｜fim▁hole｜>",
                                             "<SUF>",          "▁<SUF>",       "<|code_suffix|>", "<|suffix|>"};
constexpr std::string_view kFimMidTexts[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",    "<｜fim▁end｜>",
                                             "<MID>",          "▁<MID>",       "<|code_middle|>", "<|middle|>"};
constexpr std::string_view kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
constexpr std::string_view kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
constexpr std::string_view kFimSepTexts[] = {"<|file_sep|>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",
                                          "<|im_end|>",
                                          "<|end|>",
                                          "<|return|>",
                                          "<|call|>",
                                          "<|flush|>",
                                          "<|calls|>",
                                          "<end_of_turn>",
                                          "<|endoftext|>",
                                          "</s>",
                                          "<|eom_id|>",
                                          "<EOT>",
                                          "_<EOT>",
                                          "[EOT]",
                                          "[EOS]",
                                          "<|end_of_text|>",
                                          "<end_of_utterance>",
                                          "<eos>",
                                          "<turn|>",
                                          "<|tool_response>",
                                          "<｜end▁of▁sentence｜>",
                                          "[e~["};
// Harmony-format tokens llama.cpp always renders (user-defined rather than control).
constexpr std::string_view kAlwaysRenderedTexts[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};

template <size_t N>
bool one_of(std::string_view text, const std::string_view (&list)[N]) {
  return std::find(std::begin(list), std::end(list), text) != std::end(list);
}

// A fast, well-mixed hash of a token's bytes (8 at a time).
inline uint64_t hash_bytes(std::string_view text) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (text.size() * 0xff51afd7ed558ccdull);
  size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, text.data() + i, 8);
    h = (h ^ word) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, text.data() + i, text.size() - i);
  h = (h ^ tail) * 0x94d049bb133111ebull;
  return h ^ (h >> 29);
}

// Open-addressing hash from token text to id over the vocabulary's own storage. Each slot keeps
// 32 bits of the hash beside the id, so a probe touches the token text only on a likely match.
class TextIndex {
 public:
  void build(const std::string& arena, const std::vector<uint32_t>& offsets) {
    arena_ = &arena;
    offsets_ = &offsets;
    const size_t n = offsets.size() - 1;
    size_t capacity = 16;
    while (capacity < n * 2) capacity <<= 1;
    slots_.assign(capacity, Slot{0, kNoToken});
    mask_ = capacity - 1;
  }
  // Inserts id; returns the id already holding the same text, or kNoToken.
  int32_t insert(int32_t id) { return insert_hashed(id, hash_bytes(view(id))); }
  int32_t insert_hashed(int32_t id, uint64_t h) {
    const std::string_view text = view(id);
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t slot = h & mask_;; slot = (slot + 1) & mask_) {
      if (slots_[slot].id == kNoToken) {
        slots_[slot] = {tag, id};
        return kNoToken;
      }
      if (slots_[slot].tag == tag && view(slots_[slot].id) == text) return slots_[slot].id;
    }
  }
  int32_t find(std::string_view text) const { return slots_.empty() ? kNoToken : find_hashed(text, hash_bytes(text)); }
  // For batched lookups: start loading the slot a later find_hashed(text, h) will read first.
  void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_]); }
  int32_t find_hashed(std::string_view text, uint64_t h) const {
    const auto tag = static_cast<uint32_t>(h >> 32);
    for (size_t slot = h & mask_;; slot = (slot + 1) & mask_) {
      const Slot& s = slots_[slot];
      if (s.id == kNoToken) return kNoToken;
      if (s.tag == tag && view(s.id) == text) return s.id;
    }
  }

 private:
  struct Slot {
    uint32_t tag;
    int32_t id;
  };
  std::string_view view(int32_t id) const {
    const auto i = static_cast<size_t>(id);
    return std::string_view(*arena_).substr((*offsets_)[i], (*offsets_)[i + 1] - (*offsets_)[i]);
  }
  const std::string* arena_ = nullptr;
  const std::vector<uint32_t>* offsets_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// (left id, right id) -> merge rank and resulting id.
class MergeIndex {
 public:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  void reserve(size_t n) {
    size_t capacity = 16;
    while (capacity < n * 2) capacity <<= 1;
    keys_.assign(capacity, kEmpty);
    values_.assign(capacity, Merge{0, 0});
    mask_ = capacity - 1;
  }
  // Keeps the first rank of a pair listed twice, as llama.cpp's map emplace does.
  void insert(int32_t left, int32_t right, Merge merge) {
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
      if (keys_[slot] == kEmpty) {
        keys_[slot] = key;
        values_[slot] = merge;
        return;
      }
      if (keys_[slot] == key) return;
    }
  }
  void prefetch(int32_t left, int32_t right) const {
    const size_t slot = hash(pack(left, right)) & mask_;
    __builtin_prefetch(&keys_[slot]);
    __builtin_prefetch(&values_[slot]);
  }
  const Merge* find(int32_t left, int32_t right) const {
    if (keys_.empty() || left < 0 || right < 0) return nullptr;
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
      if (keys_[slot] == key) return &values_[slot];
      if (keys_[slot] == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t pack(int32_t left, int32_t right) { return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right); }
  static size_t hash(uint64_t key) {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return static_cast<size_t>(key);
  }
  std::vector<uint64_t> keys_;
  std::vector<Merge> values_;
  size_t mask_ = 0;
};

std::string quote_text(std::string_view text) {
  return "'" + gguf::printable(text) + "'";
}

}  // namespace

struct Tokenizer::Impl {
  std::string file;
  VocabKind kind = VocabKind::kByteLevelBpe;
  std::string model;
  std::string pre = std::string(kDefaultPreTokenizer);
  std::optional<PreTokenizer> pre_tokenizer;

  std::string arena;              // all token texts, back to back
  std::vector<uint32_t> offsets;  // token i is arena[offsets[i], offsets[i+1])
  std::vector<float> scores;
  std::vector<uint16_t> attrs;
  TextIndex index;
  MergeIndex merges;
  std::array<int32_t, 256> byte_tokens{};  // SentencePiece byte fallback, kNoToken when absent

  int32_t bos = kNoToken, eos = kNoToken, eot = kNoToken, eom = kNoToken, unk = kNoToken, sep = kNoToken, pad = kNoToken, mask = kNoToken;
  int32_t fim_pre = kNoToken, fim_suf = kNoToken, fim_mid = kNoToken, fim_pad = kNoToken, fim_rep = kNoToken, fim_sep = kNoToken;
  bool add_space_prefix = false, add_bos = false, add_eos = false, ignore_merges = false, clean_spaces = false;
  std::vector<int32_t> eog;             // ascending
  std::vector<int32_t> special_tokens;  // control, user-defined and unknown tokens, longest first
  std::vector<std::string> warnings;

  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> word_cache;

  size_t n() const { return offsets.size() - 1; }
  std::string_view text(int32_t id) const {
    const auto i = static_cast<size_t>(id);
    return std::string_view(arena).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
  void check_id(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= n()) {
      throw TokenizerError(fmt::format("token id {} is outside the vocabulary of {} tokens", id, n()));
    }
  }
  [[noreturn]] void fail(std::string_view subject, std::string_view message) const {
    throw TokenizerError(fmt::format("{}: {}: {}", file, subject, message));
  }

  void load(const gguf::Reader& reader);
  void load_tokens(const gguf::Reader& reader);
  void load_merges(const gguf::Reader& reader);
  void load_special_ids(const gguf::Reader& reader);
  void mark_special_by_text();

  void encode_bpe(std::string_view text, std::vector<int32_t>& out) const;
  void encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_spm(std::string_view text, std::vector<int32_t>& out) const;
  std::string piece(int32_t id, bool special) const;
};

void Tokenizer::Impl::load(const gguf::Reader& reader) {
  file = reader.path();
  const auto model_value = reader.find("tokenizer.ggml.model");
  if (!model_value) fail("key 'tokenizer.ggml.model'", "missing: the file has no tokenizer");
  if (model_value->type() != ValueType::kString) fail("key 'tokenizer.ggml.model'", "is not a string");
  model = std::string(model_value->as_string());
  const auto models = tokenizer_models();
  const auto known = std::find_if(models.begin(), models.end(), [&](const TokenizerModelName& m) { return m.name == model; });
  std::string supported;
  for (const auto& m : models) {
    if (m.kind != VocabKind::kUnsupported) supported += (supported.empty() ? "'" : ", '") + std::string(m.name) + "'";
  }
  if (known == models.end()) {
    fail("key 'tokenizer.ggml.model'", fmt::format("unknown tokenizer model {}; archreg tokenizes {}", quote_text(model), supported));
  }
  if (known->kind == VocabKind::kUnsupported) {
    fail("key 'tokenizer.ggml.model'",
         fmt::format("tokenizer model {} ({}) is not supported; archreg tokenizes {}", quote_text(model), known->description, supported));
  }
  kind = known->kind;

  const PreTokenizerName* pre_spec = nullptr;
  if (kind == VocabKind::kByteLevelBpe) {
    const auto pre_value = reader.find("tokenizer.ggml.pre");
    if (!pre_value) {
      warnings.push_back("tokenizer.ggml.pre is missing: using the 'default' pre-tokenizer, as llama.cpp does (output quality may suffer)");
    } else {
      if (pre_value->type() != ValueType::kString) fail("key 'tokenizer.ggml.pre'", "is not a string");
      pre = std::string(pre_value->as_string());
    }
    pre_spec = find_pre_tokenizer(pre);
    if (pre_spec == nullptr) {
      std::string names;
      for (std::string_view name : pre_tokenizer_names()) names += (names.empty() ? "" : ", ") + std::string(name);
      fail("key 'tokenizer.ggml.pre'", fmt::format("unknown or unsupported pre-tokenizer {}; archreg knows: {}", quote_text(pre), names));
    }
    pre_tokenizer.emplace(pre_spec->patterns);
    // llama.cpp's defaults for byte-level BPE, then the pre-tokenizer's own settings.
    bos = 11;
    eos = 11;
    unk = kNoToken;
    add_space_prefix = false;
    clean_spaces = pre_spec->clean_spaces;
    ignore_merges = pre_spec->ignore_merges;
    add_bos = pre_spec->add_bos;
    if (pre_spec->no_default_bos) bos = kNoToken;
  } else {
    pre = std::string(kDefaultPreTokenizer);
    bos = 1;
    eos = 2;
    unk = 0;
    add_space_prefix = true;
    clean_spaces = false;
    add_bos = true;
    add_eos = false;
  }
  if (const auto v = reader.find("tokenizer.ggml.add_space_prefix")) {
    if (v->type() != ValueType::kBool) fail("key 'tokenizer.ggml.add_space_prefix'", "is not a bool");
    add_space_prefix = v->get<bool>();
  }

  load_tokens(reader);
  if (kind == VocabKind::kByteLevelBpe) load_merges(reader);
  if (kind == VocabKind::kSentencePiece) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
      int32_t id = index.find(name);
      if (id == kNoToken) id = index.find(std::string(1, static_cast<char>(b)));
      byte_tokens[static_cast<size_t>(b)] = id;
    }
  }
  load_special_ids(reader);
  mark_special_by_text();

  for (int32_t id = 0; id < static_cast<int32_t>(n()); ++id) {
    if (attrs[static_cast<size_t>(id)] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_tokens.push_back(id);
  }
  // std::sort, not stable_sort: the same order as llama.cpp's cache for tokens of equal length.
  std::sort(special_tokens.begin(), special_tokens.end(), [&](int32_t a, int32_t b) { return text(a).size() > text(b).size(); });
}

void Tokenizer::Impl::load_tokens(const gguf::Reader& reader) {
  const auto tokens = reader.find("tokenizer.ggml.tokens");
  if (!tokens) fail("key 'tokenizer.ggml.tokens'", "missing: the file has no vocabulary");
  if (!tokens->is_array() || tokens->element_type() != ValueType::kString) {
    fail("key 'tokenizer.ggml.tokens'", "is not an array of strings");
  }
  const uint64_t count = tokens->size();
  if (count == 0) fail("key 'tokenizer.ggml.tokens'", "is empty");
  if (count >= (uint64_t{1} << 31)) fail("key 'tokenizer.ggml.tokens'", fmt::format("has {} tokens, more than token ids can count", count));
  const size_t n_tokens = static_cast<size_t>(count);
  offsets.reserve(n_tokens + 1);
  offsets.push_back(0);
  arena.reserve(static_cast<size_t>(tokens->bytes().size()));
  size_t i = 0;
  for (Value token : *tokens) {
    const std::string_view word = token.as_string();
    if (word.empty()) {
      arena += fmt::format("[EMPTY_{}]", i);  // llama.cpp's stand-in for an empty token
    } else {
      arena += word;
    }
    if (arena.size() > UINT32_MAX) fail("key 'tokenizer.ggml.tokens'", "token texts exceed 4 GiB");
    offsets.push_back(static_cast<uint32_t>(arena.size()));
    ++i;
  }
  index.build(arena, offsets);
  constexpr int32_t kBatch = 64;  // prefetch a batch's slots before inserting (see load_merges)
  uint64_t hashes[kBatch];
  for (int32_t first = 0; first < static_cast<int32_t>(n_tokens); first += kBatch) {
    const int32_t last = std::min(first + kBatch, static_cast<int32_t>(n_tokens));
    for (int32_t id = first; id < last; ++id) {
      hashes[id - first] = hash_bytes(text(id));
      index.prefetch(hashes[id - first]);
    }
    for (int32_t id = first; id < last; ++id) {
      const int32_t previous = index.insert_hashed(id, hashes[id - first]);
      if (previous != kNoToken) {
        fail(fmt::format("tokenizer.ggml.tokens[{}]", id),
             fmt::format("duplicate token {} (also token {}); llama.cpp refuses such a vocabulary", quote_text(text(id)), previous));
      }
    }
  }

  // Fixed-size arrays are read straight from the file's bytes (little-endian, as GGUF is).
  auto fixed_array = [&](std::string_view key, std::initializer_list<ValueType> types) -> std::optional<Value> {
    const auto value = reader.find(key);
    if (!value) return std::nullopt;
    if (!value->is_array() || std::find(types.begin(), types.end(), value->element_type()) == types.end()) {
      fail(fmt::format("key '{}'", key), "has the wrong type (expected an array of INT32 or FLOAT32)");
    }
    if (value->size() < count) {
      fail(fmt::format("key '{}'", key), fmt::format("has {} entries for {} tokens", value->size(), count));
    }
    return value;
  };
  scores.assign(n_tokens, 0.0f);
  if (const auto v = fixed_array("tokenizer.ggml.scores", {ValueType::kFloat32, ValueType::kInt32})) {
    const auto bytes = v->bytes();
    const std::byte* data = bytes.data() + (bytes.size() - static_cast<size_t>(v->size()) * 4);
    for (size_t t = 0; t < n_tokens; ++t) {
      if (v->element_type() == ValueType::kFloat32) {
        std::memcpy(&scores[t], data + t * 4, 4);
      } else {
        int32_t score = 0;
        std::memcpy(&score, data + t * 4, 4);
        scores[t] = static_cast<float>(score);
      }
    }
  }
  attrs.assign(n_tokens, kAttrNormal);
  if (const auto v = fixed_array("tokenizer.ggml.token_type", {ValueType::kInt32})) {
    const auto bytes = v->bytes();
    const std::byte* data = bytes.data() + (bytes.size() - static_cast<size_t>(v->size()) * 4);
    for (size_t t = 0; t < n_tokens; ++t) {
      int32_t type = 0;
      std::memcpy(&type, data + t * 4, 4);
      switch (type) {  // GGUF token type -> attribute
        case 1: attrs[t] = kAttrNormal; break;
        case 2: attrs[t] = kAttrUnknown; break;
        case 3: attrs[t] = kAttrControl; break;
        case 4: attrs[t] = kAttrUserDefined; break;
        case 5: attrs[t] = kAttrUnused; break;
        case 6: attrs[t] = kAttrByte; break;
        default: attrs[t] = kAttrUndefined; break;
      }
    }
  }
  for (int32_t id = 0; id < static_cast<int32_t>(n_tokens); ++id) {
    if (!(attrs[static_cast<size_t>(id)] & kAttrByte)) continue;
    const std::string_view t = text(id);
    const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || !hex(t[3]) || !hex(t[4]) || t[5] != '>') {
      fail(fmt::format("tokenizer.ggml.tokens[{}]", id),
           fmt::format("token {} has type BYTE but is not of the form <0xXX>", quote_text(t)));
    }
  }
}

void Tokenizer::Impl::load_merges(const gguf::Reader& reader) {
  const auto list = reader.find("tokenizer.ggml.merges");
  if (!list) fail("key 'tokenizer.ggml.merges'", "missing: a byte-level BPE vocabulary needs its merges");
  if (!list->is_array() || list->element_type() != ValueType::kString) fail("key 'tokenizer.ggml.merges'", "is not an array of strings");
  if (list->size() >= (uint64_t{1} << 31)) fail("key 'tokenizer.ggml.merges'", "has too many merges");
  merges.reserve(static_cast<size_t>(list->size()));
  // Resolved in batches: the three lookups of each merge (left, right, joined) miss the cache,
  // so the slots of a whole batch are prefetched before any is read.
  constexpr size_t kBatch = 64;
  struct Pending {
    std::string_view merge, first, second;
    size_t joined_begin, joined_length;
    uint64_t hashes[3];
    int32_t ids[3];
  };
  std::vector<Pending> batch;
  batch.reserve(kBatch);
  std::string joined;
  int32_t rank = 0;
  const auto resolve = [&] {
    for (Pending& p : batch) {
      p.hashes[0] = hash_bytes(p.first);
      p.hashes[1] = hash_bytes(p.second);
      p.hashes[2] = hash_bytes(std::string_view(joined).substr(p.joined_begin, p.joined_length));
      for (uint64_t h : p.hashes) index.prefetch(h);
    }
    for (Pending& p : batch) {
      const std::string_view whole = std::string_view(joined).substr(p.joined_begin, p.joined_length);
      p.ids[0] = index.find_hashed(p.first, p.hashes[0]);
      p.ids[1] = index.find_hashed(p.second, p.hashes[1]);
      p.ids[2] = index.find_hashed(whole, p.hashes[2]);
      for (const auto& [part, id] : {std::pair{p.first, p.ids[0]}, std::pair{p.second, p.ids[1]}, std::pair{whole, p.ids[2]}}) {
        if (id == kNoToken) {
          fail(fmt::format("tokenizer.ggml.merges[{}]", rank + static_cast<int32_t>(&p - batch.data())),
               fmt::format("merge {} refers to {}, which is not in tokenizer.ggml.tokens", quote_text(p.merge), quote_text(part)));
        }
      }
      merges.prefetch(p.ids[0], p.ids[1]);
    }
    for (const Pending& p : batch) {
      merges.insert(p.ids[0], p.ids[1], {rank, p.ids[2]});
      ++rank;
    }
    batch.clear();
    joined.clear();
  };
  for (Value entry : *list) {
    const std::string_view merge = entry.as_string();
    const size_t space = merge.size() > 1 ? merge.find(' ', 1) : std::string_view::npos;
    if (space == std::string_view::npos) {
      resolve();
      fail(fmt::format("tokenizer.ggml.merges[{}]", rank),
           fmt::format("merge {} is not two tokens separated by a space", quote_text(merge)));
    }
    const size_t begin = joined.size();
    joined.append(merge.substr(0, space)).append(merge.substr(space + 1));
    batch.push_back({merge, merge.substr(0, space), merge.substr(space + 1), begin, joined.size() - begin, {}, {}});
    if (batch.size() == kBatch) resolve();
  }
  resolve();
}

void Tokenizer::Impl::load_special_ids(const gguf::Reader& reader) {
  struct SpecialKey {
    std::string_view key;
    int32_t* id;
  };
  const SpecialKey keys[] = {
      {"tokenizer.ggml.bos_token_id", &bos},         {"tokenizer.ggml.eos_token_id", &eos},
      {"tokenizer.ggml.eot_token_id", &eot},         {"tokenizer.ggml.eom_token_id", &eom},
      {"tokenizer.ggml.unknown_token_id", &unk},     {"tokenizer.ggml.seperator_token_id", &sep},
      {"tokenizer.ggml.padding_token_id", &pad},     {"tokenizer.ggml.mask_token_id", &mask},
      {"tokenizer.ggml.fim_pre_token_id", &fim_pre}, {"tokenizer.ggml.fim_suf_token_id", &fim_suf},
      {"tokenizer.ggml.fim_mid_token_id", &fim_mid}, {"tokenizer.ggml.fim_pad_token_id", &fim_pad},
      {"tokenizer.ggml.fim_rep_token_id", &fim_rep}, {"tokenizer.ggml.fim_sep_token_id", &fim_sep},
      {"tokenizer.ggml.prefix_token_id", &fim_pre},  {"tokenizer.ggml.suffix_token_id", &fim_suf},
      {"tokenizer.ggml.middle_token_id", &fim_mid},
  };
  const auto size = static_cast<int64_t>(n());
  for (const SpecialKey& special : keys) {
    if (*special.id >= size) {
      warnings.push_back(fmt::format("default {} = {} is outside the vocabulary: unset", special.key, *special.id));
      *special.id = kNoToken;
    }
    const auto value = reader.find(special.key);
    if (!value) continue;
    if (value->is_array() || value->type() == ValueType::kString || value->type() == ValueType::kBool ||
        value->type() == ValueType::kFloat32 || value->type() == ValueType::kFloat64) {
      fail(fmt::format("key '{}'", special.key), "is not an integer");
    }
    const int64_t id = value->as_int();
    if (id < 0 || id >= size) {
      warnings.push_back(fmt::format("{} = {} is outside the vocabulary of {} tokens: keeping {}", special.key, id, size, *special.id));
    } else {
      *special.id = static_cast<int32_t>(id);
    }
  }
  for (const auto& [key, flag] :
       {std::pair{"tokenizer.ggml.add_bos_token", &add_bos}, std::pair{"tokenizer.ggml.add_eos_token", &add_eos}}) {
    if (const auto value = reader.find(key)) {
      if (value->type() != ValueType::kBool) fail(fmt::format("key '{}'", key), "is not a bool");
      *flag = value->get<bool>();
    }
  }
}

// llama.cpp's text heuristics (in its vocabulary loader, "auto-detect special tokens by text"):
// end-of-turn, end-of-message and fill-in-the-middle tokens found by their text become control
// tokens, and the end-of-generation set is built. llama.cpp walks an unordered_map, so where
// several texts of one kind are present the one it picks is unspecified; archreg takes the
// lowest id.
void Tokenizer::Impl::mark_special_by_text() {
  const auto size = static_cast<int32_t>(n());
  auto make_control = [&](int32_t id) {
    attrs[static_cast<size_t>(id)] = static_cast<uint16_t>(attrs[static_cast<size_t>(id)] | kAttrControl);
  };
  struct Detect {
    int32_t* id;
    std::span<const std::string_view> texts;
  };
  const Detect detects[] = {{&eot, kEotTexts},        {&eom, kEomTexts},        {&fim_pre, kFimPreTexts}, {&fim_suf, kFimSufTexts},
                            {&fim_mid, kFimMidTexts}, {&fim_pad, kFimPadTexts}, {&fim_rep, kFimRepTexts}, {&fim_sep, kFimSepTexts}};
  for (const Detect& detect : detects) {
    if (*detect.id != kNoToken) continue;
    for (std::string_view candidate : detect.texts) {
      const int32_t id = index.find(candidate);
      if (id == kNoToken) continue;
      if (*detect.id == kNoToken || id < *detect.id) *detect.id = id;
    }
    if (*detect.id != kNoToken) make_control(*detect.id);
  }
  for (int32_t id = 0; id < size; ++id) {
    auto& attr = attrs[static_cast<size_t>(id)];
    if ((attr & kAttrControl) && !(attr & kAttrUnused) && text(id).find("unused") != std::string_view::npos) {
      attr = static_cast<uint16_t>(attr | kAttrUnused);
    }
  }
  std::vector<int32_t> eog_set;
  for (int32_t id : {fim_pad, fim_rep, fim_sep}) {
    if (id != kNoToken) eog_set.push_back(id);
  }
  for (std::string_view candidate : kEogTexts) {
    const int32_t id = index.find(candidate);
    if (id == kNoToken) continue;
    eog_set.push_back(id);
    make_control(id);
  }
  for (std::string_view candidate : kAlwaysRenderedTexts) {
    const int32_t id = index.find(candidate);
    if (id != kNoToken) attrs[static_cast<size_t>(id)] = kAttrUserDefined;
  }
  for (int32_t id : {eos, eot, eom}) {
    if (id != kNoToken) eog_set.push_back(id);
  }
  std::sort(eog_set.begin(), eog_set.end());
  eog_set.erase(std::unique(eog_set.begin(), eog_set.end()), eog_set.end());
  // Harmony-style vocabularies end a turn with <|end|> but a reply with <|return|>/<|call|>:
  // there <|end|> is not the end of generation.
  bool has_return = false, has_call = false, has_flush = false;
  int32_t end_id = kNoToken;
  for (int32_t id : eog_set) {
    const std::string_view t = text(id);
    if (t == "<|return|>")
      has_return = true;
    else if (t == "<|call|>" || t == "<|calls|>")
      has_call = true;
    else if (t == "<|flush|>")
      has_flush = true;
    else if (t == "<|end|>")
      end_id = id;
  }
  if (end_id != kNoToken && ((has_return && has_call) || (has_call && has_flush))) {
    eog_set.erase(std::find(eog_set.begin(), eog_set.end(), end_id));
    attrs[static_cast<size_t>(end_id)] = kAttrUserDefined;
  }
  bool has_plain_s_marker = false;
  int32_t s_id = kNoToken;
  for (int32_t id : eog_set) {
    const std::string_view t = text(id);
    if (t == "<|tool_response>" || t == "<|plamo:eos|>")
      has_plain_s_marker = true;
    else if (t == "</s>")
      s_id = id;
  }
  if (has_plain_s_marker && s_id != kNoToken) {
    eog_set.erase(std::find(eog_set.begin(), eog_set.end(), s_id));
    attrs[static_cast<size_t>(s_id)] = kAttrNormal;
  }
  eog = std::move(eog_set);
}

// ---- encoding ----------------------------------------------------------------------------------

namespace {
struct Fragment {
  int32_t token;  // kNoToken for text
  size_t begin;
  size_t length;
};
}  // namespace

void Tokenizer::Impl::encode_bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges) {
    const int32_t whole = index.find(word);
    if (whole != kNoToken) {
      out.push_back(whole);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    uint32_t begin;
    uint32_t length;
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t offset = 0; offset < word.size();) {
    const size_t length = std::min(word.size() - offset, unicode::sequence_length(static_cast<unsigned char>(word[offset])));
    const auto i = static_cast<int32_t>(symbols.size());
    symbols.push_back({index.find(word.substr(offset, length)), static_cast<uint32_t>(offset), static_cast<uint32_t>(length), i - 1,
                       offset + length == word.size() ? -1 : i + 1});
    offset += length;
  }
  // Merge the lowest-ranked adjacent pair, leftmost first, until none is left (llama.cpp's
  // llm_tokenizer_bpe_session: a priority queue of bigrams with stale entries skipped).
  struct Bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;
    int32_t right_id;
    int32_t result;
  };
  const auto worse = [](const Bigram& a, const Bigram& b) { return a.rank > b.rank || (a.rank == b.rank && a.left > b.left); };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  const auto add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(right)];
    if (const MergeIndex::Merge* merge = merges.find(l.id, r.id)) queue.push({merge->rank, left, right, l.id, r.id, merge->result});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) add_bigram(i - 1, i);
  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    auto& left = symbols[static_cast<size_t>(bigram.left)];
    auto& right = symbols[static_cast<size_t>(bigram.right)];
    if (left.length == 0 || right.length == 0 || left.id != bigram.left_id || right.id != bigram.right_id) continue;
    left.id = bigram.result;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = bigram.left;
    add_bigram(left.prev, bigram.left);
    add_bigram(bigram.left, left.next);
  }
  for (const Symbol& symbol : symbols) {
    if (symbol.length == 0) continue;
    if (symbol.id != kNoToken) {
      out.push_back(symbol.id);
      continue;
    }
    for (size_t b = symbol.begin; b < symbol.begin + symbol.length; ++b) {
      const int32_t id = index.find(word.substr(b, 1));
      if (id != kNoToken) out.push_back(id);
    }
  }
}

void Tokenizer::Impl::encode_bpe(std::string_view raw, std::vector<int32_t>& out) const {
  std::vector<uint32_t> cps;
  unicode::decode(raw, cps);
  for (uint32_t cp : cps) {
    if (cp > unicode::kMaxCodepoint) {
      // Find the sequence for the message.
      size_t at = 0;
      for (size_t i = 0; i + 3 < raw.size(); ++i) {
        const auto lead = static_cast<unsigned char>(raw[i]);
        if (lead >= 0xF4 && lead <= 0xF7) {
          std::vector<uint32_t> one;
          unicode::decode(raw.substr(i, 4), one);
          if (one.size() == 1 && one[0] > unicode::kMaxCodepoint) {
            at = i;
            break;
          }
        }
      }
      throw TokenizerError(
          fmt::format("invalid UTF-8 in the text at byte {}: a sequence for U+{:X}, past U+10FFFF "
                      "(llama.cpp cannot tokenize it either)",
                      at, cp));
    }
  }
  std::vector<uint32_t> words;
  pre_tokenizer->split(cps, words);
  std::string word;
  std::string utf8;
  size_t at = 0;
  for (uint32_t length : words) {
    word.clear();
    for (size_t i = at; i < at + length; ++i) {
      utf8.clear();
      unicode::append_utf8(utf8, cps[i]);
      for (char c : utf8) word += unicode::byte_to_utf8(static_cast<unsigned char>(c));
    }
    at += length;
    {
      std::lock_guard lock(cache_mutex);
      const auto hit = word_cache.find(word);
      if (hit != word_cache.end()) {
        out.insert(out.end(), hit->second.begin(), hit->second.end());
        continue;
      }
    }
    const size_t first = out.size();
    encode_bpe_word(word, out);
    std::lock_guard lock(cache_mutex);
    if (word_cache.size() >= 65536) word_cache.clear();
    word_cache.emplace(word, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }
}

void Tokenizer::Impl::encode_spm(std::string_view text_in, std::vector<int32_t>& out) const {
  struct Symbol {
    uint32_t begin;
    uint32_t length;
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  for (size_t offset = 0; offset < text_in.size();) {
    const size_t length = std::min(text_in.size() - offset, unicode::sequence_length(static_cast<unsigned char>(text_in[offset])));
    const auto i = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {static_cast<uint32_t>(offset), static_cast<uint32_t>(length), i - 1, offset + length == text_in.size() ? -1 : i + 1});
    offset += length;
  }
  // The highest-scoring adjacent pair whose concatenation is a token, leftmost first
  // (llama.cpp's llm_tokenizer_spm_session).
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;
  };
  const auto worse = [](const Bigram& a, const Bigram& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  const auto add_bigram = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const auto& l = symbols[static_cast<size_t>(left)];
    const auto& r = symbols[static_cast<size_t>(right)];
    const int32_t id = index.find(text_in.substr(l.begin, l.length + r.length));
    if (id == kNoToken) return;
    queue.push({scores[static_cast<size_t>(id)], left, right, l.length + r.length});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) add_bigram(i - 1, i);
  while (!queue.empty()) {
    const Bigram bigram = queue.top();
    queue.pop();
    auto& left = symbols[static_cast<size_t>(bigram.left)];
    auto& right = symbols[static_cast<size_t>(bigram.right)];
    if (left.length == 0 || right.length == 0 || left.length + right.length != bigram.size) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = bigram.left;
    add_bigram(left.prev, bigram.left);
    add_bigram(bigram.left, left.next);
  }
  for (int32_t i = symbols.empty() ? -1 : 0; i != -1; i = symbols[static_cast<size_t>(i)].next) {
    const Symbol& symbol = symbols[static_cast<size_t>(i)];
    const std::string_view piece_text = text_in.substr(symbol.begin, symbol.length);
    const int32_t id = index.find(piece_text);
    if (id != kNoToken) {
      out.push_back(id);
      continue;
    }
    for (char c : piece_text) {
      const int32_t byte_id = byte_tokens[static_cast<unsigned char>(c)];
      if (byte_id == kNoToken) {
        throw TokenizerError(
            fmt::format("{}: the vocabulary has no byte token <0x{:02X}> for byte fallback", file, static_cast<unsigned char>(c)));
      }
      out.push_back(byte_id);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  // Split out special tokens first: longest first, every occurrence, left to right
  // (llama.cpp's special-token partition). Control and unknown tokens only when asked.
  std::vector<Fragment> fragments;
  if (!text.empty()) fragments.push_back({kNoToken, 0, text.size()});
  std::vector<Fragment> next;
  for (int32_t special : m.special_tokens) {
    const uint16_t attr = m.attrs[static_cast<size_t>(special)];
    if (!parse_special && (attr & (kAttrControl | kAttrUnknown))) continue;
    const std::string_view needle = m.text(special);
    bool found = false;
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken || fragment.length < needle.size()) continue;
      if (text.substr(fragment.begin, fragment.length).find(needle) != std::string_view::npos) {
        found = true;
        break;
      }
    }
    if (!found) continue;
    next.clear();
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken) {
        next.push_back(fragment);
        continue;
      }
      size_t begin = fragment.begin;
      const size_t end = fragment.begin + fragment.length;
      while (begin < end) {
        const size_t match = text.substr(0, end).find(needle, begin);
        if (match == std::string_view::npos) break;
        if (match > begin) next.push_back({kNoToken, begin, match - begin});
        next.push_back({special, 0, 0});
        begin = match + needle.size();
      }
      if (begin < end) next.push_back({kNoToken, begin, end - begin});
    }
    fragments.swap(next);
  }

  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  const auto add_bos = [&] {
    if (m.bos == kNoToken) throw TokenizerError(m.file + ": the vocabulary asks for a BOS token but has none");
    out.push_back(m.bos);
  };
  if (add_special && m.add_bos) add_bos();
  if (m.kind == VocabKind::kSentencePiece) {
    bool previous_special = true;
    std::string piece_text;
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken) {
        out.push_back(fragment.token);
        previous_special = true;
        continue;
      }
      piece_text.clear();
      if (m.add_space_prefix && previous_special) piece_text += kSpaceMarker;
      for (char c : text.substr(fragment.begin, fragment.length)) {
        if (c == ' ')
          piece_text += kSpaceMarker;
        else
          piece_text += c;
      }
      m.encode_spm(piece_text, out);
      previous_special = false;
    }
  } else {
    for (const Fragment& fragment : fragments) {
      if (fragment.token != kNoToken)
        out.push_back(fragment.token);
      else
        m.encode_bpe(text.substr(fragment.begin, fragment.length), out);
    }
  }
  if (add_special && m.add_eos) {
    if (m.eos == kNoToken) throw TokenizerError(m.file + ": the vocabulary asks for an EOS token but has none");
    out.push_back(m.eos);
  }
  return out;
}

// ---- decoding ----------------------------------------------------------------------------------

std::string Tokenizer::Impl::piece(int32_t id, bool special) const {
  check_id(id);
  const uint16_t attr = attrs[static_cast<size_t>(id)];
  if (!special && (attr & (kAttrUnknown | kAttrControl))) return {};
  const std::string_view token = text(id);
  if (attr & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return std::string(token);
  if (attr & kAttrNormal) {
    std::string result;
    if (kind == VocabKind::kSentencePiece) {
      for (size_t i = 0; i < token.size();) {
        if (token.substr(i, 3) == kSpaceMarker) {
          result += ' ';
          i += 3;
        } else {
          result += token[i++];
        }
      }
      return result;
    }
    // Byte-level: each character of the token stands for one byte.
    std::vector<uint32_t> cps;
    unicode::decode(token, cps);
    for (uint32_t cp : cps) {
      const int byte = unicode::utf8_char_to_byte(cp);
      if (byte >= 0) {
        result += static_cast<char>(byte);
        continue;
      }
      std::string utf8;
      unicode::append_utf8(utf8, std::min(cp, unicode::kMaxCodepoint));
      result += "[UNK_BYTE_0x";
      for (char c : utf8) result += fmt::format("{:02x}", static_cast<unsigned char>(c));
      result += std::string(token) + "]";
    }
    return result;
  }
  if (attr & kAttrByte) {
    return std::string(1, static_cast<char>(std::stoi(std::string(token.substr(3, 2)), nullptr, 16)));
  }
  return {};
}

std::string Tokenizer::piece(int32_t id, bool special) const {
  return impl_->piece(id, special);
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const {
  const Impl& m = *impl_;
  bool remove_space = m.add_space_prefix;
  if (remove_special && m.add_bos && !ids.empty() && ids.front() == m.bos) {
    remove_space = false;
    ids = ids.subspan(1);
  }
  if (remove_special && m.add_eos && !ids.empty() && ids.back() == m.eos) ids = ids.first(ids.size() - 1);
  std::string text;
  for (int32_t id : ids) {
    std::string piece_text = m.piece(id, unparse_special);
    if (remove_space && !piece_text.empty() && piece_text.front() == ' ') piece_text.erase(0, 1);
    remove_space = false;
    text += piece_text;
  }
  if (!m.clean_spaces || text.empty()) return text;
  // llama.cpp's three detokenize clean-up passes, byte for byte.
  std::string pass1(1, text[0]);
  for (size_t i = 1; i < text.size(); ++i) {
    const char x = text[i];
    if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) pass1.pop_back();
    pass1 += x;
  }
  std::string pass2(1, pass1[0]);
  for (size_t i = 1; i < pass1.size(); ++i) {
    const char x = pass1[i];
    if (x == '\'' && i + 1 < pass1.size() && pass1[i - 1] == ' ' && pass1[i + 1] == ' ') {
      pass2.pop_back();
      pass1[++i] = '\0';
    }
    pass2 += x;
  }
  std::string pass3(1, pass2[0]);
  for (size_t i = 1; i < pass2.size(); ++i) {
    const char x = pass2[i];
    if (pass2[i - 1] == ' ' && x == '\'' && i + 1 < pass2.size()) {
      const char x1 = pass2[i + 1];
      if (x1 == 's' || x1 == 'm') {
        pass3.pop_back();
      } else if (i + 2 < pass2.size()) {
        const char x2 = pass2[i + 2];
        if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) pass3.pop_back();
      }
    }
    pass3 += x;
  }
  return pass3;
}

// ---- the rest ----------------------------------------------------------------------------------

Tokenizer Tokenizer::from_gguf(const gguf::Reader& reader) {
  auto impl = std::make_unique<Impl>();
  impl->load(reader);
  return Tokenizer(std::move(impl));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

size_t Tokenizer::n_vocab() const {
  return impl_->n();
}
std::string_view Tokenizer::token_text(int32_t id) const {
  impl_->check_id(id);
  return impl_->text(id);
}
uint16_t Tokenizer::attributes(int32_t id) const {
  impl_->check_id(id);
  return impl_->attrs[static_cast<size_t>(id)];
}
float Tokenizer::score(int32_t id) const {
  impl_->check_id(id);
  return impl_->scores[static_cast<size_t>(id)];
}
bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(impl_->eog.begin(), impl_->eog.end(), id);
}
std::span<const int32_t> Tokenizer::eog_ids() const {
  return impl_->eog;
}
int32_t Tokenizer::bos() const {
  return impl_->bos;
}
int32_t Tokenizer::eos() const {
  return impl_->eos;
}
int32_t Tokenizer::eot() const {
  return impl_->eot;
}
int32_t Tokenizer::eom() const {
  return impl_->eom;
}
int32_t Tokenizer::unk() const {
  return impl_->unk;
}
int32_t Tokenizer::pad() const {
  return impl_->pad;
}
bool Tokenizer::adds_bos() const {
  return impl_->add_bos;
}
bool Tokenizer::adds_eos() const {
  return impl_->add_eos;
}
bool Tokenizer::adds_space_prefix() const {
  return impl_->add_space_prefix;
}
VocabKind Tokenizer::kind() const {
  return impl_->kind;
}
std::string_view Tokenizer::model_name() const {
  return impl_->model;
}
std::string_view Tokenizer::pre_tokenizer() const {
  return impl_->pre;
}
const std::vector<std::string>& Tokenizer::warnings() const {
  return impl_->warnings;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool special) : tokenizer_(&tokenizer), special_(special) {}

std::string StreamDecoder::feed(int32_t id) {
  pending_ += tokenizer_->piece(id, special_);
  const size_t ready = unicode::complete_prefix(pending_);
  std::string out = pending_.substr(0, ready);
  pending_.erase(0, ready);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace archreg::text
