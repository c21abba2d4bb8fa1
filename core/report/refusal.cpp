#include "report/refusal.hpp"

#include <fmt/format.h>

namespace archreg::report {

std::string describe(const std::vector<Finding>& findings) {
  std::string text;
  for (const Finding& f : findings) {
    text += fmt::format("\n  {} {}: {}", f.code, f.subject, f.message);
    if (f.expected && f.found) text += fmt::format(" (expected {}, found {})", *f.expected, *f.found);
  }
  return text;
}

}  // namespace archreg::report
