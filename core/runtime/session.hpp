// A model being run: its backend, KV cache and graphs (one per batch size, built by the
// plugin once and reused). eval() appends tokens to the sequence and returns their logits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/graph.hpp"
#include "runtime/model.hpp"

namespace archreg::runtime {

// A request the session refuses before doing any work (exit status 1 in the CLI).
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct SessionOptions {
  // "cpu", "cuda", or "auto": CUDA when this build has it and a GPU is present, else the CPU.
  std::string backend = "auto";
  int threads = 0;          // 0: every core (CPU backend)
  int64_t n_ctx = 0;        // 0: min(the model's training context, 4096)
  int32_t n_batch = 512;    // tokens per prefill graph
  bool all_logits = false;  // logits of every position, not only the last
};

class Session {
 public:
  Session(const Model& model, SessionOptions options);
  ~Session();

  // The context size options give for this model.
  static int64_t context_size(const Model& model, const SessionOptions& options);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_past() const { return n_past_; }
  int64_t n_vocab() const { return n_vocab_; }
  const Backend& backend() const { return *backend_; }
  uint64_t kv_bytes() const { return backend_->kv_bytes(); }

  // Evaluates tokens after the ones already seen. Returns the logits: [n_vocab] of the last
  // token, or [tokens.size(), n_vocab] with all_logits. Throws RunError for ids out of range
  // or a sequence longer than the context, before computing anything.
  std::span<const float> eval(std::span<const int32_t> tokens);
  // Forgets the sequence (the KV cache is overwritten from position 0).
  void reset() { n_past_ = 0; }
  // Keeps only the first n positions (n <= n_past()): the next eval continues from there.
  void rewind(int64_t n) { n_past_ = std::min(n_past_, std::max<int64_t>(n, 0)); }

 private:
  Graph& graph_for(int32_t n_tokens);

  const Model& model_;
  SessionOptions options_;
  std::unique_ptr<Backend> backend_;
  std::map<int32_t, Graph> graphs_;
  int64_t n_ctx_ = 0;
  int64_t n_past_ = 0;
  int64_t n_vocab_ = 0;
  int64_t n_embd_vocab_rows_ = 0;
  bool kv_ready_ = false;
  std::vector<float> logits_;
};

}  // namespace archreg::runtime
