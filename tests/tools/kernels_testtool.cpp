// kernels-testtool: the CPU kernels (kernels/cpu/quants.hpp) driven from Python, so that the
// interop tests can compare them with gguf-py's own numpy implementation of ggml's formats.
//
//   kernels-testtool dequantize TYPE N   stdin: one row of N elements of ggml type id TYPE
//                                        (row_size bytes); stdout: N float32 (little-endian)
//   kernels-testtool quantize TYPE N     stdin: N float32; stdout: the row quantized to TYPE
//                                        (an activation type: Q8_0, Q8_1, Q8_K, F16, BF16, F32)
//   kernels-testtool vec_dot TYPE N      stdin: the weight row then the activation row (in
//                                        vec_dot_type(TYPE)); stdout: "ref fast" as text
//
// Both the reference and the dispatched dequantization/quantization are run; the tool fails
// (exit status 3) if they differ, since they must be bit-identical except for quantize, where
// the reference (what is printed) is ggml's quantize_row_*_ref.
// Exit status: 0 success, 1 usage error, 3 mismatch.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/quants.hpp"

namespace kc = archreg::kernels::cpu;

namespace {

std::vector<uint8_t> read_stdin() {
  std::vector<uint8_t> data;
  char buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, stdin)) > 0) data.insert(data.end(), buf, buf + got);
  return data;
}

void write_stdout(const void* p, size_t n) {
  if (std::fwrite(p, 1, n, stdout) != n) throw std::runtime_error("short write");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: kernels-testtool dequantize|quantize|vec_dot TYPE N\n";
    return 1;
  }
  try {
    const std::string cmd = argv[1];
    const auto type = static_cast<int32_t>(std::stol(argv[2]));
    const int64_t n = std::stoll(argv[3]);
    const auto in = read_stdin();
    const size_t count = static_cast<size_t>(n);
    if (cmd == "dequantize") {
      if (in.size() != kc::row_size(type, n)) throw std::invalid_argument("input size is not row_size(TYPE, N)");
      std::vector<float> ref(count), fast(count);
      kc::dequantize_row_ref(type, in.data(), ref.data(), n);
      kc::dequantize_row(type, in.data(), fast.data(), n);
      if (std::memcmp(ref.data(), fast.data(), count * 4) != 0) {
        std::cerr << "dequantize_row and dequantize_row_ref differ\n";
        return 3;
      }
      write_stdout(ref.data(), count * 4);
    } else if (cmd == "quantize") {
      if (in.size() != count * 4) throw std::invalid_argument("input size is not 4 * N");
      std::vector<float> x(count);
      std::memcpy(x.data(), in.data(), in.size());
      std::vector<uint8_t> out(kc::row_size(type, n));
      kc::quantize_row_ref(type, x.data(), out.data(), n);
      write_stdout(out.data(), out.size());
    } else if (cmd == "vec_dot") {
      const size_t wbytes = kc::row_size(type, n), abytes = kc::row_size(kc::vec_dot_type(type), n);
      if (in.size() != wbytes + abytes) throw std::invalid_argument("input size is not the two rows");
      const float ref = kc::vec_dot_ref(type, n, in.data(), in.data() + wbytes);
      const float fast = kc::vec_dot(type, n, in.data(), in.data() + wbytes);
      std::printf("%.9g %.9g\n", static_cast<double>(ref), static_cast<double>(fast));
    } else {
      std::cerr << "unknown command " << cmd << "\n";
      return 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "kernels-testtool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
