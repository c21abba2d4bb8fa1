// The spec expression language: 64-bit integers, hyperparameter names, `layer`,
// + - * / %, unary - and !, comparisons, && ||, ?:, min(...), max(...), parentheses, and
// string comparisons of a string hyperparameter with a literal (`rope_scaling_type == "yarn"`).
// Parsed once when a spec is loaded; evaluation never wraps and never divides by zero.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace archreg::spec {

// A position in a spec file, for messages: "arch-specs/example.yaml:12:7".
struct SourcePos {
  std::string file;
  int line = 0;    // 1-based
  int column = 0;  // 1-based
  std::string text() const;
  SourcePos advanced(int columns) const { return {file, line, column + columns}; }
};

// A parse error, located.
class ExprSyntaxError : public std::runtime_error {
 public:
  ExprSyntaxError(SourcePos pos, const std::string& message);
  const SourcePos& pos() const { return pos_; }
  const std::string& bare_message() const { return message_; }

 private:
  SourcePos pos_;
  std::string message_;
};

// An evaluation failure: a name without a value, division by zero, overflow.
class EvalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kLayerSymbol = UINT32_MAX;

// Limits on one expression (docs/spec-format.md), so that parsing, evaluating and printing it
// take bounded time and stack whatever a spec holds: its length in characters, and how deep it
// nests (parentheses, unary operators, ?:, function calls, and chains such as a + b + c, which
// count one level per operator).
inline constexpr size_t kMaxExprLength = 4096;
inline constexpr int kMaxExprDepth = 64;

class Expr {
 public:
  // Resolves a name to a symbol id (kLayerSymbol for `layer`), or nullopt if unknown.
  using Resolver = std::function<std::optional<uint32_t>(std::string_view)>;
  // Gives a symbol's value or throws EvalError.
  using Lookup = std::function<int64_t(uint32_t symbol)>;
  // Gives a string symbol's value (for `name == "text"`) or throws EvalError.
  using StringLookup = std::function<std::string_view(uint32_t symbol)>;

  static Expr parse(std::string_view text, const SourcePos& pos, const Resolver& resolve);
  static Expr literal(int64_t value);
  static Expr sum(const std::vector<Expr>& terms);  // a + b + ... ; literal 0 when empty

  // Without a StringLookup, a string comparison throws EvalError.
  int64_t eval(const Lookup& lookup) const;
  int64_t eval(const Lookup& lookup, const StringLookup& strings) const;
  // Symbols the expression reads: all of them; those compared with string literals; the others.
  std::vector<uint32_t> symbols() const;
  std::vector<uint32_t> string_symbols() const;
  std::vector<uint32_t> integer_symbols() const;
  // Canonical text, fully parenthesised where needed: equal for structurally equal expressions.
  std::string text() const;
  std::optional<int64_t> as_literal() const;
  bool uses_layer() const;

  struct Node;  // opaque outside expr.cpp

 private:
  explicit Expr(std::shared_ptr<const Node> root) : root_(std::move(root)) {}
  std::shared_ptr<const Node> root_;
  friend class ExprParser;
};

}  // namespace archreg::spec
