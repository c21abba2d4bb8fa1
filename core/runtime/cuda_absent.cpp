// The CUDA backend's entry points in a build without the CUDA toolkit (nvcc was not found when
// CMake configured, or ARCHREG_CUDA=OFF).
#include <stdexcept>

#include "runtime/backend.hpp"

namespace archreg::runtime {

std::optional<std::string> cuda_unavailable() {
  return std::string("this archreg was built without CUDA (no nvcc when it was configured, or ARCHREG_CUDA=OFF)");
}

std::unique_ptr<Backend> make_cuda_backend() {
  throw std::runtime_error("the CUDA backend cannot run: " + *cuda_unavailable());
}

}  // namespace archreg::runtime
