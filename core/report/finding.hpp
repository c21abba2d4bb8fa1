// One problem found in a file, with a stable code (docs/cli.md lists them).
#pragma once

#include <optional>
#include <string>

namespace archreg::report {

struct Finding {
  std::string code;     // "missing_tensor", "wrong_shape", ...
  std::string subject;  // the tensor, key or group concerned
  std::string message;  // for people: what is wrong and why it matters
  std::optional<std::string> expected;
  std::optional<std::string> found;
};

}  // namespace archreg::report
