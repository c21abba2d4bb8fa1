#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"archreg: a registry of model architectures for GGUF files"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "archreg 0.1.0");
  int exit_code = archreg::cli::kExitOk;
  archreg::cli::add_inspect_command(app, exit_code);
  archreg::cli::add_validate_command(app, exit_code);
  archreg::cli::add_spec_command(app, exit_code);
  archreg::cli::add_list_command(app, exit_code);
  archreg::cli::add_fuse_commands(app, exit_code);
  archreg::cli::add_tokenize_command(app, exit_code);
  archreg::cli::add_run_command(app, exit_code);
  archreg::cli::add_bench_command(app, exit_code);
  archreg::cli::add_chat_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int status = app.exit(error);
    return status == 0 ? archreg::cli::kExitOk : archreg::cli::kExitUnreadable;
  } catch (const std::exception& error) {
    fmt::print(stderr, "archreg: {}\n", error.what());
    return archreg::cli::kExitUnreadable;
  }
  return exit_code;
}
