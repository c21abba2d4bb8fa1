// A persistent pool of worker threads that run one job on every thread at once, ggml-style:
// every thread walks the same graph and takes its share of each node, meeting the others at a
// barrier between nodes. Workers spin briefly between jobs and sleep when idle, so a decode step
// of a few hundred small nodes does not pay a kernel wake-up per node.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace archreg::runtime {

class ThreadPool {
 public:
  // n_threads includes the calling thread; 0 means every core.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs job(thread_index, n_threads) on every thread (the caller is thread 0) and returns
  // when all have finished. The first exception thrown by any thread is rethrown here.
  void run(const std::function<void(int, int)>& job);

  // Waits until every thread of the current job has reached it. Only inside run().
  void barrier();

  // Splits items [0, n) between the threads of the current job as they come: each thread calls
  // f(begin, end) for chunks of `chunk` items, taking the next free chunk until none is left —
  // fairer than a fixed share when another process takes a core, or when items differ in cost.
  // Every thread calls it with the same n and chunk, at most once between two barriers (the
  // barrier before resets the counter it takes from). Only inside run().
  template <typename F>
  void for_chunks(int64_t n, int64_t chunk, F&& f) {
    chunk = chunk > 0 ? chunk : 1;
    if (n_threads_ == 1) {
      for (int64_t b = 0; b < n; b += chunk) f(b, b + chunk < n ? b + chunk : n);
      return;
    }
    std::atomic<int64_t>& next = chunk_counters_[barrier_phase_.load(std::memory_order_acquire) & 1];
    for (;;) {
      const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
      if (b >= n) return;
      f(b, b + chunk < n ? b + chunk : n);
    }
  }

 private:
  void worker(int index);
  void execute(int index);

  int n_threads_;
  std::vector<std::thread> threads_;
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> finished_{0};
  std::atomic<int> barrier_count_{0};
  std::atomic<uint64_t> barrier_phase_{0};
  std::atomic<int64_t> chunk_counters_[2] = {0, 0};  // for_chunks' counter of barrier phase p is [p & 1]
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleeping_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace archreg::runtime
