#include "trainers/attack/attacks.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "runtime/transport/frame_corpus.h"

namespace tandem::attack {
namespace {

using Clock = std::chrono::steady_clock;
using transport::Body;
using transport::DType;
using transport::Header;
using transport::MessageType;
using transport::TensorMeta;
namespace fs = std::filesystem;

// A send that cannot be queued within this long counts as failed: a stalled cloud must
// not stall the attacker.
constexpr int kSendTimeoutMs = 2000;

struct AttackInfo {
  const char* name;
  std::int64_t default_count;
  const char* description;
};

const std::vector<AttackInfo>& attackTable() {
  static const std::vector<AttackInfo> table = {
      {"hello-flood", 1000, "valid Hellos, each from a fresh connection that disconnects right after (count: Hellos)"},
      {"bad-handshake", 10000,
       "mismatched Hellos (fingerprint, batch size, model, stages) from 4 connections; reports whether an Error "
       "reply leaks the cloud's fingerprint (count: Hellos)"},
      {"oversize-shapes", 5000,
       "after a valid Hello and EpochBegin, Activations with huge, negative or overflowing shapes and payloads "
       "that do not match them (count: messages)"},
      {"many-frames", 10, "messages of 100 000 frames (count: messages)"},
      {"big-frames", 4, "frames exactly at and one byte over link.max_message_mb, alternately (count: frames)"},
      {"replay", 2000,
       "after a valid session: replayed and reordered messages, wrong session ids, sequence gaps, steps ahead and "
       "behind (count: messages)"},
      {"slow-drip", 16,
       "raw TCP: half the connections send the ZMTP greeting and READY, then a large frame one byte at a time; the "
       "others stop mid-greeting; held until the time budget ends (count: connections)"},
      {"resync-flood", 300,
       "one session with K 64, 140 training steps, then Resyncs for everything from step 0 (header-only), each "
       "after a sequence gap; never reads its socket after the Welcome; held (a heartbeat a second) until the time "
       "budget ends "
       "(count: Resyncs)"},
      {"gap-flood", 20000,
       "no Hello: header-only messages each after a sequence gap from one connection that never reads; held (a "
       "heartbeat a second) until the time budget ends (count: messages)"},
      {"junk", 20000, "random and mutated protocol fuzz corpus frames from 3 connections (count: messages)"},
  };
  return table;
}

const AttackInfo& info(const std::string& name) {
  for (const auto& a : attackTable()) {
    if (name == a.name) return a;
  }
  std::string known;
  for (const auto& a : attackTable()) known += (known.empty() ? "" : ", ") + std::string(a.name);
  throw InvariantError("unknown attack '" + name + "' (known: " + known + ")");
}

// The shared tally of one attack; peers on several threads add to it.
struct Tally {
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> replies{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> failed_sends{0};
  std::atomic<bool> leaked{false};
};

// Ends an attack at its time budget or when stopped.
class Deadline {
 public:
  Deadline(double seconds, const std::atomic<bool>& stop)
      : end_(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))),
        stop_(stop) {}
  bool over() const { return stop_ || Clock::now() >= end_; }
  // At most `wait`, and no longer than the budget has left.
  std::chrono::milliseconds cap(std::chrono::milliseconds wait) const {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end_ - Clock::now());
    return std::max(std::chrono::milliseconds(0), std::min(wait, left));
  }

 private:
  Clock::time_point end_;
  const std::atomic<bool>& stop_;
};

// One attacker connection: a ZeroMQ DEALER that numbers what it sends like a real edge
// (header.sequence from 0) unless told otherwise, and reads the cloud's replies only when
// asked to.
class Peer {
 public:
  struct Options {
    bool small_receive_buffers = false;  // a peer that never reads: keep the cloud's replies in the cloud
  };

