// The tokenizer a GGUF file describes in its tokenizer.ggml.* metadata, giving the same token
// ids as llama.cpp for the same file and text.
//
//   auto tokenizer = text::Tokenizer::from_gguf(reader);
//   std::vector<int32_t> ids = tokenizer.encode(prompt, /*add_special=*/true, /*parse_special=*/false);
//   text::StreamDecoder out(tokenizer);
//   for (int32_t id : generated) { if (tokenizer.is_eog(id)) break; std::fputs(out.feed(id).c_str(), stdout); }
//   std::fputs(out.flush().c_str(), stdout);
//
// Supported: tokenizer.ggml.model "gpt2" (byte-level BPE; the pre-tokenizer named by
// tokenizer.ggml.pre) and SentencePiece BPE with byte fallback (format_names.cpp has the names).
// Other models are refused when loading, naming the key and the value.
//
// Invalid UTF-8 in text is not an error, as in llama.cpp: byte-level BPE tokenizes each byte
// that does not start a complete sequence as U+FFFD; SentencePiece falls back to byte tokens.
// The one exception is a four-byte sequence past U+10FFFF, on which llama.cpp throws from inside
// its tokenize call: encode() throws TokenizerError naming the byte offset instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "text/format_names.hpp"

namespace archreg::gguf {
class Reader;
}

namespace archreg::text {

// A vocabulary that cannot be used, or text that cannot be tokenized. what() names the file,
// the key or token, and what is wrong.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Token attributes, as llama.cpp derives them from tokenizer.ggml.token_type.
enum TokenAttr : uint16_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1 << 0,
  kAttrUnused = 1 << 1,
  kAttrNormal = 1 << 2,
  kAttrControl = 1 << 3,
  kAttrUserDefined = 1 << 4,
  kAttrByte = 1 << 5,
};

inline constexpr int32_t kNoToken = -1;

class Tokenizer {
 public:
  // Reads tokenizer.ggml.* from `reader`; nothing refers to the reader afterwards.
  static Tokenizer from_gguf(const gguf::Reader& reader);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // llama.cpp's tokenize: `add_special` adds BOS/EOS as the metadata says; `parse_special` turns the
  // text of control tokens into those tokens (user-defined tokens always are, as in llama.cpp).
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // llama.cpp's token-to-piece (lstrip 0): the bytes a token stands for. Control and unknown tokens
  // give "" unless `special`. Throws TokenizerError for an id outside the vocabulary.
  std::string piece(int32_t id, bool special) const;
  // llama.cpp's detokenize: pieces joined, the leading space SentencePiece adds removed, BOS/EOS
  // dropped when `remove_special`, and the vocabulary's clean-up of spaces applied.
  std::string decode(std::span<const int32_t> ids, bool remove_special, bool unparse_special) const;

  size_t n_vocab() const;
  std::string_view token_text(int32_t id) const;  // as stored in the file
  uint16_t attributes(int32_t id) const;          // TokenAttr bits
  float score(int32_t id) const;

  bool is_eog(int32_t id) const;
  std::span<const int32_t> eog_ids() const;  // ascending
  int32_t bos() const;                       // kNoToken when there is none
  int32_t eos() const;
  int32_t eot() const;
  int32_t eom() const;
  int32_t unk() const;
  int32_t pad() const;
  bool adds_bos() const;
  bool adds_eos() const;
  bool adds_space_prefix() const;

  VocabKind kind() const;
  std::string_view model_name() const;     // tokenizer.ggml.model
  std::string_view pre_tokenizer() const;  // tokenizer.ggml.pre as used ("default" when absent)
  // Things llama.cpp would warn about (a missing pre-tokenizer, an out-of-range special id...).
  const std::vector<std::string>& warnings() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns generated ids into text as it streams: each call returns only complete UTF-8
// characters, holding back the start of a character whose remaining bytes are still to come,
// so a terminal never receives half a character. Bytes that can never form a character are
// passed through when the next byte shows it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool special = false);
  std::string feed(int32_t id);
  // Whatever is held back (an incomplete character at the end of the stream).
  std::string flush();

 private:
  const Tokenizer* tokenizer_;
  bool special_;
  std::string pending_;
};

}  // namespace archreg::text
