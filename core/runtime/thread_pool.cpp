#include "runtime/thread_pool.hpp"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ARCHREG_PAUSE() _mm_pause()
#else
#define ARCHREG_PAUSE() ((void)0)
#endif

namespace archreg::runtime {
namespace {

// Spin this many times before yielding or sleeping: long enough to bridge the gap between two
// nodes of a decode step, short enough not to burn a core between requests.
constexpr int kSpinsBeforeYield = 1 << 12;
constexpr auto kSpinTimeBeforeSleep = std::chrono::milliseconds(2);

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  n_threads_ = n_threads > 0 ? n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < n_threads_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ThreadPool::execute(int index) {
  try {
    (*job_)(index, n_threads_);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin first, then sleep.
    const auto spin_start = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      if (++spins < kSpinsBeforeYield) {
        ARCHREG_PAUSE();
        continue;
      }
      spins = 0;
      if (std::chrono::steady_clock::now() - spin_start < kSpinTimeBeforeSleep) {
        std::this_thread::yield();
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      sleeping_.fetch_sub(1);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    execute(index);
    finished_.fetch_add(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run(const std::function<void(int, int)>& job) {
  job_ = &job;
  error_ = nullptr;
  finished_.store(0);
  barrier_count_.store(0);
  for (auto& c : chunk_counters_) c.store(0);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (sleeping_.load() > 0) wake_.notify_all();
  execute(0);
  int spins = 0;
  while (finished_.load(std::memory_order_acquire) < n_threads_ - 1) {
    if (++spins < kSpinsBeforeYield) {
      ARCHREG_PAUSE();
    } else {
      spins = 0;
      std::this_thread::yield();
    }
  }
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::barrier() {
  if (n_threads_ == 1) return;
  const uint64_t phase = barrier_phase_.load(std::memory_order_acquire);
  if (barrier_count_.fetch_add(1, std::memory_order_acq_rel) == n_threads_ - 1) {
    barrier_count_.store(0, std::memory_order_relaxed);
    // Every thread is waiting here, so nobody takes from the next phase's counter yet.
    chunk_counters_[(phase + 1) & 1].store(0, std::memory_order_relaxed);
    barrier_phase_.fetch_add(1, std::memory_order_acq_rel);
    return;
  }
  int spins = 0;
  while (barrier_phase_.load(std::memory_order_acquire) == phase) {
    if (++spins < kSpinsBeforeYield) {
      ARCHREG_PAUSE();
    } else {
      spins = 0;
      std::this_thread::yield();
    }
  }
}

}  // namespace archreg::runtime
