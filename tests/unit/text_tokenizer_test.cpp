// The tokenizer on small vocabularies built byte by byte: refusals of bad vocabularies and bad
// text (each naming the key or token), and the behaviours the interop corpus cannot isolate.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gguf/reader.hpp"
#include "gguf_bytes.hpp"
#include "text/chat_template.hpp"
#include "text/pretokenizer.hpp"
#include "text/tokenizer.hpp"
#include "text/unicode.hpp"

namespace archreg::text {
namespace {

using test::GgufBytes;
using testing::AllOf;
using testing::ElementsAre;
using testing::HasSubstr;
namespace tag = test::tag;

struct Vocab {
  std::string model = "gpt2";
  std::optional<std::string> pre = "gpt-2";
  std::vector<std::string> tokens;
  std::vector<int32_t> types;       // empty: no token_type key
  std::vector<float> scores;        // empty: no scores key
  std::vector<std::string> merges;  // gpt2 only
  bool write_merges = true;
  std::vector<std::pair<std::string, int32_t>> ids;  // e.g. {"tokenizer.ggml.bos_token_id", 1}
  std::vector<std::pair<std::string, bool>> flags;
  std::optional<std::string> chat_template;
};

// The byte-level alphabet in byte order, then `extra` tokens.
std::vector<std::string> byte_level_tokens(std::vector<std::string> extra) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(unicode::byte_to_utf8(static_cast<unsigned char>(b)));
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  return tokens;
}

std::vector<std::byte> build(const Vocab& vocab) {
  uint64_t n_kv = 2 + (vocab.pre ? 1 : 0) + (vocab.types.empty() ? 0 : 1) + (vocab.scores.empty() ? 0 : 1) +
                  (vocab.model == "gpt2" && vocab.write_merges ? 1 : 0) + vocab.ids.size() + vocab.flags.size() +
                  (vocab.chat_template ? 1 : 0);
  GgufBytes g;
  g.header(3, 0, n_kv);
  g.kv_string("tokenizer.ggml.model", vocab.model);
  if (vocab.pre) g.kv_string("tokenizer.ggml.pre", *vocab.pre);
  g.kv_array_header("tokenizer.ggml.tokens", tag::kString, vocab.tokens.size());
  for (const auto& t : vocab.tokens) g.str(t);
  if (!vocab.types.empty()) {
    g.kv_array_header("tokenizer.ggml.token_type", tag::kInt32, vocab.types.size());
    for (int32_t t : vocab.types) g.i32(t);
  }
  if (!vocab.scores.empty()) {
    g.kv_array_header("tokenizer.ggml.scores", tag::kFloat32, vocab.scores.size());
    for (float s : vocab.scores) g.f32(s);
  }
  if (vocab.model == "gpt2" && vocab.write_merges) {
    g.kv_array_header("tokenizer.ggml.merges", tag::kString, vocab.merges.size());
    for (const auto& m : vocab.merges) g.str(m);
  }
  for (const auto& [key, id] : vocab.ids) g.kv_u32(key, static_cast<uint32_t>(id));
  for (const auto& [key, flag] : vocab.flags) g.kv_bool(key, flag);
  if (vocab.chat_template) g.kv_string("tokenizer.chat_template", *vocab.chat_template);
  g.align(32);
  return g.bytes();
}

// A byte-level BPE vocabulary: 256 byte tokens, then "Ġt" "he" "Ġthe" <|im_end|> <|user|>.
Vocab small_bpe() {
  Vocab v;
  v.tokens = byte_level_tokens({"Ġt", "he", "Ġthe", "<|im_end|>", "<|user|>"});
  v.types.assign(v.tokens.size(), 1);
  v.types[259] = 3;  // <|im_end|>: control
  v.types[260] = 4;  // <|user|>: user-defined
  v.merges = {"Ġ t", "h e", "Ġt he"};
  v.ids = {{"tokenizer.ggml.bos_token_id", 259}, {"tokenizer.ggml.eos_token_id", 259}};
  return v;
}

// A SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces.
Vocab small_spm() {
  Vocab v;
  v.model = "llama";
  v.pre.reset();
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {2, 3, 3};
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    v.types.push_back(6);
  }
  for (const char* piece : {"▁", "▁a", "a", "b", "ab", "▁ab"}) {
    v.tokens.emplace_back(piece);
    v.types.push_back(1);
  }
  v.scores.assign(v.tokens.size(), 0.0f);
  v.scores[v.tokens.size() - 2] = -1.0f;  // "ab"
  v.scores[v.tokens.size() - 1] = -0.5f;  // "▁ab"
  return v;
}

