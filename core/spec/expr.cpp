#include "spec/expr.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <limits>

namespace archreg::spec {

std::string SourcePos::text() const {
  return fmt::format("{}:{}:{}", file, line, column);
}

ExprSyntaxError::ExprSyntaxError(SourcePos pos, const std::string& message)
    : std::runtime_error(fmt::format("{}: {}", pos.text(), message)), pos_(std::move(pos)), message_(message) {}

enum class Op {
  kLiteral,
  kSymbol,
  kString,
  kStrEq,
  kStrNe,
  kNeg,
  kNot,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kMod,
  kLt,
  kLe,
  kGt,
  kGe,
  kEq,
  kNe,
  kAnd,
  kOr,
  kCond,
  kMin,
  kMax
};

struct Expr::Node {
  Op op;
  int64_t value = 0;
  uint32_t symbol = 0;
  std::string name;  // the symbol's spelling
  std::string text;  // kString, kStrEq, kStrNe: the string literal's content
  int depth = 1;     // levels in this subtree, bounded by kMaxExprDepth when parsed
  std::vector<std::shared_ptr<const Node>> args;
};

namespace {

using NodePtr = std::shared_ptr<const Expr::Node>;

std::string_view op_text(Op op) {
  switch (op) {
    case Op::kAdd: return "+";
    case Op::kSub: return "-";
    case Op::kMul: return "*";
    case Op::kDiv: return "/";
    case Op::kMod: return "%";
    case Op::kLt: return "<";
    case Op::kLe: return "<=";
    case Op::kGt: return ">";
    case Op::kGe: return ">=";
    case Op::kEq: return "==";
    case Op::kNe: return "!=";
    case Op::kAnd: return "&&";
    case Op::kOr: return "||";
    default: return "?";
  }
}

int64_t apply(Op op, int64_t a, int64_t b) {
  int64_t result = 0;
  switch (op) {
    case Op::kAdd:
      if (__builtin_add_overflow(a, b, &result)) throw EvalError(fmt::format("{} + {} overflows", a, b));
      return result;
    case Op::kSub:
      if (__builtin_sub_overflow(a, b, &result)) throw EvalError(fmt::format("{} - {} overflows", a, b));
      return result;
    case Op::kMul:
      if (__builtin_mul_overflow(a, b, &result)) throw EvalError(fmt::format("{} * {} overflows", a, b));
      return result;
    case Op::kDiv:
    case Op::kMod:
      if (b == 0) throw EvalError(fmt::format("{} {} 0: division by zero", a, op_text(op)));
      if (a == std::numeric_limits<int64_t>::min() && b == -1) throw EvalError("division overflows");
      return op == Op::kDiv ? a / b : a % b;
    case Op::kLt: return a < b;
    case Op::kLe: return a <= b;
    case Op::kGt: return a > b;
    case Op::kGe: return a >= b;
    case Op::kEq: return a == b;
    case Op::kNe: return a != b;
    default: throw EvalError("internal: not a binary operator");
  }
}

int64_t evaluate(const Expr::Node& node, const Expr::Lookup& lookup, const Expr::StringLookup* strings) {
  switch (node.op) {
    case Op::kLiteral: return node.value;
    case Op::kSymbol: return lookup(node.symbol);
    case Op::kStrEq:
    case Op::kStrNe: {
      if (strings == nullptr) throw EvalError(fmt::format("'{}' is compared as a string where no string values are known", node.name));
      return ((*strings)(node.symbol) == node.text) == (node.op == Op::kStrEq);
    }
    case Op::kString: throw EvalError("internal: a bare string literal");
    case Op::kNeg: {
      const int64_t v = evaluate(*node.args[0], lookup, strings);
      if (v == std::numeric_limits<int64_t>::min()) throw EvalError("negation overflows");
      return -v;
    }
    case Op::kNot: return evaluate(*node.args[0], lookup, strings) == 0;
    case Op::kAnd: return evaluate(*node.args[0], lookup, strings) != 0 && evaluate(*node.args[1], lookup, strings) != 0;
    case Op::kOr: return evaluate(*node.args[0], lookup, strings) != 0 || evaluate(*node.args[1], lookup, strings) != 0;
    case Op::kCond:
      return evaluate(*node.args[0], lookup, strings) != 0 ? evaluate(*node.args[1], lookup, strings)
                                                           : evaluate(*node.args[2], lookup, strings);
    case Op::kMin:
    case Op::kMax: {
      int64_t best = evaluate(*node.args[0], lookup, strings);
      for (size_t i = 1; i < node.args.size(); ++i) {
        const int64_t v = evaluate(*node.args[i], lookup, strings);
        best = node.op == Op::kMin ? std::min(best, v) : std::max(best, v);
      }
      return best;
    }
    default: return apply(node.op, evaluate(*node.args[0], lookup, strings), evaluate(*node.args[1], lookup, strings));
  }
}

int precedence(Op op) {
  switch (op) {
    case Op::kCond: return 1;
    case Op::kOr: return 2;
    case Op::kAnd: return 3;
    case Op::kEq:
    case Op::kNe:
    case Op::kStrEq:
    case Op::kStrNe: return 4;
    case Op::kLt:
    case Op::kLe:
    case Op::kGt:
    case Op::kGe: return 5;
    case Op::kAdd:
    case Op::kSub: return 6;
    case Op::kMul:
    case Op::kDiv:
    case Op::kMod: return 7;
    case Op::kNeg:
    case Op::kNot: return 8;
    default: return 9;
  }
}

std::string render(const Expr::Node& node) {
  auto child = [&](const NodePtr& arg, int min_precedence) {
    std::string text = render(*arg);
    return precedence(arg->op) < min_precedence ? "(" + text + ")" : text;
  };
  switch (node.op) {
    case Op::kLiteral: return fmt::format("{}", node.value);
    case Op::kSymbol: return node.name;
    case Op::kString: return fmt::format("\"{}\"", node.text);
    case Op::kStrEq:
    case Op::kStrNe: return fmt::format("{} {} \"{}\"", node.name, node.op == Op::kStrEq ? "==" : "!=", node.text);
    case Op::kNeg: return "-" + child(node.args[0], 9);
    case Op::kNot: return "!" + child(node.args[0], 9);
    case Op::kCond: return fmt::format("{} ? {} : {}", child(node.args[0], 2), child(node.args[1], 1), child(node.args[2], 1));
    case Op::kMin:
    case Op::kMax: {
      std::vector<std::string> parts;
      for (const NodePtr& arg : node.args) parts.push_back(render(*arg));
      return fmt::format("{}({})", node.op == Op::kMin ? "min" : "max", fmt::join(parts, ", "));
    }
    default: {
      const int p = precedence(node.op);
      // Left-associative: the right operand needs parentheses at equal precedence.
      return fmt::format("{} {} {}", child(node.args[0], p), op_text(node.op), child(node.args[1], p + 1));
    }
  }
}

enum class Uses { kAll, kString, kInteger };

void collect_symbols(const Expr::Node& root, std::vector<uint32_t>& out, Uses uses = Uses::kAll) {
  std::vector<const Expr::Node*> pending{&root};  // explicit stack: no recursion on any depth
  while (!pending.empty()) {
    const Expr::Node* node = pending.back();
    pending.pop_back();
    const bool string_use = node->op == Op::kStrEq || node->op == Op::kStrNe;
    if ((node->op == Op::kSymbol && uses != Uses::kString) || (string_use && uses != Uses::kInteger)) out.push_back(node->symbol);
    for (auto arg = node->args.rbegin(); arg != node->args.rend(); ++arg) pending.push_back(arg->get());
  }
}

NodePtr make(Op op, std::vector<NodePtr> args) {
  auto node = std::make_shared<Expr::Node>();
  node->op = op;
  for (const NodePtr& arg : args) node->depth = std::max(node->depth, arg->depth + 1);
  node->args = std::move(args);
  return node;
}

NodePtr make_literal(int64_t value) {
  auto node = std::make_shared<Expr::Node>();
  node->op = Op::kLiteral;
  node->value = value;
  return node;
}

}  // namespace

class ExprParser {
 public:
  ExprParser(std::string_view text, const SourcePos& pos, const Expr::Resolver& resolve) : text_(text), pos_(pos), resolve_(resolve) {}

