// The ernie plugin: ERNIE 4.5 MoE. As llama.cpp's src/models/ernie4-5-moe.cpp: RMS norm ->
// attention (optional Q/K/V and output biases, LLaMA-style RoPE) -> residual -> RMS norm -> a
// SwiGLU FFN in the leading dense layers, else experts chosen by softmax probabilities plus the
// selection bias exp_probs_b, weighted by their normalised probabilities, plus the shared expert
// -> residual. (The spec refuses interleave_moe_layer_step != 1, so MoE layers are exactly the
// layers from leading_dense_block_count on, as llama.cpp's loader and graph then agree.)
#include "plugin/export.hpp"
#include "plugin/graph.hpp"

namespace {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

int build(const archreg_graph_api_v2* api, archreg_graph* graph, const char*) {
  return archreg::plugin::guarded_build(api, graph, [](const Graph& g) {
    const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
    const int64_t n_dense_lead = g.hparam("n_dense_lead");
    const float eps = g.hparam_f("rms_eps", 1e-5);
    Tensor x = g.embed(g.require("token_embd.weight"));
    for (int32_t il = 0; il < n_layer; ++il) {
      archreg::plugin::AttentionConfig attn = archreg::plugin::standard_attention(g, il, ARCHREG_ROPE_NORMAL, eps);
      Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
      x = g.add(archreg::plugin::self_attention(g, il, h, attn), x);
      h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
      Tensor ffn = nullptr;
      if (il < n_dense_lead) {
        ffn = g.ffn(h, archreg::plugin::ffn_weights(g, il));
      } else {
        archreg_moe_options o{};
        o.n_expert_used = static_cast<int32_t>(g.hparam("n_expert_used"));
        o.gating = ARCHREG_GATING_SOFTMAX;
        o.normalize = 1;
        ffn = archreg::plugin::routed_experts(g, il, h, o);
        if (g.weight("ffn_up_shexp.weight", il) != nullptr) ffn = g.add(ffn, g.ffn(h, archreg::plugin::ffn_weights(g, il, "_shexp")));
      }
      x = g.named(g.add(g.named(ffn, "ffn_out", il), x), "l_out", il);
    }
    archreg::plugin::standard_logits(g, x, eps);
  });
}

}  // namespace

ARCHREG_DEFINE_PLUGIN("ernie", nullptr, build, "attn_qkv", "ffn_gate_up_exps")