  Peer(zmq::context_t& context, const Target& target, Tally& tally, Options options)
      : socket_(context, zmq::socket_type::dealer), target_(target), tally_(tally) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::sndtimeo, kSendTimeoutMs);
    if (options.small_receive_buffers) {
      socket_.set(zmq::sockopt::rcvhwm, 1);
      socket_.set(zmq::sockopt::rcvbuf, 4096);
    }
    // ZeroMQ's "tcp://SOURCE:0;HOST:PORT" connects from SOURCE.
    socket_.connect(target.source.empty() ? target.endpoint
                                          : "tcp://" + target.source + ":0;" + target.endpoint.substr(6));
  }
  Peer(zmq::context_t& context, const Target& target, Tally& tally) : Peer(context, target, tally, Options{}) {}

  std::uint64_t session() const { return session_; }
  std::uint64_t nextSequence() const { return sequence_; }
  void setNextSequence(std::uint64_t sequence) { sequence_ = sequence; }

  // A header for this peer's session, with the next sequence number.
  Header header(MessageType type) const {
    Header h;
    h.type = type;
    h.session = session_;
    h.sequence = sequence_;
    return h;
  }

  // Sends the header frame of `h` and `body` and then `payloads`; the next sequence number
  // follows h.sequence. False when the cloud did not take it within the send timeout.
  bool send(const Header& h, const Body& body, const std::vector<std::string>& payloads = {}) {
    return sendFrames(transport::encodeHeaderFrame(h, body), payloads, h.sequence + 1);
  }

  // Sends frames as they are (the first one need not be a valid header).
  bool sendFrames(const std::string& first, const std::vector<std::string>& rest,
                  std::optional<std::uint64_t> next_sequence = std::nullopt) {
    const auto more = [&](bool last) { return last ? zmq::send_flags::none : zmq::send_flags::sndmore; };
    bool queued = false;
    try {
      queued = socket_.send(zmq::buffer(first), more(rest.empty())).has_value();
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
    }
    if (!queued) {
      ++tally_.failed_sends;
      return false;
    }
    // Once the first frame is queued ZeroMQ takes the whole message.
    for (std::size_t i = 0; i < rest.size(); ++i) socket_.send(zmq::buffer(rest[i]), more(i + 1 == rest.size()));
    ++tally_.sent;
    if (next_sequence) sequence_ = *next_sequence;
    return true;
  }

  // Reads every reply already here; returns how many.
  std::size_t drain() {
    std::size_t n = 0;
    while (receiveOne(std::chrono::milliseconds(0))) ++n;
    return n;
  }

  // Reads replies until one of `type` arrives or `timeout` passes.
  std::optional<transport::DecodedHeader> await(MessageType type, std::chrono::milliseconds timeout) {
    const auto end = Clock::now() + timeout;
    while (Clock::now() < end) {
      auto reply = receiveOne(std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()));
      if (reply && reply->header.type == type) return reply;
    }
    return std::nullopt;
  }

  // Hello with the target's valid fields, then the Welcome: true when a session began.
  bool handshake(std::chrono::milliseconds timeout) {
    if (!send(header(MessageType::kHello), target_.hello)) return false;
    const auto welcome = await(MessageType::kWelcome, timeout);
    if (!welcome) return false;
    session_ = welcome->header.session;
    return true;
  }

 private:
  std::optional<transport::DecodedHeader> receiveOne(std::chrono::milliseconds timeout) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      if (zmq::poll(&item, 1, timeout) <= 0) return std::nullopt;
    } catch (const zmq::error_t& e) {
      if (e.num() == EINTR) return std::nullopt;  // a signal: the deadline decides what next
      throw;
    }
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait) || frames.empty()) {
      return std::nullopt;
    }
    ++tally_.replies;
    transport::Limits limits;
    limits.max_tensor_bytes = std::numeric_limits<std::uint64_t>::max() / 16;
    try {
      auto decoded = transport::decodeHeaderFrame(frames[0].data(), frames[0].size(), limits);
      if (decoded.header.type == MessageType::kError) {
        ++tally_.errors;
        const auto& text = std::get<transport::ErrorInfo>(decoded.body).message;
        if (!target_.hello.fingerprint.empty() && text.find(target_.hello.fingerprint) != std::string::npos) {
          tally_.leaked = true;
        }
      }
      return decoded;
    } catch (const std::exception&) {
      return std::nullopt;  // not ours to judge: count it as a reply and move on
    }
  }

  zmq::socket_t socket_;
  const Target& target_;
  Tally& tally_;
  std::uint64_t session_ = 0;
  std::uint64_t sequence_ = 0;
};