  Expr parse() {
    if (text_.size() > kMaxExprLength) {
      fail(fmt::format("the expression is {} characters; at most {} are allowed (split it into derived hyperparameters)", text_.size(),
                       kMaxExprLength),
           0);
    }
    NodePtr root = conditional();
    skip_space();
    if (at_ < text_.size()) fail(fmt::format("unexpected '{}'", text_.substr(at_)));
    reject_bare_strings(*root);
    return Expr(root);
  }

 private:
  [[noreturn]] void fail(const std::string& message, size_t at) const {
    constexpr size_t kShown = 80;
    const std::string shown = text_.size() <= kShown ? std::string(text_) : fmt::format("{}...", text_.substr(0, kShown));
    throw ExprSyntaxError(pos_.advanced(static_cast<int>(at)), fmt::format("in expression '{}': {}", shown, message));
  }

  // One level of nesting while it lives: the parser's recursion stays within kMaxExprDepth.
  class Nesting {
   public:
    explicit Nesting(ExprParser& parser) : parser_(parser) {
      if (++parser_.nesting_ > kMaxExprDepth) parser_.too_deep();
    }
    ~Nesting() { --parser_.nesting_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    ExprParser& parser_;
  };

  [[noreturn]] void too_deep() const {
    fail(fmt::format("nested deeper than {} levels (split it into derived hyperparameters)", kMaxExprDepth));
  }

