#include "runtime/transport/zap_handler.h"

#include <spdlog/spdlog.h>
#include <zmq_addon.hpp>

#include <algorithm>
#include <array>
#include <chrono>

#include "runtime/common/error.h"

namespace tandem::transport {

ZapHandler::ZapHandler(zmq::context_t& context, const std::vector<std::string>& authorized_keys,
                       std::shared_ptr<spdlog::logger> log)
    : log_(std::move(log)) {
  for (const auto& key : authorized_keys) {
    std::string binary(32, '\0');
    if (key.size() == 40 && zmq_z85_decode(reinterpret_cast<std::uint8_t*>(binary.data()), key.c_str())) {
      allowed_.push_back(binary);
    }
  }
  zmq::socket_t handler(context, zmq::socket_type::rep);
  handler.set(zmq::sockopt::linger, 0);
  try {
    handler.bind("inproc://zeromq.zap.01");
  } catch (const zmq::error_t& e) {
    throw TransportError(std::string("cannot start the CURVE authentication handler: ") + e.what());
  }
  // The socket moves to the handler thread; starting a thread is the full memory barrier
  // ZeroMQ asks for when a socket changes threads.
  thread_ = std::thread([this, h = std::move(handler)]() mutable { run(std::move(h)); });
}

ZapHandler::~ZapHandler() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

void ZapHandler::run(zmq::socket_t handler) {
  while (!stopping_) {
    zmq::pollitem_t items[] = {{handler.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 1, std::chrono::milliseconds(100));
      if (!(items[0].revents & ZMQ_POLLIN)) continue;
      std::vector<zmq::message_t> request;
      if (!zmq::recv_multipart(handler, std::back_inserter(request))) continue;
      // version, request id, domain, address, identity, mechanism, credentials...
      std::string status = "400";
      std::string text = "refused";
      std::string user;
      if (request.size() >= 7 && request[5].to_string() == "CURVE" && request[6].size() == 32) {
        const std::string key = request[6].to_string();
        char z85[41] = {0};
        zmq_z85_encode(z85, reinterpret_cast<const std::uint8_t*>(key.data()), 32);
        user = z85;
        if (std::find(allowed_.begin(), allowed_.end(), key) != allowed_.end()) {
          status = "200";
          text = "OK";
        } else {
          log_->warn("refused a CURVE connection from {}: key {} is not in security.authorized_keys",
                     request[3].to_string(), z85);
          text = "key not authorized";
        }
      }
      const std::string request_id = request.size() > 1 ? request[1].to_string() : std::string();
      std::array<zmq::const_buffer, 6> reply = {zmq::str_buffer("1.0"), zmq::buffer(request_id), zmq::buffer(status),
                                                zmq::buffer(text),      zmq::buffer(user),       zmq::const_buffer()};
      zmq::send_multipart(handler, reply);
    } catch (const zmq::error_t& e) {
      // The context is terminating, or a request broke the REP state machine: say so; the
      // CURVE socket then refuses connections (no handler answers).
      log_->error("CURVE authentication handler stopped: {}", e.what());
      return;
    }
  }
}

}  // namespace tandem::transport