std::string zeros(std::size_t bytes) { return std::string(bytes, '\0'); }

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// A well-formed training (or evaluation) batch of `batch` samples for the target's split.
struct Batch {
  Header header;
  std::vector<std::string> payloads;
};

Batch validBatch(const Peer& peer, const Target& target, MessageType type, std::uint64_t step, std::int64_t batch) {
  Batch b;
  b.header = peer.header(type);
  b.header.step = step;
  TensorMeta activation;
  activation.dtype = DType::kFloat32;
  activation.shape = {batch};
  activation.shape.insert(activation.shape.end(), target.activation.begin(), target.activation.end());
  activation.bytes = static_cast<std::uint64_t>(product(activation.shape)) * 4;
  TensorMeta labels;
  labels.dtype = DType::kInt64;
  labels.shape = {batch};
  labels.bytes = static_cast<std::uint64_t>(batch) * 8;
  b.header.tensors = {activation, labels};
  b.payloads = {zeros(activation.bytes), zeros(labels.bytes)};
  return b;
}

// EpochBegin of epoch 0 announcing staleness K.
bool beginEpoch(Peer& peer, std::uint32_t staleness, std::int64_t steps) {
  auto h = peer.header(MessageType::kEpochBegin);
  h.epoch = 0;
  return peer.send(h, transport::EpochInfo{staleness, steps, 0.0, 0.0});
}

constexpr auto kHandshakeTimeout = std::chrono::milliseconds(10000);

// Holds the connection until the budget ends with a heartbeat (in sequence) every second:
// a peer that never reads but stays alive is never dropped for silence, so whatever it
// costs the cloud lasts as long as the attacker wants.
void holdAlive(Peer& peer, const Deadline& deadline) {
  auto next = Clock::now();
  while (!deadline.over()) {
    if (Clock::now() >= next) {
      peer.send(peer.header(MessageType::kHeartbeat), std::monostate{});
      next += std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void helloFlood(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    Peer peer(context, target, tally);
    // Wait briefly for the answer so the Hello surely reached the cloud before the
    // disconnect; a cloud that stays silent does not slow the flood much.
    peer.send(peer.header(MessageType::kHello), target.hello);
    peer.await(MessageType::kWelcome, std::chrono::milliseconds(500));
  }
}

void badHandshake(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  std::vector<std::unique_ptr<Peer>> peers;
  for (int i = 0; i < 4; ++i) peers.push_back(std::make_unique<Peer>(context, target, tally));
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    auto hello = target.hello;
    switch (i % 4) {
      case 0: hello.fingerprint = "0123456789abcdef"; break;
      case 1: hello.batch_size += 1 + static_cast<std::uint32_t>(i % 7); break;
      case 2: hello.model = "not-" + hello.model; break;
      default: hello.num_stages += 1; break;
    }
    auto& peer = *peers[static_cast<std::size_t>(i) % peers.size()];
    peer.send(peer.header(MessageType::kHello), hello);
    peer.drain();
  }
  for (auto& p : peers) {
    // Collect what is still on its way (a refusal names what differs).
    while (!deadline.over() && p->await(MessageType::kError, std::chrono::milliseconds(300))) {
    }
  }
}

// Activations whose metadata lie: each variant is something the decoder must refuse before
// allocating, or a batch the cloud must refuse before computing.
std::vector<std::function<Batch(const Peer&, std::uint64_t)>> shapeLies(const Target& target) {
  using Lie = std::function<Batch(const Peer&, std::uint64_t)>;
  const auto base = [&target](const Peer& p, std::uint64_t step) {
    return validBatch(p, target, MessageType::kActivations, step, 1);
  };
  std::vector<Lie> lies;
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // a huge first dimension, a small payload
    auto b = base(p, step);
    b.header.tensors[0].shape[0] = std::int64_t{1} << 40;
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // negative dimensions
    auto b = base(p, step);
    b.header.tensors[0].shape[0] = -1;
    b.header.tensors[1].shape[0] = -1;
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // the element count overflows 64 bits
    auto b = base(p, step);
    b.header.tensors[0].shape = {std::int64_t{1} << 32, std::int64_t{1} << 32, 16};
    b.header.tensors[0].bytes = 0;
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // overflow to exactly 0 bytes
    auto b = base(p, step);
    b.header.tensors[0].shape = {std::int64_t{1} << 62, 4};
    b.header.tensors[0].bytes = 0;
    b.payloads[0].clear();
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // declared bytes differ from the frame
    auto b = base(p, step);
    b.payloads[0].resize(b.payloads[0].size() / 2);
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // bytes near 2^64, a small frame
    auto b = base(p, step);
    b.header.tensors[0].bytes = std::numeric_limits<std::uint64_t>::max() - 3;
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // more dimensions than allowed
    auto b = base(p, step);
    b.header.tensors[0].shape.assign(64, 1);
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // a batch larger than the cloud's
    const auto too_many = target.batch_size + 1;
    return validBatch(p, target, MessageType::kActivations, step, too_many);
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // the wrong sample shape
    auto b = base(p, step);
    b.header.tensors[0].shape.back() += 1;
    b.header.tensors[0].bytes = static_cast<std::uint64_t>(product(b.header.tensors[0].shape)) * 4;
    b.payloads[0] = zeros(b.header.tensors[0].bytes);
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // labels for another batch
    auto b = base(p, step);
    b.header.tensors[1].shape = {2};
    b.header.tensors[1].bytes = 16;
    b.payloads[1] = zeros(16);
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // labels out of range
    auto b = base(p, step);
    std::int64_t label = target.num_classes + 5;
    std::memcpy(b.payloads[1].data(), &label, sizeof label);
    return b;
  });
  lies.emplace_back([=](const Peer& p, std::uint64_t step) {  // declared tensors without frames
    auto b = base(p, step);
    b.payloads.clear();
    return b;
  });
  return lies;
}

