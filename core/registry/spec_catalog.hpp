// Finds architecture specs by arch name across spec directories, loading each only when asked.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "spec/spec.hpp"

namespace archreg::registry {

class RegistryError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class SpecCatalog {
 public:
  // Indexes `<dir>/<arch>.yaml` in each directory (missing directories are skipped; a
  // directory that exists but cannot be read is an error; a directory reached twice is read
  // once). Nothing is parsed yet. For an arch with a file in several directories, the first
  // directory's file is used and the others are shadowed by it.
  explicit SpecCatalog(std::vector<std::filesystem::path> dirs);

  // Directories searched by default: $ARCHREG_SPEC_PATH (colon-separated), then the
  // arch-specs/ installed beside the binary (../share/archreg/arch-specs) or, failing that,
  // the source tree's arch-specs/ the binary was built from.
  static std::vector<std::filesystem::path> default_dirs();

  const std::vector<std::filesystem::path>& dirs() const { return dirs_; }
  std::vector<std::string> arch_names() const;
  // The spec file for `arch` (from the first directory that has one); nullopt if none.
  std::optional<std::filesystem::path> find(const std::string& arch) const;
  // The files of later directories that find(arch) shadows, in search order.
  std::vector<std::filesystem::path> shadowed(const std::string& arch) const;
  // Loads (once) and returns the spec for `arch`; nullptr if unknown. Throws spec::SpecError.
  const spec::Spec* load(const std::string& arch);

 private:
  std::vector<std::filesystem::path> dirs_;
  std::map<std::string, std::vector<std::filesystem::path>> files_;  // arch -> its files, in search order
  std::map<std::string, std::unique_ptr<spec::Spec>> loaded_;
};

}  // namespace archreg::registry
