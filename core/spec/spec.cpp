#include "spec/spec.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "gguf/regular_file.hpp"

namespace archreg::spec {

SpecError::SpecError(std::vector<std::string> problems)
    : std::runtime_error(fmt::format("{}", fmt::join(problems, "\n"))), problems_(std::move(problems)) {}

Spec::Spec() = default;
Spec::Spec(Spec&&) noexcept = default;
Spec& Spec::operator=(Spec&&) noexcept = default;
Spec::~Spec() = default;

std::optional<uint32_t> Spec::hparam_index(std::string_view name) const {
  const auto it = hparam_index_.find(std::string(name));
  if (it == hparam_index_.end()) return std::nullopt;
  return it->second;
}

namespace {
std::string tensor_key(bool per_layer, std::string_view base, std::string_view suffix) {
  return fmt::format("{}{}.{}", per_layer ? 'L' : 'G', base, suffix);
}
}  // namespace

const TensorDecl* Spec::find_tensor(bool per_layer, std::string_view base, std::string_view suffix) const {
  const auto it = tensor_index_.find(tensor_key(per_layer, base, suffix));
  return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kEmbedding: return "embedding";
    case Role::kMatrix: return "matrix";
    case Role::kExperts: return "experts";
    case Role::kNorm: return "norm";
    case Role::kBias: return "bias";
    case Role::kVector: return "vector";
    case Role::kScale: return "scale";
  }
  return "?";
}

std::string TensorDecl::gguf_name(int64_t layer) const {
  return per_layer ? fmt::format("blk.{}.{}.{}", layer, base, suffix) : name();
}