void oversizeShapes(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  Peer peer(context, target, tally);
  if (!peer.handshake(deadline.cap(kHandshakeTimeout))) return;
  beginEpoch(peer, target.hello.staleness, budget.count);
  const auto lies = shapeLies(target);
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    // Step 0 is always the next expected step: no lie is ever applied.
    auto b = lies[static_cast<std::size_t>(i) % lies.size()](peer, 0);
    peer.send(b.header, std::monostate{}, b.payloads);
    peer.drain();
  }
  peer.drain();
}

void manyFrames(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  Peer peer(context, target, tally);
  if (!peer.handshake(deadline.cap(kHandshakeTimeout))) return;
  beginEpoch(peer, target.hello.staleness, 1);
  const std::vector<std::string> frames(99999);  // with the header: 100 000 frames
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    const auto b = validBatch(peer, target, MessageType::kActivations, 0, 1);
    peer.sendFrames(transport::encodeHeaderFrame(b.header, std::monostate{}), frames, b.header.sequence + 1);
    peer.drain();
  }
  peer.await(MessageType::kError, std::chrono::milliseconds(1000));
}

void bigFrames(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  const std::uint64_t limit = target.max_message_bytes;
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    // One connection each: ZeroMQ drops the connection of a peer whose frame is over the
    // limit, before reading it.
    Peer peer(context, target, tally);
    if (!peer.handshake(deadline.cap(kHandshakeTimeout))) return;
    const std::uint64_t size = limit + (i % 2 == 0 ? 0 : 1);
    auto h = peer.header(MessageType::kActivations);
    TensorMeta meta;
    meta.dtype = DType::kUInt8;
    meta.shape = {static_cast<std::int64_t>(size)};
    meta.bytes = size;
    h.tensors = {meta};
    peer.send(h, std::monostate{}, {zeros(size)});
    peer.await(MessageType::kError, std::chrono::milliseconds(2000));
  }
}

