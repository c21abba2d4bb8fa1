#include <algorithm>
#include <utility>
#include <vector>

#include "runtime/graph.hpp"

namespace archreg::runtime {
namespace {

constexpr int64_t kAlign = 64;

int64_t align_up(int64_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

}  // namespace

const Node* storage_root(const Node* n) {
  while (n->op == Node::Op::kReshape) n = n->src[0];
  return n;
}

void plan_arena(Graph& graph, const std::function<int64_t(const Node&)>& scratch_for) {
  const size_t count = graph.nodes.size();
  std::vector<int64_t> last_use(count, -1);
  for (const auto& node : graph.nodes) {
    for (const Node* s : node->src) {
      if (s == nullptr || s->is_weight()) continue;
      int64_t& last = last_use[static_cast<size_t>(storage_root(s)->id)];
      last = std::max(last, static_cast<int64_t>(node->id));
    }
  }
  last_use[static_cast<size_t>(storage_root(graph.logits)->id)] = static_cast<int64_t>(count);
  std::vector<std::pair<int64_t, int64_t>> free_blocks;  // offset, size
  int64_t top = 0;
  std::vector<std::vector<const Node*>> release(count + 1);
  graph.scratch_bytes = 0;
  for (const auto& node_ptr : graph.nodes) {
    Node& node = *node_ptr;
    const size_t i = static_cast<size_t>(node.id);
    for (const Node* done : release[i]) free_blocks.emplace_back(done->offset, align_up(done->n_elements() * 4));
    std::sort(free_blocks.begin(), free_blocks.end());
    for (size_t b = 1; b < free_blocks.size();) {  // merge neighbours
      if (free_blocks[b - 1].first + free_blocks[b - 1].second == free_blocks[b].first) {
        free_blocks[b - 1].second += free_blocks[b].second;
        free_blocks.erase(free_blocks.begin() + static_cast<std::ptrdiff_t>(b));
      } else {
        ++b;
      }
    }
    if (node.is_weight()) continue;
    if (node.op == Node::Op::kReshape) {
      node.alias_of = storage_root(&node);
      continue;
    }
    const int64_t bytes = align_up(node.n_elements() * 4);
    auto best = free_blocks.end();
    for (auto it = free_blocks.begin(); it != free_blocks.end(); ++it) {
      if (it->second >= bytes && (best == free_blocks.end() || it->second < best->second)) best = it;
    }
    if (best != free_blocks.end()) {
      node.offset = best->first;
      best->first += bytes;
      best->second -= bytes;
      if (best->second == 0) free_blocks.erase(best);
    } else {
      node.offset = top;
      top += bytes;
    }
    const int64_t last = last_use[i];
    if (last >= 0 && last < static_cast<int64_t>(count)) release[static_cast<size_t>(last) + 1].push_back(&node);
    graph.scratch_bytes = std::max(graph.scratch_bytes, align_up(scratch_for(node)));
  }
  graph.arena_bytes = top;
}

}  // namespace archreg::runtime
