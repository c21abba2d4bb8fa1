// The backend interface: what runs a graph. The CPU backend (the reference, and the runtime
// where there is no GPU) and the CUDA backend implement it; the session asks a backend whether
// it supports each node before the first token and refuses the model, naming what is missing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "runtime/graph.hpp"

namespace archreg::runtime {

// What one run of a graph reads: the batch, and where it sits in the sequence.
struct Batch {
  std::span<const int32_t> tokens;
  int64_t n_past = 0;  // positions already in the KV cache
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // nullopt when the node can run here, else why not ("Q2_K matmul").
  virtual std::optional<std::string> unsupported(const Node& node) const = 0;
  // Places the model's storages, once, before any graph: where each lives and how it is paged,
  // decided by its role (an embedding table, matrices, experts, small vectors).
  virtual void place(std::span<const std::unique_ptr<Storage>> storages) = 0;
  // Prepares a graph (buffers, per-node scratch) before its first run.
  virtual void prepare(Graph& graph) = 0;
  // Allocates the KV cache: per layer, widths of K and V per position, for n_ctx positions.
  virtual void allocate_kv(std::span<const std::array<int64_t, 2>> widths, int64_t n_ctx) = 0;
  virtual uint64_t kv_bytes() const = 0;
  // Runs a prepared graph; writes the logits node's values to `logits`.
  virtual void compute(const Graph& graph, const Batch& batch, std::span<float> logits) = 0;
};

std::unique_ptr<Backend> make_cpu_backend(int n_threads);

// The CUDA backend on the first visible GPU (CUDA_VISIBLE_DEVICES picks another). Throws when
// cuda_unavailable() says why it cannot run.
std::unique_ptr<Backend> make_cuda_backend();
// nullopt when make_cuda_backend() can run, else why not ("this archreg was built without
// CUDA", "no CUDA device", the driver's error).
std::optional<std::string> cuda_unavailable();

}  // namespace archreg::runtime
