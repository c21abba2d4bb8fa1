// Builds a Graph by letting the model's plugin call the host's blocks (archreg_graph_api_v2).
#pragma once

#include <stdexcept>
#include <string>

#include "runtime/graph.hpp"
#include "runtime/model.hpp"

namespace archreg::runtime {

// A forward pass that could not be built: the plugin's first error, or a broken contract.
class BuildError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The plugin's graph for a batch of n_tokens; logits for every row or only the last.
Graph build_graph(const Model& model, int32_t n_tokens, bool all_logits);

}  // namespace archreg::runtime
