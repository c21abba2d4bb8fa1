// The deepseek2 forward pass, as llama.cpp's src/models/deepseek2.cpp: multi-head latent
// attention (MLA) — queries through an optional low-rank Q projection, keys and values through
// one compressed latent shared by all heads plus a shared RoPE key — then dense leading layers
// and routed + shared experts. Both stored MLA forms run: split attn_k_b/attn_v_b (the
// absorbed form: attention over the latent, then each head's value projection) and the combined
// attn_kv_b (keys and values decompressed per head first).
#include <cmath>

#include "plugin/graph.hpp"

namespace deepseek2 {

using archreg::plugin::Graph;
using archreg::plugin::Tensor;

void forward(const Graph& g) {
  const int32_t n_layer = static_cast<int32_t>(g.hparam("n_layer"));
  const int64_t n_dense_lead = g.hparam("n_dense_lead");
  const float eps = g.hparam_f("rms_eps", 1e-6);
  const int64_t n_head = g.hparam("n_head", 0);
  const int64_t n_rot = g.hparam("n_rot");
  const int64_t head_k = g.hparam("head_dim_k_mla");
  const int64_t head_v = g.hparam("head_dim_v_mla");
  const int64_t nope = head_k - n_rot;
  const int64_t rank = g.hparam("n_lora_kv");
  const int32_t n = g.n_tokens();

  archreg_rope_options rope = archreg::plugin::standard_rope(g, ARCHREG_ROPE_NORMAL, static_cast<int32_t>(n_rot));
  // YaRN is pre-scaled as llama.cpp does: the attention scale carries mscale^2 and the rotation
  // cancels RoPE's own magnitude correction.
  const float freq_scale = rope.freq_scale != 0 ? rope.freq_scale : 1.0f;
  const float mscale = 1.0f + g.hparam_f("rope_yarn_log_mul", 0.0) * std::log(1.0f / freq_scale);
  const float kq_scale = mscale * mscale / std::sqrt(static_cast<float>(head_k));
  rope.attn_factor = 1.0f / (1.0f + 0.1f * std::log(1.0f / freq_scale));

  archreg_moe_options moe = archreg::plugin::moe_options_from_keys(g, ARCHREG_GATING_SOFTMAX);
  moe.n_group = static_cast<int32_t>(g.hparam("n_expert_groups"));
  moe.n_group_used = static_cast<int32_t>(g.hparam("n_expert_groups_used"));
  Tensor x = g.embed(g.require("token_embd.weight"));
  for (int32_t il = 0; il < n_layer; ++il) {
    Tensor h = g.rms_norm(x, g.require("attn_norm.weight", il), eps);
    Tensor q = nullptr;
    if (Tensor q_a = g.weight("attn_q_a.weight", il)) {
      q = g.rms_norm(g.matmul(q_a, h), g.require("attn_q_a_norm.weight", il), eps);
      q = g.matmul(g.require("attn_q_b.weight", il), q);
    } else {
      q = g.matmul(g.require("attn_q.weight", il), h);
    }
    q = g.reshape(q, head_k, n_head, n);
    Tensor q_nope = g.slice(q, 0, nope);
    Tensor q_pe = g.rope(g.slice(q, nope, n_rot), rope);

    Tensor kv_pe = g.matmul(g.require("attn_kv_a_mqa.weight", il), h);
    Tensor latent = g.rms_norm(g.slice(kv_pe, 0, rank), g.require("attn_kv_a_norm.weight", il), eps);
    Tensor k_pe = g.rope(g.reshape(g.slice(kv_pe, rank, n_rot), n_rot, 1, n), rope);

    archreg_attention_options attention{};
    attention.scale = kq_scale;
    Tensor a = nullptr;
    if (Tensor k_b = g.weight("attn_k_b.weight", il)) {
      Tensor q_latent = g.matmul(k_b, q_nope);  // per head: [rank, n_head, n]
      Tensor latent_3d = g.reshape(latent, rank, 1, n);
      a = g.attention(il, g.concat(q_latent, q_pe), g.concat(latent_3d, k_pe), latent_3d, attention);
      a = g.matmul(g.require("attn_v_b.weight", il), a);  // per head: [head_v, n_head, n]
    } else {
      Tensor kv = g.reshape(g.matmul(g.require("attn_kv_b.weight", il), latent), nope + head_v, n_head, n);
      Tensor k = g.concat(g.slice(kv, 0, nope), k_pe);
      a = g.attention(il, g.concat(q_nope, q_pe), k, g.slice(kv, nope, head_v), attention);
    }
    a = g.matmul(g.require("attn_output.weight", il), g.reshape(a, head_v * n_head, n));
    x = g.add(x, g.named(a, "attn_out", il));

    h = g.rms_norm(x, g.require("ffn_norm.weight", il), eps);
    Tensor ffn = archreg::plugin::dense_lead_or_experts(g, il, h, n_dense_lead, moe);
    x = g.named(g.add(x, g.named(ffn, "ffn_out", il)), "l_out", il);
  }
  archreg::plugin::standard_logits(g, x, eps);
}

}  // namespace deepseek2