void replay(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  Peer peer(context, target, tally);
  if (!peer.handshake(deadline.cap(kHandshakeTimeout))) return;
  beginEpoch(peer, target.hello.staleness, budget.count);
  std::uint64_t next_step = 0;
  std::optional<Batch> last;
  std::mt19937_64 rng(7);
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    switch (i % 8) {
      case 0: {  // a valid step, remembered for the replays
        auto b = validBatch(peer, target, MessageType::kActivations, next_step++, 1);
        peer.send(b.header, std::monostate{}, b.payloads);
        last = std::move(b);
        break;
      }
      case 1: {  // the same message again, sequence number and all
        const auto next = peer.nextSequence();
        if (last) peer.send(last->header, std::monostate{}, last->payloads);
        peer.setNextSequence(next);
        break;
      }
      case 2: {  // reordered: the later message first, then the earlier one
        auto later =
            validBatch(peer, target, MessageType::kEvalActivations, 1000000 + static_cast<std::uint64_t>(i), 1);
        later.header.sequence += 1;
        auto earlier =
            validBatch(peer, target, MessageType::kEvalActivations, 2000000 + static_cast<std::uint64_t>(i), 1);
        peer.send(later.header, std::monostate{}, later.payloads);
        peer.send(earlier.header, std::monostate{}, earlier.payloads);
        peer.setNextSequence(later.header.sequence + 1);
        break;
      }
      case 3: {  // another session's id
        auto b = validBatch(peer, target, MessageType::kActivations, next_step, 1);
        b.header.session = peer.session() ^ (rng() | 1);
        peer.send(b.header, std::monostate{}, b.payloads);
        break;
      }
      case 4: {  // a sequence number far back
        const auto next = peer.nextSequence();
        auto h = peer.header(MessageType::kHeartbeat);
        h.sequence = next / 2;
        peer.send(h, std::monostate{});
        peer.setNextSequence(next);
        break;
      }
      case 5: {  // a gap in the sequence
        auto h = peer.header(MessageType::kHeartbeat);
        h.sequence += 3;
        peer.send(h, std::monostate{});
        break;
      }
      case 6: {  // a step far ahead (the cloud must ask for a resync, not apply it)
        auto b = validBatch(peer, target, MessageType::kActivations, next_step + 50, 1);
        peer.send(b.header, std::monostate{}, b.payloads);
        break;
      }
      default: {  // a step already applied (the cached reply, not a second update)
        auto b = validBatch(peer, target, MessageType::kActivations, next_step > 0 ? next_step - 1 : 0, 1);
        peer.send(b.header, std::monostate{}, b.payloads);
        break;
      }
    }
    peer.drain();
  }
  while (!deadline.over() && peer.await(MessageType::kError, std::chrono::milliseconds(300))) {
  }
}

// ZMTP 3.0 by hand (rfc.zeromq.org/spec/23): greeting, NULL mechanism, READY as a DEALER.
std::string zmtpGreeting() {
  std::string g(64, '\0');
  g[0] = static_cast<char>(0xFF);
  g[9] = 0x7F;
  g[10] = 3;  // version 3.0
  g[11] = 0;
  std::memcpy(&g[12], "NULL", 4);  // mechanism, zero-padded to 20 bytes; as-server 0; 31 filler bytes
  return g;
}

std::string zmtpReady() {
  std::string body;
  body += static_cast<char>(5);
  body += "READY";
  body += static_cast<char>(11);
  body += "Socket-Type";
  body += std::string("\0\0\0\x06", 4);  // value length, big-endian
  body += "DEALER";
  return std::string{static_cast<char>(0x04), static_cast<char>(body.size())} + body;  // a short command frame
}

// A message frame header declaring `size` bytes (a long frame, the last of its message).
std::string zmtpLongFrameHeader(std::uint64_t size) {
  std::string h(9, '\0');
  h[0] = 0x02;
  for (int i = 0; i < 8; ++i) h[static_cast<std::size_t>(1 + i)] = static_cast<char>((size >> (8 * (7 - i))) & 0xFF);
  return h;
}

