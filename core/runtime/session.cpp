#include "runtime/session.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "runtime/builder.hpp"

namespace archreg::runtime {
namespace {

std::unique_ptr<Backend> make_backend(const SessionOptions& options) {
  if (options.backend == "cpu") return make_cpu_backend(options.threads);
  const std::optional<std::string> no_cuda = cuda_unavailable();
  if (options.backend == "cuda") {
    if (no_cuda) throw RunError(fmt::format("the CUDA backend cannot run: {}", *no_cuda));
    return make_cuda_backend();
  }
  if (options.backend != "auto") throw RunError(fmt::format("unknown backend '{}' (expected auto, cpu or cuda)", options.backend));
  return no_cuda ? make_cpu_backend(options.threads) : make_cuda_backend();
}

}  // namespace

Session::Session(const Model& model, SessionOptions options) : model_(model), options_(options) {
  backend_ = make_backend(options);
  backend_->place(model.storages());
  n_ctx_ = context_size(model, options);
  if (n_ctx_ <= 0) throw RunError(fmt::format("context size {} is not positive", n_ctx_));
  if (options_.n_batch <= 0) options_.n_batch = 512;
  // Build the decode graph now: an unsupported file fails here, before the first token.
  Graph& decode = graph_for(1);
  n_vocab_ = decode.logits->ne[0];
  if (const TensorView* table = model.weight("token_embd.weight", -1)) n_embd_vocab_rows_ = static_cast<int64_t>(table->ne[1]);
}

Session::~Session() = default;

int64_t Session::context_size(const Model& model, const SessionOptions& options) {
  if (options.n_ctx > 0) return options.n_ctx;
  const int64_t trained = model.hparam_int("n_ctx_train", -1).value_or(4096);
  return std::min<int64_t>(trained > 0 ? trained : 4096, 4096);
}

Graph& Session::graph_for(int32_t n_tokens) {
  auto it = graphs_.find(n_tokens);
  if (it != graphs_.end()) return it->second;
  Graph graph = build_graph(model_, n_tokens, options_.all_logits);
  for (const auto& node : graph.nodes) {
    if (auto why = backend_->unsupported(*node)) {
      throw BuildError(fmt::format("{}: the {} backend cannot run this model: {}", model_.reader().path(), backend_->name(), *why));
    }
  }
  if (!kv_ready_) {
    backend_->allocate_kv(graph.kv_widths, n_ctx_);
    kv_ready_ = true;
  }
  backend_->prepare(graph);
  return graphs_.emplace(n_tokens, std::move(graph)).first->second;
}

std::span<const float> Session::eval(std::span<const int32_t> tokens) {
  if (tokens.empty()) throw RunError("no tokens to evaluate");
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || (n_embd_vocab_rows_ > 0 && tokens[i] >= n_embd_vocab_rows_)) {
      throw RunError(fmt::format("token id {} at position {} is out of range: the vocabulary has ids 0..{}", tokens[i],
                                 n_past_ + static_cast<int64_t>(i), n_embd_vocab_rows_ - 1));
    }
  }
  if (n_past_ + static_cast<int64_t>(tokens.size()) > n_ctx_) {
    throw RunError(
        fmt::format("{} tokens after {} already in the sequence exceed the context of {} (use --ctx)", tokens.size(), n_past_, n_ctx_));
  }
  const size_t rows = options_.all_logits ? tokens.size() : 1;
  logits_.assign(rows * static_cast<size_t>(n_vocab_), 0.0f);
  size_t done = 0;
  while (done < tokens.size()) {
    const int32_t n = static_cast<int32_t>(std::min<size_t>(tokens.size() - done, static_cast<size_t>(options_.n_batch)));
    Graph& graph = graph_for(n);
    const Batch batch{tokens.subspan(done, static_cast<size_t>(n)), n_past_};
    std::span<float> out = options_.all_logits ? std::span<float>(logits_).subspan(done * static_cast<size_t>(n_vocab_),
                                                                                   static_cast<size_t>(n) * static_cast<size_t>(n_vocab_))
                                               : std::span<float>(logits_);
    backend_->compute(graph, batch, out);
    n_past_ += n;
    done += static_cast<size_t>(n);
  }
  return logits_;
}

}  // namespace archreg::runtime
