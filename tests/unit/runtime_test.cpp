// The runtime's building blocks against direct computations, the thread pool's barrier, and the
// session's refusals. Whole models are checked against llama.cpp in
// tests/interop/test_run_logits.py.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "cpu/ops.hpp"
#include "runtime/thread_pool.hpp"

namespace archreg::runtime {
namespace {

namespace kc = kernels::cpu;

std::vector<float> random_row(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

TEST(RuntimeOps, RmsNormMatchesTheDefinition) {
  for (size_t n : {1u, 7u, 64u, 577u}) {
    const std::vector<float> x = random_row(n, static_cast<uint32_t>(n));
    std::vector<float> y(n);
    kc::rms_norm_row(x.data(), y.data(), static_cast<int64_t>(n), 1e-5f);
    double sum = 0.0;
    for (float v : x) sum += static_cast<double>(v) * v;
    const double scale = 1.0 / std::sqrt(sum / static_cast<double>(n) + 1e-5);
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i] * scale, 1e-5 * std::abs(x[i] * scale) + 1e-7) << "n=" << n << " i=" << i;
  }
}

TEST(RuntimeOps, LayerNormHasZeroMeanAndUnitVariance) {
  const std::vector<float> x = random_row(301, 3);
  std::vector<float> y(x.size());
  kc::layer_norm_row(x.data(), y.data(), static_cast<int64_t>(x.size()), 0.0f);
  const double mean = std::accumulate(y.begin(), y.end(), 0.0) / static_cast<double>(y.size());
  double var = 0.0;
  for (float v : y) var += (v - mean) * (v - mean);
  EXPECT_NEAR(mean, 0.0, 1e-6);
  EXPECT_NEAR(var / static_cast<double>(y.size()), 1.0, 1e-5);
}

TEST(RuntimeOps, SoftmaxSumsToOneAndKeepsOrder) {
  std::vector<float> x = {1.0f, 3.0f, -2.0f, 3.0f, 100.0f, -100.0f};
  const std::vector<float> original = x;
  kc::softmax_row(x.data(), static_cast<int64_t>(x.size()));
  double sum = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    sum += x[i];
    EXPECT_NEAR(x[i], std::exp(original[i] - 100.0f) / (1.0 + 2 * std::exp(-97.0) + std::exp(-99.0) + std::exp(-102.0) + std::exp(-200.0)),
                1e-6);
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);
}

TEST(RuntimeOps, RopeRotatesPairsByPositionTimesFrequency) {
  for (bool neox : {false, true}) {
    kc::RopeParams p;
    p.n_rot = 8;
    p.neox = neox;
    p.freq_base = 10000.0f;
    std::vector<float> cache(8);
    const int64_t pos = 5;
    kc::rope_cache(p, pos, cache.data());
    std::vector<float> head = random_row(10, 9);  // two dimensions past n_rot stay as they are
    const std::vector<float> before = head;
    kc::rope_apply(p, cache.data(), head.data());
    for (int i = 0; i < 4; ++i) {
      const double theta = static_cast<double>(pos) * std::pow(10000.0, -2.0 * i / 8.0);
      const size_t a = neox ? static_cast<size_t>(i) : static_cast<size_t>(2 * i);
      const size_t b = neox ? static_cast<size_t>(i + 4) : static_cast<size_t>(2 * i + 1);
      EXPECT_NEAR(head[a], before[a] * std::cos(theta) - before[b] * std::sin(theta), 1e-5) << "neox=" << neox << " i=" << i;
      EXPECT_NEAR(head[b], before[a] * std::sin(theta) + before[b] * std::cos(theta), 1e-5) << "neox=" << neox << " i=" << i;
    }
    EXPECT_EQ(head[8], before[8]);
    EXPECT_EQ(head[9], before[9]);
  }
}

TEST(RuntimeOps, ClampedSwigluFollowsGptOss) {
  // x = min(gate, limit); y = clamp(up, -limit, limit); x * sigmoid(alpha x) * (y + 1)
  for (float gate : {-3.0f, 0.5f, 9.0f}) {
    for (float up : {-10.0f, 0.25f, 10.0f}) {
      const float x = std::min(gate, 7.0f);
      const float y = std::clamp(up, -7.0f, 7.0f);
      EXPECT_NEAR(kc::swiglu_oai(gate, up, 1.702f, 7.0f), x / (1.0f + std::exp(-1.702f * x)) * (y + 1.0f), 1e-5);
    }
  }
}

TEST(ThreadPool, EveryThreadRunsEachPhaseBetweenBarriers) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> counts(64);
  std::atomic<bool> ordered{true};
  for (int round = 0; round < 50; ++round) {
    for (auto& c : counts) c.store(0);
    pool.run([&](int ith, int nth) {
      for (size_t phase = 0; phase < counts.size(); ++phase) {
        counts[phase].fetch_add(1);
        pool.barrier();
        if (counts[phase].load() != nth) ordered.store(false);
        (void)ith;
      }
    });
  }
  EXPECT_TRUE(ordered.load());
}

TEST(ThreadPool, ForChunksHandsOutEveryItemOnceInEachPhase) {
  // Several dynamically split loops in a row, one per barrier interval, over several jobs: each
  // item of each loop is taken exactly once, whatever thread takes it (the counter of each phase
  // must start from 0 again).
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    constexpr int kPhases = 5;
    constexpr int64_t kItems = 101;
    for (int job = 0; job < 20; ++job) {
      std::vector<std::atomic<int>> seen(kPhases * kItems);
      pool.run([&](int, int) {
        for (int phase = 0; phase < kPhases; ++phase) {
          pool.for_chunks(kItems, 1 + phase * 3, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) seen[static_cast<size_t>(phase * kItems + i)].fetch_add(1);
          });
          pool.barrier();
        }
      });
      for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].load(), 1) << threads << " threads, job " << job << ", item " << i;
    }
  }
}

TEST(ThreadPool, RethrowsAnExceptionFromAWorker) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run([](int ith, int) {
    if (ith == 1) throw std::runtime_error("worker failed");
  }),
               std::runtime_error);
  int ran = 0;
  pool.run([&](int ith, int) {
    if (ith == 0) ran = 1;
  });
  EXPECT_EQ(ran, 1);
}

}  // namespace
}  // namespace archreg::runtime