// A connected TCP socket to tcp://HOST:PORT, or -1.
int connectTcp(const std::string& endpoint, const std::string& source) {
  const std::string prefix = "tcp://";
  if (endpoint.rfind(prefix, 0) != 0) throw TransportError("slow-drip needs a tcp:// endpoint, not '" + endpoint + "'");
  const auto rest = endpoint.substr(prefix.size());
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw TransportError("no port in '" + endpoint + "'");
  const auto host = rest.substr(0, colon);
  const auto port = rest.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    throw TransportError("cannot resolve '" + endpoint + "'");
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  if (fd >= 0 && !source.empty()) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1 ||
        ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
      ::close(fd);
      ::freeaddrinfo(found);
      throw TransportError("cannot connect from " + source);
    }
  }
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    ::close(fd);
    ::freeaddrinfo(found);
    return -1;
  }
  ::freeaddrinfo(found);
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool sendAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void slowDrip(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  struct Connection {
    int fd = -1;
    bool drips = false;
    bool open = true;
    bool greeted = false;
  };
  std::vector<Connection> connections;
  const auto greeting = zmtpGreeting();
  // Within the limit, so ZeroMQ waits for the whole frame rather than dropping the peer.
  const auto declared = std::max<std::uint64_t>(1, target.max_message_bytes / 2);
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    Connection c;
    c.fd = connectTcp(target.endpoint, target.source);
    if (c.fd < 0) {
      ++tally.errors;
      continue;
    }
    c.drips = i % 2 == 0;
    const bool ok = c.drips ? sendAll(c.fd, greeting + zmtpReady() + zmtpLongFrameHeader(declared))
                            : sendAll(c.fd, greeting.substr(0, 11));  // stops mid-greeting
    ++tally.sent;
    c.open = ok;
    if (!ok) ++tally.errors;
    connections.push_back(c);
  }
  // One byte per dripping connection every 100 ms until the budget ends.
  std::uint64_t dripped = 0;
  while (!deadline.over() && dripped < declared) {
    for (auto& c : connections) {
      if (!c.open) continue;
      char buffer[256];
      const auto got = ::recv(c.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (got == 0) {
        c.open = false;
        ++tally.errors;
        continue;
      }
      if (got > 0 && !c.greeted) {
        c.greeted = true;
        ++tally.replies;
      }
      if (c.drips) {
        if (!sendAll(c.fd, std::string(1, '\0'))) {
          c.open = false;
          ++tally.errors;
          continue;
        }
        ++tally.sent;
      }
    }
    ++dripped;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& c : connections) ::close(c.fd);
}

// `steps` training steps, a Resync for everything, then header-only messages after gaps,
// while never reading: every reply the cloud makes stays queued in the cloud.
void resyncFlood(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  constexpr std::uint32_t kStaleness = 64;
  constexpr std::uint64_t kSteps = 140;
  zmq::context_t context;
  Peer peer(context, target, tally, Peer::Options{true});
  if (!peer.handshake(deadline.cap(kHandshakeTimeout))) return;
  beginEpoch(peer, kStaleness, static_cast<std::int64_t>(kSteps) * 2);
  for (std::uint64_t step = 0; step < kSteps && !deadline.over(); ++step) {
    auto b = validBatch(peer, target, MessageType::kActivations, step, 1);
    if (!peer.send(b.header, std::monostate{}, b.payloads)) break;
  }
  // Each Resync comes after a sequence gap: the cloud answers the gap with a ResyncReply
  // and the Resync with every cached gradient from step 0 again.
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    auto h = peer.header(MessageType::kResync);
    h.epoch = 0;
    if (i > 0) h.sequence += 1;
    const auto request = static_cast<std::uint64_t>(i + 1);
    if (!peer.send(h, transport::ResyncInfo{request, 0, kSteps, 0, true})) break;
  }
  holdAlive(peer, deadline);
}

