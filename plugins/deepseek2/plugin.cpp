// The deepseek2 plugin: DeepSeek-V2/V3-style MLA + MoE, and GLM-4.7-Flash (converted as deepseek2).
#include <cstdio>

#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace deepseek2 {
void forward(const archreg::plugin::Graph& g);  // forward.cpp
}

namespace {

// Routing with a per-expert selection bias (exp_probs_b, DeepSeek-V3's "noaux_tc", also
// GLM-4.7-Flash) is sigmoid gating. A file that has the bias but no expert_gating_func key is
// run by llama.cpp with its default (softmax, unless it recognises the model by its sizes): the
// model then runs, silently degraded. A spec cannot tie a key to a tensor's presence; this can.
int check_gating(const archreg_host_v2* host, archreg_check_context* context, const char* arch) {
  int64_t layers = 0;
  int64_t dense_lead = 0;
  if (host->hparam(context, "n_layer", &layers) == 0) return 0;  // reported by the spec already
  host->hparam(context, "n_dense_lead", &dense_lead);
  char key[96];
  std::snprintf(key, sizeof key, "%s.expert_gating_func", arch);
  if (host->has_key(context, key) != 0) return 0;
  for (int64_t layer = dense_lead; layer < layers; ++layer) {
    char tensor[64];
    std::snprintf(tensor, sizeof tensor, "blk.%lld.exp_probs_b.bias", static_cast<long long>(layer));
    if (host->has_tensor(context, tensor) != 0) {
      host->report(context, "missing_hparam", key,
                   "the experts are routed with a selection bias (exp_probs_b), which needs sigmoid gating; without this key "
                   "loaders fall back to softmax and the model runs silently degraded: set it to 2 (sigmoid)");
      return 0;
    }
  }
  return 0;
}

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const archreg::plugin::Graph& g) { deepseek2::forward(g); });
}

}  // namespace

// MLA has no separate Q/K/V projections, so gate+up experts is the only fusable group.
ARCHREG_DEFINE_PLUGIN("deepseek2", check_gating, build, "ffn_gate_up_exps")