  NodePtr bounded(NodePtr node) const {
    if (node->depth > kMaxExprDepth) too_deep();
    return node;
  }
  [[noreturn]] void fail(const std::string& message) const { fail(message, at_); }

  void skip_space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }

  bool accept(std::string_view token) {
    skip_space();
    if (text_.substr(at_, token.size()) != token) return false;
    // "<" must not match the start of "<=", "!" not the start of "!=".
    if (token.size() == 1 && at_ + 1 < text_.size() && text_[at_ + 1] == '=' &&
        (token == "<" || token == ">" || token == "!" || token == "=")) {
      return false;
    }
    at_ += token.size();
    return true;
  }

  void expect(std::string_view token) {
    if (!accept(token)) fail(at_ < text_.size() ? fmt::format("expected '{}'", token) : fmt::format("expected '{}' at the end", token));
  }

  NodePtr conditional() {
    const Nesting nesting(*this);
    NodePtr condition = binary(2);
    if (!accept("?")) return condition;
    NodePtr then_branch = conditional();
    expect(":");
    NodePtr else_branch = conditional();
    return bounded(make(Op::kCond, {condition, then_branch, else_branch}));
  }

  // Precedence climbing over the left-associative binary operators (levels 2..7).
  NodePtr binary(int level) {
    if (level > 7) return unary();
    NodePtr left = binary(level + 1);
    for (;;) {
      std::optional<Op> op = match_operator(level);
      if (!op) return left;
      NodePtr right = binary(level + 1);
      left = combine(*op, std::move(left), std::move(right));
    }
  }

  std::optional<Op> match_operator(int level) {
    static constexpr std::pair<std::string_view, Op> kLevels[][4] = {
        {{"||", Op::kOr}},
        {{"&&", Op::kAnd}},
        {{"==", Op::kEq}, {"!=", Op::kNe}},
        {{"<=", Op::kLe}, {">=", Op::kGe}, {"<", Op::kLt}, {">", Op::kGt}},
        {{"+", Op::kAdd}, {"-", Op::kSub}},
        {{"*", Op::kMul}, {"/", Op::kDiv}, {"%", Op::kMod}},
    };
    for (const auto& [token, op] : kLevels[level - 2]) {
      if (!token.empty() && accept(token)) return op;
    }
    return std::nullopt;
  }

  NodePtr unary() {
    for (const auto& [token, op] : {std::pair{"-", Op::kNeg}, std::pair{"!", Op::kNot}}) {
      if (!accept(token)) continue;
      const Nesting nesting(*this);
      return bounded(make(op, {unary()}));
    }
    return primary();
  }

