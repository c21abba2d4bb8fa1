#include "spec/expr.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

namespace archreg::spec {
namespace {

using ::testing::HasSubstr;

// Names a..e resolve to symbols 0..4 with values 2, 3, 5, 7, 0.
const std::map<std::string, uint32_t, std::less<>> kNames = {{"a", 0}, {"b", 1}, {"c", 2}, {"d", 3}, {"zero", 4}};
const int64_t kValues[] = {2, 3, 5, 7, 0};

std::optional<uint32_t> resolve(std::string_view name) {
  if (name == "layer") return kLayerSymbol;
  const auto it = kNames.find(name);
  if (it == kNames.end()) return std::nullopt;
  return it->second;
}

Expr parse(std::string_view text) {
  return Expr::parse(text, SourcePos{"spec.yaml", 4, 10}, resolve);
}

int64_t eval(std::string_view text, int64_t layer = 0) {
  return parse(text).eval([&](uint32_t s) { return s == kLayerSymbol ? layer : kValues[s]; });
}

TEST(Expr, ArithmeticFollowsPrecedenceAndAssociativity) {
  EXPECT_EQ(eval("a + b * c"), 17);
  EXPECT_EQ(eval("(a + b) * c"), 25);
  EXPECT_EQ(eval("d - c - a"), 0);
  EXPECT_EQ(eval("d / a"), 3);
  EXPECT_EQ(eval("d % c"), 2);
  EXPECT_EQ(eval("-a + 10"), 8);
  EXPECT_EQ(eval("100 / 10 / 5"), 2);
}

TEST(Expr, ComparisonsLogicAndConditional) {
  EXPECT_EQ(eval("a < b && c >= 5"), 1);
  EXPECT_EQ(eval("a == b || !zero"), 1);
  EXPECT_EQ(eval("a != 2"), 0);
  EXPECT_EQ(eval("layer >= 3 ? c : d", 4), 5);
  EXPECT_EQ(eval("layer >= 3 ? c : d", 1), 7);
  EXPECT_EQ(eval("zero ? 1 : zero ? 2 : 3"), 3);
}

TEST(Expr, MinMaxTakeAnyNumberOfArguments) {
  EXPECT_EQ(eval("min(d, a, c)"), 2);
  EXPECT_EQ(eval("max(a, b * c)"), 15);
  EXPECT_EQ(eval("max(a)"), 2);
}

TEST(Expr, DivisionByZeroAndOverflowAreErrorsNotWrapAround) {
  EXPECT_THROW(eval("a / zero"), EvalError);
  EXPECT_THROW(eval("a % zero"), EvalError);
  EXPECT_THROW(eval("9223372036854775807 + 1"), EvalError);
  EXPECT_THROW(eval("3037000500 * 3037000500"), EvalError);
  EXPECT_THROW(eval("-9223372036854775807 - 2"), EvalError);
}

TEST(Expr, SyntaxErrorsCarryTheColumn) {
  try {
    parse("a + nope * 2");
    FAIL() << "expected a syntax error";
  } catch (const ExprSyntaxError& error) {
    EXPECT_EQ(error.pos().line, 4);
    EXPECT_EQ(error.pos().column, 14);  // the expression starts at column 10; 'nope' at +4
    EXPECT_THAT(error.what(), HasSubstr("spec.yaml:4:14"));
    EXPECT_THAT(error.what(), HasSubstr("unknown name 'nope'"));
  }
  EXPECT_THROW(parse("a +"), ExprSyntaxError);
  EXPECT_THROW(parse("(a + b"), ExprSyntaxError);
  EXPECT_THROW(parse("a b"), ExprSyntaxError);
  EXPECT_THROW(parse("sqrt(a)"), ExprSyntaxError);
  EXPECT_THROW(parse("a ? b"), ExprSyntaxError);
  EXPECT_THROW(parse("99999999999999999999"), ExprSyntaxError);
  EXPECT_THROW(parse(""), ExprSyntaxError);
}

TEST(Expr, CanonicalTextRoundTrips) {
  for (const char* text : {"a + b * c", "(a + b) * c", "a - (b - c)", "min(a, b) + 1", "layer < a ? b : c", "!(a == b)"}) {
    const Expr e = parse(text);
    const Expr again = parse(e.text());
    EXPECT_EQ(again.text(), e.text()) << text;
    EXPECT_EQ(again.eval([](uint32_t s) { return s == kLayerSymbol ? 1 : kValues[s]; }), e.eval([](uint32_t s) {
      return s == kLayerSymbol ? 1 : kValues[s];
    })) << text;
  }
  EXPECT_EQ(parse("a  +b*c").text(), "a + b * c");
}

TEST(Expr, StringComparisonsOfANameWithALiteral) {
  const auto strings = [](uint32_t s) -> std::string_view {
    if (s == 0) return "yarn";
    throw EvalError("not a string");
  };
  const auto ints = [](uint32_t s) { return kValues[s]; };
  EXPECT_EQ(parse(R"(a == "yarn")").eval(ints, strings), 1);
  EXPECT_EQ(parse(R"("yarn" != a)").eval(ints, strings), 0);
  EXPECT_EQ(parse("a == 'linear' || b > 2").eval(ints, strings), 1);
  EXPECT_EQ(parse(R"(a == "none" ? 1 : 2)").eval(ints, strings), 2);
  EXPECT_EQ(parse(R"(a == "Yarn")").eval(ints, strings), 0) << "case-sensitive, as llama.cpp compares";
  EXPECT_THROW(parse(R"(b == "yarn")").eval(ints, strings), EvalError);
  EXPECT_THROW(parse(R"(a == "yarn")").eval(ints), EvalError) << "no string values given";
  const Expr e = parse(R"(a == "yarn" && b != 'x y')");
  EXPECT_EQ(e.text(), R"(a == "yarn" && b != "x y")");
  EXPECT_EQ(parse(e.text()).text(), e.text());
  EXPECT_THAT(e.string_symbols(), ::testing::ElementsAre(0u, 1u));
  EXPECT_THAT(e.integer_symbols(), ::testing::ElementsAre());
  EXPECT_THAT(parse(R"(a == "yarn" && c > 1)").integer_symbols(), ::testing::ElementsAre(2u));
}

TEST(Expr, AStringLiteralOutsideAComparisonIsASyntaxError) {
  for (const char* text : {R"("yarn")", R"(a + "yarn")", R"(a < "yarn")", R"("a" == "b")", R"(layer == "x")", R"(max(a, "x"))",
                           R"(b ? "x" : "y")", R"(a == "open)", "a == \"tab\there\""}) {
    try {
      parse(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const ExprSyntaxError& error) {
      EXPECT_THAT(error.bare_message(), ::testing::AnyOf(HasSubstr("can only be compared"), HasSubstr("unterminated"),
                                                         HasSubstr("printable"), HasSubstr("unexpected")))
          << text;
    }
  }
}

TEST(Expr, SumBuildsAdditionOfTerms) {
  const Expr total = Expr::sum({parse("a * b"), parse("c"), parse("d")});
  EXPECT_EQ(total.eval([](uint32_t s) { return kValues[s]; }), 18);
  EXPECT_EQ(Expr::sum({}).as_literal(), 0);
  EXPECT_TRUE(parse("layer + 1").uses_layer());
  EXPECT_FALSE(parse("a + 1").uses_layer());
}

}  // namespace
}  // namespace archreg::spec
