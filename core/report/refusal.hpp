// A refusal: archreg will not load or rewrite a file, and says why — a message, and the
// findings when the file does not validate. One type and one formatter for every command that
// refuses a file (the runtime loader's LoadError and fuse/unfuse's RewriteError are this).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "report/finding.hpp"

namespace archreg::report {

// "\n  code subject: message (expected E, found F)" per finding.
std::string describe(const std::vector<Finding>& findings);

class Refusal : public std::runtime_error {
 public:
  explicit Refusal(const std::string& message, std::vector<Finding> findings = {})
      : std::runtime_error(message + describe(findings)), findings_(std::move(findings)) {}
  const std::vector<Finding>& findings() const { return findings_; }

 private:
  std::vector<Finding> findings_;
};

}  // namespace archreg::report
