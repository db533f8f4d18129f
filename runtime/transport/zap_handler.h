#pragma once
// The ZeroMQ authentication handler (ZAP, RFC 27) of a CURVE server: accepts a connection
// only when the client's public key is in `authorized_keys`, before any message of it
// reaches a socket. It serves inproc://zeromq.zap.01 of `context` on its own thread, so
// one CURVE server per context.
//
// Threading: construct and destroy on one thread; the handler thread owns its socket.

#include <zmq.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace tandem::transport {

class ZapHandler {
 public:
  // Binds the handler before returning (so the CURVE socket bound after it never accepts
  // a connection unchecked); throws TransportError when it cannot (another CURVE server
  // on this context). Keys are Z85; keys that do not decode are never matched.
  ZapHandler(zmq::context_t& context, const std::vector<std::string>& authorized_keys,
             std::shared_ptr<spdlog::logger> log);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // The ZAP domain the CURVE socket must name (zmq::sockopt::zap_domain).
  static constexpr const char* kDomain = "tandem";

 private:
  void run(zmq::socket_t handler);

  std::vector<std::string> allowed_;  // 32-byte binary keys
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace tandem::transport
