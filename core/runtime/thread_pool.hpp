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
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleeping_{0};
  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace archreg::runtime
