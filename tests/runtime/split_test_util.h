#pragma once
// Runs a cloud and an edge in one process (two threads, tcp://127.0.0.1 on an ephemeral
// port) for split-training tests.

#include <atomic>
#include <exception>
#include <memory>
#include <thread>

#include "runtime/config/config.h"
#include "runtime/pipeline/cloud.h"
#include "runtime/pipeline/edge.h"
#include "runtime/pipeline/link.h"
#include "runtime/transport/zmq_transport.h"

namespace tandem::testing {

struct CloudThread {
  std::unique_ptr<pipeline::CloudTrainer> cloud;
  std::atomic<bool> stop{false};
  pipeline::CloudOutcome outcome = pipeline::CloudOutcome::kFailed;
  std::thread thread;
  std::string endpoint;

  CloudThread(const config::Config& config, pipeline::CloudOptions options = {}) {
    auto o = pipeline::zmqOptions(config, "cloud");
    o.endpoint = "tcp://127.0.0.1:*";
    auto transport = std::make_unique<transport::ZmqTransport>(o);
    endpoint = transport->endpoint();
    cloud = std::make_unique<pipeline::CloudTrainer>(config, pipeline::emulateLink(config, "cloud", std::move(transport)),
                                                     options);
    thread = std::thread([this] { outcome = cloud->run(stop); });
  }
  // Stops the cloud (if still running) and waits for it.
  void finish() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
  // Waits for the cloud to return on its own.
  void join() {
    if (thread.joinable()) thread.join();
  }
  ~CloudThread() { finish(); }
};

inline std::unique_ptr<pipeline::EdgeTrainer> makeEdge(const config::Config& config, const std::string& endpoint) {
  auto o = pipeline::zmqOptions(config, "edge");
  o.endpoint = endpoint;
  return std::make_unique<pipeline::EdgeTrainer>(
      config, pipeline::emulateLink(config, "edge", std::make_unique<transport::ZmqTransport>(o)));
}

}  // namespace tandem::testing