  NodePtr primary() {
    skip_space();
    if (at_ >= text_.size()) fail("expected a number, a name or '('");
    const char c = text_[at_];
    if (c == '(') {
      ++at_;
      NodePtr inner = conditional();
      expect(")");
      return inner;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return number();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') return name();
    if (c == '"' || c == '\'') return string_literal(c);
    fail(fmt::format("unexpected '{}'", c));
  }

  // "text" or 'text': printable characters other than the quote, no escapes. Only an operand
  // of == or != facing a hyperparameter name (see compare()).
  NodePtr string_literal(char quote) {
    const size_t start = at_++;
    const size_t end = text_.find(quote, at_);
    if (end == std::string_view::npos) fail("unterminated string literal", start);
    for (size_t i = at_; i < end; ++i) {
      if (!std::isprint(static_cast<unsigned char>(text_[i]))) fail("a string literal holds printable ASCII characters only", i);
    }
    auto node = std::make_shared<Expr::Node>();
    node->op = Op::kString;
    node->value = static_cast<int64_t>(start);
    node->text = std::string(text_.substr(at_, end - at_));
    at_ = end + 1;
    return node;
  }

  // `left op right`, where a string literal on either side makes a string comparison.
  NodePtr combine(Op op, NodePtr left, NodePtr right) const {
    const bool left_string = left->op == Op::kString, right_string = right->op == Op::kString;
    if (!left_string && !right_string) {
      return bounded(make(op, {std::move(left), std::move(right)}));
    }
    const NodePtr& literal = left_string ? left : right;
    const NodePtr& other = left_string ? right : left;
    if ((op != Op::kEq && op != Op::kNe) || other->op != Op::kSymbol || other->symbol == kLayerSymbol) {
      fail_string(*literal);
    }
    auto node = std::make_shared<Expr::Node>();
    node->op = op == Op::kEq ? Op::kStrEq : Op::kStrNe;
    node->symbol = other->symbol;
    node->name = other->name;
    node->text = literal->text;
    node->depth = 2;
    return node;
  }

  [[noreturn]] void fail_string(const Expr::Node& literal) const {
    fail(fmt::format("the string \"{}\" can only be compared, with == or !=, to a string hyperparameter's name", literal.text),
         static_cast<size_t>(literal.value));
  }

  // A string literal anywhere but in a comparison (alone, an argument, a branch of ?:).
  void reject_bare_strings(const Expr::Node& root) const {
    std::vector<const Expr::Node*> pending{&root};
    while (!pending.empty()) {
      const Expr::Node* node = pending.back();
      pending.pop_back();
      if (node->op == Op::kString) fail_string(*node);
      for (const NodePtr& arg : node->args) pending.push_back(arg.get());
    }
  }

  NodePtr number() {
    const size_t start = at_;
    int64_t value = 0;
    while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_]))) {
      if (__builtin_mul_overflow(value, 10, &value) || __builtin_add_overflow(value, text_[at_] - '0', &value)) {
        fail("integer literal out of range", start);
      }
      ++at_;
    }
    return make_literal(value);
  }

  NodePtr name() {
    const size_t start = at_;
    while (at_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[at_])) || text_[at_] == '_')) ++at_;
    const std::string_view word = text_.substr(start, at_ - start);
    skip_space();
    if (at_ < text_.size() && text_[at_] == '(') {
      if (word != "min" && word != "max") fail(fmt::format("unknown function '{}' (known: min, max)", word), start);
      ++at_;
      std::vector<NodePtr> args{conditional()};
      while (accept(",")) args.push_back(conditional());
      expect(")");
      return bounded(make(word == "min" ? Op::kMin : Op::kMax, std::move(args)));
    }
    const std::optional<uint32_t> symbol = resolve_(word);
    if (!symbol) fail(fmt::format("unknown name '{}'", word), start);
    auto node = std::make_shared<Expr::Node>();
    node->op = Op::kSymbol;
    node->symbol = *symbol;
    node->name = std::string(word);
    return node;
  }

  std::string_view text_;
  const SourcePos& pos_;
  const Expr::Resolver& resolve_;
  size_t at_ = 0;
  int nesting_ = 0;
};

Expr Expr::parse(std::string_view text, const SourcePos& pos, const Resolver& resolve) {
  return ExprParser(text, pos, resolve).parse();
}

Expr Expr::literal(int64_t value) {
  return Expr(make_literal(value));
}

Expr Expr::sum(const std::vector<Expr>& terms) {
  if (terms.empty()) return literal(0);
  NodePtr total = terms.front().root_;
  for (size_t i = 1; i < terms.size(); ++i) total = make(Op::kAdd, {total, terms[i].root_});
  return Expr(total);
}

int64_t Expr::eval(const Lookup& lookup) const {
  return evaluate(*root_, lookup, nullptr);
}

int64_t Expr::eval(const Lookup& lookup, const StringLookup& strings) const {
  return evaluate(*root_, lookup, &strings);
}

std::vector<uint32_t> Expr::symbols() const {
  std::vector<uint32_t> out;
  collect_symbols(*root_, out);
  return out;
}

std::vector<uint32_t> Expr::string_symbols() const {
  std::vector<uint32_t> out;
  collect_symbols(*root_, out, Uses::kString);
  return out;
}

std::vector<uint32_t> Expr::integer_symbols() const {
  std::vector<uint32_t> out;
  collect_symbols(*root_, out, Uses::kInteger);
  return out;
}

std::string Expr::text() const {
  return render(*root_);
}

std::optional<int64_t> Expr::as_literal() const {
  if (root_->op == Op::kLiteral) return root_->value;
  return std::nullopt;
}

bool Expr::uses_layer() const {
  for (uint32_t symbol : symbols()) {
    if (symbol == kLayerSymbol) return true;
  }
  return false;
}

}  // namespace archreg::spec
