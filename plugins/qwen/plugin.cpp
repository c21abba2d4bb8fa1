// The qwen plugin: Qwen2-MoE (routed experts plus a sigmoid-gated shared expert, Q/K/V biases)
// and Qwen3-MoE (routed experts, per-head Q/K norms). As llama.cpp's src/models/qwen2moe.cpp and
// qwen3moe.cpp: NeoX RoPE, softmax routing.
#include <cstring>

#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char* arch) {
  const bool qwen3 = std::strcmp(arch, "qwen3moe") == 0;
  return archreg::plugin::guarded_build(api, graph, [qwen3](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const float eps = g.hparam_f("rms_eps", 1e-6);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NEOX, eps);
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(x, archreg::plugin::self_attention(g, il, h, attn));
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      archreg_moe_options o{};
      o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
      o.gating = ARCHREG_GATING_SOFTMAX;
      o.normalize = qwen3 ? 1 : 0;
      Tensor ffn = archreg::plugin::routed_experts(g, il, h, o);
      if (Tensor shared_gate = g.weight("ffn_gate_inp_shexp.weight", il)) {
        Tensor shared = g.ffn(h, archreg::plugin::ffn_weights(g, il, "_shexp"));
        ffn = g.add(ffn, g.mul(shared, g.sigmoid(g.matmul(shared_gate, h))));
      }
      x = g.named(g.add(x, g.named(ffn, "ffn_out", il)), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("qwen", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
