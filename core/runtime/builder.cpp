#include "runtime/builder.hpp"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>

// The host-side state of one build; opaque to plugins.
struct archreg_graph {
  archreg::runtime::Graph* graph = nullptr;
  const archreg::runtime::Model* model = nullptr;
  std::string error;
  std::vector<std::unique_ptr<std::string>> strings;
  std::map<const archreg::runtime::TensorView*, const archreg_tensor*> weights;
};

namespace archreg::runtime {
namespace {

using Op = Node::Op;

std::string shape_text(const Node* n) {
  return n->is_weight() ? fmt::format("{} [{}, {}, {}]", n->weight->name, n->ne[0], n->ne[1], n->ne[2])
                        : fmt::format("[{}, {}, {}, {}]", n->ne[0], n->ne[1], n->ne[2], n->ne[3]);
}

// Records the first failure; every later block then returns nullptr.
const Node* fail(archreg_graph* g, std::string message) {
  if (g->error.empty()) g->error = std::move(message);
  return nullptr;
}

bool failed(archreg_graph* g) {
  return !g->error.empty();
}

Node* add_node(archreg_graph* g, Op op, std::array<int64_t, 4> ne, std::initializer_list<const Node*> src) {
  // A weight with a per-matrix scale is read only by the blocks that apply it (matmul here; ffn
  // and moe hold their weights apart from src, and the backend applies theirs).
  for (const Node* s : src) {
    if (op != Op::kMatmul && s != nullptr && s->is_weight() && s->weight->scale != nullptr && g->error.empty()) {
      g->error = fmt::format("'{}' carries a per-matrix scale (a .scale sidecar), which only matmul, ffn and moe apply", s->weight->name);
    }
  }
  auto node = std::make_unique<Node>();
  node->op = op;
  node->ne = ne;
  node->id = static_cast<int32_t>(g->graph->nodes.size());
  size_t i = 0;
  for (const Node* s : src) node->src[i++] = s;
  g->graph->nodes.push_back(std::move(node));
  return g->graph->nodes.back().get();
}

bool is_activation(const Node* n) {
  return n != nullptr && !n->is_weight();
}

// A weight read as rows of floats (norm scales, biases, sinks). Whether the backend has a kernel
// for its type is the backend's question (Backend::unsupported, asked for every node).
bool readable(const Node* w) {
  return w != nullptr && w->is_weight();
}

// Options structs may come from an older plugin (smaller `size`): copy what it has, zero the rest.
template <class T>
T options_of(const T* given) {
  T out{};
  if (given != nullptr) std::memcpy(&out, given, std::min<size_t>(given->size, sizeof(T)));
  out.size = sizeof(T);
  return out;
}

int hparam_int(archreg_graph* g, const char* name, int32_t layer, int64_t* value) {
  if (name == nullptr || value == nullptr) return 0;
  const auto v = g->model->hparam_int(name, layer);
  if (!v) return 0;
  *value = *v;
  return 1;
}

int hparam_float(archreg_graph* g, const char* name, int32_t layer, double* value) {
  if (name == nullptr || value == nullptr) return 0;
  const auto v = g->model->hparam_float(name, layer);
  if (!v) return 0;
  *value = *v;
  return 1;
}

int hparam_string(archreg_graph* g, const char* name, const char** value) {
  if (name == nullptr || value == nullptr) return 0;
  auto v = g->model->hparam_string(name);
  if (!v) return 0;
  g->strings.push_back(std::make_unique<std::string>(std::move(*v)));
  *value = g->strings.back()->c_str();
  return 1;
}

const archreg_tensor* weight(archreg_graph* g, const char* name, int32_t layer) {
  if (name == nullptr || failed(g)) return nullptr;
  if (g->model->layer_absent(layer)) {
    return fail(g, fmt::format("it needs layer {} ({}), which the file leaves out (the spec's optional_layers allow a file without "
                               "it, e.g. an MTP-only file, but this forward pass cannot run one)",
                               layer, name));
  }
  const TensorView* view = g->model->weight(name, layer);
  if (view == nullptr) return nullptr;
  if (view->has_unknown_sidecar) {
    return fail(g, fmt::format("'{}' carries a sidecar (the spec's sidecars:) other than scale and input_scale, which this "
                               "runtime has no meaning for: refusing rather than computing a different model",
                               view->name));
  }
  if (const auto it = g->weights.find(view); it != g->weights.end()) return it->second;
  Node* node = add_node(g, Op::kWeight,
                        {static_cast<int64_t>(view->ne[0]), static_cast<int64_t>(view->ne[1]), static_cast<int64_t>(view->ne[2]),
                         static_cast<int64_t>(view->ne[3])},
                        {});
  node->weight = view;
  node->name = view->name;
  g->weights.emplace(view, node);
  return node;
}

int32_t n_tokens(archreg_graph* g) {
  return g->graph->n_tokens;
}

const archreg_tensor* embed(archreg_graph* g, const archreg_tensor* table) {
  if (failed(g)) return nullptr;
  if (table == nullptr || !table->is_weight() || table->ne[2] != 1) return fail(g, "embed: the table must be a 2-D weight");
  return add_node(g, Op::kEmbed, {table->ne[0], g->graph->n_tokens, 1, 1}, {table});
}

const archreg_tensor* norm(archreg_graph* g, const archreg_tensor* x, const archreg_tensor* w, const archreg_tensor* b,
                           const archreg_norm_options* o) {
  if (failed(g)) return nullptr;
  if (!is_activation(x)) return fail(g, "norm: no input");
  for (const Node* p : {w, b}) {
    if (p != nullptr && (!readable(p) || p->n_elements() != x->ne[0])) {
      return fail(g, fmt::format("norm: {} does not match rows of {} values", shape_text(p), x->ne[0]));
    }
  }
  Node* node = add_node(g, Op::kNorm, x->ne, {x, w, b});
  node->norm = options_of(o);
  if (node->norm.kind > ARCHREG_NORM_LAYER) return fail(g, fmt::format("norm: unknown kind {}", node->norm.kind));
  return node;
}

const archreg_tensor* scale(archreg_graph* g, const archreg_tensor* x, float factor);

const archreg_tensor* matmul(archreg_graph* g, const archreg_tensor* w, const archreg_tensor* x) {
  if (failed(g)) return nullptr;
  if (w == nullptr || !w->is_weight() || !is_activation(x)) return fail(g, "matmul: needs a weight and an activation");
  if (w->ne[0] != x->ne[0]) return fail(g, fmt::format("matmul: {} cannot multiply {}: inner sizes differ", shape_text(w), shape_text(x)));
  if (w->ne[2] > 1) {
    if (x->ne[1] != w->ne[2])
      return fail(g, fmt::format("matmul per head: {} needs {} heads in {}", shape_text(w), w->ne[2], shape_text(x)));
    if (w->weight->scale != nullptr) return fail(g, fmt::format("matmul per head: '{}' has a per-matrix scale", w->weight->name));
    return add_node(g, Op::kMatmul, {w->ne[1], x->ne[1], x->ne[2], 1}, {w, x});
  }
  const archreg_tensor* product = add_node(g, Op::kMatmul, {w->ne[1], x->ne[1], x->ne[2], x->ne[3]}, {w, x});
  // llama.cpp's build_lora_mm: the product times the weight's scale, before any bias.
  if (const TensorView* s = w->weight->scale) return scale(g, product, *reinterpret_cast<const float*>(s->data()));
  return product;
}

const archreg_tensor* binary(archreg_graph* g, Op op, const char* what, const archreg_tensor* a, const archreg_tensor* b) {
  if (failed(g)) return nullptr;
  if (!is_activation(a) || b == nullptr) return fail(g, fmt::format("{}: missing operand", what));
  if (b->is_weight() && !readable(b)) return fail(g, fmt::format("{}: cannot read {}", what, shape_text(b)));
  const bool row_broadcast = b->ne[0] == a->ne[0] && (b->rows() == 1 || b->rows() == a->rows());
  const bool column_broadcast = b->ne[0] == 1 && b->rows() == a->rows() && !b->is_weight();
  if (!row_broadcast && !column_broadcast)
    return fail(g, fmt::format("{}: {} does not broadcast to {}", what, shape_text(b), shape_text(a)));
  return add_node(g, op, a->ne, {a, b});
}

const archreg_tensor* add(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b) {
  return binary(g, Op::kAdd, "add", a, b);
}
const archreg_tensor* mul(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b) {
  return binary(g, Op::kMul, "mul", a, b);
}

const archreg_tensor* scale(archreg_graph* g, const archreg_tensor* x, float factor) {
  if (failed(g)) return nullptr;
  if (!is_activation(x)) return fail(g, "scale: no input");
  Node* node = add_node(g, Op::kScale, x->ne, {x});
  node->factor = factor;
  return node;
}

const archreg_tensor* sigmoid(archreg_graph* g, const archreg_tensor* x) {
  if (failed(g)) return nullptr;
  if (!is_activation(x)) return fail(g, "sigmoid: no input");
  return add_node(g, Op::kSigmoid, x->ne, {x});
}

const archreg_tensor* reshape(archreg_graph* g, const archreg_tensor* x, int64_t ne0, int64_t ne1, int64_t ne2) {
  if (failed(g)) return nullptr;
  if (!is_activation(x)) return fail(g, "reshape: no input");
  if (ne0 <= 0 || ne1 <= 0 || ne2 <= 0 || ne0 * ne1 * ne2 != x->n_elements()) {
    return fail(g, fmt::format("reshape: {} has {} values, not {} x {} x {}", shape_text(x), x->n_elements(), ne0, ne1, ne2));
  }
  return add_node(g, Op::kReshape, {ne0, ne1, ne2, 1}, {x});
}

const archreg_tensor* slice(archreg_graph* g, const archreg_tensor* x, int64_t begin, int64_t count) {
  if (failed(g)) return nullptr;
  if (!is_activation(x) || begin < 0 || count <= 0 || begin + count > x->ne[0]) {
    return fail(g, fmt::format("slice: [{}, {}) is not within rows of {}", begin, begin + count, x != nullptr ? x->ne[0] : 0));
  }
  Node* node = add_node(g, Op::kSlice, {count, x->ne[1], x->ne[2], x->ne[3]}, {x});
  node->begin = begin;
  return node;
}

const archreg_tensor* concat(archreg_graph* g, const archreg_tensor* a, const archreg_tensor* b) {
  if (failed(g)) return nullptr;
  if (!is_activation(a) || !is_activation(b) || a->ne[2] != b->ne[2] || a->ne[3] != b->ne[3] || (b->ne[1] != a->ne[1] && b->ne[1] != 1)) {
    return fail(g, fmt::format("concat: {} and {} do not join along axis 0", a ? shape_text(a) : "?", b ? shape_text(b) : "?"));
  }
  return add_node(g, Op::kConcat, {a->ne[0] + b->ne[0], a->ne[1], a->ne[2], a->ne[3]}, {a, b});
}

const archreg_tensor* rope(archreg_graph* g, const archreg_tensor* x, const archreg_rope_options* o) {
  if (failed(g)) return nullptr;
  if (!is_activation(x) || x->ne[2] != g->graph->n_tokens) return fail(g, "rope: input must be [head_dim, n_head, n_tokens]");
  archreg_rope_options options = options_of(o);
  if (options.n_rot == 0) options.n_rot = static_cast<int32_t>(x->ne[0]);
  if (options.n_rot < 0 || options.n_rot > x->ne[0] || options.n_rot % 2 != 0)
    return fail(g, fmt::format("rope: n_rot {} for heads of {}", options.n_rot, x->ne[0]));
  if (options.mode != ARCHREG_ROPE_NORMAL && options.mode != ARCHREG_ROPE_NEOX)
    return fail(g, fmt::format("rope: unknown mode {}", options.mode));
  if (options.freq_factors != nullptr && (!readable(options.freq_factors) || options.freq_factors->n_elements() != options.n_rot / 2)) {
    return fail(g, "rope: freq_factors must hold n_rot/2 values");
  }
  Node* node = add_node(g, Op::kRope, x->ne, {x, options.freq_factors});
  node->rope = options;
  return node;
}

const archreg_tensor* attention(archreg_graph* g, int32_t layer, const archreg_tensor* q, const archreg_tensor* k, const archreg_tensor* v,
                                const archreg_attention_options* o) {
  if (failed(g)) return nullptr;
  if (!is_activation(q) || !is_activation(k) || !is_activation(v)) return fail(g, "attention: missing q, k or v");
  const int64_t t = g->graph->n_tokens;
  if (layer < 0 || layer >= g->model->n_layers()) return fail(g, fmt::format("attention: layer {} out of range", layer));
  if (q->ne[2] != t || k->ne[2] != t || v->ne[2] != t || q->ne[0] != k->ne[0] || k->ne[1] != v->ne[1] || k->ne[1] == 0 ||
      q->ne[1] % k->ne[1] != 0) {
    return fail(g, fmt::format("attention: q {}, k {}, v {} are not [dk, heads, t] / [dk, kv heads, t] / [dv, kv heads, t]", shape_text(q),
                               shape_text(k), shape_text(v)));
  }
  auto& widths = g->graph->kv_widths;
  if (widths.size() <= static_cast<size_t>(layer)) widths.resize(static_cast<size_t>(layer) + 1, {0, 0});
  if (widths[static_cast<size_t>(layer)][0] != 0) return fail(g, fmt::format("attention: layer {} used twice", layer));
  widths[static_cast<size_t>(layer)] = {k->ne[0] * k->ne[1], v->ne[0] * v->ne[1]};
  archreg_attention_options options = options_of(o);
  if (options.scale == 0) options.scale = 1.0f / std::sqrt(static_cast<float>(q->ne[0]));
  if (options.sinks != nullptr && (!readable(options.sinks) || options.sinks->n_elements() != q->ne[1])) {
    return fail(g, "attention: sinks must hold one value per head");
  }
  Node* node = add_node(g, Op::kAttention, {v->ne[0], q->ne[1], t, 1}, {q, k, v, options.sinks});
  node->attention = options;
  node->layer = layer;
  return node;
}

archreg_glu_options glu_of(const archreg_glu_options* o) {
  archreg_glu_options glu = options_of(o);
  if (glu.activation == ARCHREG_ACT_SWIGLU_OAI) {
    if (glu.alpha == 0) glu.alpha = 1.702f;
    if (glu.limit == 0) glu.limit = 7.0f;
  }
  return glu;
}

// Checks gate/up/down (2-D dense or 3-D experts) and their biases against n_embd.
bool check_ffn(archreg_graph* g, const char* what, const archreg_ffn_weights& w, int64_t n_embd) {
  const Node* up = w.up;
  const Node* gate = w.gate;
  const Node* down = w.down;
  if (up == nullptr || down == nullptr || !up->is_weight() || !down->is_weight() || (gate != nullptr && !gate->is_weight())) {
    fail(g, fmt::format("{}: up and down weights are required", what));
    return false;
  }
  const int64_t n_ff = up->ne[1];
  const int64_t experts = up->ne[2];
  if (up->ne[0] != n_embd || (gate != nullptr && gate->ne != up->ne) || down->ne[0] != n_ff || down->ne[1] != n_embd ||
      down->ne[2] != experts) {
    fail(g, fmt::format("{}: gate {}, up {}, down {} do not fit rows of {}", what, gate ? shape_text(gate) : "none", shape_text(up),
                        shape_text(down), n_embd));
    return false;
  }
  const std::array<std::pair<const Node*, int64_t>, 3> biases{{{w.gate_bias, n_ff}, {w.up_bias, n_ff}, {w.down_bias, n_embd}}};
  for (const auto& [bias, n] : biases) {
    if (bias != nullptr && (!readable(bias) || bias->ne[0] != n || bias->rows() != experts)) {
      fail(g, fmt::format("{}: bias {} does not fit", what, shape_text(bias)));
      return false;
    }
  }
  return true;
}

const archreg_tensor* ffn(archreg_graph* g, const archreg_tensor* x, const archreg_ffn_weights* weights, const archreg_glu_options* o) {
  if (failed(g)) return nullptr;
  if (!is_activation(x) || weights == nullptr) return fail(g, "ffn: no input");
  const archreg_ffn_weights w = options_of(weights);
  if (!check_ffn(g, "ffn", w, x->ne[0])) return nullptr;
  if (w.up->ne[2] != 1) return fail(g, "ffn: 3-D weights belong to moe");
  Node* node = add_node(g, Op::kFfn, {x->ne[0], x->rows(), 1, 1}, {x});
  node->ffn = {w.gate, w.up, w.down, w.gate_bias, w.up_bias, w.down_bias, nullptr, nullptr};
  node->glu = glu_of(o);
  return node;
}

const archreg_tensor* moe(archreg_graph* g, const archreg_tensor* x, const archreg_moe_weights* weights, const archreg_moe_options* o) {
  if (failed(g)) return nullptr;
  if (!is_activation(x) || weights == nullptr) return fail(g, "moe: no input");
  const archreg_moe_weights w = options_of(weights);
  const archreg_ffn_weights experts = options_of(&w.experts);
  if (!check_ffn(g, "moe", experts, x->ne[0])) return nullptr;
  const int64_t n_expert = experts.up->ne[2];
  const Node* router = w.router;
  if (router == nullptr || !router->is_weight() || router->ne[0] != x->ne[0] || router->ne[1] != n_expert) {
    return fail(g, fmt::format("moe: the router must be [{}, {}]", x->ne[0], n_expert));
  }
  for (const Node* bias : {static_cast<const Node*>(w.router_bias), static_cast<const Node*>(w.selection_bias)}) {
    if (bias != nullptr && (!readable(bias) || bias->n_elements() != n_expert))
      return fail(g, fmt::format("moe: bias {} must hold {} values", shape_text(bias), n_expert));
  }
  archreg_moe_options options = options_of(o);
  options.glu = glu_of(&options.glu);
  if (options.n_expert_used <= 0 || options.n_expert_used > n_expert)
    return fail(g, fmt::format("moe: {} experts used of {}", options.n_expert_used, n_expert));
  if (options.gating > ARCHREG_GATING_SOFTMAX_TOPK) return fail(g, fmt::format("moe: unknown gating {}", options.gating));
  if (options.n_group > 1 && (n_expert % options.n_group != 0 || options.n_group_used <= 0 || options.n_group_used > options.n_group)) {
    return fail(g, fmt::format("moe: {} experts do not split into {} groups of which {} are used", n_expert, options.n_group,
                               options.n_group_used));
  }
  if (options.weight_scale == 0) options.weight_scale = 1.0f;
  Node* node = add_node(g, Op::kMoe, {x->ne[0], x->rows(), 1, 1}, {x});
  node->ffn = {experts.gate, experts.up, experts.down, experts.gate_bias, experts.up_bias, experts.down_bias, router, w.router_bias};
  node->selection_bias = w.selection_bias;
  node->moe = options;
  return node;
}

const archreg_tensor* output_rows(archreg_graph* g, const archreg_tensor* x) {
  if (failed(g)) return nullptr;
  if (!is_activation(x) || x->rows() != g->graph->n_tokens) return fail(g, "output_rows: input must be [n, n_tokens]");
  return add_node(g, Op::kOutputRows, {x->ne[0], g->graph->all_logits ? x->ne[1] : 1, 1, 1}, {x});
}

void set_logits(archreg_graph* g, const archreg_tensor* logits) {
  if (failed(g)) return;
  if (!is_activation(logits)) {
    fail(g, "set_logits: no logits");
    return;
  }
  g->graph->logits = logits;
}

void name(archreg_graph*, const archreg_tensor* x, const char* text, int32_t layer) {
  if (x == nullptr || text == nullptr || x->is_weight()) return;
  const_cast<Node*>(x)->name = layer >= 0 ? fmt::format("{}-{}", text, layer) : std::string(text);
}

void fail_build(archreg_graph* g, const char* message) {
  fail(g, message != nullptr ? message : "the plugin failed the build");
}

constexpr archreg_graph_api_v2 kApi = {
    ARCHREG_PLUGIN_ABI_VERSION,
    sizeof(archreg_graph_api_v2),
    hparam_int,
    hparam_float,
    hparam_string,
    weight,
    n_tokens,
    embed,
    norm,
    matmul,
    add,
    mul,
    scale,
    sigmoid,
    reshape,
    slice,
    concat,
    rope,
    attention,
    ffn,
    moe,
    output_rows,
    set_logits,
    name,
    fail_build,
};

}  // namespace

Graph build_graph(const Model& model, int32_t n_tokens, bool all_logits) {
  Graph graph;
  graph.n_tokens = n_tokens;
  graph.all_logits = all_logits;
  archreg_graph state;
  state.graph = &graph;
  state.model = &model;
  int status = 0;
  try {
    status = model.plugin().build(&kApi, &state, model.arch().c_str());
  } catch (const std::exception& error) {
    throw BuildError(fmt::format("plugin {} threw while building the forward pass (the ABI forbids it): {}", model.plugin().file().string(),
                                 error.what()));
  }
  if (!state.error.empty())
    throw BuildError(fmt::format("{}: the {} forward pass cannot run this file: {}", model.reader().path(), model.arch(), state.error));
  if (status != 0) throw BuildError(fmt::format("{}: the {} forward pass failed (status {})", model.reader().path(), model.arch(), status));
  if (graph.logits == nullptr) throw BuildError(fmt::format("{}: the {} forward pass set no logits", model.reader().path(), model.arch()));
  return graph;
}

}  // namespace archreg::runtime