void gapFlood(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally) {
  zmq::context_t context;
  Peer peer(context, target, tally, Peer::Options{true});
  for (std::int64_t i = 0; i < budget.count && !deadline.over(); ++i) {
    // Alternately a heartbeat (swallowed, but the gap is seen) and a request without a
    // session (an Error reply the attacker never reads).
    auto h = peer.header(i % 2 == 0 ? MessageType::kHeartbeat : MessageType::kEpochEnd);
    h.sequence += 1;
    const Body body = i % 2 == 0 ? Body{std::monostate{}} : Body{transport::EpochInfo{}};
    if (!peer.send(h, body)) break;
  }
  holdAlive(peer, deadline);
}

void junk(const Target& target, const Budget& budget, const Deadline& deadline, Tally& tally,
          const std::string& corpus_dir) {
  const auto seeds = transport::readFrameCorpus(corpus_dir);
  std::atomic<std::int64_t> left{budget.count};
  std::vector<std::thread> threads;
  for (int a = 0; a < 3; ++a) {
    threads.emplace_back([&, a] {
      zmq::context_t context;
      std::mt19937 rng(100 + static_cast<unsigned>(a));
      while (!deadline.over() && left > 0) {
        Peer peer(context, target, tally);  // a fresh identity every few hundred messages
        for (int i = 0; i < 300 && !deadline.over() && left-- > 0; ++i) {
          std::vector<std::string> frames;
          if (seeds.empty() || rng() % 4 == 0) {
            frames = {std::string(rng() % 200, '\0')};  // random bytes
            for (auto& c : frames[0]) c = static_cast<char>(rng());
          } else {
            frames = seeds[rng() % seeds.size()];
            transport::mutateFrames(frames, rng);
          }
          const std::vector<std::string> rest(frames.begin() + 1, frames.end());
          peer.sendFrames(frames[0], rest);
          peer.drain();
          std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

const std::vector<std::string>& attackNames() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const auto& a : attackTable()) out.emplace_back(a.name);
    return out;
  }();
  return names;
}

std::string describeAttack(const std::string& name) { return info(name).description; }

std::int64_t defaultCount(const std::string& name) { return info(name).default_count; }

Report runAttack(const std::string& name, const Target& target, const Budget& budget, const std::atomic<bool>& stop,
                 const std::string& corpus_dir) {
  Budget b = budget;
  if (b.count <= 0) b.count = defaultCount(name);
  const Deadline deadline(b.seconds, stop);
  Tally tally;
  const auto start = Clock::now();
  try {
    if (name == "hello-flood")
      helloFlood(target, b, deadline, tally);
    else if (name == "bad-handshake")
      badHandshake(target, b, deadline, tally);
    else if (name == "oversize-shapes")
      oversizeShapes(target, b, deadline, tally);
    else if (name == "many-frames")
      manyFrames(target, b, deadline, tally);
    else if (name == "big-frames")
      bigFrames(target, b, deadline, tally);
    else if (name == "replay")
      replay(target, b, deadline, tally);
    else if (name == "slow-drip")
      slowDrip(target, b, deadline, tally);
    else if (name == "resync-flood")
      resyncFlood(target, b, deadline, tally);
    else if (name == "gap-flood")
      gapFlood(target, b, deadline, tally);
    else if (name == "junk")
      junk(target, b, deadline, tally, corpus_dir);
    else
      info(name);  // throws, naming the known attacks
  } catch (const zmq::error_t& e) {
    throw TransportError("attack " + name + " on " + target.endpoint + ": " + e.what());
  }
  Report r;
  r.sent = tally.sent;
  r.replies = tally.replies;
  r.errors = tally.errors;
  r.failed_sends = tally.failed_sends;
  r.leaked_fingerprint = tally.leaked;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return r;
}

std::string summaryLine(const std::string& name, const Report& r) {
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%.2f", r.seconds);
  return "tandem_attack: attack=" + name + " sent=" + std::to_string(r.sent) + " replies=" + std::to_string(r.replies) +
         " errors=" + std::to_string(r.errors) + " failed_sends=" + std::to_string(r.failed_sends) +
         " leaked_fingerprint=" + (r.leaked_fingerprint ? "1" : "0") + " seconds=" + seconds;
}

}  // namespace tandem::attack