namespace {

struct TypeName {
  std::string_view name;
  gguf::ValueType type;
};
constexpr TypeName kHparamTypes[] = {
    {"u8", gguf::ValueType::kUint8},    {"i8", gguf::ValueType::kInt8},    {"u16", gguf::ValueType::kUint16},
    {"i16", gguf::ValueType::kInt16},   {"u32", gguf::ValueType::kUint32}, {"i32", gguf::ValueType::kInt32},
    {"u64", gguf::ValueType::kUint64},  {"i64", gguf::ValueType::kInt64},  {"f32", gguf::ValueType::kFloat32},
    {"f64", gguf::ValueType::kFloat64}, {"bool", gguf::ValueType::kBool},  {"string", gguf::ValueType::kString},
};
std::string_view type_label(const Hparam& h) {
  for (const TypeName& t : kHparamTypes) {
    if (t.type == h.type) return t.name;
  }
  return "?";
}

constexpr std::string_view kTensorSuffixes[] = {"weight", "bias", "scale"};

bool is_identifier(std::string_view name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// "attn_q" -> {attn_q, weight}; "attn_q.bias" -> {attn_q, bias}; "nextn.eh_proj" -> {nextn.eh_proj, weight}.
std::pair<std::string, std::string> split_tensor_name(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot != std::string::npos) {
    const std::string_view last = std::string_view(name).substr(dot + 1);
    for (std::string_view suffix : kTensorSuffixes) {
      if (last == suffix) return {name.substr(0, dot), std::string(suffix)};
    }
  }
  return {name, "weight"};
}

// Counts the nodes of a YAML document from the parser's events, before yaml-cpp builds the tree.
class NodeCounter : public YAML::EventHandler {
 public:
  struct TooMany {
    YAML::Mark mark;
  };
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { count(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { count(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t, const std::string&) override { count(mark); }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override { count(mark); }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override { count(mark); }
  void OnMapEnd() override {}

 private:
  void count(const YAML::Mark& mark) {
    if (++nodes_ > kMaxYamlNodes) throw TooMany{mark};
  }
  size_t nodes_ = 0;
};

// For each hyperparameter, the hyperparameters its value or default reads.
std::vector<std::vector<uint32_t>> hparam_reads(const Spec& spec) {
  std::vector<std::vector<uint32_t>> reads(spec.hparams.size());
  for (size_t i = 0; i < spec.hparams.size(); ++i) {
    const Hparam& h = spec.hparams[i];
    for (const std::optional<Expr>* e : {&h.value, &h.default_value}) {
      if (!*e) continue;
      for (uint32_t symbol : (*e)->symbols()) {
        if (symbol != kLayerSymbol) reads[i].push_back(symbol);
      }
    }
  }
  return reads;
}

}  // namespace

class SpecParser {
 public:
  SpecParser(std::string file, std::span<const std::filesystem::path> base_dirs) : file_(std::move(file)), base_dirs_(base_dirs) {
    spec_.file = file_;
  }

  Spec parse(std::string_view text) {
    if (text.size() > kMaxSpecBytes) {
      problem(SourcePos{file_, 1, 1}, fmt::format("the spec is {} bytes; at most {} are read", text.size(), kMaxSpecBytes));
      throw SpecError(problems_);
    }
    try {
      return parse_yaml(text);
    } catch (const YAML::Exception& error) {
      // A malformed document, or a node of an unexpected kind (a map used as a key, ...).
      problem(error.mark.is_null() ? SourcePos{file_, 1, 1} : SourcePos{file_, error.mark.line + 1, error.mark.column + 1}, error.msg);
      throw SpecError(problems_);
    }
  }

 private:
  // Counts the document's nodes (bounded) before yaml-cpp builds the tree; positions in file_.
  // A node takes at least one byte of the text (a scalar, an indicator such as `-`, `[` or `:`
  // before a null value; an alias is counted but shares its anchor's node), so a text shorter
  // than half the limit cannot reach it and skips the counting pass, which costs as much as
  // building the tree (every spec and base shipped is under 12 KB).
  YAML::Node load_document(std::string_view text) {
    std::istringstream stream{std::string(text)};
    if (text.size() < kMaxYamlNodes / 2) return YAML::Load(stream);
    try {
      YAML::Parser events(stream);
      NodeCounter counter;
      events.HandleNextDocument(counter);  // YAML::Load reads the first document only
    } catch (const NodeCounter::TooMany& too_many) {
      problem(SourcePos{file_, too_many.mark.line + 1, too_many.mark.column + 1},
              fmt::format("more than {} YAML nodes; archreg reads at most {}", kMaxYamlNodes, kMaxYamlNodes));
      throw SpecError(problems_);
    }
    return YAML::Load(stream.str());
  }

  Spec parse_yaml(std::string_view text) {
    YAML::Node root = load_document(text);
    if (!root.IsMap()) {
      problem(pos(root), "a spec is a YAML map (schema_version, arch, hparams, ...)");
      throw SpecError(problems_);
    }
    check_keys(root, {"schema_version", "arch", "description", "extends", "hparams", "layers", "optional_layers", "tensors", "layer",
                      "sidecars", "alternatives", "fusable", "checks"});
    if (root["extends"]) root = with_bases(root);
    parse_header(root);
    parse_hparams(root["hparams"]);
    if (root["layers"]) {
      const FromFile in(*this, origin("", "layers"));
      spec_.layers = expression(root["layers"], false, "layers");
    } else {
      problem(pos(root), "missing 'layers' (the expression giving the number of blk.N layers)");
    }
    if (const YAML::Node ranges = root["optional_layers"]) {
      const FromFile in(*this, origin("", "optional_layers"));
      if (ranges.IsSequence()) {
        if (ranges.size() == 0) problem(pos(ranges), "optional_layers: an empty list (leave the key out instead)");
        if (!over_limit(ranges.size(), kMaxOptionalLayerRanges, ranges, "optional layer ranges")) {
          for (const YAML::Node& range : ranges) {
            if (auto expr = expression(range, true, "optional_layers")) spec_.optional_layers.push_back(std::move(*expr));
          }
        }
      } else if (auto expr = expression(ranges, true, "optional_layers")) {
        spec_.optional_layers.push_back(std::move(*expr));
      }
    }
    parse_tensors(root["tensors"], false);
    parse_tensors(root["layer"], true);
    parse_sidecars(root["sidecars"]);
    refuse_alternatives(root["alternatives"]);
    parse_fusable(root["fusable"]);
    parse_checks(root["checks"]);
    check_hparam_cycles();
    if (problems_.empty()) {
      try {
        spec_.fused_forms = derive_fused_forms(spec_);
      } catch (const SpecError& error) {
        problems_.insert(problems_.end(), error.problems().begin(), error.problems().end());
      }
    }
    if (!problems_.empty()) throw SpecError(problems_);
    return std::move(spec_);
  }

  // Problems found while parsing an entry are reported in the file the entry came from.
  class FromFile {
   public:
    FromFile(SpecParser& parser, std::string file) : parser_(parser), saved_(std::exchange(parser.file_, std::move(file))) {}
    FromFile(const FromFile&) = delete;
    FromFile& operator=(const FromFile&) = delete;
    ~FromFile() { parser_.file_ = std::move(saved_); }

   private:
    SpecParser& parser_;
    std::string saved_;
  };

  // The file a merged entry came from: the spec itself unless it extends a base.
  std::string origin(std::string_view section, std::string_view top_level_key) const {
    const auto it = top_files_.find(top_level_key);
    return section.empty() && it != top_files_.end() ? it->second : spec_.file;
  }
  std::string origin(std::string_view section, size_t entry) const {
    const auto it = entry_files_.find(section);
    return it != entry_files_.end() && entry < it->second.size() ? it->second[entry] : spec_.file;
  }

  // `extends:` — the spec over its chain of bases (nearest first, at most kMaxBases). Sections
  // that are maps merge by name: a base's entries in the base's order, an entry the spec (or a
  // nearer base) names again replaced where it was, `name: ~` removing it, new entries after;
  // `checks` are concatenated; single values (layers, description, ...) come from the nearest
  // file that has them. Each entry remembers its file, so problems name the right file:line.
  struct Level {
    YAML::Node root;
    std::string file;
  };

  YAML::Node with_bases(const YAML::Node& spec_root) {
    std::vector<Level> levels{{spec_root, file_}};
    std::set<std::string> chain;
    std::error_code ignored;
    chain.insert(std::filesystem::weakly_canonical(file_, ignored).string());
    while (const YAML::Node extends = levels.back().root["extends"]) {
      const FromFile in(*this, levels.back().file);
      const auto name = scalar(extends, "extends");
      if (!name) throw SpecError(problems_);
      if (levels.size() > kMaxBases) {
        problem(pos(extends), fmt::format("more than {} levels of 'extends'", kMaxBases));
        throw SpecError(problems_);
      }
      std::filesystem::path path = std::filesystem::path(levels.back().file).parent_path() / *name;
      if (!std::filesystem::exists(path, ignored)) {
        for (const std::filesystem::path& dir : base_dirs_) {
          if (std::filesystem::exists(dir / *name, ignored)) {
            path = dir / *name;
            break;
          }
        }
      }
      if (!chain.insert(std::filesystem::weakly_canonical(path, ignored).string()).second) {
        problem(pos(extends), fmt::format("'extends: {}' leads back to a spec already in the chain", *name));
        throw SpecError(problems_);
      }
      std::string text;
      try {
        text = gguf::read_regular_file(path, kMaxSpecBytes, "base spec");
      } catch (const gguf::FileError& error) {
        problem(pos(extends), fmt::format("cannot read the base spec {}: {}", path.string(), error.message()));
        throw SpecError(problems_);
      }
      Level base{YAML::Node(), path.string()};
      const FromFile in_base(*this, base.file);
      base.root = load_document(text);
      if (!base.root.IsMap()) {
        problem(pos(base.root), "a base spec is a YAML map (hparams, tensors, layer, fusable, checks, ...)");
        throw SpecError(problems_);
      }
      check_keys(base.root,
                 {"schema_version", "description", "extends", "hparams", "layers", "optional_layers", "tensors", "layer", "sidecars",
                  "alternatives", "fusable", "checks"},
                 "a base spec (a base has no 'arch')");
      levels.push_back(std::move(base));
    }
    YAML::Node merged(YAML::NodeType::Map);
    for (const char* key : {"schema_version", "arch", "description", "layers", "optional_layers"}) {
      for (const Level& level : levels) {
        if (const YAML::Node value = level.root[key]) {
          merged[key] = value;
          top_files_[key] = level.file;
          break;
        }
      }
    }
    merged["extends"] = spec_root["extends"];
    for (const char* section : {"hparams", "tensors", "layer", "sidecars", "alternatives", "fusable"}) {
      merge_section(levels, section, merged);
    }
    YAML::Node checks(YAML::NodeType::Sequence);
    std::vector<std::string>& check_files = entry_files_["checks"];
    for (auto level = levels.rbegin(); level != levels.rend(); ++level) {
      const YAML::Node list = level->root["checks"];
      if (!list) continue;
      const FromFile in(*this, level->file);
      if (!list.IsSequence()) {
        problem(pos(list), "'checks' must be a list of { expr, message }");
        continue;
      }
      for (const YAML::Node& item : list) {
        checks.push_back(item);
        check_files.push_back(level->file);
      }
    }
    if (checks.size() > 0) merged["checks"] = checks;
    return merged;
  }

  void merge_section(const std::vector<Level>& levels, const char* section, YAML::Node& merged) {
    struct Item {
      YAML::Node key, value;
      std::string file;
      bool removed = false;
    };
    std::vector<Item> items;
    bool present = false;
    for (auto level = levels.rbegin(); level != levels.rend(); ++level) {
      const YAML::Node map = level->root[section];
      if (!map) continue;
      present = true;
      const FromFile in(*this, level->file);
      if (!map.IsMap()) {
        problem(pos(map), fmt::format("'{}' must be a map", section));
        continue;
      }
      std::unordered_map<std::string, size_t> inherited;  // name -> item, of the farther files
      for (size_t i = 0; i < items.size(); ++i) {
        if (!items[i].removed) inherited.emplace(items[i].key.as<std::string>(), i);
      }
      for (const auto& entry : map) {
        const auto name = entry.first.as<std::string>();
        const auto it = inherited.find(name);
        if (it != inherited.end()) {
          Item& item = items[it->second];
          item = Item{entry.first, entry.second, level->file, entry.second.IsNull()};
          inherited.erase(it);  // a second entry of the same name is a duplicate, reported later
        } else if (entry.second.IsNull() && level != levels.rbegin()) {
          problem(pos(entry.first), fmt::format("'{}: ~' removes an entry of '{}', but no base defines '{}'", name, section, name));
        } else {
          items.push_back(Item{entry.first, entry.second, level->file});
        }
      }
    }
    if (!present) return;
    YAML::Node map(YAML::NodeType::Map);
    std::vector<std::string>& files = entry_files_[section];
    for (const Item& item : items) {
      if (item.removed) continue;
      map.force_insert(item.key, item.value);
      files.push_back(item.file);
    }
    merged[section] = map;
  }

  SourcePos pos(const YAML::Node& node) const {
    const YAML::Mark mark = node.Mark();
    if (mark.is_null()) return SourcePos{file_, 1, 1};
    return SourcePos{file_, mark.line + 1, mark.column + 1};
  }

  void problem(const SourcePos& at, const std::string& message) {
    problems_.push_back(fmt::format("{}: {}", at.text(), message));
    if (problems_.size() == kMaxProblems) {
      problems_.push_back(fmt::format("{}:1:1: {} problems so far; stopping here", file_, kMaxProblems));
      throw SpecError(problems_);
    }
  }

  // True (and reported once) when a section already holds `limit` entries.
  bool over_limit(size_t count, size_t limit, const YAML::Node& node, std::string_view what) {
    if (count < limit) return false;
    problem(pos(node), fmt::format("more than {} {}; archreg reads at most {}", limit, what, limit));
    return true;
  }

  void check_keys(const YAML::Node& map, std::initializer_list<std::string_view> allowed, std::string_view where = "") {
    for (const auto& entry : map) {
      const auto key = entry.first.as<std::string>();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        problem(pos(entry.first), fmt::format("unknown key '{}'{}; expected one of: {}", key,
                                              where.empty() ? "" : fmt::format(" in {}", where), fmt::join(allowed, ", ")));
      }
    }
  }

  std::optional<std::string> scalar(const YAML::Node& node, std::string_view what) {
    if (!node.IsScalar()) {
      problem(pos(node), fmt::format("{} must be a single value", what));
      return std::nullopt;
    }
    return node.Scalar();
  }

  std::optional<bool> boolean(const YAML::Node& node, std::string_view what) {
    const auto text = scalar(node, what);
    if (!text) return std::nullopt;
    if (*text == "true") return true;
    if (*text == "false") return false;
    problem(pos(node), fmt::format("{} must be true or false, found '{}'", what, *text));
    return std::nullopt;
  }

  std::optional<Expr> expression(const YAML::Node& node, bool layer_allowed, std::string_view what) {
    const auto text = scalar(node, what);
    if (!text) return std::nullopt;
    SourcePos at = pos(node);
    if (node.Tag() == "!") at = at.advanced(1);  // quoted: the text starts after the quote
    const Expr::Resolver resolve = [&](std::string_view name) -> std::optional<uint32_t> {
      if (name == "layer") return layer_allowed ? std::optional<uint32_t>(kLayerSymbol) : std::nullopt;
      return spec_.hparam_index(name);
    };
    try {
      Expr expr = Expr::parse(*text, at, resolve);
      // String hyperparameters are only compared with string literals, and only they are.
      for (uint32_t symbol : expr.string_symbols()) {
        const Hparam& h = spec_.hparams[symbol];
        if (!h.is_string()) {
          problem(at, fmt::format("'{}' is compared with a string, but it is {}: only a hyperparameter of type string can be", h.name,
                                  h.value ? "a derived integer" : fmt::format("of type {}", type_label(h))));
        }
      }
      for (uint32_t symbol : expr.integer_symbols()) {
        if (symbol != kLayerSymbol && spec_.hparams[symbol].is_string()) {
          problem(at, fmt::format("'{}' is a string: compare it with a literal (as in {} == \"yarn\"); it has no integer value",
                                  spec_.hparams[symbol].name, spec_.hparams[symbol].name));
        }
      }
      return expr;
    } catch (const ExprSyntaxError& error) {
      std::string message = error.bare_message();
      if (!layer_allowed && text->find("layer") != std::string::npos) message += " ('layer' exists only in per-layer tensors)";
      problem(error.pos(), message);
      return std::nullopt;
    }
  }

  void parse_header(const YAML::Node& root) {
    if (const YAML::Node version = root["schema_version"]) {
      const FromFile in(*this, origin("", "schema_version"));
      if (const auto text = scalar(version, "schema_version")) {
        if (*text != "1" && *text != "2") {
          problem(pos(version),
                  fmt::format("unsupported schema_version {}; this archreg reads schema_version 1 and {}", *text, kSchemaVersion));
        } else if (*text == "1" && root["extends"]) {
          problem(pos(version), "'extends' is spec format 2: say schema_version: 2");
        } else {
          spec_.schema_version = *text == "1" ? 1 : 2;
        }
      }
    } else {
      problem(pos(root), fmt::format("missing 'schema_version' (expected {})", kSchemaVersion));
    }
    if (const YAML::Node arch = root["arch"]) {
      const FromFile in(*this, origin("", "arch"));
      if (const auto text = scalar(arch, "arch")) {
        spec_.arch = *text;
        if (spec_.arch.empty()) problem(pos(arch), "arch must not be empty");
        if (spec_.arch.size() > kMaxArchLength) {
          problem(pos(arch), fmt::format("arch is {} bytes; at most {} are allowed", spec_.arch.size(), kMaxArchLength));
        }
      }
    } else {
      problem(pos(root), "missing 'arch' (the general.architecture value this spec describes)");
    }
    if (const YAML::Node description = root["description"]) {
      const FromFile in(*this, origin("", "description"));
      spec_.description = scalar(description, "description").value_or("");
    }
  }

  void parse_hparams(const YAML::Node& node) {
    if (!node || !node.IsMap()) {
      problem(node ? pos(node) : SourcePos{file_, 1, 1}, "missing or malformed 'hparams' map");
      return;
    }
    // Names first, so expressions may refer to hyperparameters defined further down.
    size_t entry_number = 0;
    for (const auto& entry : node) {
      const FromFile in(*this, origin("hparams", entry_number++));
      if (over_limit(spec_.hparams.size(), kMaxHparams, entry.first, "hyperparameters")) break;
      const auto name = entry.first.as<std::string>();
      if (!is_identifier(name) || name == "layer" || name == "min" || name == "max") {
        problem(pos(entry.first),
                fmt::format("'{}' cannot name a hyperparameter (identifiers only; 'layer', 'min', 'max' are reserved)", name));
        continue;
      }
      if (spec_.hparam_index(name)) {
        problem(pos(entry.first), fmt::format("duplicate hyperparameter '{}'", name));
        continue;
      }
      spec_.hparam_index_.emplace(name, static_cast<uint32_t>(spec_.hparams.size()));
      Hparam h;
      h.name = name;
      h.pos = pos(entry.first);
      // The stored type is read here, in the names pass: expressions anywhere check their
      // string comparisons with it.
      if (entry.second.IsMap()) {
        if (const YAML::Node type = entry.second["type"]) parse_hparam_type(h, type);
      }
      spec_.hparams.push_back(std::move(h));
    }
    size_t index = 0;
    entry_number = 0;
    for (const auto& entry : node) {
      const FromFile in(*this, origin("hparams", entry_number++));
      const auto name = entry.first.as<std::string>();
      const auto found = spec_.hparam_index(name);
      if (!found || *found != index) continue;  // reported above
      ++index;
      parse_hparam(spec_.hparams[*found], entry.second);
    }
  }

  void parse_hparam_type(Hparam& h, const YAML::Node& type) {
    const auto text = scalar(type, "type");
    if (!text) return;
    const auto it = std::find_if(std::begin(kHparamTypes), std::end(kHparamTypes), [&](const TypeName& t) { return t.name == *text; });
    if (it == std::end(kHparamTypes)) {
      problem(pos(type),
              fmt::format("unknown type '{}'; expected one of u8, i8, u16, i16, u32, i32, u64, i64, f32, f64, bool, string", *text));
    } else {
      h.type = it->type;
    }
  }

  void parse_hparam(Hparam& h, const YAML::Node& node) {
    if (!node.IsMap()) {
      problem(pos(node), fmt::format("hyperparameter '{}' must be a map such as {{ key: \"{{arch}}.block_count\" }}", h.name));
      return;
    }
    const std::string where = fmt::format("hyperparameter '{}'", h.name);
    check_keys(node, {"key", "type", "count", "per_layer", "in_shapes", "default", "required_when", "optional", "value", "min", "max"},
               where);
    if (const YAML::Node key = node["key"]) {
      if (auto text = scalar(key, "key")) {
        // Substituted left to right, never inside what was substituted (an arch named
        // "x{arch}" once made this loop endless), and bounded in length.
        std::string resolved = *text;
        for (size_t at = 0; (at = resolved.find("{arch}", at)) != std::string::npos && resolved.size() <= kMaxKeyLength;
             at += spec_.arch.size()) {
          resolved.replace(at, 6, spec_.arch);
        }
        if (resolved.empty()) problem(pos(key), "key must not be empty");
        if (resolved.size() > kMaxKeyLength) {
          problem(pos(key), fmt::format("the key is longer than {} bytes once {{arch}} is substituted", kMaxKeyLength));
        }
        h.key = resolved;
      }
    }
    if (const YAML::Node count = node["count"]) h.count = boolean(count, "count").value_or(false);
    if (const YAML::Node per_layer = node["per_layer"]) h.per_layer = boolean(per_layer, "per_layer").value_or(false);
    if (const YAML::Node in_shapes = node["in_shapes"]) {
      if (const auto text = scalar(in_shapes, "in_shapes")) {
        if (*text != "layer0" && *text != "each_layer") {
          problem(pos(in_shapes), fmt::format("{}: in_shapes must be layer0 (llama.cpp's rule: tensor shapes use layer 0's value) or "
                                              "each_layer (each layer's own value), found '{}'",
                                              where, *text));
        } else if (!h.per_layer) {
          problem(pos(in_shapes), fmt::format("{}: in_shapes applies only with per_layer: true", where));
        }
        h.shapes_use_each_layer = *text == "each_layer";
      }
    }
    if (const YAML::Node optional = node["optional"]) h.optional = boolean(optional, "optional").value_or(false);
    if (const YAML::Node value = node["value"]) h.value = expression(value, false, "value");
    if (const YAML::Node fallback = node["default"]) {
      if (h.type == gguf::ValueType::kString && !node["value"] && !node["count"]) {
        h.default_text = scalar(fallback, "default");  // a string, not an expression
      } else {
        h.default_value = expression(fallback, false, "default");
      }
    }
    if (const YAML::Node required = node["required_when"]) h.required_when = expression(required, false, "required_when");
    if (const YAML::Node min = node["min"]) h.min = expression(min, false, "min");
    if (const YAML::Node max = node["max"]) h.max = expression(max, false, "max");

    const SourcePos at = pos(node);
    if (node["value"]) {
      if (node["key"] || node["default"] || node["optional"] || node["count"] || node["per_layer"] || node["type"]) {
        problem(at,
                fmt::format("{}: 'value' (a derived hyperparameter) excludes key, type, count, per_layer, default and optional", where));
      }
    } else if (!node["key"]) {
      problem(at, fmt::format("{} needs 'key' (a GGUF key) or 'value' (an expression)", where));
    }
    if (h.count && node["type"]) problem(at, fmt::format("{}: 'count' takes the element count of an array; 'type' does not apply", where));
    if (h.count && h.per_layer) problem(at, fmt::format("{}: 'count' and 'per_layer' exclude each other", where));
    if (!h.is_integer() && ((node["default"] && !h.is_string()) || node["min"] || node["max"] || h.per_layer)) {
      problem(at, fmt::format("{} is {}: {}min, max and per_layer need an integer type", where, gguf::value_type_name(h.type),
                              h.is_string() ? "" : "default (a string for type string), "));
    }
    if (h.optional && node["default"]) problem(at, fmt::format("{}: 'optional' and 'default' exclude each other", where));
    if (node["required_when"] && !node["default"]) {
      problem(at, fmt::format("{}: 'required_when' needs a 'default' (the value where the key is not required)", where));
    }
  }

  // A tensor map entry: a shape list, or a map with shape/types/optional/when/tied_to.
  void parse_tensors(const YAML::Node& node, bool per_layer) {
    if (!node) return;
    const char* section = per_layer ? "layer" : "tensors";
    if (!node.IsMap()) {
      problem(pos(node), fmt::format("'{}' must be a map of tensor name to shape or definition", section));
      return;
    }
    size_t entry_number = 0;
    for (const auto& entry : node) {
      const FromFile in(*this, origin(section, entry_number++));
      if (over_limit(spec_.tensors.size(), kMaxTensors, entry.first, "tensors")) break;
      const auto full_name = entry.first.as<std::string>();
      auto [base, suffix] = split_tensor_name(full_name);
      TensorDecl t;
      t.base = base;
      t.suffix = suffix;
      t.per_layer = per_layer;
      t.pos = pos(entry.first);
      if (base.empty() || full_name.find("blk.") == 0) {
        problem(t.pos,
                fmt::format("tensor name '{}': write names without the 'blk.N.' prefix (per-layer tensors go under 'layer')", full_name));
        continue;
      }
      if (spec_.find_tensor(per_layer, base, suffix) != nullptr) {
        problem(t.pos, fmt::format("duplicate tensor '{}' in '{}'", t.name(), section));
        continue;
      }
      const YAML::Node& body = entry.second;
      const YAML::Node shape = body.IsSequence() ? body : body["shape"];
      if (body.IsMap()) {
        check_keys(body, {"shape", "types", "optional", "when", "tied_to", "role"}, fmt::format("tensor '{}'", t.name()));
        if (const YAML::Node optional = body["optional"]) t.optional = boolean(optional, "optional").value_or(false);
        if (const YAML::Node when = body["when"]) t.when = expression(when, per_layer, "when");
        if (const YAML::Node tied = body["tied_to"]) t.tied_to = scalar(tied, "tied_to");
        if (const YAML::Node types = body["types"]) parse_types(types, t);
      } else if (!body.IsSequence()) {
        problem(pos(body), fmt::format("tensor '{}' must be a shape list or a map with 'shape'", t.name()));
        continue;
      }
      if (!shape || !shape.IsSequence() || shape.size() < 1 || shape.size() > 4) {
        problem(shape ? pos(shape) : t.pos, fmt::format("tensor '{}' needs a shape of 1 to 4 dimensions", t.name()));
        continue;
      }
      for (const YAML::Node& extent : shape) {
        if (auto expr = expression(extent, per_layer, "shape")) t.shape.push_back(std::move(*expr));
      }
      t.role = default_role(t.base, t.suffix, shape.size());
      if (body.IsMap() && body["role"]) {
        if (const auto text = scalar(body["role"], "role")) {
          const Role* role = std::find_if(std::begin(kRoles), std::end(kRoles), [&](Role r) { return role_name(r) == *text; });
          if (role == std::end(kRoles)) {
            problem(pos(body["role"]),
                    fmt::format("tensor '{}': unknown role '{}'; expected one of embedding, matrix, experts, norm, bias, "
                                "vector, scale",
                                t.name(), *text));
          } else {
            t.role = *role;
          }
        }
      }
      spec_.tensor_index_.emplace(tensor_key(per_layer, t.base, t.suffix), spec_.tensors.size());
      spec_.tensors.push_back(std::move(t));
    }
    for (const TensorDecl& t : spec_.tensors) {
      if (t.per_layer != per_layer || !t.tied_to) continue;
      const auto [base, suffix] = split_tensor_name(*t.tied_to);
      if (spec_.find_tensor(per_layer, base, suffix) == nullptr) {
        problem(t.pos, fmt::format("tensor '{}' is tied to '{}', which '{}' does not declare", t.name(), *t.tied_to, section));
      }
    }
  }

  // A tensor's role when the spec does not say: from its name and number of dimensions.
  static Role default_role(std::string_view base, std::string_view suffix, size_t dims) {
    if (suffix == "bias") return Role::kBias;
    if (suffix != "weight") return Role::kScale;
    if (dims >= 3) return Role::kExperts;
    if (dims == 2) return Role::kMatrix;
    return base.ends_with("norm") ? Role::kNorm : Role::kVector;
  }

  // `sidecars:` map of sidecar suffix -> weights (spec names without .weight) that may carry an
  // optional `<name>.<suffix>` tensor: one F32 value per matrix ([1] for a 2-D weight, [n] for a
  // stack of n), present only where the weight is. A listed name the spec does not declare has
  // none (a base lists every weight llama.cpp's generic pass reads).
  void parse_sidecars(const YAML::Node& node) {
    if (!node) return;
    if (!node.IsMap()) {
      problem(pos(node), "'sidecars' must be a map of sidecar suffix to a list of weights, such as { scale: [attn_q, attn_k] }");
      return;
    }
    const size_t declared = spec_.tensors.size();
    size_t entry_number = 0;
    for (const auto& entry : node) {
      const FromFile in(*this, origin("sidecars", entry_number++));
      const auto suffix = entry.first.as<std::string>();
      if (!is_identifier(suffix) || suffix == "weight" || suffix == "bias") {
        problem(pos(entry.first), fmt::format("'{}' cannot be a sidecar suffix (an identifier other than weight and bias)", suffix));
        continue;
      }
      if (!entry.second.IsSequence()) {
        problem(pos(entry.second), fmt::format("sidecars '{}' must be a list of weights such as [attn_q, attn_k]", suffix));
        continue;
      }
      for (const YAML::Node& item : entry.second) {
        const auto name = scalar(item, "sidecar weight");
        if (!name) continue;
        for (size_t i = 0; i < declared; ++i) {
          if (spec_.tensors[i].base != *name || spec_.tensors[i].suffix != "weight") continue;
          if (over_limit(spec_.tensors.size(), kMaxTensors, item, "tensors")) return;
          const TensorDecl& weight = spec_.tensors[i];
          if (spec_.find_tensor(weight.per_layer, weight.base, suffix) != nullptr) {
            problem(pos(item), fmt::format("sidecar '{}.{}' is declared twice (here and as a tensor)", weight.base, suffix));
            continue;
          }
          if (weight.shape.size() < 2 || weight.shape.size() > 3) {
            problem(pos(item), fmt::format("'{}' is not a matrix or a stack of matrices: it cannot carry a sidecar", weight.name()));
            continue;
          }
          TensorDecl t;
          t.base = weight.base;
          t.suffix = suffix;
          t.role = Role::kScale;
          t.sidecar_of = i;
          t.per_layer = weight.per_layer;
          t.shape.push_back(weight.shape.size() == 3 ? weight.shape[2] : Expr::literal(1));
          t.types = {*gguf::ggml_type_from_name("F32")};
          t.optional = true;
          t.when = weight.when;
          t.pos = pos(item);
          spec_.tensor_index_.emplace(tensor_key(t.per_layer, t.base, t.suffix), spec_.tensors.size());
          spec_.tensors.push_back(std::move(t));
        }
      }
    }
  }

  void parse_types(const YAML::Node& node, TensorDecl& t) {
    if (!node.IsSequence() || node.size() == 0) {
      problem(pos(node), fmt::format("types of '{}' must be a non-empty list such as [F32]", t.name()));
      return;
    }
    for (const YAML::Node& type : node) {
      const auto text = scalar(type, "type");
      if (!text) continue;
      if (const auto id = gguf::ggml_type_from_name(*text)) {
        t.types.push_back(*id);
      } else {
        problem(pos(type), fmt::format("unknown ggml type '{}'", *text));
      }
    }
  }

  // Finds a declared tensor by its spec name, in one section or (section unset) in either.
  std::optional<size_t> tensor_ref(const YAML::Node& node, std::optional<bool> section, std::string_view what) {
    const auto text = scalar(node, what);
    if (!text) return std::nullopt;
    const auto [base, suffix] = split_tensor_name(*text);
    for (const bool per_layer : {false, true}) {
      if (section && *section != per_layer) continue;
      if (const TensorDecl* t = spec_.find_tensor(per_layer, base, suffix)) return static_cast<size_t>(t - spec_.tensors.data());
    }
    problem(pos(node), section ? fmt::format("{} names '{}', which is not declared under '{}'", what, *text, *section ? "layer" : "tensors")
                               : fmt::format("{} names '{}', which is not a declared tensor", what, *text));
    return std::nullopt;
  }

  // `alternatives` (sets of tensors of which exactly one is present) had no user among the
  // specs, and using it would have been wrong where it was tempting: llama.cpp's loaders decide
  // between two tensor forms from a key, not from the tensors present. Removed (decision 10).
  void refuse_alternatives(const YAML::Node& node) {
    if (!node) return;
    problem(pos(node),
            "'alternatives' was removed (no spec used it): give each form a `when:` condition on the key that decides it "
            "(docs/spec-format.md, \"Tensors\")");
  }

  void parse_fusable(const YAML::Node& node) {
    if (!node) return;
    if (!node.IsMap()) {
      problem(pos(node), "'fusable' must be a map of fused name to { parts, axis }");
      return;
    }
    size_t entry_number = 0;
    for (const auto& entry : node) {
      const FromFile in(*this, origin("fusable", entry_number++));
      if (over_limit(spec_.fusable.size(), kMaxFusableGroups, entry.first, "fusable groups")) break;
      FusableGroup group;
      group.name = entry.first.as<std::string>();
      group.pos = pos(entry.first);
      const YAML::Node& body = entry.second;
      if (!body.IsMap()) {
        problem(pos(body), fmt::format("fusable group '{}' must be a map with 'parts' and 'axis'", group.name));
        continue;
      }
      check_keys(body, {"parts", "axis", "consumers", "partial"}, fmt::format("fusable group '{}'", group.name));
      const YAML::Node parts = body["parts"];
      if (!parts || !parts.IsSequence() || parts.size() < 2) {
        problem(parts ? pos(parts) : group.pos,
                fmt::format("fusable group '{}' needs 'parts': a list of at least two tensors", group.name));
        continue;
      }
      if (parts.size() > kMaxGroupParts) {
        problem(pos(parts),
                fmt::format("fusable group '{}' has {} parts; at most {} are allowed", group.name, parts.size(), kMaxGroupParts));
        continue;
      }
      for (const YAML::Node& part : parts) {
        if (auto name = scalar(part, "part")) group.parts.push_back(*name);
      }
      if (const YAML::Node axis = body["axis"]) {
        const auto text = scalar(axis, "axis");
        if (text && (text->size() != 1 || (*text)[0] < '0' || (*text)[0] > '3')) {
          problem(pos(axis), fmt::format("axis of '{}' must be 0, 1, 2 or 3, found '{}'", group.name, *text));
        } else if (text) {
          group.axis = (*text)[0] - '0';
        }
      } else {
        problem(group.pos, fmt::format("fusable group '{}' needs 'axis'", group.name));
      }
      if (const YAML::Node consumers = body["consumers"]) {
        if (!consumers.IsSequence())
          problem(pos(consumers), "consumers must be a list of loader names");
        else
          for (const YAML::Node& c : consumers) {
            if (auto name = scalar(c, "consumer")) group.consumers.push_back(*name);
          }
      }
      if (const YAML::Node partial = body["partial"]) group.partial_allowed = boolean(partial, "partial").value_or(false);
      spec_.fusable.push_back(std::move(group));
    }
  }

  void parse_checks(const YAML::Node& node) {
    if (!node) return;
    if (!node.IsSequence()) {
      problem(pos(node), "'checks' must be a list of { expr, message }");
      return;
    }
    size_t entry_number = 0;
    for (const YAML::Node& item : node) {
      const FromFile in(*this, origin("checks", entry_number++));
      if (over_limit(spec_.checks.size(), kMaxChecks, item, "checks")) break;
      if (!item.IsMap() || !item["expr"] || !item["message"]) {
        problem(pos(item), "each check is a map with 'expr' and 'message'");
        continue;
      }
      check_keys(item, {"expr", "message"}, "check");
      auto expr = expression(item["expr"], false, "expr");
      auto message = scalar(item["message"], "message");
      if (expr && message) spec_.checks.push_back(Check{std::move(*expr), *message, pos(item)});
    }
  }

  // Depth-first search over default/value references with an explicit stack (a spec may chain
  // many hyperparameters): a reference back into the stack is a cycle, and the longest chain of
  // references is bounded, since evaluating a value follows it.
  void check_hparam_cycles() {
    const std::vector<std::vector<uint32_t>> reads = hparam_reads(spec_);
    const size_t n = reads.size();
    std::vector<int> state(n, 0);     // 0 new, 1 on the stack, 2 done
    std::vector<size_t> chain(n, 1);  // the longest chain of references starting here
    std::vector<bool> reported(n, false);
    bool cycle = false;
    struct Frame {
      uint32_t hparam;
      size_t next = 0;
    };
    std::vector<Frame> stack;
    for (uint32_t root = 0; root < n; ++root) {
      if (state[root] != 0) continue;
      state[root] = 1;
      stack.push_back({root});
      while (!stack.empty()) {
        Frame& top = stack.back();
        if (top.next < reads[top.hparam].size()) {
          const uint32_t read = reads[top.hparam][top.next++];
          if (state[read] == 0) {
            state[read] = 1;
            stack.push_back({read});
          } else if (state[read] == 1) {
            cycle = true;
            if (!reported[top.hparam]) {
              reported[top.hparam] = true;
              const Hparam& h = spec_.hparams[top.hparam];
              problem(h.pos, fmt::format("hyperparameter '{}' depends on itself (through '{}')", h.name, spec_.hparams[read].name));
            }
          } else {
            chain[top.hparam] = std::max(chain[top.hparam], chain[read] + 1);
          }
          continue;
        }
        state[top.hparam] = 2;
        const uint32_t done = top.hparam;
        stack.pop_back();
        if (!stack.empty()) chain[stack.back().hparam] = std::max(chain[stack.back().hparam], chain[done] + 1);
      }
    }
    if (cycle) return;
    for (uint32_t i = 0; i < n; ++i) {
      if (chain[i] > kMaxHparamChain) {
        const Hparam& h = spec_.hparams[i];
        problem(h.pos,
                fmt::format("hyperparameter '{}' starts a chain of {} hyperparameters, each reading the next through default or value; "
                            "at most {} are allowed",
                            h.name, chain[i], kMaxHparamChain));
        return;
      }
    }
  }

  std::string file_;                                  // the file being read: the spec, or a base it extends
  std::span<const std::filesystem::path> base_dirs_;  // where else an `extends:` path is looked up
  Spec spec_;
  std::vector<std::string> problems_;
  std::map<std::string, std::vector<std::string>, std::less<>> entry_files_;  // section -> file of each entry
  std::map<std::string, std::string, std::less<>> top_files_;                 // top-level key -> file
};

std::optional<Role> tensor_role(const Spec& spec, std::string_view gguf_name) {
  bool per_layer = false;
  std::string_view name = gguf_name;
  if (name.starts_with("blk.")) {
    const size_t dot = name.find('.', 4);
    if (dot == std::string_view::npos || dot == 4 ||
        !std::all_of(name.begin() + 4, name.begin() + static_cast<std::ptrdiff_t>(dot), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    per_layer = true;
    name = name.substr(dot + 1);
  }
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const std::string_view base = name.substr(0, dot);
  const std::string_view suffix = name.substr(dot + 1);
  if (const TensorDecl* t = spec.find_tensor(per_layer, base, suffix)) return t->role;
  for (const FusedForm& form : spec.fused_forms) {
    if (form.per_layer != per_layer || form.base != base) continue;
    for (const FusedTensor& fused : form.tensors) {
      if (fused.suffix == suffix) return spec.tensors[fused.parts.front()].role;
    }
  }
  return std::nullopt;
}

Spec parse_spec(std::string_view yaml_text, const std::string& file, std::span<const std::filesystem::path> base_dirs) {
  return SpecParser(file, base_dirs).parse(yaml_text);
}

Spec load_spec(const std::filesystem::path& file, std::span<const std::filesystem::path> base_dirs) {
  std::string text;
  try {
    text = gguf::read_regular_file(file, kMaxSpecBytes, "spec");
  } catch (const gguf::FileError& error) {
    throw SpecError({fmt::format("{}: {}", file.string(), error.message())});
  }
  Spec spec = parse_spec(text, file.string(), base_dirs);
  if (file.extension() == ".yaml" && file.stem().string() != spec.arch) {
    throw SpecError(
        {fmt::format("{}:1:1: arch '{}' does not match the file name: name the file {}.yaml", file.string(), spec.arch, spec.arch)});
  }
  return spec;
}

std::vector<uint32_t> hparam_order(const Spec& spec) {
  // Post-order over the references, with an explicit stack; marking a hyperparameter when it is
  // first reached also stops at a cycle (rejected at load anyway).
  const std::vector<std::vector<uint32_t>> reads = hparam_reads(spec);
  std::vector<uint32_t> order;
  std::vector<bool> reached(reads.size(), false);
  std::vector<std::pair<uint32_t, size_t>> stack;  // hyperparameter, next reference to follow
  for (uint32_t root = 0; root < reads.size(); ++root) {
    if (reached[root]) continue;
    reached[root] = true;
    stack.emplace_back(root, 0);
    while (!stack.empty()) {
      auto& [hparam, next] = stack.back();
      if (next < reads[hparam].size()) {
        const uint32_t read = reads[hparam][next++];
        if (!reached[read]) {
          reached[read] = true;
          stack.emplace_back(read, 0);
        }
        continue;
      }
      order.push_back(hparam);
      stack.pop_back();
    }
  }
  return order;
}

}  // namespace archreg::spec
