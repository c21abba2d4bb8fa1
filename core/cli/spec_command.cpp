// `archreg spec check FILE...`: lints spec files, reporting every problem with file:line:column.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "cli/commands.hpp"
#include "gguf/error.hpp"
#include "registry/spec_catalog.hpp"
#include "spec/fused_forms.hpp"
#include "spec/spec.hpp"

namespace archreg::cli {

void add_spec_command(CLI::App& app, int& exit_code) {
  auto* spec_command = app.add_subcommand("spec", "Work with architecture spec files");
  spec_command->require_subcommand(1);
  auto* check = spec_command->add_subcommand("check", "Lint spec files: every problem, with file:line:column");
  auto files = std::make_shared<std::vector<std::string>>();
  check->add_option("FILE", *files, "Spec files (arch-specs/<arch>.yaml)")->required();
  check->callback([files, &exit_code] {
    exit_code = kExitOk;
    // A spec outside arch-specs/ (a user's copy) finds the built-in bases it extends.
    const std::vector<std::filesystem::path> base_dirs = registry::SpecCatalog::default_dirs();
    for (const std::string& file : *files) {
      try {
        const spec::Spec spec = spec::load_spec(file, base_dirs);
        std::vector<std::string> groups;
        for (const spec::FusedForm& form : spec.fused_forms) groups.push_back(form.base);
        const auto sidecars =
            std::count_if(spec.tensors.begin(), spec.tensors.end(), [](const spec::TensorDecl& t) { return t.sidecar_of; });
        fmt::print("{}: ok: arch {}, {} hyperparameters, {} tensors{}, fusable: {}\n", gguf::printable(file), gguf::printable(spec.arch),
                   spec.hparams.size(), spec.tensors.size() - static_cast<size_t>(sidecars),
                   sidecars > 0 ? fmt::format(" (+{} optional sidecars)", sidecars) : "",
                   groups.empty() ? "none" : gguf::printable(fmt::format("{}", fmt::join(groups, ", "))));
        if (!spec.description.empty()) fmt::print("  {}\n", gguf::printable(spec.description));
      } catch (const spec::SpecError& error) {
        for (const std::string& problem : error.problems()) fmt::print(stderr, "{}\n", gguf::printable(problem));
        exit_code = kExitInvalid;
      }
    }
  });
}

}  // namespace archreg::cli