struct Loaded {
  std::vector<std::byte> bytes;
  gguf::Reader reader;
  Tokenizer tokenizer;
};

std::unique_ptr<Loaded> load(const Vocab& vocab) {
  auto bytes = build(vocab);
  auto reader = gguf::Reader::from_memory(bytes, "vocab.gguf");
  auto tokenizer = Tokenizer::from_gguf(reader);
  return std::make_unique<Loaded>(Loaded{std::move(bytes), std::move(reader), std::move(tokenizer)});
}

std::string load_error(const Vocab& vocab) {
  const auto bytes = build(vocab);
  const auto reader = gguf::Reader::from_memory(bytes, "vocab.gguf");
  try {
    Tokenizer::from_gguf(reader);
  } catch (const TokenizerError& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(TextTokenizer, RefusesUnsupportedModelsNamingKeyAndValue) {
  for (const auto& [model, what] : std::vector<std::pair<std::string, std::string>>{
           {"bert", "WordPiece"}, {"t5", "Unigram"}, {"rwkv", "RWKV"}, {"plamo2", "PLaMo-2"}, {"none", "no vocabulary"}}) {
    Vocab v = small_bpe();
    v.model = model;
    EXPECT_THAT(load_error(v), AllOf(HasSubstr("vocab.gguf"), HasSubstr("tokenizer.ggml.model"), HasSubstr("'" + model + "'"),
                                     HasSubstr(what), HasSubstr("'gpt2'")))
        << model;
  }
  Vocab v = small_bpe();
  v.model = "wordpuzzle";
  EXPECT_THAT(load_error(v), HasSubstr("unknown tokenizer model 'wordpuzzle'"));
}

TEST(TextTokenizer, RefusesAnUnknownPreTokenizerListingTheKnownOnes) {
  Vocab v = small_bpe();
  v.pre = "made-up-pre";
  EXPECT_THAT(load_error(v), AllOf(HasSubstr("tokenizer.ggml.pre"), HasSubstr("'made-up-pre'"), HasSubstr("smollm"), HasSubstr("gpt-4o")));
}

TEST(TextTokenizer, AMissingPreTokenizerIsTheDefaultWithAWarningAsInLlamaCpp) {
  Vocab v = small_bpe();
  v.pre.reset();
  const auto loaded = load(v);
  EXPECT_EQ(loaded->tokenizer.pre_tokenizer(), "default");
  ASSERT_EQ(loaded->tokenizer.warnings().size(), 1u);
  EXPECT_THAT(loaded->tokenizer.warnings()[0], HasSubstr("tokenizer.ggml.pre is missing"));
}

TEST(TextTokenizer, RefusesDuplicateTokensNamingBoth) {
  Vocab v = small_bpe();
  v.tokens[258] = "he";  // "Ġthe" -> a second "he"
  EXPECT_THAT(load_error(v), AllOf(HasSubstr("tokenizer.ggml.tokens[258]"), HasSubstr("duplicate token 'he'"), HasSubstr("token 257")));
}

TEST(TextTokenizer, RefusesMergesThatReferToMissingTokens) {
  Vocab v = small_bpe();
  v.merges.push_back("Ġthe x");  // "Ġthex" is not a token
  EXPECT_THAT(load_error(v), AllOf(HasSubstr("tokenizer.ggml.merges[3]"), HasSubstr("'Ġthex'"), HasSubstr("not in tokenizer.ggml.tokens")));
  v = small_bpe();
  v.merges.push_back("nospace");
  EXPECT_THAT(load_error(v), AllOf(HasSubstr("tokenizer.ggml.merges[3]"), HasSubstr("not two tokens separated by a space")));
  v = small_bpe();
  v.write_merges = false;
  EXPECT_THAT(load_error(v), HasSubstr("'tokenizer.ggml.merges': missing"));
}

TEST(TextTokenizer, RefusesShortArraysAndMalformedByteTokens) {
  Vocab v = small_bpe();
  v.types.resize(10);
  EXPECT_THAT(load_error(v), AllOf(HasSubstr("tokenizer.ggml.token_type"), HasSubstr("10 entries for 261 tokens")));
  Vocab s = small_spm();
  s.scores.resize(3);
  EXPECT_THAT(load_error(s), HasSubstr("tokenizer.ggml.scores"));
  s = small_spm();
  s.tokens[3] = "<byte 0>";
  EXPECT_THAT(load_error(s), AllOf(HasSubstr("tokenizer.ggml.tokens[3]"), HasSubstr("type BYTE"), HasSubstr("<0xXX>")));
  Vocab none = small_bpe();
  none.tokens.clear();
  none.types.clear();
  EXPECT_THAT(load_error(none), HasSubstr("'tokenizer.ggml.tokens': is empty"));
}

TEST(TextTokenizer, ByteLevelBpeMergesAndSpecialTokens) {
  const auto loaded = load(small_bpe());
  const Tokenizer& t = loaded->tokenizer;
  EXPECT_THAT(t.encode(" the", false, false), ElementsAre(258));
  EXPECT_THAT(t.encode("the", false, false), ElementsAre('t', 257));
  // Control tokens only with parse_special; user-defined tokens always.
  EXPECT_EQ(t.encode("<|im_end|>", false, false).size(), 10u);
  EXPECT_THAT(t.encode("<|im_end|>", false, true), ElementsAre(259));
  EXPECT_THAT(t.encode("<|user|>", false, false), ElementsAre(260));
  EXPECT_TRUE(t.is_eog(259));
  EXPECT_EQ(t.piece(259, false), "");
  EXPECT_EQ(t.piece(259, true), "<|im_end|>");
  EXPECT_EQ(t.piece(258, false), " the");
  EXPECT_EQ(t.decode(t.encode(" the end", false, false), false, false), " the end");
}

TEST(TextTokenizer, InvalidUtf8IsTokenizedAsLlamaCppDoesExceptPastTheLastCodepoint) {
  const auto loaded = load(small_bpe());
  const Tokenizer& t = loaded->tokenizer;
  // Each byte that starts no complete sequence is U+FFFD, as in llama.cpp.
  EXPECT_EQ(t.encode("a\x80z", false, false), t.encode("a\xEF\xBF\xBDz", false, false));
  EXPECT_EQ(t.encode("\xE2\x82", false, false), t.encode("\xEF\xBF\xBD\xEF\xBF\xBD", false, false));
  // F5 80 80 80 decodes past U+10FFFF: llama.cpp throws inside llama_tokenize; archreg says so.
  try {
    t.encode("ok \xF5\x80\x80\x80", false, false);
    FAIL() << "no error";
  } catch (const TokenizerError& error) {
    EXPECT_THAT(std::string(error.what()), AllOf(HasSubstr("invalid UTF-8"), HasSubstr("byte 3"), HasSubstr("past U+10FFFF")));
  }
  EXPECT_THROW(t.piece(261, true), TokenizerError);
  EXPECT_THROW(t.piece(-1, true), TokenizerError);
}

TEST(TextTokenizer, SentencePieceScoresSpacePrefixAndByteFallback) {
  const auto loaded = load(small_spm());
  const Tokenizer& t = loaded->tokenizer;
  const int32_t a = 259 + 2, b = 259 + 3, sp_ab = 259 + 5;
  EXPECT_TRUE(t.adds_bos());
  EXPECT_TRUE(t.adds_space_prefix());
  EXPECT_THAT(t.encode("ab", true, false), ElementsAre(1, sp_ab));
  EXPECT_THAT(t.encode("ba", false, false), ElementsAre(259, b, a));
  // "日" is not a piece: its three bytes.
  EXPECT_THAT(t.encode("日", false, false), ElementsAre(259, 3 + 0xE6, 3 + 0x97, 3 + 0xA5));
  // llama.cpp's detokenize drops the prefix space only when no BOS was removed first.
  EXPECT_EQ(t.decode(t.encode("ab 日", false, false), false, false), "ab 日");
  EXPECT_EQ(t.decode(t.encode("ab 日", true, false), true, false), " ab 日");
}

TEST(TextTokenizer, SentencePieceWithoutAByteTokenIsAClearError) {
  Vocab v = small_spm();
  v.tokens[3 + 0xE6] = "<0xE6-missing>";
  v.types[3 + 0xE6] = 1;
  const auto loaded = load(v);
  EXPECT_THROW(
      {
        try {
          loaded->tokenizer.encode("日", false, false);
        } catch (const TokenizerError& error) {
          EXPECT_THAT(std::string(error.what()), HasSubstr("no byte token <0xE6>"));
          throw;
        }
      },
      TokenizerError);
}

TEST(TextTokenizer, StreamDecoderNeverSplitsACharacter) {
  const auto loaded = load(small_spm());
  StreamDecoder stream(loaded->tokenizer);
  EXPECT_EQ(stream.feed(259 + 1), " a");  // "▁a"
  EXPECT_EQ(stream.feed(3 + 0xE6), "");
  EXPECT_EQ(stream.feed(3 + 0x97), "");
  EXPECT_EQ(stream.feed(3 + 0xA5), "日");
  EXPECT_EQ(stream.feed(3 + 0xE6), "");
  EXPECT_EQ(stream.feed(3 + 'x'), "\xE6x");  // a byte that can no longer complete is passed on
  EXPECT_EQ(stream.feed(3 + 0xF0), "");
  EXPECT_EQ(stream.flush(), "\xF0");
}

TEST(TextTokenizer, PreTokenizerRefusesAPatternThatDoesNotCompile) {
  const std::string_view patterns[] = {"(unclosed"};
  EXPECT_THROW(PreTokenizer{patterns}, std::invalid_argument);
}

TEST(TextChatTemplate, UnknownNamesAndTemplatesNameTheOptions) {
  try {
    ChatTemplate::from_name_or_jinja("{{ messages }}");
    FAIL() << "no error";
  } catch (const ChatTemplateError& error) {
    EXPECT_THAT(std::string(error.what()), AllOf(HasSubstr("not one llama.cpp recognises"), HasSubstr("chatml"), HasSubstr("'raw'")));
  }
  // Recognised, but not a family archreg renders.
  EXPECT_THROW(ChatTemplate::from_name_or_jinja("<|START_OF_TURN_TOKEN|><|USER_TOKEN|>"), ChatTemplateError);
  const auto loaded = load(small_bpe());
  EXPECT_THAT(
      [&] {
        try {
          ChatTemplate::from_gguf(loaded->reader);
        } catch (const ChatTemplateError& error) {
          return std::string(error.what());
        }
        return std::string();
      }(),
      AllOf(HasSubstr("tokenizer.chat_template"), HasSubstr("missing"), HasSubstr("--chat-template")));
  const ChatTemplate raw = ChatTemplate::from_gguf(loaded->reader, "raw");
  const ChatMessage messages[] = {{"user", "Once"}, {"assistant", " upon"}};
  EXPECT_EQ(raw.apply(messages, true), "Once upon");
  const ChatTemplate chatml = ChatTemplate::from_gguf(loaded->reader, "chatml");
  EXPECT_EQ(chatml.apply(messages, true),
            "<|im_start|>user\nOnce<|im_end|>\n<|im_start|>assistant\n upon<|im_end|>\n<|im_start|>assistant\n");
}

}  // namespace
}  // namespace archreg::text
